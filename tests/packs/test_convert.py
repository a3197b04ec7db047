"""Converting osquery .conf packs and FleetDM YAML into this project's pack JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetctl.packs.convert import ConvertError, convert_file, from_fleet_yaml, from_osquery
from fleetctl.packs.loader import dumps, load_file, loads
from fleetctl.packs.model import Pack, ScheduledQuery
from fleetctl.packs.validate import validate_text

FIXTURES = Path(__file__).parent / "fixtures"

INCIDENT_RESPONSE = {
    "platform": "posix",
    "queries": {
        "launchd": {
            "query": "select * from launchd;",
            "interval": 3600,
            "platform": "darwin",
            "version": "1.4.5",
            "description": "Retrieves all the daemons that will run in the start of the target "
            "OSX system.",
            "value": "Identify malware that uses this persistence mechanism to launch at system "
            "boot",
        },
        "crontab": {
            "query": "select * from crontab;",
            "interval": 3600,
            "version": "1.4.5",
            "description": "Retrieves all the jobs scheduled in crontab in the target system.",
            "value": "Identify malware that uses this persistence mechanism to launch at a given "
            "interval",
        },
        "logged_in_users": {
            "query": "select liu.*, p.name, p.cmdline, p.cwd, p.root from logged_in_users liu, "
            "processes p where liu.pid = p.pid;",
            "interval": 3600,
            "snapshot": True,
            "description": "Retrieves the list of all the currently logged in users in the "
            "target system.",
            "value": "Useful for intrusion detection and incident response.",
        },
        "open_sockets": {
            "query": "select distinct pid, family, protocol, local_address, local_port, "
            "remote_address, remote_port, path from process_open_sockets where path <> '' or "
            "remote_address <> '';",
            "interval": 86400,
            "removed": False,
            "description": "Retrieves all the open sockets per process in the target system.",
            "value": "Identify malware via connections to known bad IP addresses as well as odd "
            "local or remote port bindings",
        },
    },
}


def test_incident_response_conf_with_comments_round_trips() -> None:
    source = FIXTURES / "incident-response.conf"
    lines = [line.strip() for line in source.read_text().splitlines()]
    assert any(line.startswith("//") for line in lines)
    assert any(line.startswith("#") for line in lines)
    conversion = convert_file(source)
    assert conversion.warnings == ()
    text = dumps(conversion.packs)
    assert json.loads(text) == INCIDENT_RESPONSE
    # Same model whether read by the loader or converted, and again after writing it out.
    assert list(conversion.packs) == load_file(source)
    assert loads(text, "incident-response") == list(conversion.packs)
    assert dumps(loads(text, "incident-response")) == text
    assert validate_text(text, "incident-response.json") == []


def test_fleet_yaml_with_packs_and_queries() -> None:
    conversion = convert_file(FIXTURES / "fleet.yml")
    listeners = (
        "SELECT l.pid, l.path, p.name FROM listening_ports l JOIN processes p "
        "ON p.pid = l.pid WHERE l.path <> '';"
    )
    assert conversion.packs == (
        Pack(
            name="ipc_monitoring",
            queries=(
                ScheduledQuery(
                    "unix_listeners_snapshot",
                    listeners,
                    interval=300,
                    snapshot=True,
                    platform="linux,darwin",
                    description="Listening unix sockets and their processes",
                ),
                ScheduledQuery(
                    "unix_listeners",
                    listeners,
                    interval=600,
                    removed=False,
                    platform="linux",
                    description="Listening unix sockets and their processes",
                ),
                ScheduledQuery(
                    "osquery_version",
                    "SELECT version FROM osquery_info;",
                    interval=7200,
                    snapshot=True,
                    version="4.9.0",
                    shard=10,
                    description="The osquery version",
                ),
            ),
        ),
        Pack(
            name="fleet",
            queries=(
                ScheduledQuery(
                    "named_pipes",
                    "SELECT name, pid FROM pipes;",
                    interval=600,
                    removed=False,
                    platform="windows",
                    version="5.0.1",
                    description="Named pipes and their server processes",
                ),
            ),
        ),
    )
    assert conversion.warnings == (
        "pack 'ipc_monitoring': Fleet targets have no osquery equivalent; dropped",
        "query 'ad_hoc_processes' is in no pack and has no interval; skipped",
    )
    text = dumps(conversion.packs)
    assert loads(text, "fleet") == list(conversion.packs)
    assert validate_text(text, "fleet.yml") == []


@pytest.mark.parametrize(
    ("logging", "snapshot", "removed"),
    [
        ("snapshot", True, True),
        ("differential", False, True),
        ("differential_ignore_removals", False, False),
    ],
)
def test_fleet_logging_maps_to_snapshot_and_removed(
    logging: str, snapshot: bool, removed: bool
) -> None:
    text = f"""
