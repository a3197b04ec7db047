"""Evented tables, osquery_events, osquery_extensions, osquery_packs and osquery_registry
as the embedded engine answers them, checked against the shipped schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetctl.engine import Engine
from fleetctl.tables import TABLES, Scan, events
from fleetctl.tables.osquery_state import EMBEDDED_EXTENSION_UUID
from fleetctl.tables.runtime import AgentRuntime, ExtensionInfo, FlagInfo, PackInfo

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "fleetctl" / "schema"


def _specs(*filenames: str) -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {}
    for filename in filenames:
        for spec in json.loads((SCHEMA_DIR / filename).read_text()):
            if not spec["name"].startswith("_"):
                specs[spec["name"]] = spec
    return specs


OSQUERY_SPECS = _specs("osquery_tables.json", "osquery_tables_supplement.json")
LINUX_EVENTED = sorted(
    name
    for name, spec in OSQUERY_SPECS.items()
    if spec.get("evented") and "linux" in (spec.get("platforms") or ())
)


def _visible_schema_columns(name: str) -> list[str]:
    spec = OSQUERY_SPECS[name]
    return [
        c["name"]
        for c in spec["columns"]
        if not c.get("hidden") and (not c.get("platforms") or "linux" in c["platforms"])
    ]


def test_every_linux_evented_table_of_the_schema_is_served() -> None:
    assert sorted(events.SUBSCRIBERS) == LINUX_EVENTED
    assert set(LINUX_EVENTED) <= set(TABLES)
    assert {"process_events", "socket_events", "process_file_events"} <= set(LINUX_EVENTED)


@pytest.mark.parametrize("name", [*LINUX_EVENTED, "osquery_extensions", "osquery_packs"])
def test_columns_are_the_schemas(name: str) -> None:
    spec = OSQUERY_SPECS[name]
    declared = [(c.name, c.type) for c in TABLES[name].columns if c.alias_of is None]
    assert declared == [(c["name"], c["type"]) for c in spec["columns"]]
    aliases = {c.name: c.alias_of for c in TABLES[name].columns if c.alias_of}
    assert aliases == {a: c["name"] for c in spec["columns"] for a in c.get("aliases") or ()}
    engine = Engine()
    assert [n for n, _ in engine.columns(f"SELECT * FROM {name}")] == (
        _visible_schema_columns(name)
    )


@pytest.mark.parametrize("name", LINUX_EVENTED)
def test_evented_tables_return_no_rows(name: str) -> None:
    assert TABLES[name].rows() == []
    hidden = [c.name for c in TABLES[name].columns if c.hidden]
    engine = Engine()
    assert engine.query(f"SELECT * FROM {name}").rows == []
    assert engine.query(f"SELECT {', '.join(['*', *hidden])} FROM {name} WHERE time > 0").rows == []
    assert engine.query(f"SELECT count(*) AS n FROM {name}").rows == [{"n": 0}]


def test_pack_event_queries_join_an_empty_table() -> None:
    sql = (
        "SELECT e.pid, e.path, pp.name AS parent_name FROM process_events e "
        "LEFT JOIN processes pp ON pp.pid = e.parent "
        "WHERE e.syscall IN ('execve', 'execveat')"
    )
    assert Engine().query(sql).rows == []


def test_osquery_events_lists_the_publishers_and_subscribers_as_inactive() -> None:
    rows = TABLES["osquery_events"].rows()
    publishers = [r for r in rows if r["type"] == "publisher"]
    subscribers = [r for r in rows if r["type"] == "subscriber"]
    assert len(publishers) + len(subscribers) == len(rows)
    assert [r["name"] for r in publishers] == ["BPFEventPublisher", "auditeventpublisher"]
    assert all(r["publisher"] == r["name"] for r in publishers)
    assert {r["name"]: r["publisher"] for r in subscribers} == {
        "process_events": "auditeventpublisher",
        "socket_events": "auditeventpublisher",
        "process_file_events": "auditeventpublisher",
        "bpf_process_events": "BPFEventPublisher",
        "bpf_socket_events": "BPFEventPublisher",
    }
    for row in rows:
        assert (row["active"], row["events"], row["subscriptions"], row["refreshes"]) == (
            0,
            0,
            0,
            0,
        ), row


def test_osquery_extensions_core_and_the_projects_tables() -> None:
    runtime = AgentRuntime(version="9.9.9")
    rows = TABLES["osquery_extensions"].rows({}, Scan(runtime=runtime))
    assert rows == [
        {
            "uuid": 0,
            "name": "core",
            "version": "9.9.9",
            "sdk_version": "",
            "path": "",
            "type": "core",
        },
        {
            "uuid": EMBEDDED_EXTENSION_UUID,
            "name": "fleetctl",
            "version": "0.1.0",
            "sdk_version": "",
            "path": "",
            "type": "extension",
        },
    ]
    # The core's path is the extensions socket flag when the runtime has one.
    runtime.flags = {"extensions_socket": FlagInfo("extensions_socket", "/run/x.em")}
    [core, _] = TABLES["osquery_extensions"].rows({}, Scan(runtime=runtime))
    assert core["path"] == "/run/x.em"


def test_extension_tables_are_owned_by_the_extension_row() -> None:
    sql = (
        "SELECT r.name AS table_name, e.name AS extension, e.type FROM osquery_registry r "
        "LEFT JOIN osquery_extensions e ON e.uuid = r.owner_uuid "
        "WHERE r.registry = 'table' AND r.internal = 0 AND r.owner_uuid <> 0 "
        "ORDER BY table_name"
    )
    rows = Engine().query(sql).rows
    extension_tables = sorted(n for n, s in TABLES.items() if s.extension)
    assert rows == [
        {"table_name": n, "extension": "fleetctl", "type": "extension"} for n in extension_tables
    ]


def test_a_runtime_without_the_extension_row_owns_its_tables_itself() -> None:
    runtime = AgentRuntime(extension_list=[ExtensionInfo(0, "core", "1.0", type="core")])
    rows = TABLES["osquery_registry"].rows({}, Scan(runtime=runtime))
    assert all(r["owner_uuid"] == 0 for r in rows)
    assert [r["name"] for r in TABLES["osquery_extensions"].rows({}, Scan(runtime=runtime))] == [
        "core"
    ]


def test_osquery_packs_reflects_the_runtime() -> None:
    assert TABLES["osquery_packs"].rows() == []
    runtime = AgentRuntime(
        packs=[
            PackInfo(
                "ipc-telemetry",
                "linux",
                9,
                "5.0.0",
                0,
                active=True,
                discovery_cache_hits=3,
                discovery_executions=1,
            ),
            PackInfo("ipc-telemetry-macos", "darwin", 4),
        ]
    )
    engine = Engine(runtime=runtime)
    rows = engine.query("SELECT * FROM osquery_packs").rows
    assert rows == [
        {
            "name": "ipc-telemetry",
            "platform": "linux",
            "version": "5.0.0",
            "shard": 0,
            "discovery_cache_hits": 3,
            "discovery_executions": 1,
            "active": 1,
        },
        {
            "name": "ipc-telemetry-macos",
            "platform": "darwin",
            "version": "",
            "shard": 0,
            "discovery_cache_hits": None,
            "discovery_executions": None,
            "active": 0,
        },
    ]
    assert engine.query("SELECT name FROM osquery_packs WHERE active = 1").rows == [
        {"name": "ipc-telemetry"}
    ]


def test_osquery_registry_lists_every_served_table() -> None:
    engine = Engine()
    rows = engine.query("SELECT * FROM osquery_registry").rows
    tables = {r["name"]: r for r in rows if r["registry"] == "table"}
    assert sorted(tables) == engine.table_names() == sorted(TABLES)
    assert all(r["active"] == 1 for r in tables.values())
    # osquery registers its utility tables (specs/utility) as internal, others not.
    assert tables["osquery_info"]["internal"] == tables["time"]["internal"] == 1
    assert tables["processes"]["internal"] == tables["process_events"]["internal"] == 0
    assert tables["uptime"]["internal"] == 0
    publishers = {r["name"] for r in rows if r["registry"] == "event_publisher"}
    subscribers = {r["name"] for r in rows if r["registry"] == "event_subscriber"}
    assert publishers == {"auditeventpublisher", "BPFEventPublisher"}
    assert subscribers == set(events.SUBSCRIBERS)
    assert all(r["active"] == 0 for r in rows if r["registry"].startswith("event_"))
