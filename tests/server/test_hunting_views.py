"""Hunting views through ``fleetctl sql`` on SQLite and PostgreSQL, with the README's
example questions."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from fleetctl.timeutil import iso
from storage.views import hunting_views
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


# A shell under python3 reading a FIFO in /dev/shm (the docs test feeds it too).
SHELL = {
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

SHELL_STDIN = {
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


@pytest.fixture
def admin(server: RunningServer) -> Any:
    node = server.node("web-1", "u-web-1")
    node.enroll()
    node.log(
        "result",
        [
            snap(PROC, 1000, [SHELL]),
            snap(
                STDIO,
                1000,
                [SHELL_STDIN],
            ),
        ],
    )
    judged(server)  # detection saw the shell before it went away
    node.log("result", [snap(PROC, 2000, []), snap(STDIO, 2000, [])])
    judged(server)
    return server.admin()


def judged(server: RunningServer) -> None:
    detection = server.thread.state.detection
    assert detection is not None and detection.wait_judged(30)


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
    # the FIFO shell, seen while the new host was learning, is a finding all the same
    assert sql(admin, "SELECT parent, child, status, severity FROM hunt_findings") == [
        {"parent": "python3", "child": "dash", "status": "open", "severity": "high"}
    ]
    assert sql(admin, "SELECT path_key FROM hunt_execution_paths") == [
        {"path_key": "dash|33|python3|-|fifo"}
    ]
    assert sql(
        admin,
        "SELECT parent, child, count(DISTINCT host_id) AS hosts"
        " FROM hunt_parent_children GROUP BY parent, child"
        " ORDER BY hosts, parent, child LIMIT 10",
    ) == [{"parent": "python3", "child": "dash", "hosts": 1}]
    for view in ("hunt_pipes", "hunt_unix_sockets", "hunt_unix_peers"):
        assert sql(admin, f"SELECT * FROM {view}") == []


def test_every_time_column_has_an_iso_twin(admin: Any) -> None:
    rows = sql(
        admin,
        "SELECT start_time, start_time_iso, first_seen_iso, removed_at_iso FROM hunt_processes",
    )
    assert rows == [
        {
            "start_time": 1000,
            "start_time_iso": "1970-01-01T00:16:40Z",
            "first_seen_iso": "1970-01-01T00:16:40Z",
            "removed_at_iso": "1970-01-01T00:33:20Z",
        }
    ]
    hosts = sql(admin, "SELECT last_seen, last_seen_iso FROM hunt_hosts")
    assert hosts[0]["last_seen_iso"] == iso(hosts[0]["last_seen"])


def test_unixepoch_reads_the_same_on_both_databases(admin: Any) -> None:
    before = int(time.time())
    (row,) = sql(admin, "SELECT unixepoch() AS now, unixepoch() - 7*86400 AS week_ago")
    assert before - 1 <= row["now"] <= time.time() + 1
    assert row["now"] - row["week_ago"] == 7 * 86400


def test_a_hostile_start_time_has_no_iso_twin_and_breaks_no_query(server: RunningServer) -> None:
    node = server.node("odd-1", "u-odd-1")
    node.enroll()
    odd = {"pid": "7", "parent": "1", "start_time": "99999999999999", "name": "x"}
    node.log("result", [snap(PROC, 1000, [odd]) | {"hostIdentifier": "odd-1"}])
    rows = sql(server.admin(), "SELECT pid, start_time_iso, first_seen_iso FROM hunt_processes")
    assert rows == [{"pid": 7, "start_time_iso": None, "first_seen_iso": "1970-01-01T00:16:40Z"}]


def readme_sql_examples() -> list[str]:
    """The ``fleetctl sql "..."`` examples of the README's hunting section."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Hunting in SQL", 1)[1].split("\n## ", 1)[0]
    return re.findall(r'fleetctl sql "([^"]+)"', section)


def test_the_readme_sql_examples_run_on_both_databases(admin: Any) -> None:
    examples = readme_sql_examples()
    assert len(examples) >= 3
    answers = [admin.post("/api/v1/admin/sql", json={"sql": text}) for text in examples]
    assert [a.status_code for a in answers] == [200] * len(examples), [a.text for a in answers]
    rarest = answers[1].json()["rows"]
    assert rarest == [{"parent": "python3", "child": "dash", "hosts": 1}]


def test_the_schema_lists_every_view_with_columns_and_closed_values(admin: Any) -> None:
    answer = admin.get("/api/v1/admin/sql/schema")
    assert answer.status_code == 200, answer.text
    described = {v["view"]: v for v in answer.json()["views"]}
    assert set(described) == set(hunting_views())
    stdio = {c["name"]: c for c in described["hunt_stdio"]["columns"]}
    assert stdio["pid"]["type"] == "integer" and stdio["first_seen_iso"]["type"] == "text"
    assert "fifo" in stdio["kind"]["values"] and "unix" in stdio["kind"]["values"]
    findings = {c["name"]: c for c in described["hunt_findings"]["columns"]}
    assert findings["severity"]["values"] == ["info", "low", "medium", "high", "critical"]
    assert {c["name"]: c["type"] for c in described["hunt_results"]["columns"]}["columns"] == "json"
    # every column the schema lists can be selected through analyst SQL
    for view, spec in described.items():
        listed = ", ".join(c["name"] for c in spec["columns"])
        assert sql(admin, f"SELECT {listed} FROM {view} LIMIT 1") is not None


def test_the_readme_lists_every_view() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    listed = set(re.findall(r"^\| `(hunt_\w+)` \|", readme, re.MULTILINE))
    assert listed == set(hunting_views())
