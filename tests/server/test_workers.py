"""``fleetctl serve --workers 2`` on SQLite and PostgreSQL: real processes, real TLS on
loopback, each request sent through the worker the test chooses.

One fleet whichever worker a request lands on: enroll, config, log and distributed
read/write; a live query created through one worker reaches the host through the other
and its answer, posted to one, is read through the other; a re-enrolled host's old key
stops working in every worker within seconds; a hunt fires once; detection judges a host
whose posts land on different workers; and a worker killed with SIGKILL loses no
acknowledged row, is started again, and its replacement judges its hosts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.detection.reporting import ReportingHost, fifo_shell, wait_for
from tests.osquery_node import OsqueryNode
from tests.server.workers import WorkerServer

API = "/api/v1/admin"


@pytest.fixture
def fleet(db_url: str) -> Iterator[WorkerServer]:
    server = WorkerServer(db_url, workers=2)
    try:
        yield server
    finally:
        server.stop()


def same_host(nodes: dict[int, OsqueryNode], node_key: str | None) -> None:
    for node in nodes.values():
        node.node_key = node_key


def test_one_fleet_whichever_worker_answers(fleet: WorkerServer) -> None:
    nodes = fleet.pinned_nodes("web-1", "uuid-web-1")
    admins = fleet.pinned_admins()
    assert nodes[0].enroll()["node_key"]
    same_host(nodes, nodes[0].node_key)
    for node in nodes.values():  # both workers know the key (the second from the store)
        assert node.call("/config").get("packs")
    line = {
        "name": "pack_ipc-telemetry_process_lineage",
        "hostIdentifier": "web-1",
        "unixTime": int(time.time()),
        "epoch": 0,
        "counter": 0,
        "numerics": False,
        "action": "snapshot",
        "snapshot": [{"pid": "1", "parent": "0", "name": "systemd"}],
    }
    for node in nodes.values():
        assert node.log("result", [line]) == [{"node_invalid": False}]

    # A live query created through worker 0 reaches the host polling worker 1 ...
    started = admins[0].post(f"{API}/queries", json={"sql": "SELECT 1 AS one", "timeout": 120})
    assert started.status_code == 200, started.text
    cid = started.json()["id"]
    queries = wait_for(
        lambda: nodes[1].call("/distributed/read")["queries"], lambda q: bool(q), timeout=10
    )
    [qid] = queries
    assert qid == f"fleetctl_campaign_{cid}"
    # ... its answer, posted to worker 0 (which retries until worker 1 wrote the hand-out),
    # is read through worker 1.
    answer = {"queries": {qid: [{"one": "1"}]}, "statuses": {qid: 0}, "messages": {qid: ""}}
    written = nodes[0].call
    wait_for(lambda: written("/distributed/write", answer), lambda a: "error" not in a, timeout=10)
    shown = admins[1].get(f"{API}/queries/{cid}").json()
    assert shown["answered"] == 1 and shown["hosts"][0]["rows"] == [{"one": "1"}]

    # Re-enrolled through worker 0: the old key stops working in worker 1 within seconds.
    old_key = nodes[0].node_key
    assert nodes[0].enroll()["node_key"] != old_key
    changed = time.monotonic()
    wait_for(
        lambda: nodes[1].call("/distributed/read"),
        lambda a: a.get("node_invalid") is True,
        timeout=5,
    )
    assert time.monotonic() - changed < 5
    assert nodes[1].call("/distributed/read", {"node_key": nodes[0].node_key}).get(
        "node_invalid"
    ) in (None, False)


def test_a_hunt_fires_once_per_fleet(fleet: WorkerServer) -> None:
    nodes = fleet.pinned_nodes("web-2", "uuid-web-2")
    admins = fleet.pinned_admins()
    nodes[0].enroll()
    for index, admin in admins.items():
        created = admin.post(
            f"{API}/hunts",
            json={"name": f"hourly-{index}", "sql": "SELECT 1 AS one", "every": 3600},
        )
        assert created.status_code == 200, created.text
    runs = wait_for(
        lambda: fleet.query("SELECT hunt_id, run FROM hunt_runs ORDER BY hunt_id, run"),
        lambda rows: len(rows) >= 2,
        timeout=15,
    )
    time.sleep(4)  # every worker's scheduler has had its chance to fire again
    assert fleet.query("SELECT hunt_id, run FROM hunt_runs ORDER BY hunt_id, run") == runs
    assert [run for _, run in runs] == [1, 1]
    leaders = fleet.log_text().count("this process fires scheduled hunts")
    assert leaders == 1, fleet.log_text()


class PinnedHost(ReportingHost):
    """A reporting host whose reports go through whichever worker the test says."""

    def __init__(self, nodes: dict[int, OsqueryNode], identifier: str) -> None:
        self.nodes = nodes
        self.node = nodes[0]
        self.node.enroll()
        same_host(nodes, self.node.node_key)
        self.identifier = identifier
        self.counter = 0
        self.last = 0

    def report_via(self, worker: int, *shell: Any) -> None:
        self.node = self.nodes[worker]
        self.report(*shell)


def judged(fleet: WorkerServer, host_id: int) -> bool:
    rows = fleet.query("SELECT version, judged FROM detection_marks WHERE host_id = :h", h=host_id)
    return bool(rows) and rows[0][1] == rows[0][0]


def judged_host(fleet: WorkerServer, name: str) -> tuple[PinnedHost, int, int, int]:
    """A host reporting through a worker of the test's choice, judged once through its
    judge: the host, its id, the worker that judges it and the other worker."""
    host = PinnedHost(fleet.pinned_nodes(name, f"uuid-{name}"), name)
    [(host_id,)] = fleet.query("SELECT id FROM hosts WHERE host_identifier = :n", n=name)
    owner, other = host_id % 2, 1 - host_id % 2
    host.report_via(owner)
    wait_for(lambda: judged(fleet, host_id), bool)
    return host, host_id, owner, other


def findings(admin: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = admin.get(f"{API}/findings").json()["findings"]
    return found


def test_detection_follows_a_host_across_workers_and_a_killed_worker(
    fleet: WorkerServer,
) -> None:
    host, host_id, owner, other = judged_host(fleet, "jumpvm")
    admins = fleet.pinned_admins()
    learned = admins[other].post(f"{API}/detect", json={"learn": True}).json()
    assert learned["refused"] == [] and learned["learned_keys"]

    # Posted to the worker that does not judge the host: its owner finds it in the store.
    host.report_via(other, *fifo_shell(2000, 100, "/dev/shm/.c"))
    [first] = wait_for(lambda: findings(admins[other]), lambda f: len(f) == 1)
    assert judged(fleet, host_id)
    # The fleet's status through either worker (each worker's is stored every second).
    status = wait_for(
        lambda: admins[other].get(f"{API}/detection/status").json(),
        lambda s: s["hosts_judged"] >= 2,
    )
    assert status["running"] and len(status["workers"]) == 2 and status["pending_hosts"] == 0

    # A batch acknowledged by the owner, which is killed at once: the rows are stored.
    before = fleet.query("SELECT count(*) FROM result_rows WHERE host_id = :h", h=host_id)
    host.report_via(owner, *fifo_shell(2002, 300, "/dev/shm/.e"))
    stored = fleet.query("SELECT count(*) FROM result_rows WHERE host_id = :h", h=host_id)
    assert stored[0][0] > before[0][0]
    killed = fleet.workers()[owner]
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: fleet.workers().get(owner, killed) != killed, bool, timeout=20)

    # Posted while the owner is down or just back: the replacement takes the slot over
    # and judges the host from the store.
    host.report_via(other, *fifo_shell(2001, 200, "/dev/shm/.d", interactive=True))
    found = wait_for(
        lambda: findings(admins[other]), lambda f: any(x["pid"] == 2001 for x in f), timeout=30
    )
    assert found[0]["id"] == first["id"] and found[0]["severity"] == "critical"
    wait_for(lambda: judged(fleet, host_id), bool, timeout=30)
    assert f"worker {owner} (pid {killed}) was killed by SIGKILL" in fleet.log_text()


def unseen(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Findings without when they were last seen (a later judgement refreshes it)."""
    return [{k: v for k, v in f.items() if k != "last_seen"} for f in found]


