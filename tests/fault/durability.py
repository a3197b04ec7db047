"""Durability under faults: kill -9 of the server and crash-restarts of PostgreSQL while
simulated hosts stream, then the store held against what the hosts' scripts say."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson

from tests.fault.cluster import Cluster
from tests.fault.report import Outcome
from tests.fault.server import ServeProcess
from tests.fault.streams import Script, SimulatedHost, compare


@dataclass(frozen=True)
class Load:
    hosts: int = 12
    intervals: int = 40
    rows: int = 120
    pace: float = 0.15  # wall seconds per interval: ~6 s of streaming


def _start_hosts(server: ServeProcess, load: Load, tag: str) -> list[SimulatedHost]:
    scripts = [
        Script.generate(f"{tag}-{i:03d}", load.intervals, load.rows, seed=i)
        for i in range(load.hosts)
    ]
    hosts = [SimulatedHost(server.url, server.ca, server.secret, s, load.pace) for s in scripts]
    for host in hosts:
        host.start()
    return hosts


def _finish(hosts: list[SimulatedHost], timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    for host in hosts:
        host.done.wait(max(0.0, deadline - time.monotonic()))
    stuck = [h.script.identifier for h in hosts if not h.done.is_set()]
    if stuck:
        return f"{len(stuck)} hosts still had unacknowledged lines after {timeout:.0f} s"
    errors = [f"{h.script.identifier}: {h.error}" for h in hosts if h.error]
    return errors[0] if errors else None


def _judge(
    name: str,
    backend: str,
    db_url: str,
    hosts: list[SimulatedHost],
    detail: str,
    problem: str | None,
) -> Outcome:
    if problem:
        return Outcome(name, backend, False, problem)
    comparison = compare(db_url, [h.script for h in hosts])
    lines = sum(len(lines) for h in hosts for lines in h.script.result_lines)
    retries = sum(h.failures for h in hosts)
    if not comparison.ok:
        return Outcome(name, backend, False, f"{detail}; {comparison.summary()}")
    return Outcome(
        name,
        backend,
        True,
        f"{detail}; {lines} result lines from {len(hosts)} hosts, {retries} failed posts"
        " resent; every interval's rows exact, no duplicates, no data-loss markers",
    )


def kill_nine(backend: str, db_url: str, rounds: int = 5, load: Load = Load()) -> Outcome:
    """kill -9 the server ``rounds`` times at random moments while hosts stream."""
    server = ServeProcess(db_url)
    rng = random.Random(7)
    restarts: list[float] = []
    try:
        hosts = _start_hosts(server, load, f"k9-{backend}")
        for _ in range(rounds):
            time.sleep(rng.uniform(0.3, 1.2))
            server.kill()
            restarts.append(server.start())
        problem = _finish(hosts, timeout=120)
        detail = (
            f"{rounds} kill -9 rounds, restart to serving {min(restarts):.1f}-{max(restarts):.1f} s"
        )
        return _judge("kill -9 under load", backend, db_url, hosts, detail, problem)
    finally:
        server.stop()


def _recovery_probe(server: ServeProcess) -> Callable[[], float]:
    """A host of its own whose ``/log`` posts measure when the server stores again."""
    http = httpx.Client(base_url=server.url, verify=server.ssl, timeout=10)
    key = http.post(
        "/api/v1/osquery/enroll",
        json={
            "enroll_secret": server.secret,
            "host_identifier": "probe",
            "host_details": {"system_info": {"uuid": "uuid-probe", "hostname": "probe"}},
        },
    ).json()["node_key"]

    def first_success() -> float:
        started = time.monotonic()
        while time.monotonic() - started < 60:
            body = {
                "node_key": key,
                "log_type": "status",
                "data": [
                    {"unixTime": int(time.time()), "severity": 0, "message": uuid.uuid4().hex}
                ],
            }
            try:
                answer = http.post("/api/v1/osquery/log", content=orjson.dumps(body)).json()
                if "error" not in answer:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        return float("inf")

    return first_success


def database_restart(rounds: int = 3, load: Load = Load()) -> Outcome:
    """Crash-restart a private PostgreSQL ``rounds`` times while hosts stream."""
    cluster = Cluster()
    server = None
    try:
        db_url = cluster.database("fleet")
        server = ServeProcess(db_url)
        probe = _recovery_probe(server)
        hosts = _start_hosts(server, load, "pg")
        recoveries: list[float] = []
        outages: list[float] = []
        for _ in range(rounds):
            time.sleep(1.0)
            outages.append(cluster.crash_restart())
            recoveries.append(probe())
        problem = _finish(hosts, timeout=120)
        detail = (
            f"{rounds} crash restarts ({max(outages):.1f} s down at most); the server stored"
            f" again {max(recoveries):.2f} s after the database was back, at most"
        )
        if max(recoveries) > 5:
            problem = problem or f"slow recovery: {detail}"
        return _judge(
            "PostgreSQL crash-restart under load", "postgresql", db_url, hosts, detail, problem
        )
    finally:
        if server is not None:
            server.stop()
        cluster.stop()
