"""Replays as jobs: started at once, followed from the store, cancelled, taken over when
their worker is gone, on SQLite and PostgreSQL; and through the admin API of a real
server. Histories are generated hosts logged through ingest (``test_replay``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from fleetctl.server.detection_replay import replay_times
from fleetctl.server.detection_service import DetectionService
from fleetctl.server.replay_jobs import ReplayJobs
from storage import detection_jobs as job_store
from storage import findings as findings_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from tests.conftest import RunningServer
from tests.detection.test_replay import log_history as log_any_history

# Histories that end before now, so that a job replays their change times (hours of
# quiet spells included: see ``log_history``).
PAST = int(time.time()) - 30 * 86_400


def log_history(sessions: sessionmaker[Session], seed: int, batches: int) -> tuple[int, int]:
    return log_any_history(sessions, seed, batches, start=PAST)


API = "/api/v1/admin/detect/jobs"


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def readonly(db_url: str) -> Iterator[sessionmaker[Session]]:
    """Read-only sessions, as a server has them (on SQLite they take no write lock)."""
    engine = make_engine(db_url, readonly=True)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def jobs_over(
    sessions: sessionmaker[Session], readonly: sessionmaker[Session]
) -> Callable[..., ReplayJobs]:
    """A worker process's jobs, by its name."""

    def make(worker: str, **kw: Any) -> ReplayJobs:
        service = DetectionService(sessions, learning_window=200)
        return ReplayJobs(service, readonly, worker=worker, **kw)

    return make


def shown(jobs: ReplayJobs, job_id: str) -> dict[str, Any]:
    with session_scope(jobs.readonly) as session:
        found = jobs.describe(session, job_id)
    assert found is not None
    return found


def expected_times(
    sessions: sessionmaker[Session], hosts: list[int], since: int, until: int
) -> int:
    with session_scope(sessions) as session:
        return sum(len(replay_times(session, h, since, until)) + 1 for h in hosts)


def test_a_job_replays_every_host_and_says_how_far_it_got(
    sessions: sessionmaker[Session], jobs_over: Callable[..., ReplayJobs]
) -> None:
    hosts = [log_history(sessions, 40 + i, batches=8)[0] for i in range(2)]
    until = int(time.time())
    jobs = jobs_over("w1")
    job_id = jobs.start(0, until, hosts, "tester")
    assert jobs.wait(job_id, 120)
    job = shown(jobs, job_id)
    assert job["state"] == "done" and job["error"] == ""
    assert (job["hosts_done"], job["hosts_total"]) == (2, 2)
    assert job["times_done"] == job["times_total"] == expected_times(sessions, hosts, 0, until)
    assert job["times_total"] >= 2 * 8  # every batch's time and now, on each host
    with session_scope(sessions) as session:
        stored = {f.row.id for f in findings_store.list_findings(session)}
    assert job["findings"] == len(job["new_findings"]) > 0
    assert set(job["new_findings"]) == stored  # the first replay finds everything new


def test_a_cancelled_job_stops_and_rolls_back_the_host_it_was_on(
    sessions: sessionmaker[Session], jobs_over: Callable[..., ReplayJobs]
) -> None:
    hosts = [log_history(sessions, 50, batches=6)[0]]
    jobs = jobs_over("w1", check_every=0.0)
    with jobs.service.turn(hosts[0]):  # the runner waits for its first host here
        job_id = jobs.start(0, int(time.time()), hosts, "tester")
        assert jobs.cancel(job_id)
        assert shown(jobs, job_id)["cancel_requested"] is True
    assert jobs.wait(job_id, 60)
    job = shown(jobs, job_id)
    assert (job["state"], job["hosts_done"], job["findings"]) == ("cancelled", 0, 0)
    with session_scope(sessions) as session:
        assert findings_store.list_findings(session) == []


