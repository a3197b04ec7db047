"""Packs applied with versions and served to exactly the hosts they target."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningServer

LINUX_ONLY = {
    "platform": "linux",
    "queries": {
        "lineage": {
            "query": "SELECT pid, parent FROM processes;",
            "interval": 60,
            "snapshot": True,
        },
        "pipes": {"query": "SELECT pid, fd, inode FROM process_open_pipes;", "interval": 60},
    },
}
EVERYWHERE = {
    "queries": {
        "info": {"query": "SELECT version FROM osquery_info;", "interval": 3600},
        "win_pipes": {
            "query": "SELECT pid, name FROM pipes;",
            "interval": 60,
            "platform": "windows",
        },
        "mac_es": {
            "query": "SELECT pid, parent FROM es_process_events;",
            "interval": 60,
            "platform": "darwin",
        },
    }
}
SERVERS_ONLY = {
    "platform": "posix",
    "queries": {
        "sockets": {
            "query": "SELECT pid, path FROM process_open_sockets WHERE family = 1;",
            "interval": 60,
        }
    },
}


@pytest.fixture
def fleet(server: RunningServer) -> dict[str, Any]:
    nodes = {
        "lin1": server.node("lin1", "u-lin1", platform_type="9"),
        "lin2": server.node("lin2", "u-lin2", platform_type="9"),
        "mac1": server.node("mac1", "u-mac1", platform_type="21"),
        "win1": server.node("win1", "u-win1", platform_type="2"),
    }
    details = {"lin1": "ubuntu", "lin2": "rhel", "mac1": "darwin", "win1": "windows"}
    for name, node in nodes.items():
        node.host_details = lambda n=node, p=details[name]: {  # type: ignore[method-assign]
            "system_info": {"uuid": n.uuid, "hostname": n.identifier},
            "os_version": {"platform": p, "name": p, "version": "1"},
            "osquery_info": {"version": "5.23.0"},
        }
        assert node.enroll()["node_key"]
    return nodes


def apply(server: RunningServer, packs: list[dict[str, Any]]) -> Any:
    return server.admin().post("/api/v1/admin/packs/apply", json={"packs": packs})


def served(node: Any) -> dict[str, set[str]]:
    config = node.call("/config")
    return {name: set(pack["queries"]) for name, pack in config["packs"].items()}


def test_hosts_of_three_platforms_and_two_labels_get_exactly_their_queries(
    server: RunningServer, fleet: dict[str, Any]
) -> None:
    admin = server.admin()
    assert (
        admin.post(
            "/api/v1/admin/labels", json={"name": "servers", "hosts": ["lin1", "mac1"]}
        ).status_code
        == 200
    )
    assert (
        admin.post(
            "/api/v1/admin/labels", json={"name": "desktops", "hosts": ["lin2", "win1"]}
        ).status_code
        == 200
    )
    answer = apply(
        server,
        [
            {"name": "ipc-linux", "pack": LINUX_ONLY, "labels": []},
            {"name": "everywhere", "pack": EVERYWHERE, "labels": ["servers", "desktops"]},
            {"name": "server-sockets", "pack": SERVERS_ONLY, "labels": ["servers"]},
        ],
    )
    assert answer.status_code == 200, answer.text
    assert served(fleet["lin1"]) == {
        "ipc-linux": {"lineage", "pipes"},
        "everywhere": {"info"},
        "server-sockets": {"sockets"},
    }
    assert served(fleet["lin2"]) == {"ipc-linux": {"lineage", "pipes"}, "everywhere": {"info"}}
    assert served(fleet["mac1"]) == {
        "everywhere": {"info", "mac_es"},
        "server-sockets": {"sockets"},
    }
    assert served(fleet["win1"]) == {"everywhere": {"info", "win_pipes"}}
    config = fleet["lin1"].call("/config")
    assert config["options"]["pack_delimiter"] == "_"
    assert "schedule_epoch" in config["options"]
    assert config["packs"]["ipc-linux"]["queries"]["lineage"] == {
        "query": "SELECT pid, parent FROM processes;",
        "interval": 60,
        "snapshot": True,
    }


def test_a_dynamic_label_is_answered_through_distributed_queries(
    server: RunningServer, fleet: dict[str, Any]
) -> None:
    admin = server.admin()
    admin.post(
        "/api/v1/admin/labels",
        json={
            "name": "rhel",
            "platform": "linux",
            "query": "SELECT 1 FROM os_version WHERE platform = 'rhel';",
        },
    )
    apply(server, [{"name": "rhel-only", "pack": LINUX_ONLY, "labels": ["rhel"]}])
    server.thread.state.reload_labels()
    for name, node in fleet.items():
        queries = node.call("/distributed/read")["queries"]
        if name in ("mac1", "win1"):
            assert queries == {}  # the label is for linux hosts only
            continue
        [(qid, sql)] = queries.items()
        assert sql == "SELECT 1 FROM os_version WHERE platform = 'rhel';"
        rows = [{"1": "1"}] if name == "lin2" else []
        node.call(
            "/distributed/write",
            {"queries": {qid: rows}, "statuses": {qid: 0}, "messages": {qid: ""}},
        )
        assert node.call("/distributed/read")["queries"] == {}  # answered: not asked again
    assert served(fleet["lin2"]) == {"rhel-only": {"lineage", "pipes"}}
    assert served(fleet["lin1"]) == {}
    members = admin.get("/api/v1/admin/labels/rhel").json()["members"]
    assert [m["host_identifier"] for m in members] == ["lin2"]


def test_invalid_pack_is_refused_and_the_previous_version_stays(
    server: RunningServer, fleet: dict[str, Any]
) -> None:
    assert apply(server, [{"name": "ipc-linux", "pack": LINUX_ONLY}]).status_code == 200
    broken = {
        "queries": {"lineage": {"query": "SELECT pid, parnet FROM processes;", "interval": 60}}
    }
    answer = apply(
        server, [{"name": "everywhere", "pack": EVERYWHERE}, {"name": "ipc-linux", "pack": broken}]
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "1 problem(s) in the packs; nothing was applied"
    [error] = body["errors"]
    assert (error["pack"], error["query"], error["identifier"]) == (
        "ipc-linux",
        "lineage",
        "parnet",
    )
    assert error["message"] == "no such column: parnet (did you mean parent?)"
    assert served(fleet["lin1"]) == {"ipc-linux": {"lineage", "pipes"}}
    packs = server.admin().get("/api/v1/admin/packs").json()["packs"]
    assert [(p["name"], p["version"]) for p in packs] == [("ipc-linux", 1)]


@pytest.mark.parametrize(
    ("packs", "message"),
    [
        (
            [{"name": "a", "pack": LINUX_ONLY}, {"name": "a", "pack": LINUX_ONLY}],
            "pack 'a' appears twice",
        ),
        (
            [{"name": "a", "pack": LINUX_ONLY, "labels": ["nope"]}],
            "1 problem(s) in the packs; nothing was applied",
        ),
        ([{"name": "a", "pack": "not an object"}], "packs[0] needs a 'name' string"),
        ([], "'packs' must be a non-empty list"),
    ],
)
def test_bad_apply_requests(server: RunningServer, packs: list[Any], message: str) -> None:
    answer = apply(server, packs)
    assert answer.status_code == 400 and message in answer.json()["error"]
    assert server.admin().get("/api/v1/admin/packs").json()["packs"] == []


def test_versions_diff_and_delete(server: RunningServer, fleet: dict[str, Any]) -> None:
    admin = server.admin()
    apply(server, [{"name": "ipc-linux", "pack": LINUX_ONLY}])
    assert (
        apply(server, [{"name": "ipc-linux", "pack": LINUX_ONLY}]).json()["applied"][0]["action"]
        == "unchanged"
    )
    changed = {
        "platform": "posix",
        "queries": {
            "lineage": {**LINUX_ONLY["queries"]["lineage"], "interval": 30},
            "stdio": {"query": "SELECT pid FROM process_open_files;", "interval": 60},
        },
    }
    diff = admin.post(
        "/api/v1/admin/packs/diff", json={"packs": [{"name": "ipc-linux", "pack": changed}]}
    ).json()
    assert {(r["query"], r["change"], r["hosts_gain"], r["hosts_lose"]) for r in diff["diff"]} == {
        ("lineage", "changed: interval", 1, 0),  # mac1 gains it (posix), interval changes
        ("pipes", "removed", 0, 2),
        ("stdio", "added", 3, 0),
    }
    assert admin.get("/api/v1/admin/packs/ipc-linux").json()["pack"]["version"] == 1
    apply(server, [{"name": "ipc-linux", "pack": changed}])
    assert served(fleet["mac1"]) == {"ipc-linux": {"lineage", "stdio"}}
    old = admin.get("/api/v1/admin/packs/ipc-linux", params={"version": "1"}).json()
    assert set(old["body"]["queries"]) == {"lineage", "pipes"}
    assert admin.delete("/api/v1/admin/packs/ipc-linux").json()["action"] == "deleted"
    assert served(fleet["lin1"]) == {}
    history = admin.get("/api/v1/admin/packs/ipc-linux").json()["history"]
    assert [(h["version"], h["deleted"]) for h in history] == [(1, False), (2, False), (3, True)]


def test_a_label_change_is_diffed_before_it_is_applied(
    server: RunningServer, fleet: dict[str, Any]
) -> None:
    admin = server.admin()
    servers = {"name": "servers", "hosts": ["lin1", "mac1"]}
    assert admin.post("/api/v1/admin/labels", json=servers).status_code == 200
    apply(server, [{"name": "server-sockets", "pack": SERVERS_ONLY, "labels": ["servers"]}])

    moved = admin.post(
        "/api/v1/admin/labels/diff", json={"name": "servers", "hosts": ["lin1", "lin2", "win1"]}
    ).json()
    assert (moved["action"], moved["fields"]) == ("updated", [])
    assert moved["members"] == {
        "before": 2,
        "after": 3,
        "gain": ["lin2", "win1"],
        "lose": ["mac1"],
        "evaluated_by_hosts": False,
    }
    # lin2 gains the posix pack's query, mac1 loses it; win1 joins but is not posix.
    assert [(r["pack"], r["query"], r["change"]) for r in moved["diff"]] == [
        ("server-sockets", "sockets", "targets changed")
    ]
    assert (moved["diff"][0]["hosts_gain"], moved["diff"][0]["hosts_lose"]) == (1, 1)
    members = admin.get("/api/v1/admin/labels/servers").json()["members"]
    assert [m["host_identifier"] for m in members] == ["lin1", "mac1"]  # a diff never writes

    rhel = {"name": "rhel", "platform": "linux", "query": "SELECT 1 FROM os_version;"}
    created = admin.post("/api/v1/admin/labels/diff", json=rhel).json()
    assert created["action"] == "created"
    assert [f["field"] for f in created["fields"]] == ["kind", "query", "platform"]
    assert admin.post("/api/v1/admin/labels", json=rhel).json()["action"] == "created"
    same = admin.post("/api/v1/admin/labels/diff", json=rhel).json()
    assert (same["action"], same["members"]["evaluated_by_hosts"]) == ("unchanged", False)
    asked = rhel | {"query": "SELECT 1 FROM os_version WHERE platform = 'rhel';"}
    requery = admin.post("/api/v1/admin/labels/diff", json=asked).json()
    assert [f["field"] for f in requery["fields"]] == ["query"]
    assert requery["members"]["evaluated_by_hosts"] is True

    refused = admin.post("/api/v1/admin/labels/diff", json=rhel | {"query": "SELECT 1 FROM nope"})
    assert refused.status_code == 400
    assert any("nope" in e["message"] for e in refused.json()["errors"])
