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

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.errors import NotFound, Unavailable
from fleetctl.packs.validate import validate_text
from fleetctl.roles import Role
from fleetctl.server.access import requires
from fleetctl.server.admin_api import ONLINE_WINDOW, Invalid, admin_endpoint, admin_write_endpoint
from fleetctl.server.admin_params import (
    check_targets,
    column_length,
    column_range,
    flag_param,
    int_field,
    int_param,
    text_param,
    time_param,
)
from fleetctl.server.state import server_state
from fleetctl.server.table_check import hosts_lacking_tables
from fleetctl.timeutil import iso
from storage import campaigns as campaign_store
from storage.campaigns import Pending, TargetError

PREFIX = "/api/v1/admin"
MAX_TIMEOUT = 7 * 86400


def check_query_sql(sql: Any) -> str:
    """The SQL must compile against osquery's schema (any platform) before it is sent."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError("'sql' must be a non-empty string")
    # A pack reading an extension table needs a discovery query; a live query's stand-in
    # is ``check_targets_have_tables``, which sends it only where the tables are.
    doc = {
        "discovery": ["SELECT 1 FROM osquery_registry WHERE registry = 'table'"],
        "queries": {"live": {"query": sql, "interval": 60}},
    }
    errors = validate_text(json.dumps(doc), "<live query>", "live")
    if errors:
        raise Invalid(
            "the query does not validate against osquery's tables", [e.as_row() for e in errors]
        )
    return sql


def check_targets_have_tables(
    session: Session, sql: str, host_ids: list[int], body: dict[str, Any], what: str
) -> dict[int, tuple[str, str]]:
    """The targets lacking a table ``sql`` reads; refused (nothing sent, nothing stored)
    unless the request says ``skip_missing``, with one detail line per such host."""
    lacking = hosts_lacking_tables(session, sql, host_ids)
    if lacking and not flag_param(body, "skip_missing"):
        raise Invalid(
            f"{len(lacking)} of {len(host_ids)} targeted hosts lack a table the {what} reads;"
            " nothing was sent (narrow the targets, or --skip-missing to send to the others)",
            [{"host": host, "message": f"{host}: {why}"} for host, why in lacking.values()],
        )
    return lacking


@requires(Role.HUNTER)
@admin_write_endpoint
def start_query(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    if not server_state(request).serves_hosts:
        raise Unavailable("a live query needs a running server: start one with `fleetctl serve`")
    sql = check_query_sql(body.get("sql"))
    targets = check_targets(
        text_param(body, "targets", max_length=column_length("Campaign.targets"), default="all")
    )
    timeout = int_field(body, "timeout", (1, MAX_TIMEOUT), default=60)
    name = text_param(body, "name", max_length=column_length("Campaign.name"), default="")
    try:
        host_ids = campaign_store.resolve_targets(session, targets)
    except TargetError as exc:
        raise NotFound(str(exc)) from exc
    lacking = check_targets_have_tables(session, sql, host_ids, body, "query")
    host_ids = [h for h in host_ids if h not in lacking]
    now = int(time.time())
    campaign = campaign_store.create_campaign(
        session,
        kind="live",
        name=name,
        sql=sql,
        targets=targets,
        host_ids=host_ids,
        now=now,
        expires_at=now + timeout,
    )
    answer = {
        "id": campaign.id,
        "targeted": len(host_ids),
        "online": sum(
            campaign_store.counts(session, campaign.id, now - ONLINE_WINDOW).online.values()
        ),
        "expires": iso(campaign.expires_at),
    }
    # Hosts may get the query the moment it is queued: its targets must be committed
    # first, or a quick answer finds no target row to update.
    session.commit()
    server_state(request).campaigns.add(
        [Pending(campaign.id, h, sql, campaign.expires_at) for h in host_ids]
    )
    return answer


@requires(Role.HUNTER)
@admin_endpoint
def show_query(request: Request, session: Session) -> dict[str, Any]:
    """Progress and answers. ``?since=T`` lists only answers stored at or after T (a
    unix time; ``cursor`` is the latest answer's), so following a query over thousands of
    hosts costs each answer once, not once per poll; without it every target is listed
    with its state."""
    campaign_id = int_param(request.path_params, "id", column_range("Campaign.id", low=1))
    campaign = None if campaign_id is None else campaign_store.get_campaign(session, campaign_id)
    if campaign is None:
        raise NotFound(f"no query {campaign_id}")
    since = time_param(request.query_params, "since")
    now = int(time.time())
    counts = campaign_store.counts(session, campaign.id, now - ONLINE_WINDOW)
    return {
        "id": campaign.id,
        "sql": campaign.sql,
        "targets": campaign.targets,
        "expired": campaign.expires_at <= now,
        "targeted": sum(counts.states.values()),
        "online": sum(counts.online.values()),
        "answered": counts.answered,
        "online_answered": counts.online_answered,
        "states": counts.states,
        "cursor": counts.last_answer_at,
        "hosts": [
            {
                "host_id": t.host_id,
                "host": ident,
                "state": t.state,
                "message": t.message,
                "rows": t.rows or [],
                "answered": iso(t.done_at),
            }
            for t, ident in campaign_store.answers(session, campaign.id, since)
        ],
    }


routes = [
    Route(f"{PREFIX}/queries", start_query, methods=["POST"]),
    Route(f"{PREFIX}/queries/{{id:int}}", show_query, methods=["GET"]),
]
