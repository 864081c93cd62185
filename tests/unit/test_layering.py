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


def test_no_module_imports_itself_round_a_circle():
    """Imports inside functions count too: a circle there still ties two modules into one."""
    graph = {}
    for f in ROOT.rglob("*.py"):
        name = ".".join(f.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        deps = imported(f)
        for node in ast.walk(ast.parse(f.read_text())):  # "from labelloop import lsclient" names a module too
            if isinstance(node, ast.ImportFrom) and node.module == "labelloop":
                deps |= {f"labelloop.{a.name}" for a in node.names}
        graph[name] = {d for d in deps if d.startswith("labelloop")}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError(" -> ".join(path[path.index(module):] + [module]))
        if module in done or module not in graph:
            return
        for dep in sorted(graph[module]):
            visit(dep, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


COLLABORATORS = {"store", "ladder", "features", "clients", "registry", "publisher", "trainer", "annotations"}


def test_only_the_backend_reaches_into_the_services_collaborators():
    """The CLI, the lead's actions, the pool, the dashboard and the backend's routes ask the service
    (``service.decisions(...)``), never its store, ladder or registry: each decision keeps one owner."""
    files = [f for f in ROOT.rglob("*.py") if "serving" not in f.relative_to(ROOT).parts]
    files += [f for folder in ("backend", "dashboard", "augment") for f in (ROOT.parent / folder).rglob("*.py")]
    assert any(f.parent.name == "app_pages" for f in files)
    reaching = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr in COLLABORATORS):
                continue
            owner = node.value
            named = owner.id if isinstance(owner, ast.Name) else owner.func.id if (
                isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)) else owner.func.attr if (
                isinstance(owner, ast.Call) and isinstance(owner.func, ast.Attribute)) else ""
            if named == "service":
                reaching.append(f"{f.relative_to(ROOT.parent)}:{node.lineno} .{node.attr}")
    assert not reaching, reaching


def test_every_package_folder_ships_in_the_wheel():
    """``pip install .`` (the Docker image) installs only the packages pyproject names: a new subpackage must be
    named there, or the installed backend fails on import while an editable install works."""
    import tomllib

    config = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {package: Path(ROOT.parent / folder) for package, folder in config["package-dir"].items()}
    found = set()
    for package, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found.add(".".join((package, *parts)))
    assert found == set(config["packages"]), sorted(found ^ set(config["packages"]))
