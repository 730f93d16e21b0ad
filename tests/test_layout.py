"""The package's layers: each folder imports only folders below it, so a newcomer can read it bottom up."""

from __future__ import annotations

import ast
from pathlib import Path

import queuer

PACKAGE = Path(queuer.__file__).parent

# Lower first; a folder may import itself and any folder of a lower rank, never a peer or one above.
RANKS = {
    "errors": 0,
    "config": 1, "payload": 1,
    "model": 2,
    "database": 3, "observability": 3,
    "runtime": 4,
    "client": 5,
    "web": 6, "supervisor": 6,
    "__init__": 7,
    "tools": 8,
    "cli": 9, "testing": 9,
    "__main__": 10,
}


def _folder(module: str) -> str:
    """``queuer.database.pool`` -> ``database``; ``queuer`` itself is its ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("queuer"):
            assert node.module is not None
            if node.module == "queuer":  # "from queuer import errors" names a module; "import X" a public name
                found |= {f"queuer.{a.name}" for a in node.names if (PACKAGE / a.name).exists()
                          or (PACKAGE / f"{a.name}.py").exists()} or {"queuer"}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("queuer")}
    return found


def test_every_folder_has_a_rank():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert folders | modules == set(RANKS), "give a new folder its place in RANKS"


def test_imports_only_go_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        here = _folder(".".join(relative.parts))
        for module in _imports(path):
            there = _folder(module)
            if there != here and RANKS[there] >= RANKS[here]:
                upward.append(f"{relative} imports {module} ({here} -> {there})")
    assert upward == []
