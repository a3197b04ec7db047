"""``fleetctl hosts|results|status-logs|data-loss|db`` through CliRunner against a real server."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from click.testing import CliRunner

from fleetctl.cli import main
from fleetctl.server.bootstrap import apply_shipped_packs_to_a_new_store
from storage.migrate import head_revision
from tests.conftest import RunningServer


def ev(action: str, pid: str, t: int, counter: int) -> dict[str, Any]:
    return {
        "name": "pack_ipc_processes",
        "hostIdentifier": "jumpvm",
        "unixTime": t,
        "epoch": 0,
        "counter": counter,
        "numerics": False,
        "columns": {"pid": pid, "name": f"p{pid}"},
        "action": action,
    }


@pytest.fixture
def fed(server: RunningServer) -> RunningServer:
    node = server.node()
    node.enroll()
    node.log("result", [ev("added", "1", 1000, 0), ev("added", "2", 1000, 0)])
    node.log("result", [ev("removed", "1", 2000, 1), ev("added", "3", 2000, 1)])
    node.log("result", [ev("added", "9", 4000, 3)])  # counter 2 never arrives
    node.log(
        "status",
        [
            {
                "unixTime": 1000,
                "severity": 2,
                "filename": "tls.cpp",
                "line": 7,
                "message": "TLS request failed",
                "version": "5.8.2",
            }
        ],
    )
    return server


def run(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_hosts_list_json(fed: RunningServer) -> None:
    hosts = json.loads(run("hosts", "list", "--format", "json"))
    assert [(h["id"], h["host_identifier"], h["uuid"], h["platform"]) for h in hosts] == [
        (1, "jumpvm", "uuid-jumpvm", "rhel")
    ]


def test_results_as_of_a_time_in_every_format(fed: RunningServer) -> None:
    rows = json.loads(
        run(
            "results",
            "--host",
            "jumpvm",
            "--query",
            "pack_ipc_processes",
            "--at",
            "1500",
            "--format",
            "json",
        )
    )
    assert rows == [
        {
            "pid": "1",
            "name": "p1",
            "first_seen": "1970-01-01T00:16:40Z",
            "removed_at": "1970-01-01T00:33:20Z",
        },
        {"pid": "2", "name": "p2", "first_seen": "1970-01-01T00:16:40Z", "removed_at": None},
    ]
    now = run(
        "results", "--host", "uuid-jumpvm", "--query", "pack_ipc_processes", "--format", "csv"
    )
    assert list(csv.reader(io.StringIO(now))) == [
        ["pid", "name", "first_seen", "removed_at"],
        ["2", "p2", "1970-01-01T00:16:40Z", ""],
        ["3", "p3", "1970-01-01T00:33:20Z", ""],
        ["9", "p9", "1970-01-01T01:06:40Z", ""],
    ]
    iso = run(
        "results",
        "--host",
        "1",
        "--query",
        "pack_ipc_processes",
        "--at",
        "1970-01-01T00:40:00Z",
        "--format",
        "ndjson",
    )
    assert [json.loads(x)["pid"] for x in iso.splitlines()] == ["2", "3"]


def test_results_table_is_readable(fed: RunningServer) -> None:
    out = run("results", "--host", "jumpvm", "--query", "pack_ipc_processes", "--at", "1500")
    assert "pack_ipc_processes on jumpvm at 1970-01-01T00:25:00Z" in out
    assert "p1" in out and "p3" not in out


def test_unknown_host_is_a_clear_error(fed: RunningServer) -> None:
    result = CliRunner().invoke(main, ["results", "--host", "nope", "--query", "q"])
    assert result.exit_code == 1
    assert "no host matches 'nope'" in result.output


def test_status_logs_and_data_loss(fed: RunningServer) -> None:
    logs = json.loads(run("status-logs", "--host", "jumpvm", "--format", "json"))
    assert [(s["severity"], s["location"], s["message"]) for s in logs] == [
        (2, "tls.cpp:7", "TLS request failed")
    ]
    markers = json.loads(run("data-loss", "--format", "json"))
    assert [(m["host"], m["query"], m["kind"], m["missing"]) for m in markers] == [
        ("jumpvm", "pack_ipc_processes", "counter_gap", "2")
    ]


def test_hosts_show_lists_queries(fed: RunningServer) -> None:
    shown = json.loads(run("hosts", "show", "jumpvm", "--format", "json"))[0]
    assert shown["queries"] == [
        {
            "name": "pack_ipc_processes",
            "pack": "ipc",
            "query": "processes",
            "epoch": 0,
            "counter": 3,
            "last_result": "1970-01-01T01:06:40Z",
            "open_rows": 3,
        }
    ]


def test_db_upgrade_current_and_prune(db_url: str) -> None:
    head = head_revision()
    assert f"schema at {head} (head {head})" in run("db", "upgrade", "--db", db_url)
    assert run("db", "current", "--db", db_url) == f"{head} (head {head})\n"
    assert "pruned 0 closed rows" in run("db", "prune", "--older-than", "90d", "--db", db_url)
    bad = CliRunner().invoke(main, ["db", "prune", "--older-than", "soon", "--db", db_url])
    assert bad.exit_code == 2 and "not a duration" in bad.output


def test_client_without_server_says_how_to_start_one(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("FLEETCTL_HOME", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, ["hosts", "list"])
    assert result.exit_code == 1
    assert "start one with `fleetctl serve`" in result.output


@pytest.fixture
def lineage(server: RunningServer) -> RunningServer:
    """web-1 with one process_lineage row from the shipped pack, its columns sorted by
    name as osqueryd sends them."""
    apply_shipped_packs_to_a_new_store(server.settings)
    node = server.node("web-1", "u-web-1")
    node.enroll()
    row = {"cmdline": "sh", "name": "sh", "parent": "1", "pid": "42", "start_time": "100"}
    node.log(
        "result",
        [
            {
                "name": "pack_ipc-telemetry_process_lineage",
                "hostIdentifier": "web-1",
                "unixTime": 1000,
                "counter": 0,
                "epoch": 0,
                "action": "snapshot",
                "snapshot": [dict(sorted(row.items()))],
            }
        ],
    )
    return server


@pytest.mark.parametrize(
    "typed",
    ["process_lineage", "ipc-telemetry/process_lineage", "pack_ipc-telemetry_process_lineage"],
)
def test_results_take_the_short_the_pack_and_the_logged_name(
    lineage: RunningServer, typed: str
) -> None:
    out = run("results", "--host", "web-1", "--query", typed, "--format", "csv")
    header = next(csv.reader(io.StringIO(out)))
    # the query's own column order (pid first), not the order osqueryd sent them in
    assert header == ["pid", "parent", "start_time", "name", "cmdline", "first_seen", "removed_at"]


def test_an_unknown_query_name_is_an_error_with_suggestions(lineage: RunningServer) -> None:
    result = CliRunner().invoke(main, ["results", "--host", "web-1", "--query", "proces_lineage"])
    assert result.exit_code == 1
    assert "no query 'proces_lineage' on this host; did you mean process_lineage" in result.output
