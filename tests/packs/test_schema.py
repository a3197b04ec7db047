"""The schema files as tables, and SQL planned the way osqueryd plans it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetctl.schema import (
    OSQUERY_SCHEMA_FILES,
    Compiled,
    Scan,
    SchemaConflictError,
    default_schema,
    load_schema,
)


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


def test_supplement_adds_osquery_tables_the_subset_lacks() -> None:
    schema = default_schema()
    for name in (
        "osquery_flags", "osquery_schedule", "osquery_events", "osquery_registry",
        "osquery_extensions", "osquery_packs", "time", "uptime",
    ):  # fmt: skip
        assert schema.tables[name].platforms == {"linux", "darwin", "windows"}, name
    for name in (
        "registry", "wmi_script_event_consumers", "wmi_event_filters",
        "wmi_filter_consumer_binding",
    ):  # fmt: skip
        assert schema.tables[name].platforms == {"windows"}, name
    assert schema.tables["plist"].platforms == {"darwin"}
    assert [c.name for c in schema.tables["plist"].columns if c.required] == ["path"]
    denylisted = schema.tables["osquery_schedule"].column("blacklisted")
    assert denylisted is not None and denylisted.name == "denylisted"
    win_timestamp = schema.tables["time"].column("win_timestamp")
    assert win_timestamp is not None and win_timestamp.platforms == {"windows"}
    key = schema.tables["registry"].column("key")
    assert key is not None and key.additional


def test_supplement_and_subset_never_define_the_same_table() -> None:
    base, supplement = (json.loads(p.read_text()) for p in OSQUERY_SCHEMA_FILES)
    names = [
        {e["name"] for e in doc if not e["name"].startswith("_")} for doc in (base, supplement)
    ]
    assert names[0] and names[1] and not names[0] & names[1]
    meta = next(e for e in supplement if e["name"] == "_meta")["meta"]
    assert meta["source_repo"] == "osquery/osquery"
    assert meta["supplements"] == "osquery_tables.json"
    assert set(meta["spec_paths"]) == {e["spec_path"] for e in supplement if "spec_path" in e}


def test_plist_needs_its_path_and_takes_like() -> None:
    schema = default_schema()
    like = "SELECT subkey FROM plist WHERE path LIKE '/Library/LaunchDaemons/%.plist'"
    assert schema.compile(like, "darwin").scans == (Scan("plist", True),)
    assert schema.compile(
        "SELECT subkey FROM plist WHERE key = 'MachServices'", "darwin"
    ).scans == (Scan("plist", False),)
    assert schema.compile("SELECT subkey FROM plist", "windows").error == "no such table: plist"


def test_a_table_defined_twice_is_an_error(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps([{"name": "widgets", "platforms": ["linux"], "columns": []}]))
    second.write_text(
        json.dumps(
            [
                {"name": "_meta", "columns": []},
                {"name": "widgets", "present_in_specs": False, "platforms": [], "columns": []},
            ]
        )
    )
    with pytest.raises(
        SchemaConflictError, match=r"table widgets is defined twice \(a.json and b.json\)"
    ):
        load_schema([first, second])
    with pytest.raises(SchemaConflictError, match=r"\(a.json\)"):
        load_schema([first, first])
    assert list(load_schema([first]).tables) == ["widgets"]
