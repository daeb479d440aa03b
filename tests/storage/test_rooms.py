"""storage/ is plain Python: nothing in it imports Prefect (it must run and test without it)."""

from __future__ import annotations

import ast
from pathlib import Path

import storage

ROOMS = {"storage": set(), "tasks": {"storage"}, "flows": {"storage", "tasks"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_bytes())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_storage_never_imports_prefect() -> None:
    root = Path(storage.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py") if "prefect" in _imports(p)]
    assert offenders == []


def test_imports_point_one_way() -> None:
    repo = Path(storage.__file__).parent.parent
    upper = {"api_shim", "cli", "flows", "tasks"}
    bad = []
    for room, allowed in ROOMS.items():
        for path in (repo / room).rglob("*.py"):
            wrong = (_imports(path) & (upper | {"storage"})) - allowed - {room}
            if wrong:
                bad.append(f"{path.relative_to(repo)} imports {sorted(wrong)}")
    assert bad == []
