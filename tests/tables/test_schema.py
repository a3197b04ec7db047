"""Every table declares exactly osquery's Linux columns, read from the shipped schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetctl.tables import TABLES

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "fleetctl" / "schema"


def _specs(filename: str) -> dict[str, dict[str, Any]]:
    data = json.loads((SCHEMA_DIR / filename).read_text())
    return {t["name"]: t for t in data if not t["name"].startswith("_")}


OSQUERY = _specs("osquery_tables.json")
SUPPLEMENT = _specs("osquery_tables_supplement.json")
EXTENSION = _specs("extension_tables.json")


@pytest.mark.parametrize("name", sorted(TABLES))
def test_columns_names_types_and_hidden_flags(name: str) -> None:
    spec = OSQUERY.get(name) or SUPPLEMENT.get(name) or EXTENSION[name]
    expected = []
    for col in spec["columns"]:
        foreign = bool(col.get("platforms")) and "linux" not in col["platforms"]
        expected.append((col["name"], col["type"], bool(col.get("hidden")) or foreign))
    got = [(c.name, c.type, c.hidden) for c in TABLES[name].columns if c.alias_of is None]
    assert got == expected


def test_the_extension_tables_are_the_projects_own() -> None:
    assert {n for n, s in TABLES.items() if s.extension} == set(EXTENSION)


def test_every_table_has_a_shipped_spec() -> None:
    assert set(TABLES) <= set(OSQUERY) | set(SUPPLEMENT) | set(EXTENSION)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_generated_rows_only_use_declared_columns(name: str) -> None:
    declared = set(TABLES[name].column_names)
    for row in TABLES[name].rows():
        assert set(row) <= declared, set(row) - declared
