#!/usr/bin/env bash
# Write the constraints setup.sh installs from, from what .venv and .venv-ls hold now. Move a version on purpose:
# `.venv/bin/pip install -U PACKAGE`, run the tests, then this script, and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
freeze() {  # the editable project itself is not a constraint; torch's local build label (+cpu) is left to the index
    "$1" -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' | LC_ALL=C sort -f
}
{ echo "# .venv: labelloop[all,dev] and what it pulls in; written by scripts/lock.sh"; freeze .venv/bin/python; } > constraints.txt
{ echo "# .venv-ls: label-studio==1.23.2 and what it pulls in; written by scripts/lock.sh"; freeze .venv-ls/bin/python; } \
    > constraints-label-studio.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins) and constraints-label-studio.txt ($(grep -vc '^#' constraints-label-studio.txt) pins)"
