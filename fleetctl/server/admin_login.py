"""Admin API: signing in. ``POST /api/v1/admin/login`` with ``user`` and ``password``
(and optionally the new token's ``name`` and ``ttl``) answers a new token of that user,
with the user's role, expiring after ``ttl`` (12 h by default, 24 h at most: a signed-in
session always ends, and a token it makes ends no later). Signing in again under the
same token name replaces that token.

Failures are limited (``sign_in_limits``, counted in the store for every server
process): past five in a minute from one address, or for one user name from the
addresses that failed for it, a sign-in is refused with 429 before its password is even
checked. Every attempt is in the audit trail, under the user name it gave; never its
password.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fleetctl.errors import BadRequest
from fleetctl.roles import Role
from fleetctl.server import audit_trail
from fleetctl.server.access import Caller, access_changed
from fleetctl.server.admin_params import check_body, check_request_text, required_text, text_param
from fleetctl.server.admin_tokens import lifetime, make_token
from fleetctl.server.body import read_json_object
from fleetctl.server.passwords import verify_password
from fleetctl.server.responses import json_response
from fleetctl.server.sign_in_limits import LIMITS
from fleetctl.server.state import in_session, server_state
from storage import users as user_store

PREFIX = "/api/v1/admin"
DEFAULT_TTL = "12h"
LONGEST_SESSION = 24 * 3600
DEFAULT_NAME = "login"
REFUSED = "wrong user name or password"


async def refused_while_limited(
    request: Request, user: str | None, said: dict[str, Any]
) -> Response | None:
    """The 429 answer, recorded in the audit trail with ``said``, while sign-ins from the
    request's address (as ``user``, if named) are refused; None when one may go on."""
    state = server_state(request)
    address, now = audit_trail.source(request), int(time.time())
    wait = await in_session(
        state.readonly_sessions, partial(LIMITS.retry_after, address=address, user=user, now=now)
    )
    if not wait:
        return None
    await audit_trail.record(state, request, 429, said, None, actor=user)
    answer = {"error": f"too many failed sign-ins: try again in {wait} s"}
    return json_response(answer, 429, headers={"Retry-After": str(wait)})


async def count_failure(request: Request, user: str | None) -> None:
    """Count a failed sign-in from the request's address (for ``user``, if named) where
    every server process reads it."""
    address, now = audit_trail.source(request), int(time.time())
    state = server_state(request)
    await in_session(state.sessions, partial(LIMITS.failed, address=address, user=user, now=now))


async def login(request: Request) -> Response:
    state = server_state(request)
    try:
        check_request_text(request)
        body = await read_json_object(request, state.settings.max_body)
        check_body(body)
        user = required_text(body, "user", max_length=128)
        password = required_text(body, "password", max_length=1024)
        name = text_param(body, "name", max_length=128, default=DEFAULT_NAME)
        ttl = text_param(body, "ttl", max_length=32, default=DEFAULT_TTL)
        lifetime(ttl, LONGEST_SESSION)  # refused before the password is looked at
    except (BadRequest, ValueError) as exc:
        return json_response({"error": str(exc)}, 400)
    said = {k: v for k, v in body.items() if k != "password"}
    made = await password_sign_in(request, user, password, name, ttl, said)
    return made if isinstance(made, Response) else json_response(made)


async def password_sign_in(
    request: Request, user: str, password: str, name: str, ttl: str, said: dict[str, Any]
) -> dict[str, Any] | Response:
    """Check ``user``'s password and make them a token named ``name`` (the token's JSON,
    secret included), or the refusal to answer (401, or 429 while slowed down). Every
    attempt goes to the audit trail with ``said`` (the request without its password).
    The web console signs in through here too."""
    state = server_state(request)
    refused = await refused_while_limited(request, user, said)
    if refused is not None:
        return refused

    def stored_hash(session: Session) -> str | None:
        found = user_store.find_user(session, user)
        return None if found is None or found.disabled else found.password_hash

    def issue(session: Session) -> dict[str, Any] | None:
        found = user_store.find_user(session, user)
        if found is None or found.disabled:  # disabled meanwhile
            return None
        now = int(time.time())
        if user_store.revoke_token(session, found, name, now):
            access_changed(request, session, now)
        expires_at = now + lifetime(ttl, LONGEST_SESSION)
        return make_token(session, found, name, Role.named(found.role), now, expires_at)

    # The hash is checked outside any transaction: argon2 takes tens of milliseconds.
    known = await in_session(state.readonly_sessions, stored_hash)
    matched = await run_in_threadpool(verify_password, known, password)
    made = await in_session(state.sessions, issue) if matched else None
    if made is None:
        await count_failure(request, user)
        await audit_trail.record(state, request, 401, said, None, actor=user)
        return json_response({"error": REFUSED}, 401)
    caller = Caller(made["user"], made["name"], Role.named(made["role"]), None)
    await audit_trail.record(state, request, 200, said, caller)
    return made


routes = [Route(f"{PREFIX}/login", login, methods=["POST"])]
