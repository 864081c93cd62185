"""``python -m labelloop.cli``: the ``labelloop`` command."""

from labelloop.cli import main

main()
