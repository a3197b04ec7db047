"""Replays of detection as server jobs: started by one request, followed by any other.

``fleetctl detect --since T`` replays hours or days of a fleet's history, which takes
longer than anyone should hold a request open for. So a replay is a job: the request
that starts it writes a ``detection_jobs`` row and returns its id at once, and a thread
of the process that accepted it replays the hosts one by one
(``detection_replay.replay_host``), each in one transaction. Between hosts it writes its
progress (hosts and change times done, how many new findings so far; their ids every
``LIST_EVERY`` seconds and at the end) and a heartbeat; any worker
process answers ``GET`` from that row, so a client may reload, detach or ask another
worker.

A cancel request is a flag on the row: the runner looks at it (read-only, so even on
SQLite while its host's transaction is open) every ``check_every`` seconds and stops,
rolling back the host it was on. A runner that stops beating for ``heartbeat_timeout``
seconds (its process died) leaves a job shown as ``abandoned``; ``restart`` lets this
process take it over and go on from the first host not done. When the process stops,
its jobs end as ``failed`` ("the server stopped") and may be restarted the same way.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from fleetctl.server.detection_replay import replay_host, replay_times
from fleetctl.server.detection_service import DetectionService
from fleetctl.timeutil import iso
from storage import detection as detection_store
from storage import detection_jobs as job_store
from storage.detection_jobs import DetectionJob, Progress
from storage.engine import session_scope

log = logging.getLogger("fleetctl.detection")

HEARTBEAT_TIMEOUT = 120.0  # seconds without a heartbeat before a running job is abandoned
CHECK_EVERY = 1.0  # seconds between looks at the cancel flag while a host is replayed
LIST_EVERY = 30.0  # seconds between writes of the ids of a running job's new findings
ABANDONED = "abandoned"  # how a running job whose worker is gone is shown


class _Stop(Exception):
    """The runner must stop: ``outcome`` is how the job ends (None: it is not ours)."""

    def __init__(self, outcome: str | None, error: str = "") -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.error = error


def worker_name() -> str:
    """This process, as job rows name their runner."""
    return f"{socket.gethostname()}:{os.getpid()}"


def job_json(job: DetectionJob, now: float, timeout: float) -> dict[str, Any]:
    """A job as the API shows it; a running job whose worker stopped beating is
    ``abandoned``."""
    state = ABANDONED if job_store.abandoned(job, now, timeout) else job.state
    end = job.finished_at if job.finished_at is not None else now
    return {
        "id": job.id,
        "state": state,
        "since": iso(job.since),
        "until": iso(job.until),
        "hosts_total": job.hosts_total,
        "hosts_done": job.hosts_done,
        "times_total": job.times_total,
        "times_done": job.times_done,
        "findings": job.findings,
        "created_by": job.created_by,
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
        "elapsed_seconds": round(max(0.0, end - job.created_at), 1),
        "heartbeat_age_seconds": round(max(0.0, now - job.heartbeat_at), 1),
        "worker": job.worker,
        "cancel_requested": job.cancel_requested,
        "error": job.error,
    } | ({} if job.state == job_store.RUNNING else {"new_findings": list(job.new_findings)})


@dataclass
class _Run:
    """A running job's counters, as its runner moves them."""

    job_id: str
    hosts: list[int]
    since: int
    until: int
    hosts_done: int
    found: list[str]
    times: dict[int, list[int]] = field(default_factory=dict)
    times_done: int = 0

    listed: float = 0.0  # when the ids of the new findings were last written

    def progress(self, every: float) -> Progress:
        """Where the run stands; with the ids of its new findings once every ``every``
        seconds (rewriting a long list after every host would cost more than the host)."""
        total = sum(len(t) + 1 for t in self.times.values())
        listed = None
        if time.monotonic() - self.listed >= every:
            listed, self.listed = list(self.found), time.monotonic()
        return Progress(self.hosts_done, self.times_done, total, len(self.found), listed)


