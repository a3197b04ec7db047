"""Admin API for hunts: create, list, show, pause, resume, cancel, delete, results (--diff)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.errors import NotFound, Unavailable
from fleetctl.roles import Role
from fleetctl.server.access import requires
from fleetctl.server.admin_api import admin_endpoint, admin_write_endpoint
from fleetctl.server.admin_params import (
    INT64,
    check_targets,
    column_length,
    column_range,
    flag_param,
    int_field,
    int_param,
    required_text,
    text_param,
)
from fleetctl.server.admin_queries import (
    MAX_TIMEOUT,
    check_query_sql,
    check_targets_have_tables,
)
from fleetctl.server.hunts import next_run, trigger_for
from fleetctl.server.state import server_state
from fleetctl.targeting import targeted
from fleetctl.timeutil import format_duration, iso
from storage import campaigns as campaign_store
from storage import hunt_results as hunt_result_store
from storage import hunts as hunt_store
from storage import packs as pack_store
from storage.campaigns import TargetError
from storage.hunts import Hunt

PREFIX = "/api/v1/admin"
MAX_EVERY = 366 * 86400
RESULTS_PAGE = 100_000
# A run's target states, as ``hunt show`` counts them; ``skipped`` hosts lack a table the
# hunt reads and are never sent it.
RUN_STATES = ("queued", "sent", "done", "failed", "expired", "skipped")


def _service(request: Request) -> Any:
    state = server_state(request)
    if not state.serves_hosts:
        raise Unavailable("a hunt fires on hosts online: it needs a running server")
    if state.hunts is None:
        raise ValueError("the hunt scheduler is not running")
    return state.hunts


def _hunt(session: Session, name: str) -> Hunt:
    hunt = hunt_store.hunt_named(session, name)
    if hunt is None:
        raise NotFound(f"no hunt {name!r}")
    return hunt


def _sql_from(session: Session, body: dict[str, Any]) -> str:
    if (body.get("sql") is None) == (body.get("query") is None):
        raise ValueError("give exactly one of 'sql' and 'query' (PACK/QUERY)")
    if body.get("sql") is not None:
        return check_query_sql(body["sql"])
    pack_name, _, query_name = required_text(body, "query").partition("/")
    stored = pack_store.get_pack(session, pack_name)
    if stored is None or stored.body is None:
        raise NotFound(f"no pack {pack_name!r}")
    try:
        return targeted(stored).pack.query(query_name).query
    except KeyError as exc:
        raise NotFound(f"pack {pack_name!r} has no query {query_name!r}") from exc


@requires(Role.HUNTER)
@admin_write_endpoint
def create_hunt(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    service = _service(request)  # before anything is written
    name = required_text(body, "name", max_length=column_length("Hunt.name"))
    if hunt_store.hunt_named(session, name) is not None:
        raise ValueError(f"a hunt named {name!r} exists")
    sql = _sql_from(session, body)
    schedules = [(k, body[k]) for k in ("cron", "every", "once") if body.get(k) is not None]
    if len(schedules) != 1:
        raise ValueError("give exactly one of 'cron', 'every' (seconds) and 'once'")
    kind = schedules[0][0]
    value = _schedule_value(body, kind)
    trigger_for(kind, value, time.time())  # refuses a bad cron expression now
    targets = check_targets(
        text_param(body, "targets", max_length=column_length("Hunt.targets"), default="all")
    )
    try:
        host_ids = campaign_store.resolve_targets(session, targets)
    except TargetError as exc:
        raise NotFound(str(exc)) from exc
    check_targets_have_tables(session, sql, host_ids, body, "hunt")
    default_expiry = min(int(value), MAX_TIMEOUT) if kind == "every" else 86400
    expires = int_field(body, "expires", (1, MAX_TIMEOUT), default=default_expiry)
    hunt = hunt_store.add_hunt(
        session,
        name=name,
        sql=sql,
        targets=targets,
        schedule_kind=kind,
        schedule=value,
        expires=expires,
        now=int(time.time()),
    )
    session.commit()  # the scheduler may fire at once and must find the hunt
    service.schedule(hunt)
    return {"hunt": _hunt_json(session, hunt)}


def _schedule_value(body: dict[str, Any], kind: str) -> str:
    """The stored schedule: a cron expression, seconds between runs, or nothing."""
    if kind == "cron":
        return required_text(body, "cron", max_length=column_length("Hunt.schedule"))
    if kind == "every":
        return str(int_field(body, "every", (1, MAX_EVERY)))
    return ""


def _schedule_text(hunt: Hunt) -> str:
    if hunt.schedule_kind == "every":
        return f"every {format_duration(int(hunt.schedule))}"
    return f"{hunt.schedule_kind} {hunt.schedule}".strip()


def _hunt_json(session: Session, hunt: Hunt) -> dict[str, Any]:
    runs = hunt_store.runs(session, hunt.id)
    return {
        "name": hunt.name,
        "state": hunt.state,
        "schedule": _schedule_text(hunt),
        "targets": hunt.targets,
        "expires": format_duration(hunt.expires),
        "sql": hunt.sql,
        "runs": len(runs),
        "last_run": iso(runs[-1].fired_at) if runs else None,
        "next_run": iso(next_run(hunt, bool(runs), time.time())),
    }


@requires(Role.OBSERVER)
@admin_endpoint
def list_hunts(request: Request, session: Session) -> dict[str, Any]:
    return {"hunts": [_hunt_json(session, h) for h in hunt_store.list_hunts(session)]}


@requires(Role.OBSERVER)
@admin_endpoint
def show_hunt(request: Request, session: Session) -> dict[str, Any]:
    hunt = _hunt(session, request.path_params["name"])
    runs = []
    for run in hunt_store.runs(session, hunt.id):
        counts = campaign_store.counts(session, run.campaign_id, online_since=0).states
        runs.append(
            {
                "run": run.run,
                "fired": iso(run.fired_at),
                **{s: counts.get(s, 0) for s in RUN_STATES},
            }
        )
    return {"hunt": _hunt_json(session, hunt), "runs": runs}


def _state_change(request: Request, session: Session, new_state: str) -> dict[str, Any]:
    service = _service(request)  # before anything is written
    hunt = _hunt(session, request.path_params["name"])
    if hunt.state == "cancelled":
        raise ValueError(f"hunt {hunt.name!r} is cancelled")
    hunt.state = new_state
    if new_state == "cancelled":
        now = int(time.time())
        for hunt_run in hunt_store.runs(session, hunt.id):
            campaign = campaign_store.get_campaign(session, hunt_run.campaign_id)
            if campaign is not None and campaign.expires_at > now:
                campaign.expires_at = now
        campaign_store.expire(session, now)
    # Commit before touching the job store: on SQLite it takes the write lock itself.
    session.commit()
    {"paused": service.pause, "active": service.resume, "cancelled": service.cancel}[new_state](
        hunt
    )
    return {"hunt": _hunt_json(session, hunt)}


@requires(Role.HUNTER)
@admin_write_endpoint
def pause_hunt(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    return _state_change(request, session, "paused")


@requires(Role.HUNTER)
@admin_write_endpoint
def resume_hunt(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    return _state_change(request, session, "active")


@requires(Role.HUNTER)
@admin_write_endpoint
def cancel_hunt(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    return _state_change(request, session, "cancelled")


@requires(Role.HUNTER)
@admin_write_endpoint
def delete_hunt(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Delete a hunt in any state with its runs and their answers; its name is free again."""
    service = _service(request)
    hunt = _hunt(session, request.path_params["name"])
    name = hunt.name
    campaign_ids = hunt_store.delete_hunt(session, hunt)
    # Commit before touching the job store: on SQLite it takes the write lock itself.
    session.commit()
    service.cancel(hunt)
    server_state(request).campaigns.forget(campaign_ids)
    return {"hunt": name, "action": "deleted", "runs": len(campaign_ids)}


