"""The public API that the README shows resolves, lazily."""

import subprocess
import sys

import labelloop


def test_every_exported_name_resolves():
    for name in labelloop.__all__:
        assert getattr(labelloop, name) is not None, name


def test_importing_the_package_loads_no_model_stack():
    code = "import sys, labelloop; print('torch' in sys.modules, 'labelloop.serving.service' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
