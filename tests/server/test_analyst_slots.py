"""Slow analyst SQL holds its own slots and threads only: more calls than slots answer
503 busy, and ingest and check-ins go on meanwhile (both stores)."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer

SLOTS = 2
CALLS = 45  # more than the 40 worker threads of the default limiter
# A statement that runs until the time limit (SQLite has no sleep: it counts forever).
SLOW = {
    "postgresql": "SELECT pg_sleep(30) AS slept",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
    " SELECT max(x) FROM c",
}


@pytest.fixture
def slow_server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    srv = RunningServer(home, db_url, analyst_slots=SLOTS, analyst_timeout=4.0)
    yield srv
    srv.stop()


def test_busy_slots_answer_503_while_ingest_goes_on(
    slow_server: RunningServer, db_url: str
) -> None:
    node = slow_server.node()
    node.enroll()
    admin = slow_server.admin()
    slow = SLOW["postgresql" if db_url.startswith("postgresql") else "sqlite"]

    def call() -> Any:
        return admin.post("/api/v1/admin/sql", json={"sql": slow})

    with ThreadPoolExecutor(CALLS) as pool:
        calls: list[Future[Any]] = [pool.submit(call) for _ in range(CALLS)]
        # The first answers are the 503s of the calls that found no free slot.
        done, _ = wait(calls, return_when=FIRST_COMPLETED)
        assert next(iter(done)).result().status_code == 503
        answer = node.log(
            "result",
            [
                {
                    "name": "q",
                    "unixTime": 100,
                    "counter": 0,
                    "epoch": 0,
                    "columns": {"pid": "1"},
                    "action": "added",
                }
            ],
        )
        config = node.call("/config")
        still_running = sum(not c.done() for c in calls)
    assert answer == [{"node_invalid": False}]
    assert config["node_invalid"] is False and "error" not in config
    assert still_running >= 1  # ingest answered while analyst SQL held its slots
    statuses = sorted(c.result().status_code for c in calls)
    assert statuses.count(503) == CALLS - SLOTS
    busy = next(c.result().json() for c in calls if c.result().status_code == 503)
    assert busy == {"error": f"all {SLOTS} analyst SQL slots are busy; try again in a few seconds"}
    finished = [c.result().json() for c in calls if c.result().status_code != 503]
    assert finished == [{"error": "query took longer than 4 s and was stopped"}] * SLOTS
    # the slots are free again
    quick = admin.post("/api/v1/admin/sql", json={"sql": "SELECT count(*) AS n FROM hunt_hosts"})
    assert quick.json()["rows"] == [{"n": 1}]
