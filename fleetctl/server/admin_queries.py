"""Admin API for live queries: start a campaign, follow its answers.

A live query targets hosts (``all``, ``platform:P``, ``label:L``, ``host:H``); hosts
receive it at their next ``distributed/read`` until it expires; answers (rows, or
osquery's error message) are kept per host. A host counts as online when it checked in
within ``ONLINE_WINDOW`` seconds, so a client can stop waiting once every online target
has answered.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.errors import NotFound
from fleetctl.packs.validate import validate_text
from fleetctl.server.admin_api import Invalid, admin_endpoint, admin_write_endpoint
from fleetctl.server.state import server_state
from fleetctl.timeutil import iso
from storage import campaigns as campaign_store
from storage.campaigns import Pending, TargetError
from storage.models import Campaign, Host

PREFIX = "/api/v1/admin"
ONLINE_WINDOW = 90
MAX_TIMEOUT = 7 * 86400


def check_query_sql(sql: Any) -> str:
    """The SQL must compile against osquery's schema (any platform) before it is sent."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError("'sql' must be a non-empty string")
    doc = {"queries": {"live": {"query": sql, "interval": 60}}}
    errors = validate_text(json.dumps(doc), "<live query>", "live")
    if errors:
        raise Invalid(
            "the query does not validate against osquery's tables", [e.as_row() for e in errors]
        )
    return sql


def _online(session: Session, host_ids: list[int], now: int) -> set[int]:
    if not host_ids:
        return set()
    return set(
        session.scalars(
            select(Host.id).where(Host.id.in_(host_ids), Host.last_seen >= now - ONLINE_WINDOW)
        )
    )


@admin_write_endpoint
def start_query(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    sql = check_query_sql(body.get("sql"))
    targets = body.get("targets", "all")
    timeout = body.get("timeout", 60)
    if not isinstance(targets, str):
        raise ValueError("'targets' must be a string such as all, platform:linux, label:L")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"'timeout' must be seconds from 1 to {MAX_TIMEOUT}")
    try:
        host_ids = campaign_store.resolve_targets(session, targets)
    except TargetError as exc:
        raise NotFound(str(exc)) from exc
    now = int(time.time())
    campaign = campaign_store.create_campaign(
        session,
        kind="live",
        name=str(body.get("name") or ""),
        sql=sql,
        targets=targets,
        host_ids=host_ids,
        now=now,
        expires_at=now + timeout,
    )
    session.flush()
    server_state(request).campaigns.add(
        [Pending(campaign.id, h, sql, campaign.expires_at) for h in host_ids]
    )
    return {
        "id": campaign.id,
        "targeted": len(host_ids),
        "online": len(_online(session, host_ids, now)),
        "expires": iso(campaign.expires_at),
    }


@admin_endpoint
def show_query(request: Request, session: Session) -> dict[str, Any]:
    campaign = session.get(Campaign, int(request.path_params["id"]))
    if campaign is None:
        raise NotFound(f"no query {request.path_params['id']}")
    now = int(time.time())
    answers = campaign_store.answers(session, campaign.id)
    online = _online(session, [t.host_id for t, _ in answers], now)
    finished = {"done", "failed"}
    return {
        "id": campaign.id,
        "sql": campaign.sql,
        "targets": campaign.targets,
        "expired": campaign.expires_at <= now,
        "targeted": len(answers),
        "online": len(online),
        "answered": sum(1 for t, _ in answers if t.state in finished),
        "online_answered": sum(
            1 for t, _ in answers if t.state in finished and t.host_id in online
        ),
        "hosts": [
            {
                "host": ident,
                "state": t.state,
                "message": t.message,
                "rows": t.rows or [],
                "answered": iso(t.done_at),
            }
            for t, ident in answers
        ],
    }


routes = [
    Route(f"{PREFIX}/queries", start_query, methods=["POST"]),
    Route(f"{PREFIX}/queries/{{id:int}}", show_query, methods=["GET"]),
]
