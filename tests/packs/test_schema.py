"""The schema files as tables, and SQL planned the way osqueryd plans it."""

from __future__ import annotations

import json
from pathlib import Path

from fleetctl.packs.schema import Compiled, Scan, default_schema, load_schema


def test_metadata_and_non_tables_are_skipped() -> None:
    schema = default_schema()
    assert not any(name.startswith("_") for name in schema.tables)
    for not_a_table in ("unix_sockets", "bpf_process_events", "bpf_socket_events"):
        assert not_a_table not in schema.tables
    assert schema.tables["process_stdio"].extension is True
    assert schema.tables["processes"].extension is False


def test_platform_specific_columns_and_tables() -> None:
    schema = default_schema()
    processes = schema.tables["processes"]
    linux = {c.name for c in processes.columns_on("linux")}
    darwin = {c.name for c in processes.columns_on("darwin")}
    assert "cgroup_path" in linux and "cgroup_path" not in darwin
    assert "upid" in darwin and "upid" not in linux
    assert "pipes" in schema.tables_on("windows") and "pipes" not in schema.tables_on("linux")
    assert schema.table("hosts") is schema.tables["etc_hosts"]


def test_compile_reports_the_chosen_plan() -> None:
    schema = default_schema()
    sql = "SELECT h.name FROM processes p JOIN process_open_handles h ON h.pid = p.pid"
    assert schema.compile(sql, "windows") == Compiled(
        statements=1,
        tables=frozenset({"processes", "process_open_handles"}),
        scans=(Scan("processes", True), Scan("process_open_handles", True)),
    )
    assert schema.compile("SELECT name FROM process_open_handles", "windows").scans == (
        Scan("process_open_handles", False),
    )
    assert schema.compile("SELECT name FROM pipes", "linux") == Compiled(
        error="no such table: pipes"
    )


def test_load_schema_from_other_files(tmp_path: Path) -> None:
    path = tmp_path / "tables.json"
    path.write_text(
        json.dumps(
            [
                {"name": "_meta", "columns": []},
                {
                    "name": "widgets",
                    "platforms": ["linux"],
                    "columns": [
                        {"name": "id", "type": "bigint", "required": True},
                        {"name": "secret", "type": "text", "hidden": True},
                    ],
                },
            ]
        )
    )
    schema = load_schema([path])
    assert list(schema.tables) == ["widgets"]
    assert schema.compile("SELECT * FROM widgets WHERE id = 1", "linux").scans == (
        Scan("widgets", True),
    )
    assert schema.compile("SELECT secret FROM widgets WHERE id = 1").error is None
    assert schema.compile("SELECT secret FROM (SELECT * FROM widgets WHERE id = 1)").error == (
        "no such column: secret"
    )