def fleet_status(admin: Any) -> dict[str, Any]:
    status: dict[str, Any] = admin.get(f"{API}/detection/status").json()
    return status


def test_a_host_posting_through_both_workers_is_moved_forward_not_rebuilt(
    fleet: WorkerServer,
) -> None:
    """Posts alternate between the host's judge and the other worker: the judge moves the
    host forward from the changes the other kept, never rebuilding it after its first
    batch, and its findings are those a rebuild from the store judges."""
    host, host_id, owner, other = judged_host(fleet, "relay")
    admins = fleet.pinned_admins()
    assert admins[owner].post(f"{API}/detect", json={"learn": True}).json()["refused"] == []

    shells = [
        fifo_shell(3000, 100, "/dev/shm/.a"),
        fifo_shell(3001, 110, "/var/spool/q"),
        fifo_shell(3002, 120, "/dev/shm/.b", interactive=True),
    ]
    for step in range(8):
        running = [shells[i] for i in range(len(shells)) if (step + i) % 3 != 0]
        processes = [p for shell in running for p in shell[0]]
        channels = [c for shell in running for c in shell[1]]
        host.report_via(other if step % 2 == 0 else owner, processes, channels)
        wait_for(lambda: judged(fleet, host_id), bool)

    # Each worker stores its status every second: the fleet's counts come from both.
    status = wait_for(
        lambda: fleet_status(admins[other]), lambda s: s["hosts_judged"] >= 9, timeout=10
    )
    assert status["rebuilds"] == {"on_demand": 1, "unknown": 1}, status
    assert status["full_rebuilds"] == 1 and status["incremental_runs"] == 8
    kept = fleet.query("SELECT count(*) FROM detection_changes WHERE host_id = :h", h=host_id)
    assert kept == [(0,)]  # every kept change was read and dropped once judged
    moved = findings(admins[other])
    assert moved and {f["pid"] for f in moved} <= {3000, 3001, 3002}

    # A rebuild from the store judges the same paths: nothing new, the same findings.
    rebuilt = admins[owner].post(f"{API}/detect", json={"host": "relay"}).json()
    assert rebuilt["new_findings"] == []
    assert unseen(findings(admins[other])) == unseen(moved)
    status = wait_for(
        lambda: fleet_status(admins[other]), lambda s: s["rebuilds"].get("on_demand") == 2
    )
    assert status["rebuilds"] == {"on_demand": 2, "unknown": 1}


