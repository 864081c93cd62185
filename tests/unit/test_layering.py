"""The package's layers: fine-tuning is a library the backend uses, never the other way round."""

import ast
from pathlib import Path

import labelloop

ROOT = Path(labelloop.__file__).parent


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def test_fine_tuning_never_reaches_into_the_backend():
    reaching = {f.name: sorted(m for m in imported(f) if m.startswith("labelloop.serving"))
                for f in (ROOT / "finetune").glob("*.py")}
    assert not {k: v for k, v in reaching.items() if v}, reaching
