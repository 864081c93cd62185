from pathlib import Path

import pytest
import tomllib

from labelloop._optional import EXTRAS, missing_extra
from labelloop.errors import MissingExtraError


def test_every_optional_package_names_an_extra_that_exists():
    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS.values()) <= set(extras)


def test_a_missing_optional_package_says_which_extra_brings_it():
    error = missing_extra(ModuleNotFoundError("No module named 'peft.tuners'", name="peft.tuners"))
    assert isinstance(error, MissingExtraError) and "pip install 'labelloop[train]'" in str(error)
    assert missing_extra(ModuleNotFoundError("No module named 'nosuch'", name="nosuch")) is None  # a bug stays a bug


def test_a_command_that_meets_a_missing_extra_exits_with_the_install_line(monkeypatch):
    import labelloop.cli as cli

    def needs_peft(args):
        raise ModuleNotFoundError("No module named 'peft'", name="peft")

    monkeypatch.setattr(cli, "cmd_hash_password", needs_peft)
    with pytest.raises(SystemExit) as stop:
        cli.main(["hash-password"])
    assert stop.value.code == "error: 'peft' is not installed; it comes with: pip install 'labelloop[train]'"