apiVersion: v1
kind: query
spec:
  name: q
  query: SELECT 1
  interval: 60
  logging: {logging}
"""
    (pack,) = from_fleet_yaml(text, "scheduled").packs
    assert pack == Pack("scheduled", (ScheduledQuery("q", "SELECT 1", 60, snapshot, removed),))


def test_pack_entry_flags_override_query_logging() -> None:
    text = """
kind: query
apiVersion: v1
spec: {name: q, query: SELECT 1, logging: snapshot}
---
kind: pack
apiVersion: v1
spec:
  name: p
  queries:
    - {query: q, interval: 30, snapshot: false, removed: false}
"""
    (pack,) = from_fleet_yaml(text, "x").packs
    assert pack.queries == (ScheduledQuery("q", "SELECT 1", 30, snapshot=False, removed=False),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kind: pack\nspec:\n  name: p\n  queries:\n    - query: missing\n",
            "pack 'p' uses query 'missing', which is not defined",
        ),
        ("- just\n- a list\n", "document 1 is not a FleetDM spec (apiVersion/kind/spec)"),
        (
            "kind: query\nspec: {name: q, query: SELECT 1, interval: 5, logging: sometimes}\n",
            "unknown logging 'sometimes' (expected snapshot, differential, "
            "differential_ignore_removals)",
        ),
        (
            "kind: query\nspec: {name: q, query: SELECT 1, interval: soon}\n",
            "pack 'x', query 'q': 'interval' must be an integer or a numeric string, not \"soon\"",
        ),
        ("kind: query\nspec: {name: q}\n", "document 1: a query needs 'name' and 'query'"),
    ],
)
def test_fleet_yaml_errors(text: str, message: str) -> None:
    with pytest.raises(ConvertError) as excinfo:
        from_fleet_yaml(text, "x")
    assert str(excinfo.value) == message


def test_other_fleet_kinds_are_reported() -> None:
    text = "apiVersion: v1\nkind: label\nspec: {name: All Hosts, query: SELECT 1}\n"
    conversion = from_fleet_yaml(text, "x")
    assert conversion.packs == ()
    assert conversion.warnings == ("document 1: kind 'label' is not a pack or query; skipped",)


def test_osquery_config_with_schedule_and_pack_paths(tmp_path: Path) -> None:
    (tmp_path / "packs").mkdir()
    (tmp_path / "packs" / "ir.conf").write_text(
        '# referenced pack\n{"queries": {"q": {"query": "SELECT 1", "interval": "10"}}}'
    )
    config = {
        "options": {"config_plugin": "filesystem"},
        "schedule": {"s": {"query": "SELECT 2", "interval": 20}},
        "packs": {"ir": "packs/ir.conf", "inline": {"queries": {"r": {"query": "SELECT 3"}}}},
    }
    (tmp_path / "osquery.conf").write_text(json.dumps(config))
    conversion = convert_file(tmp_path / "osquery.conf")
    assert [(p.name, p.queries) for p in conversion.packs] == [
        ("ir", (ScheduledQuery("q", "SELECT 1", 10),)),
        ("inline", (ScheduledQuery("r", "SELECT 3"),)),
        ("main", (ScheduledQuery("s", "SELECT 2", 20),)),
    ]
    assert conversion.packs[0].source == str(tmp_path / "packs" / "ir.conf")
    assert conversion.warnings == (
        "the top-level schedule became pack 'main'; its results are now named "
        "pack_main_<query> instead of <query>",
    )


def test_duplicate_query_names_are_reported_when_converting() -> None:
    text = '{"queries": {"a": {"query": "SELECT 1"}, "a": {"query": "SELECT 2"}}}'
    conversion = from_osquery(text, "dup")
    assert conversion.packs == (Pack("dup", (ScheduledQuery("a", "SELECT 2"),)),)
    assert conversion.warnings == (
        "pack 'dup' defines query 'a' more than once; the last definition is kept, "
        "as osqueryd does",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"packs": {"p": "missing.conf"}}', "pack 'p' refers to 'missing.conf', which is missing"),
        (
            '{"packs": {"p": "/etc/osquery/packs/*"}}',
            "pack 'p': glob '/etc/osquery/packs/*' is not supported",
        ),
        (
            "{\n  nope\n}",
            "x.conf: invalid JSON at line 2 column 3: Expecting property name "
            "enclosed in double quotes",
        ),
    ],
)
def test_osquery_input_errors(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConvertError) as excinfo:
        from_osquery(text, "x", base_dir=tmp_path, source="x.conf")
    assert str(excinfo.value) == message
