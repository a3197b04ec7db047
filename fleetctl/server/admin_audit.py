"""Admin API: the audit trail (``GET /api/v1/admin/audit``) and its check
(``GET /api/v1/admin/audit/verify``). What is recorded, and when: ``audit_trail``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.roles import Role
from fleetctl.server.access import requires
from fleetctl.server.admin_api import admin_endpoint
from fleetctl.server.admin_params import int_param, text_param, time_param
from fleetctl.timeutil import iso
from storage import audit

PREFIX = "/api/v1/admin"
MAX_LIMIT = 10_000


def _shown(entry: audit.Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "user": entry.actor,
        "token": entry.token,
        "source": entry.source,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "status": entry.status,
        "details": entry.details,
    }


@requires(Role.ADMIN)
@admin_endpoint
def list_audit(request: Request, session: Session) -> dict[str, Any]:
    """The newest entries (``limit``, 1,000 by default), from ``since``, by ``user``;
    oldest first."""
    params = request.query_params
    found = audit.entries(
        session,
        since=time_param(params, "since"),
        actor=text_param(params, "user", max_length=128),
        limit=int_param(params, "limit", (1, MAX_LIMIT), 1000),
    )
    return {"audit": [_shown(e) for e in found]}


@requires(Role.ADMIN)
@admin_endpoint
def verify_audit(request: Request, session: Session) -> dict[str, Any]:
    """Walk the whole chain: how many entries, and each that breaks it."""
    checked = audit.verify(session)
    return {
        "entries": checked.entries,
        "intact": checked.intact,
        "breaks": [{"id": b.id, "problem": b.problem} for b in checked.breaks],
    }


routes = [
    Route(f"{PREFIX}/audit", list_audit, methods=["GET"]),
    Route(f"{PREFIX}/audit/verify", verify_audit, methods=["GET"]),
]
