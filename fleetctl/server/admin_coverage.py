"""Admin API for DET0493 coverage: the report (``GET /coverage``) and the purple-team
evidence it shows (``POST``/``GET /validations``).

The report reads only the store, so it answers for hosts that are offline, and it is the
same through a server and in a client's own process.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.coverage import coverage_document, gather
from fleetctl.coverage.facts import ValidationRun
from fleetctl.errors import BadRequest
from fleetctl.roles import Role
from fleetctl.server.access import requires
from fleetctl.server.admin_api import PREFIX, admin_endpoint, admin_write_endpoint
from fleetctl.server.admin_params import (
    check_targets,
    choice_param,
    column_length,
    int_param,
    required_text,
    text_param,
    time_param,
)
from fleetctl.timeutil import iso, parse_duration
from storage import validations as validation_store
from storage.campaigns import resolve_targets

DEFAULT_RETENTION = "30d"
MAX_RUNS = 1000  # far more scenarios than validate has, fewer than a body could carry
RESULTS = ("detected", "missed", "quiet", "false positive", "skipped", "error")


@requires(Role.OBSERVER)
@admin_endpoint
def coverage(request: Request, session: Session) -> dict[str, Any]:
    params = request.query_params
    targets = check_targets(text_param(params, "targets", default="all"))
    try:
        retention = parse_duration(text_param(params, "retention", default=DEFAULT_RETENTION))
    except ValueError as exc:
        raise BadRequest(f"'retention': {exc}") from None
    hosts, elsewhere = gather(session, resolve_targets(session, targets))
    return coverage_document(hosts, int(time.time()), retention, elsewhere)


def _text(body: Mapping[str, Any], name: str, column: str, *, required: bool = True) -> str:
    limit = column_length(f"Validation.{column}")
    if required:
        return required_text(body, name, max_length=limit)
    return text_param(body, name, max_length=limit, default="")


def _choice(body: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = choice_param(body, name, choices)
    if value is None:
        raise BadRequest(f"'{name}' is required: one of {', '.join(choices)}")
    return value


def _run(host: Mapping[str, Any], run: Any) -> dict[str, Any]:
    """One scenario outcome of the body, checked against what the store holds."""
    if not isinstance(run, dict):
        raise BadRequest("each of 'runs' must be an object")
    seconds = run.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < 1e9
    ):
        raise BadRequest("'seconds' must be a number of seconds or null")
    return {
        "host_uuid": _text(host, "uuid", "host_uuid"),
        "host_identifier": _text(host, "host_identifier", "host_identifier"),
        "hostname": _text(host, "hostname", "hostname", required=False),
        "scenario": _text(run, "scenario", "scenario"),
        "name": _text(run, "name", "name"),
        "kind": _choice(run, "kind", ("attack", "benign")),
        "result": _choice(run, "result", RESULTS),
        "seconds": None if seconds is None else float(seconds),
        "agent": _choice(run, "agent", ("stock", "extension")),
        "finding": _text(run, "finding", "finding", required=False),
        "detail": text_param(run, "detail", max_length=4096, default=""),
        "ran_at": time_param(run, "ran_at", default=int(time.time())),
    }


@requires(Role.HUNTER)
@admin_write_endpoint
def record_validations(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Store ``runs`` of ``host`` (``{"uuid", "host_identifier", "hostname"}``, as the
    machine enrolls): each ``{"scenario", "name", "kind", "result", "seconds", "agent",
    "finding", "detail", "ran_at"}``."""
    host, runs = body.get("host"), body.get("runs")
    if not isinstance(host, dict):
        raise BadRequest("'host' must be an object with 'uuid' and 'host_identifier'")
    if not isinstance(runs, list) or not runs or len(runs) > MAX_RUNS:
        raise BadRequest(f"'runs' must be a list of 1 to {MAX_RUNS} scenario outcomes")
    checked = [_run(host, run) for run in runs]
    stored = validation_store.record(session, checked, int(time.time()))
    return {"host": checked[0]["host_identifier"], "stored": stored}


@requires(Role.OBSERVER)
@admin_endpoint
def list_validations(request: Request, session: Session) -> dict[str, Any]:
    """Validation runs, newest first, of one host (uuid or identifier) or all."""
    host = text_param(
        request.query_params, "host", max_length=column_length("Validation.host_identifier")
    )
    limit = int_param(request.query_params, "limit", (1, 100_000), default=1000)
    return {
        "validations": [
            {
                "host": v.host_identifier,
                "uuid": v.host_uuid,
                "hostname": v.hostname,
                **ValidationRun.of(v).json(),
                "finding": v.finding,
                "detail": v.detail,
                "recorded_at": iso(v.recorded_at),
            }
            for v in validation_store.history(session, host, limit)
        ]
    }


routes = [
    Route(f"{PREFIX}/coverage", coverage, methods=["GET"]),
    Route(f"{PREFIX}/validations", record_validations, methods=["POST"]),
    Route(f"{PREFIX}/validations", list_validations, methods=["GET"]),
]
