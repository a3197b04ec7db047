"""The layers hold: storage is the bottom one, and only it builds SQL.

``pyproject.toml``'s import-linter contracts check the imports (``lint-imports`` in CI);
these tests check the same graph from pytest and what imports cannot show: which
modules of fleetctl build SQL or drive a session themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.architecture import edges

ROOT = Path(__file__).resolve().parents[1]
# What building a statement takes; a type (Session, Engine), an exception or a column
# type to read a range from is not building one.
SQL_NAMES = frozenset(
    {"select", "insert", "update", "delete", "text", "func", "and_", "or_", "case", "exists"}
)
SESSION_CALLS = frozenset(
    {"execute", "scalar", "scalars", "get", "add", "add_all", "delete", "merge", "flush"}
)


def test_storage_imports_nothing_from_fleetctl() -> None:
    graph = edges()
    for package in ("storage", "migrations"):
        assert not {t for t in graph[package] if t.split(".")[0] == "fleetctl"}, package


def _builds_sql(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [f"imports {a.name}" for a in node.names if a.name in SQL_NAMES]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "session"
            and node.func.attr in SESSION_CALLS
        ):
            found.append(f"session.{node.func.attr}() on line {node.lineno}")
    return found


def test_only_storage_builds_sql() -> None:
    building = {}
    for path in sorted((ROOT / "fleetctl").rglob("*.py")):
        found = _builds_sql(path)
        if found:
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            building[module] = found
    assert building == {}