@dataclass
class ReplayJobs:
    """Start, follow, cancel and take over replay jobs; run this process's own."""

    service: DetectionService
    readonly: sessionmaker[Session]
    worker: str = field(default_factory=worker_name)
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT
    check_every: float = CHECK_EVERY
    _threads: dict[str, threading.Thread] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.service.sessions

    def start(self, since: int, until: int, hosts: Sequence[int], actor: str) -> str:
        """A new job replaying ``hosts`` (ids, in order) from ``since`` to ``until``."""
        job_id = uuid.uuid4().hex[:16]
        with session_scope(self.sessions) as session:
            job_store.create(
                session,
                job_id,
                since=since,
                until=until,
                hosts=hosts,
                actor=actor,
                worker=self.worker,
                now=time.time(),
            )
        self._launch(job_id)
        return job_id

    def restart(self, job_id: str) -> bool:
        """Take over a failed or abandoned job and go on where it stopped."""
        with session_scope(self.sessions) as session:
            taken = job_store.take_over(
                session, job_id, self.worker, time.time(), self.heartbeat_timeout
            )
        if taken is None:
            return False
        self._launch(job_id)
        return True

    def cancel(self, job_id: str) -> bool:
        """Ask the job to stop (at once when its worker is gone); False: no such job."""
        with session_scope(self.sessions) as session:
            job = job_store.request_cancel(session, job_id, time.time(), self.heartbeat_timeout)
        return job is not None

    def describe(self, session: Session, job_id: str) -> dict[str, Any] | None:
        job = job_store.get(session, job_id)
        return None if job is None else job_json(job, time.time(), self.heartbeat_timeout)

    def recent(self, session: Session, limit: int) -> list[dict[str, Any]]:
        now = time.time()
        return [job_json(j, now, self.heartbeat_timeout) for j in job_store.recent(session, limit)]

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Wait for this process's run of a job to end (True when it has)."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop this process's jobs: each ends as failed, to be restarted later."""
        self._stopping.set()
        for thread in list(self._threads.values()):
            thread.join(timeout)

    # -- the runner -----------------------------------------------------------------------

    def _launch(self, job_id: str) -> None:
        thread = threading.Thread(
            target=self._run, args=(job_id,), name=f"replay-{job_id}", daemon=True
        )
        self._threads[job_id] = thread
        thread.start()

    def _run(self, job_id: str) -> None:
        try:
            run = self._load(job_id)
            if run is not None:
                self._end(run, *self._outcome(run))
        except Exception:
            log.exception("detection replay %s could not record how it ended", job_id)
        finally:
            self._threads.pop(job_id, None)

    def _outcome(self, run: _Run) -> tuple[str | None, str]:
        """How the job ended (None: it is no longer this process's) and why."""
        try:
            return self._replay(run), ""
        except _Stop as stop:
            return stop.outcome, stop.error
        except Exception as exc:
            log.exception("detection replay %s failed", run.job_id)
            return job_store.FAILED, f"{type(exc).__name__}: {exc}"

    def _end(self, run: _Run, outcome: str | None, error: str) -> None:
        if outcome is not None:
            with session_scope(self.sessions) as session:
                job_store.finish(
                    session, run.job_id, self.worker, outcome, error, time.time(), run.found
                )

    def _replay(self, run: _Run) -> str:
        self._count_times(run)
        run.times_done = sum(len(run.times[h]) + 1 for h in run.hosts[: run.hosts_done])
        self._report(run)
        with session_scope(self.readonly) as session:
            present = detection_store.detection_names(session)
        checked = time.monotonic()

        def on_time(created: list[str]) -> None:
            nonlocal checked
            if time.monotonic() - checked >= self.check_every:
                self._check(run.job_id)
                checked = time.monotonic()

        for index in range(run.hosts_done, len(run.hosts)):
            host_id = run.hosts[index]
            if host_id in present:  # a host deleted since the job started is skipped
                done = replay_host(self.service, host_id, run.times[host_id], run.until, on_time)
                run.found += done.created
            run.hosts_done = index + 1
            run.times_done += len(run.times[host_id]) + 1
            self._report(run)
        return job_store.DONE

    def _load(self, job_id: str) -> _Run | None:
        with session_scope(self.readonly) as session:
            job = job_store.get(session, job_id)
            if job is None:
                return None
            hosts = [int(h) for h in job.hosts]
            return _Run(job_id, hosts, job.since, job.until, job.hosts_done, list(job.new_findings))

    def _count_times(self, run: _Run) -> None:
        """Each host's change times, known up front so progress has a total."""
        checked = time.monotonic()
        with session_scope(self.readonly) as session:
            for host_id in run.hosts:
                run.times[host_id] = replay_times(session, host_id, run.since, run.until)
                if time.monotonic() - checked >= self.check_every:
                    self._report(run)
                    checked = time.monotonic()

    def _check(self, job_id: str) -> None:
        """Stop if the process stops or an admin cancelled the job (read-only)."""
        if self._stopping.is_set():
            raise _Stop(job_store.FAILED, "the server stopped")
        with session_scope(self.readonly) as session:
            job = job_store.get(session, job_id)
        if job is None or job.state != job_store.RUNNING or job.worker != self.worker:
            raise _Stop(None)
        if job.cancel_requested:
            raise _Stop(job_store.CANCELLED)

    def _report(self, run: _Run) -> None:
        """Write progress and heartbeat; stop as the row or this process says."""
        if self._stopping.is_set():
            raise _Stop(job_store.FAILED, "the server stopped")
        with session_scope(self.sessions) as session:
            verdict = job_store.report(
                session, run.job_id, self.worker, run.progress(LIST_EVERY), time.time()
            )
        if verdict == "lost":
            raise _Stop(None)
        if verdict == "cancel":
            raise _Stop(job_store.CANCELLED)
