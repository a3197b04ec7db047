"""What goes into the audit trail for an admin API call, and writing it.

Every call that changes something or runs a query (any method but GET) is recorded
with its outcome and who made it (user and token name), and so is every call refused
for a missing, wrong, expired or revoked token (the token sent is never written down)
or for a role too low, and every sign-in, under the user name it gave. The details are
the call's query parameters and JSON body, with any value under a key naming a secret,
token or password replaced, and cut to ``MAX_DETAILS`` bytes: the SQL an analyst ran,
the targets of a live query, the note of an acknowledgement. The entry is written after
the call is answered, in its own transaction: a store that cannot take it is logged,
and the call's answer stands. With ``serve --audit-file``, each stored entry is also
appended to that file as a JSON line (``audit_file``).

The command line over the store directly calls the same admin API in its own process
(``local``), so its calls are recorded the same way, by user ``local`` from ``local``;
what it changes on the store without that API (``fleetctl db prune``) it records with
``local_entry``, in the change's own transaction.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from fleetctl.server import audit_file
from fleetctl.server.access import LOCAL, Caller
from fleetctl.server.state import ServerState, in_session
from storage import audit

log = logging.getLogger("fleetctl.audit")

MAX_DETAILS = 16 * 1024
_HIDDEN = re.compile(r"secret|token|password", re.IGNORECASE)
NOBODY = "-"  # who a call without a valid token came from
LOCAL_SOURCE = "local"  # where the command line over the store calls from


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


def source(request: Request) -> str:
    """The address a call came from, as the trail and the sign-in limits name it."""
    return request.client.host if request.client else LOCAL_SOURCE


def local_entry(action: str, details: dict[str, Any], now: int) -> audit.Entry:
    """The entry of a change the command line makes on the store without the admin API
    (``action``: its command), by ``local`` as its admin API calls are; status 0: no HTTP
    call was answered."""
    return audit.Entry(
        at=now,
        actor=LOCAL.user,
        token=LOCAL.token,
        source=LOCAL_SOURCE,
        action=action,
        target="",
        details=details,
        outcome="ok",
        status=0,
    )


def outcome(status: int) -> str:
    return "ok" if status < 400 else "refused" if status < 500 else "failed"


def recorded(request: Request, status: int) -> bool:
    """Whether the call goes into the trail: a change or a query, or a refused token."""
    return request.method != "GET" or status in (401, 403)


async def record(
    state: ServerState,
    request: Request,
    status: int,
    body: dict[str, Any] | None,
    caller: Caller | None,
    *,
    actor: str | None = None,
) -> None:
    """Write the call's entry: by ``caller`` (None: a refused token, or a sign-in, whose
    ``actor`` is the user name it gave)."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    said = details(request, body)

    def write(session: Session) -> tuple[audit.Entry, str]:
        entry = audit.Entry(
            at=int(time.time()),
            actor=caller.user if caller else (actor or NOBODY)[:128],
            token=caller.token if caller else NOBODY,
            source=source(request),
            action=f"{request.method} {path}",
            target=",".join(f"{k}={v}" for k, v in request.path_params.items())[:512],
            details=said,
            outcome=outcome(status),
            status=status,
        )
        return entry, audit.append(session, entry)

    try:
        entry, entry_hash = await in_session(state.sessions, write)
    except Exception:
        log.exception("could not record %s %s in the audit trail", request.method, path)
        return
    if state.settings.audit_file is not None:  # once stored: the file never says more
        await run_in_threadpool(audit_file.append, state.settings.audit_file, entry, entry_hash)
