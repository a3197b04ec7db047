"""What goes into the audit trail for an admin API call, and writing it.

Every call that changes something or runs a query (any method but GET) is recorded
with its outcome, and so is every call refused for a missing or wrong token (the token
sent is never written down). The details are the call's query parameters and JSON body,
with any value under a key naming a secret, token or password replaced, and cut to
``MAX_DETAILS`` bytes: the SQL an analyst ran, the targets of a live query, the note of
an acknowledgement. The entry is written after the call is answered, in its own
transaction: a store that cannot take it is logged, and the call's answer stands.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson
from sqlalchemy.orm import Session
from starlette.requests import Request

from fleetctl.server import console_session
from fleetctl.server.state import ServerState, in_session
from storage import audit
from storage import hosts as host_store

log = logging.getLogger("fleetctl.audit")

MAX_DETAILS = 16 * 1024
_HIDDEN = re.compile(r"secret|token|password", re.IGNORECASE)
NOBODY = "-"  # who a call without a valid token came from


def _hidden(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[hidden]" if _HIDDEN.search(str(k)) else _hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hidden(v) for v in value]
    return value


def details(request: Request, body: dict[str, Any] | None) -> dict[str, Any]:
    """The call's parameters and body as recorded: secrets hidden, size bounded."""
    said: dict[str, Any] = {}
    if request.query_params:
        said["params"] = _hidden(dict(request.query_params))
    if body:
        said["body"] = _hidden(body)
    text = orjson.dumps(said)
    if len(text) > MAX_DETAILS:
        return {"cut": len(text), "head": text[:MAX_DETAILS].decode(errors="replace")}
    return said


def token_holder(request: Request, session: Session) -> str:
    """Who acts: the name of the admin token the request came with."""
    name = host_store.token_name(session, console_session.token_digest(request))
    return name or "unknown token"


def outcome(status: int) -> str:
    return "ok" if status < 400 else "refused" if status < 500 else "failed"


def recorded(request: Request, status: int) -> bool:
    """Whether the call goes into the trail: a change or a query, or a refused token."""
    return request.method != "GET" or status == 401


async def record(
    state: ServerState,
    request: Request,
    status: int,
    body: dict[str, Any] | None,
    *,
    authenticated: bool,
) -> None:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    said = details(request, body)

    def write(session: Session) -> None:
        holder = token_holder(request, session) if authenticated else NOBODY
        entry = audit.Entry(
            at=int(time.time()),
            actor=holder,
            token=holder,
            source=request.client.host if request.client else "local",
            action=f"{request.method} {path}",
            target=",".join(f"{k}={v}" for k, v in request.path_params.items())[:512],
            details=said,
            outcome=outcome(status),
            status=status,
        )
        audit.append(session, entry)

    try:
        await in_session(state.sessions, write)
    except Exception:
        log.exception("could not record %s %s in the audit trail", request.method, path)