def test_a_job_whose_worker_stopped_is_failed_and_another_worker_finishes_it(
    sessions: sessionmaker[Session], jobs_over: Callable[..., ReplayJobs]
) -> None:
    hosts = [log_history(sessions, 60 + i, batches=6)[0] for i in range(2)]
    until = int(time.time())
    first = jobs_over("w1")
    with first.service.turn(hosts[0]):
        job_id = first.start(0, until, hosts, "tester")
        first.stop(timeout=0.2)  # the server stops while the job waits for its host
    assert first.wait(job_id, 60)
    job = shown(first, job_id)
    assert (job["state"], job["error"], job["hosts_done"]) == ("failed", "the server stopped", 0)

    second = jobs_over("w2")
    assert second.restart(job_id)
    assert second.wait(job_id, 120)
    job = shown(second, job_id)
    assert (job["state"], job["worker"], job["hosts_done"]) == ("done", "w2", 2)
    assert job["findings"] > 0
    assert not second.restart(job_id)  # a finished job is not run again


def test_a_job_without_heartbeat_is_abandoned_resumed_from_its_next_host(
    sessions: sessionmaker[Session], jobs_over: Callable[..., ReplayJobs]
) -> None:
    hosts = [log_history(sessions, 70 + i, batches=6)[0] for i in range(2)]
    until = int(time.time())
    with session_scope(sessions) as session:  # a worker that died after its first host
        job = job_store.create(
            session,
            "deadbeef",
            since=0,
            until=until,
            hosts=hosts,
            actor="tester",
            worker="gone:1",
            now=time.time() - 1000,
        )
        job.hosts_done = 1
    jobs = jobs_over("w2", heartbeat_timeout=60)
    assert shown(jobs, "deadbeef")["state"] == "abandoned"
    assert jobs.restart("deadbeef")
    assert jobs.wait("deadbeef", 120)
    job_json = shown(jobs, "deadbeef")
    assert (job_json["state"], job_json["hosts_done"]) == ("done", 2)
    assert job_json["times_done"] == expected_times(sessions, hosts, 0, until)
    with session_scope(sessions) as session:  # only the second host was replayed
        judged = {f.row.host_id for f in findings_store.list_findings(session)}
    assert judged == {hosts[1]}


def test_cancelling_an_abandoned_job_ends_it_at_once(
    sessions: sessionmaker[Session], jobs_over: Callable[..., ReplayJobs]
) -> None:
    with session_scope(sessions) as session:
        job_store.create(
            session,
            "abad",
            since=0,
            until=1,
            hosts=[],
            actor="tester",
            worker="gone:1",
            now=time.time() - 1000,
        )
    jobs = jobs_over("w1", heartbeat_timeout=60)
    assert jobs.cancel("abad")
    job = shown(jobs, "abad")
    assert (job["state"], job["error"]) == ("cancelled", "its worker had stopped")


def follow(admin: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = admin.get(f"{API}/{job_id}").json()["job"]
        if job["state"] != "running":
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still running")


def test_the_admin_api_starts_a_job_at_once_and_any_request_follows_it(
    server: RunningServer, sessions: sessionmaker[Session]
) -> None:
    host_id, _ = log_history(sessions, 80, batches=8)
    admin = server.admin()
    refused = admin.post("/api/v1/admin/detect", json={"since": "0"})
    assert refused.status_code == 400 and "/detect/jobs" in refused.json()["error"]
    assert admin.post(API, json={}).status_code == 400  # since is required

    started = admin.post(API, json={"since": "0"})
    assert started.status_code == 200, started.text
    job = started.json()["job"]
    assert job["state"] in ("running", "done") and job["hosts_total"] == 1
    done = follow(admin, job["id"])
    assert (done["state"], done["hosts_done"]) == ("done", 1)
    assert done["findings"] == len(done["new_findings"]) > 0
    assert [j["id"] for j in admin.get(API).json()["jobs"]] == [job["id"]]
    assert admin.get(f"{API}/nope").status_code == 404
    assert admin.delete(f"{API}/0123").status_code == 404
    again = admin.post(f"{API}/{job['id']}/restart", json={})
    assert again.status_code == 400 and "done" in again.json()["error"]
    with session_scope(sessions) as session:
        assert {f.row.host_id for f in findings_store.list_findings(session)} == {host_id}
