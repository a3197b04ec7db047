"""Host lifecycle on SQLite and PostgreSQL: deleting hosts (with their history, or only
their node key), labels and hunts, through the CLI against a real server."""

from __future__ import annotations

import json
import time
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select

from fleetctl.cli import main
from fleetctl.server.node_service import CLONE_WINDOW, is_second_instance
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


def test_cloned_machines_stay_two_hosts_and_are_reported(server: RunningServer) -> None:
    """Two identifiers presenting one uuid (cloned VMs): neither takes the other's host
    record or node key, however often they enroll and post."""
    a, b = server.node("vm-a", "uuid-clone"), server.node("vm-b", "uuid-clone")
    for _ in range(3):
        for node in (a, b):
            assert node.enroll()["node_invalid"] is False
        for node in (a, b):  # no enrollment invalidated the other's key
            assert node.call("/config")["node_invalid"] is False
            assert "error" not in node.log("result", [line("1", node.identifier)])[0]
    listed = hosts()
    assert [(h["host_identifier"], h["uuid"], h["enroll_count"]) for h in listed] == [
        ("vm-a", "uuid-clone", 3),
        ("vm-b", "uuid-clone", 3),
    ]
    assert [h["warning"] for h in listed] == [
        "uuid shared with vm-b (cloned machine?)",
        "uuid shared with vm-a (cloned machine?)",
    ]
    assert "warning" in run("hosts", "list", "--wide")  # a column of the table
    logs = json.loads(run("status-logs", "--host", "vm-b", "--format", "json"))
    assert [entry["message"] for entry in logs] == [
        "uuid uuid-clone is also presented by vm-a (a cloned machine?): enrolled as a host"
        " of its own; `fleetctl serve --host-identity instance` tells clones apart"
    ]
    assert json.loads(run("status-logs", "--host", "vm-a", "--format", "json")) == []
    # Deleting one clone ends the warning.
    run("hosts", "delete", "vm-b")
    assert [h["warning"] for h in hosts()] == [""]
    assert "warning" not in run("hosts", "list", "--wide")


def with_instance(node: Any, instance: str) -> Any:
    details = node.host_details()
    details["osquery_info"]["instance_id"] = instance
    node.host_details = lambda: details
    return node


def test_instance_identity_tells_clones_with_one_identifier_apart(
    db_url: str, tmp_path: Any, monkeypatch: Any
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    server = RunningServer(home, db_url, host_identity="instance")
    try:
        a = with_instance(server.node("clone", "uuid-clone"), "i-a")
        b = with_instance(server.node("clone", "uuid-clone"), "i-b")
        for _ in range(2):
            for node in (a, b):
                node.enroll()
            for node in (a, b):
                assert node.call("/config")["node_invalid"] is False
        assert [(h["id"], h["enroll_count"]) for h in hosts()] == [(1, 2), (2, 2)]
        assert hosts()[0]["warning"] == "uuid shared with clone (cloned machine?)"
        logs = json.loads(run("status-logs", "--host", "2", "--format", "json"))
        assert logs[0]["message"] == (
            "uuid uuid-clone is also presented by clone (a cloned machine?):"
            " enrolled as a host of its own"
        )
    finally:
        server.stop()


def test_clones_with_one_identifier_and_uuid_are_reported_under_the_uuid_identity(
    server: RunningServer,
) -> None:
    """Identical identifier and uuid: one host under the default identity, but a second
    live osqueryd enrolling as it is reported, not taken for a reinstall."""
    a = with_instance(server.node("clone", "uuid-clone"), "i-a")
    b = with_instance(server.node("clone", "uuid-clone"), "i-b")
    a.enroll()
    a.call("/config")  # i-a checks in
    b.enroll()
    [host] = hosts()
    assert host["enroll_count"] == 2
    [said] = json.loads(run("status-logs", "--host", "clone", "--format", "json"))
    assert said["message"].startswith(
        "osquery instance i-b enrolled as this host while instance i-a checked in"
    )
    assert said["message"].endswith(
        "s ago: two osqueryd with one identifier and uuid (a cloned machine?) share this"
        " host; `fleetctl serve --host-identity instance` tells clones apart"
    )
    b.enroll()  # the same instance again: nothing new to say
    assert len(json.loads(run("status-logs", "--host", "clone", "--format", "json"))) == 1


def test_a_reinstalled_osqueryd_is_not_a_clone() -> None:
    """A new instance id long after the old one last checked in is a reinstall."""
    assert is_second_instance("uuid", "i-b", "i-a", 1000, 1000 + CLONE_WINDOW - 1)
    assert not is_second_instance("uuid", "i-b", "i-a", 1000, 1000 + CLONE_WINDOW)
    assert not is_second_instance("uuid", "i-a", "i-a", 1000, 1001)  # the same osqueryd
    assert not is_second_instance("uuid", "i-b", "", 1000, 1001)  # no instance id known before
    assert not is_second_instance("instance", "i-b", "i-a", 1000, 1001)  # two hosts there


def test_hostname_identity_keeps_one_host_per_hostname(
    db_url: str, tmp_path: Any, monkeypatch: Any
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    server = RunningServer(home, db_url, host_identity="hostname")
    try:
        server.node("web-1", "uuid-old").enroll()
        server.node("web-1", "uuid-new").enroll()  # the machine was replaced
        assert [(h["id"], h["uuid"], h["enroll_count"]) for h in hosts()] == [(1, "uuid-new", 2)]
    finally:
        server.stop()


def test_serve_takes_only_known_host_identities() -> None:
    assert "--host-identity [uuid|instance|hostname]" in run("serve", "--help")
    out = run("serve", "--host-identity", "serial", code=2)
    assert "'serial' is not one of 'uuid', 'instance', 'hostname'" in out
