"""Client commands with no server running: the same requests go to the same app over
the store, in the command's own process, so the output is the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fleetctl.cli import main
from fleetctl.cli.client import context_path
from storage.database import shown
from tests.cli.test_cli_hosts import ev
from tests.conftest import REPO, RunningServer

YEARLY = "0 0 1 1 *"

# Commands whose output must not change when the server is gone.
READS = [
    ("hosts", "list"),
    ("hosts", "list", "--format", "json"),
    ("results", "--host", "jumpvm", "--query", "pack_ipc_processes", "--at", "1500"),
    ("status-logs", "--host", "jumpvm"),
    ("data-loss",),
    ("sql", "SELECT count(*) AS n FROM hunt_hosts"),
    ("findings", "list"),
    ("packs", "list"),
    ("packs", "show", "ipc-telemetry"),
    ("hunt", "list"),
    ("hunt", "show", "yearly"),
    ("hunt", "results", "yearly"),
    ("labels", "list"),
    ("labels", "show", "jump"),
    ("baseline", "list"),
    ("carves",),
    ("trace", "jumpvm", "42", "--at", "1500"),
    ("trace", "jumpvm", "42", "--at", "1500", "--format", "dot"),
    ("packs", "diff", str(REPO / "packs" / "t1559-hunts.json")),
    ("detect", "--host", "jumpvm"),
]


def invoke(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})
    assert result.exit_code == code, result.output
    return result


def outputs() -> list[tuple[int, str, str]]:
    """Each command's exit code, stdout and stderr (but the line saying where it reads)."""
    said = []
    for args in READS:
        result = CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})
        errors = [line for line in result.stderr.splitlines(True) if not line.startswith("(no")]
        said.append((result.exit_code, result.stdout, "".join(errors)))
    return said


@pytest.fixture
def fed(server: RunningServer) -> RunningServer:
    node = server.node()
    node.enroll()
    node.log("result", [ev("added", "1", 1000, 0), ev("added", "2", 1000, 0)])
    node.log("result", [ev("removed", "1", 2000, 1), ev("added", "3", 2000, 1)])
    node.log(
        "status",
        [{"unixTime": 1000, "severity": 2, "filename": "tls.cpp", "line": 7, "message": "x"}],
    )
    lineage = [
        {"pid": "1", "parent": "0", "name": "init", "path": "/sbin/init", "cmdline": "init"},
        {"pid": "42", "parent": "1", "name": "sshd", "path": "/usr/sbin/sshd", "cmdline": "sshd"},
        {"pid": "43", "parent": "42", "name": "sh", "path": "/bin/sh", "cmdline": "sh -i"},
    ]
    node.log(
        "result",
        [
            {
                "name": "pack_ipc-telemetry_process_lineage",
                "hostIdentifier": "jumpvm",
                "unixTime": 1000,
                "counter": 0,
                "epoch": 0,
                "action": "snapshot",
                "snapshot": [dict(sorted((r | {"start_time": "900"}).items())) for r in lineage],
            }
        ],
    )
    invoke("packs", "apply", str(REPO / "packs" / "ipc-telemetry.json"))
    invoke("labels", "apply", "jump", "--hosts", "jumpvm")
    invoke("hunt", "create", "yearly", "--sql", "SELECT 1 AS one", "--cron", YEARLY)
    # What housekeeping writes within a second, written now: the host's last check-in
    # would otherwise reach the store between the two readings.
    server.thread.state.flush_checkins()
    return server


def test_with_the_server_stopped_commands_read_the_store(fed: RunningServer) -> None:
    through_server = outputs()
    fed.stop()
    direct = outputs()
    for args, before, after in zip(READS, through_server, direct, strict=True):
        assert after == before, args
    traced = direct[READS.index(("trace", "jumpvm", "42", "--at", "1500"))][1]
    assert traced.splitlines()[1:4] == ["init[1] init", "└─ sshd[42] * sshd", "   └─ sh[43] sh -i"]
    not_run = READS.index(("hunt", "results", "yearly"))  # the hunt's first run is in a year
    assert [code for code, _, _ in direct] == [int(i == not_run) for i in range(len(READS))]
    note = invoke("hosts", "list").stderr
    assert (
        note
        == f"(no server at {fed.url}: reading the store at {shown(fed.settings.db_url)} directly)\n"
    )


def test_a_store_named_with_db_needs_no_context(fed: RunningServer) -> None:
    through_server = invoke("hosts", "list").stdout
    fed.stop()
    context_path().unlink()
    invoke("hosts", "list", code=1)
    direct = invoke("hosts", "list", "--db", fed.settings.db_url)
    assert direct.stdout == through_server
    assert direct.stderr.startswith("(no server: reading the store at")


def test_a_live_query_without_a_server_says_how_to_start_one(
    fed: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed.stop()
    db = fed.settings.db_url
    refused = invoke("query", "SELECT 1", code=1)
    expected = (
        "fleetctl serve"
        if db.endswith(str(Path(fed.settings.home) / "fleet.db"))
        else (f"fleetctl serve --db {shown(db)}")
    )
    assert refused.stderr == (
        f"Error: a live query needs a running server: start one with `{expected}`\n"
    )
    monkeypatch.setenv("FLEETCTL_DB", db)
    hunt = invoke("hunt", "create", "again", "--sql", "SELECT 1", "--once", code=1)
    assert "a hunt needs a running server" in hunt.stderr
    assert [h["name"] for h in json.loads(invoke("hunt", "list", "--format", "json").stdout)] == [
        "yearly"
    ]


def test_the_store_is_read_with_the_servers_learning_window(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host's "learning until" depends on the server's --learning-window; read without
    the server, the store answers with the window the server was started with."""
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    server = RunningServer(home, db_url, learning_window=3 * 86400)  # the default is 24 h
    try:
        server.node().enroll()
        through_server = json.loads(invoke("hosts", "list", "--format", "json").stdout)
    finally:
        server.stop()
    direct = json.loads(invoke("hosts", "list", "--format", "json").stdout)
    [host] = direct
    assert host["detection"] == through_server[0]["detection"]
    assert host["detection"].startswith("learning until")


def test_changes_made_without_a_server_are_what_the_next_server_serves(
    fed: RunningServer,
) -> None:
    fed.stop()
    hunts = str(REPO / "packs" / "t1559-hunts.json")
    assert "t1559-hunts" in invoke("packs", "apply", hunts).stdout
    invoke("labels", "apply", "jump2", "--hosts", "jumpvm")
    invoke("labels", "delete", "jump")
    invoke("baseline", "add", "parent_child", "parent=cron", "child=sh", "note=nightly jobs")
    restarted = RunningServer(fed.settings.home, fed.settings.db_url)
    try:
        packs = json.loads(invoke("packs", "list", "--format", "json").stdout)
        assert "t1559-hunts" in {p["name"] for p in packs}
        labels = json.loads(invoke("labels", "list", "--format", "json").stdout)
        assert [label["name"] for label in labels] == ["jump2"]
        assert "nightly jobs" in invoke("baseline", "list").stdout
        assert invoke("hosts", "list").stderr == ""  # through the server this time
    finally:
        restarted.stop()