@requires(Role.OBSERVER)
@admin_endpoint
def hunt_results(request: Request, session: Session) -> dict[str, Any]:
    """One page of a run's rows (default: the latest run), optionally only rows new on
    each host since its previous answered run."""
    params = request.query_params
    wanted = int_param(params, "run", column_range("HuntRun.run", low=1))
    offset = int_param(params, "offset", (0, INT64[1]), default=0)
    limit = int_param(params, "limit", (1, RESULTS_PAGE), default=1000)
    diff = flag_param(params, "diff")
    hunt = _hunt(session, request.path_params["name"])
    runs = {r.run: r for r in hunt_store.runs(session, hunt.id)}
    if not runs:
        return {"run": None, "rows": [], "total": 0, "offset": 0, "failed": [], "skipped": []}
    number = max(runs) if wanted is None else wanted
    if number not in runs:
        raise NotFound(f"hunt {hunt.name!r} has no run {number}")
    page = hunt_result_store.run_rows(
        session,
        hunt_id=hunt.id,
        run=number,
        campaign_id=runs[number].campaign_id,
        diff=diff,
        offset=offset,
        limit=limit,
    )
    campaign_id = runs[number].campaign_id
    failed = campaign_store.host_messages(session, campaign_id, "failed")
    skipped = campaign_store.host_messages(session, campaign_id, "skipped")
    return {
        "run": number,
        "total": page.total,
        "offset": offset,
        "rows": page.rows,
        "failed": [{"host": host, "error": message} for host, message in failed],
        "skipped": [{"host": host, "reason": message} for host, message in skipped],
    }


routes = [
    Route(f"{PREFIX}/hunts", list_hunts, methods=["GET"]),
    Route(f"{PREFIX}/hunts", create_hunt, methods=["POST"]),
    Route(f"{PREFIX}/hunts/{{name}}", show_hunt, methods=["GET"]),
    Route(f"{PREFIX}/hunts/{{name}}/pause", pause_hunt, methods=["POST"]),
    Route(f"{PREFIX}/hunts/{{name}}/resume", resume_hunt, methods=["POST"]),
    Route(f"{PREFIX}/hunts/{{name}}/cancel", cancel_hunt, methods=["POST"]),
    Route(f"{PREFIX}/hunts/{{name}}", delete_hunt, methods=["DELETE"]),
    Route(f"{PREFIX}/hunts/{{name}}/results", hunt_results, methods=["GET"]),
]
