"""Replays of detection as jobs: their state, progress and heartbeat (session passed in).

A job row is written by the one worker process that runs it (``worker``) and read by
any: a client may ask another worker, after a reload, where a job stands. The runner
writes progress with ``report``, which also tells it whether the job was cancelled or
taken over meanwhile; a running job whose heartbeat is older than the caller's timeout
has lost its worker (``abandoned``) and may be taken over (``take_over``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import DetectionJob as DetectionJob  # the record type jobs are returned as

RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (RUNNING, DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class Progress:
    """Where a running job stands, as its runner reports it: the ids of its new
    findings only now and then (``None``: unchanged), as a large replay finds many."""

    hosts_done: int
    times_done: int
    times_total: int
    findings: int
    new_findings: Sequence[str] | None = None


def create(
    session: Session,
    job_id: str,
    *,
    since: int,
    until: int,
    hosts: Sequence[int],
    actor: str,
    worker: str,
    now: float,
) -> DetectionJob:
    job = DetectionJob(
        id=job_id,
        state=RUNNING,
        since=since,
        until=until,
        hosts=list(hosts),
        created_by=actor,
        created_at=int(now),
        finished_at=None,
        heartbeat_at=now,
        worker=worker,
        hosts_total=len(hosts),
        hosts_done=0,
        times_total=0,
        times_done=0,
        findings=0,
        new_findings=[],
        cancel_requested=False,
        error="",
    )
    session.add(job)
    return job


def get(session: Session, job_id: str) -> DetectionJob | None:
    return session.get(DetectionJob, job_id)


def recent(session: Session, limit: int) -> list[DetectionJob]:
    """The newest ``limit`` jobs, newest first."""
    return list(
        session.scalars(
            select(DetectionJob)
            .order_by(DetectionJob.created_at.desc(), DetectionJob.id)
            .limit(limit)
        )
    )


def abandoned(job: DetectionJob, now: float, timeout: float) -> bool:
    """A job still marked running whose worker stopped beating ``timeout`` seconds ago."""
    return job.state == RUNNING and now - job.heartbeat_at > timeout


def report(session: Session, job_id: str, worker: str, progress: Progress, now: float) -> str:
    """Write ``worker``'s progress and heartbeat on its running job. Returns what the
    runner must do next: ``"go"``, ``"cancel"`` (an admin asked), or ``"lost"`` (the
    job is no longer this worker's to run: taken over, or ended meanwhile)."""
    job = session.get(DetectionJob, job_id, with_for_update=True)
    if job is None or job.state != RUNNING or job.worker != worker:
        return "lost"
    job.hosts_done = progress.hosts_done
    job.times_done = progress.times_done
    job.times_total = progress.times_total
    job.findings = progress.findings
    if progress.new_findings is not None:
        job.new_findings = list(progress.new_findings)
    job.heartbeat_at = now
    return "cancel" if job.cancel_requested else "go"


def finish(
    session: Session,
    job_id: str,
    worker: str,
    state: str,
    error: str,
    now: float,
    new_findings: Sequence[str] | None = None,
) -> bool:
    """End ``worker``'s running job as ``state`` (done, failed or cancelled), with the
    ids of its new findings when given."""
    values: dict[str, object] = {
        "state": state,
        "error": error,
        "finished_at": int(now),
        "heartbeat_at": now,
    }
    if new_findings is not None:
        values |= {"findings": len(new_findings), "new_findings": list(new_findings)}
    ended = session.execute(
        update(DetectionJob)
        .where(
            DetectionJob.id == job_id,
            DetectionJob.state == RUNNING,
            DetectionJob.worker == worker,
        )
        .values(**values)
    )
    return bool(ended.rowcount)  # type: ignore[attr-defined]


def request_cancel(
    session: Session, job_id: str, now: float, timeout: float
) -> DetectionJob | None:
    """Ask the job's worker to stop; a job whose worker is gone is cancelled at once."""
    job = session.get(DetectionJob, job_id, with_for_update=True)
    if job is None or job.state != RUNNING:
        return job
    if abandoned(job, now, timeout):
        job.state, job.finished_at = CANCELLED, int(now)
        job.error = "its worker had stopped"
    else:
        job.cancel_requested = True
    return job


def take_over(
    session: Session, job_id: str, worker: str, now: float, timeout: float
) -> DetectionJob | None:
    """Make ``worker`` the runner of a failed or abandoned job, to resume where it
    stopped; None when the job is not one that may be restarted."""
    job = session.get(DetectionJob, job_id, with_for_update=True)
    if job is None or not (job.state == FAILED or abandoned(job, now, timeout)):
        return None
    job.state, job.worker, job.heartbeat_at = RUNNING, worker, now
    job.finished_at, job.error, job.cancel_requested = None, "", False
    return job


__all__ = [
    "CANCELLED",
    "DONE",
    "FAILED",
    "RUNNING",
    "STATES",
    "DetectionJob",
    "Progress",
    "abandoned",
    "create",
    "finish",
    "get",
    "recent",
    "report",
    "request_cancel",
    "take_over",
]
