"""Admin API: replays of detection over stored history, as jobs (``detect --since``).

``POST /detect/jobs`` (``since``, optional ``host``) starts a replay and answers with the
job at once; ``GET /detect/jobs/{id}`` says where it stands (hosts and change times
done of their totals, how many new findings so far and, once it ended, their ids,
elapsed seconds, state ``running``, ``done``, ``failed``, ``cancelled`` or ``abandoned``
with the error if any); ``DELETE`` cancels it;
``POST .../restart`` lets this worker take over a failed or abandoned one, going on
from the first host not done; ``GET /detect/jobs`` lists the newest. Every worker
answers from the job's row (``storage.detection_jobs``); the job runs in the worker
that accepted it (``fleetctl.server.replay_jobs``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.errors import BadRequest, NotFound
from fleetctl.roles import Role
from fleetctl.server.access import caller_of, requires
from fleetctl.server.admin_api import (
    admin_endpoint,
    admin_read_body_endpoint,
    find_host_or_404,
)
from fleetctl.server.admin_params import int_param, text_param, time_param
from fleetctl.server.replay_jobs import ReplayJobs
from fleetctl.server.state import server_state
from storage import hosts as host_store
from storage.engine import session_scope

PREFIX = "/api/v1/admin/detect/jobs"
JOB_ID = re.compile(r"[0-9a-f]{1,32}")
LIST_LIMIT = 50


def _jobs(request: Request) -> ReplayJobs:
    replays = server_state(request).replays
    assert replays is not None
    return replays


def _job_id(request: Request) -> str:
    job_id = str(request.path_params["id"])
    if not JOB_ID.fullmatch(job_id):
        raise NotFound(f"no replay job {job_id!r}")
    return job_id


def _shown(request: Request, session: Session, job_id: str) -> dict[str, Any]:
    found = _jobs(request).describe(session, job_id)
    if found is None:
        raise NotFound(f"no replay job {job_id!r}")
    return {"job": found}


def _after_change(request: Request, job_id: str) -> dict[str, Any]:
    """The job as just written by another session: read in a new one (a SQLite read
    transaction that already read something keeps seeing the store as it was)."""
    with session_scope(server_state(request).readonly_sessions) as session:
        return _shown(request, session, job_id)


@requires(Role.HUNTER)
@admin_read_body_endpoint
def start_job(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Replay every host (or ``host``) from ``since`` to now, in a job."""
    since = time_param(body, "since")
    if since is None:
        raise BadRequest("'since' is required: the time to replay history from")
    ref = text_param(body, "host")
    hosts = [find_host_or_404(session, ref)] if ref else host_store.list_hosts(session)
    actor = caller_of(request).user
    job_id = _jobs(request).start(since, int(time.time()), [h.id for h in hosts], actor)
    return _after_change(request, job_id)


@requires(Role.OBSERVER)
@admin_endpoint
def show_job(request: Request, session: Session) -> dict[str, Any]:
    return _shown(request, session, _job_id(request))


@requires(Role.OBSERVER)
@admin_endpoint
def list_jobs(request: Request, session: Session) -> dict[str, Any]:
    limit = int_param(request.query_params, "limit", (1, LIST_LIMIT), default=LIST_LIMIT)
    return {"jobs": _jobs(request).recent(session, limit)}


@requires(Role.HUNTER)
@admin_read_body_endpoint
def cancel_job(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Ask the job to stop; it ends as ``cancelled`` (at once if its worker is gone)."""
    job_id = _job_id(request)
    if not _jobs(request).cancel(job_id):
        raise NotFound(f"no replay job {job_id!r}")
    return _after_change(request, job_id)


@requires(Role.HUNTER)
@admin_read_body_endpoint
def restart_job(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Run a failed or abandoned job again in this worker, from the first host not done."""
    job_id = _job_id(request)
    restarted = _jobs(request).restart(job_id)
    shown = _after_change(request, job_id)
    if not restarted:
        state = shown["job"]["state"]
        raise BadRequest(f"replay job {job_id} is {state}: only a failed or abandoned one restarts")
    return shown


routes = [
    Route(PREFIX, start_job, methods=["POST"]),
    Route(PREFIX, list_jobs, methods=["GET"]),
    Route(f"{PREFIX}/{{id}}", show_job, methods=["GET"]),
    Route(f"{PREFIX}/{{id}}", cancel_job, methods=["DELETE"]),
    Route(f"{PREFIX}/{{id}}/restart", restart_job, methods=["POST"]),
]