@pytest.fixture
def judged_apart(db_url: str) -> Iterator[WorkerServer]:
    server = WorkerServer(db_url, workers=2, judge_processes=1)
    try:
        yield server
    finally:
        server.stop()


def test_a_judge_process_judges_what_every_worker_stores(judged_apart: WorkerServer) -> None:
    """``--detection-processes 1``: the two workers serve hosts and judge none; the judge
    process moves a host posting through both forward from the changes they kept, and
    when it is killed its replacement takes the slot and judges the host from the store."""
    fleet = judged_apart
    # ps and top tell the processes apart: they share one command line.
    named = {0: "fleetctl-work0", 1: "fleetctl-work1", 2: "fleetctl-judge0"}
    wait_for(lambda: process_names(fleet), lambda names: names == named, timeout=10)
    host = PinnedHost(fleet.pinned_nodes("relay", "uuid-relay"), "relay")
    [(host_id,)] = fleet.query("SELECT id FROM hosts WHERE host_identifier = 'relay'")
    admins = fleet.pinned_admins()
    host.report_via(0)
    wait_for(lambda: judged(fleet, host_id), bool)
    assert admins[1].post(f"{API}/detect", json={"learn": True}).json()["refused"] == []

    for step, pid in enumerate((3000, 3001, 3002, 3003)):
        host.report_via(step % 2, *fifo_shell(pid, 100 + step, f"/dev/shm/.{step}"))
        wait_for(lambda: judged(fleet, host_id), bool)
    [finding] = findings(admins[0])  # one path key: each shell is an occurrence of it
    assert finding["occurrences"] == 4 and finding["pid"] == 3003, finding

    # Only the judge process judges (slot 0 of 1), each batch moved forward from the
    # changes a worker kept, every kept change read and dropped.
    status = wait_for(
        lambda: fleet_status(admins[1]), lambda s: s["incremental_runs"] >= 4, timeout=10
    )
    assert [(w["slot"], w["running"]) for w in status["workers"]] == [(0, True)], status
    assert status["rebuilds"] == {"unknown": 1} and status["full_rebuilds"] == 1, status
    kept = fleet.query("SELECT count(*) FROM detection_changes WHERE host_id = :h", h=host_id)
    assert kept == [(0,)]

    judge = fleet.workers()[2]
    os.kill(judge, signal.SIGKILL)
    wait_for(lambda: fleet.workers().get(2, judge) != judge, bool, timeout=20)
    host.report_via(1, *fifo_shell(3004, 200, "/dev/shm/.z", interactive=True))
    [finding] = wait_for(lambda: findings(admins[0]), lambda f: f[0]["pid"] == 3004, timeout=30)
    assert finding["occurrences"] == 5 and finding["severity"] == "critical"
    assert f"worker 2 (pid {judge}) was killed by SIGKILL" in fleet.log_text()
    assert process_names(fleet)[2] == "fleetctl-judge0"  # the replacement is named too


def process_names(fleet: WorkerServer) -> dict[int, str]:
    """index -> the name of its live process, as ``ps`` shows it (``/proc/<pid>/comm``)."""
    return {i: Path(f"/proc/{pid}/comm").read_text().strip() for i, pid in fleet.workers().items()}


def test_a_server_process_collects_garbage_less_often_and_switches_threads_sooner() -> None:
    """Workers and judge processes tune their interpreter at start (``tune_interpreter``):
    young collections every 50,000 allocations, the GIL handed over after 1 ms. Checked
    in a process of its own, as the server's are."""
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gc, json, sys\n"
            "from fleetctl.server.supervisor import tune_interpreter\n"
            "before = gc.get_threshold()\n"
            "tune_interpreter()\n"
            "print(json.dumps([before, gc.get_threshold(), sys.getswitchinterval()]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(shown) == [[700, 10, 10], [50_000, 10, 10], 0.001]
