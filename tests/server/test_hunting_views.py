"""Hunting views through ``fleetctl sql`` on SQLite and PostgreSQL, with the README's
example questions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningServer

PROC = "pack_ipc-telemetry_process_lineage"
STDIO = "pack_ipc-telemetry-extension_process_stdio"


def snap(name: str, t: int, rows: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "name": name,
        "hostIdentifier": "web-1",
        "unixTime": t,
        "epoch": 0,
        "counter": 0,
        "numerics": False,
        "action": "snapshot",
        "snapshot": rows,
    }


@pytest.fixture
def admin(server: RunningServer) -> Any:
    node = server.node("web-1", "u-web-1")
    node.enroll()
    shell = {
        "pid": "4242",
        "parent": "100",
        "start_time": "1000",
        "name": "sh",
        "path": "/usr/bin/dash",
        "cmdline": "sh",
        "uid": "33",
        "euid": "33",
        "parent_name": "python3",
        "grandparent_pid": "",
        "cgroup_path": "",
    }
    node.log(
        "result",
        [
            snap(PROC, 1000, [shell]),
            snap(
                STDIO,
                1000,
                [
                    {
                        "pid": "4242",
                        "name": "sh",
                        "path": "/usr/bin/dash",
                        "cmdline": "sh",
                        "parent": "100",
                        "uid": "33",
                        "euid": "33",
                        "fd": "0",
                        "kind": "fifo",
                        "target": "/dev/shm/.c",
                        "inode": "77",
                        "mode": "rw",
                        "partner_pid": "-1",
                        "partner_name": "",
                        "partner_path": "",
                    }
                ],
            ),
        ],
    )
    node.log("result", [snap(PROC, 2000, []), snap(STDIO, 2000, [])])
    return server.admin()


def sql(admin: Any, query: str) -> list[dict[str, Any]]:
    answer = admin.post("/api/v1/admin/sql", json={"sql": query})
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["rows"]
    return rows


def test_typed_process_history_with_lifetimes(admin: Any) -> None:
    rows = sql(
        admin,
        "SELECT host, pid, uid, name, parent_name, grandparent_pid, first_seen,"
        " removed_at FROM hunt_processes",
    )
    assert rows == [
        {
            "host": "web-1",
            "pid": 4242,
            "uid": 33,
            "name": "sh",
            "parent_name": "python3",
            "grandparent_pid": None,
            "first_seen": 1000,
            "removed_at": 2000,
        }
    ]
    as_of = sql(
        admin,
        "SELECT pid FROM hunt_processes WHERE first_seen <= 1500"
        " AND (removed_at IS NULL OR removed_at > 1500)",
    )
    assert as_of == [{"pid": 4242}]


def test_shells_whose_stdin_was_a_fifo(admin: Any) -> None:
    rows = sql(
        admin,
        """
        SELECT DISTINCT host, pid, name, target FROM hunt_stdio
        WHERE fd = 0 AND kind = 'fifo' AND name IN ('sh', 'bash', 'dash', 'zsh')
          AND (removed_at IS NULL OR removed_at > 0)""",
    )
    assert rows == [{"host": "web-1", "pid": 4242, "name": "sh", "target": "/dev/shm/.c"}]


def test_plain_views_answer(admin: Any) -> None:
    assert sql(admin, "SELECT host, platform FROM hunt_hosts") == [
        {"host": "web-1", "platform": "rhel"}
    ]
    assert sql(admin, "SELECT count(*) AS n FROM hunt_findings") == [{"n": 0}]
    assert (
        sql(
            admin,
            "SELECT parent, child, count(DISTINCT host_id) AS hosts"
            " FROM hunt_parent_children GROUP BY parent, child"
            " ORDER BY hosts, parent, child LIMIT 10",
        )
        == []
    )
    for view in ("hunt_pipes", "hunt_unix_sockets", "hunt_unix_peers", "hunt_execution_paths"):
        assert sql(admin, f"SELECT * FROM {view}") == []
