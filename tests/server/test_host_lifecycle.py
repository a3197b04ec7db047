"""Host lifecycle on SQLite and PostgreSQL: deleting hosts (with their history, or only
their node key), labels and hunts, through the CLI against a real server."""

from __future__ import annotations

import json
import time
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select

from fleetctl.cli import main
from storage.models import Campaign, Hunt, ResultRow, StatusLog
from tests.conftest import RunningServer


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    return result.output


def line(pid: str, identifier: str = "jumpvm") -> dict[str, Any]:
    return {
        "name": "pack_ipc_processes",
        "hostIdentifier": identifier,
        "unixTime": 1000,
        "epoch": 0,
        "counter": 0,
        "numerics": False,
        "columns": {"pid": pid},
        "action": "added",
    }


STATUS = {"unixTime": 1000, "severity": 0, "filename": "x.cpp", "line": 1, "message": "hi"}


def fed(server: RunningServer, identifier: str = "jumpvm", uuid: str = "uuid-jumpvm") -> Any:
    node = server.node(identifier, uuid)
    assert node.enroll()["node_invalid"] is False
    assert "error" not in node.log("result", [line("1", identifier)])[0]
    assert "error" not in node.log("status", [STATUS])[0]
    return node


def count(server: RunningServer, column: Any, host_id: int) -> int:
    return int(server.query(select(func.count()).where(column == host_id))[0][0])


def hosts() -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(run("hosts", "list", "--format", "json"))
    return listed


def test_a_deleted_host_loses_its_history_and_its_node_key_at_once(
    server: RunningServer,
) -> None:
    node, other = fed(server), fed(server, "web-2", "uuid-web-2")
    assert node.call("/config")["node_invalid"] is False  # the key is cached now
    assert run("hosts", "delete", "jumpvm") == "host jumpvm (id 1): deleted\n"
    answer = node.call("/config")
    assert answer["node_invalid"] is True
    assert [h["host_identifier"] for h in hosts()] == ["web-2"]
    assert count(server, ResultRow.host_id, 1) == 0
    assert count(server, StatusLog.host_id, 1) == 0
    assert count(server, ResultRow.host_id, 2) == 1  # the other host keeps its own
    assert other.call("/config")["node_invalid"] is False
    # osqueryd enrolls again: a new host, with none of the old history.
    node.enroll()
    assert [h["id"] for h in hosts()] == [2, 3]
    assert "no host matches" in run("hosts", "delete", "jumpvm-gone", code=1)


def test_keep_history_only_revokes_the_node_key(server: RunningServer) -> None:
    node = fed(server)
    assert node.call("/config")["node_invalid"] is False
    out = run("hosts", "delete", "jumpvm", "--keep-history")
    assert out == "host jumpvm (id 1): node key revoked\n"
    assert node.call("/config")["node_invalid"] is True
    assert node.log("result", [line("2")])[0]["node_invalid"] is True
    assert count(server, ResultRow.host_id, 1) == 1
    node.enroll()  # the same host again, history and all
    assert [(h["id"], h["enroll_count"]) for h in hosts()] == [(1, 2)]
    assert node.call("/config")["node_invalid"] is False
    assert count(server, ResultRow.host_id, 1) == 1


def test_a_label_is_deleted_unless_a_pack_targets_it(server: RunningServer, tmp_path: Any) -> None:
    fed(server)
    run("labels", "apply", "canaries", "--hosts", "jumpvm")
    run("labels", "apply", "web", "--sql", "SELECT 1 FROM system_info")
    pack = tmp_path / "mypack.json"
    pack.write_text(json.dumps({"queries": {"q": {"query": "SELECT 1", "interval": 60}}}))
    run("packs", "apply", str(pack), "--label", "canaries")
    out = run("labels", "delete", "canaries", code=1)
    assert "targeted by pack(s) mypack" in out
    assert run("labels", "delete", "web") == "label web: deleted\n"
    run("packs", "delete", "mypack")
    assert run("labels", "delete", "canaries") == "label canaries: deleted\n"
    assert json.loads(run("labels", "list", "--format", "json")) == []
    assert "no label" in run("labels", "delete", "canaries", code=1)


def test_a_deleted_hunt_frees_its_name(server: RunningServer) -> None:
    node = fed(server)
    run("hunt", "create", "listeners", "--sql", "SELECT 1 AS one", "--once")
    deadline = time.monotonic() + 20
    while not node.call("/distributed/read")["queries"]:  # the run fires in the background
        assert time.monotonic() < deadline, "the hunt never reached the host"
        time.sleep(0.1)
    run("hunt", "cancel", "listeners")
    assert "exists" in run("hunt", "create", "listeners", "--sql", "SELECT 2", "--once", code=1)
    assert run("hunt", "delete", "listeners") == "hunt listeners: deleted (1 run(s))\n"
    assert server.query(select(Hunt.id)) == []
    assert server.query(select(Campaign.id)) == []
    run("hunt", "create", "listeners", "--sql", "SELECT 2 AS two", "--once")
    assert [h["name"] for h in json.loads(run("hunt", "list", "--format", "json"))] == ["listeners"]
    assert "no hunt" in run("hunt", "delete", "nothing", code=1)
