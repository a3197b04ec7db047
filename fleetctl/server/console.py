"""The web console: its page and static assets at ``/``, and signing in and out.

The console is plain HTML and ES modules shipped in the wheel
(``fleetctl/console/static``, vendored libraries with their licenses under ``vendor/``);
it reads and changes everything through the admin JSON API, with the session cookie of
``console_session`` instead of a bearer token. Every answer of the server carries a
strict Content-Security-Policy (no inline script, nothing from another origin) and
headers that keep browsers from sniffing types or leaking the URL.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetctl.errors import BadRequest, Forbidden, PayloadTooLarge
from fleetctl.server import access, audit_trail, console_session
from fleetctl.server.access import access_changed
from fleetctl.server.admin_login import count_failure, password_sign_in, refused_while_limited
from fleetctl.server.admin_params import required_text
from fleetctl.server.auth import digest
from fleetctl.server.body import read_json_object
from fleetctl.server.responses import json_response
from fleetctl.server.state import in_session, server_state
from fleetctl.timeutil import iso
from storage import users as user_store

STATIC = Path(__file__).resolve().parent.parent / "console" / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
MAX_SIGN_IN_BODY = 4096
SESSION_TTL = "8h"  # a password sign-in's token lives as long as the session's cookie


class SecurityHeaders:
    """ASGI middleware: the console's security headers on every HTTP answer (the API's
    JSON too, which a browser may be tricked into opening as a page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


async def sign_in(request: Request) -> Response:
    """Sign in to the console: ``{"user": ..., "password": ...}`` makes the user a token
    for this session (revoked on sign-out), as ``fleetctl login`` does; ``{"token": ...}``
    acts with an existing API token. The answer sets the session cookie. Failures are
    slowed down and every attempt is in the audit trail (never its secret)."""
    if not console_session.same_origin(request):
        return json_response({"error": "cross-origin request refused"}, 403)
    try:
        body = await read_json_object(request, MAX_SIGN_IN_BODY)
        if "user" in body:
            user = required_text(body, "user", max_length=128)
            password = required_text(body, "password", max_length=1024)
        else:
            token = required_text(body, "token", max_length=1024).strip()
    except PayloadTooLarge as exc:
        return json_response({"error": str(exc)}, 413)
    except BadRequest as exc:
        return json_response({"error": str(exc)}, 400)
    if "user" in body:
        return await _with_password(request, user, password)
    return await _with_token(request, token)


async def _with_password(request: Request, user: str, password: str) -> Response:
    name = f"console-{secrets.token_hex(4)}"
    said = {"user": user, "name": name, "console": True}
    made = await password_sign_in(request, user, password, name, SESSION_TTL, said)
    if isinstance(made, Response):
        return made
    state = server_state(request)
    value, held = console_session.issue(state, digest(made["token"]), own_token=True)
    return await _signed_in(request, value, held)


async def _with_token(request: Request, token: str) -> Response:
    state = server_state(request)
    said = {"console": True, "with": "token"}
    refused = await refused_while_limited(request, None, said)
    if refused is not None:
        return refused
    key = digest(token)
    try:
        caller = await run_in_threadpool(access.caller_for, state, key)
    except access.Unauthenticated as exc:
        await count_failure(request, None)
        await audit_trail.record(state, request, 401, said, None)
        return json_response({"error": str(exc)}, 401)
    await audit_trail.record(state, request, 200, said, caller)
    value, held = console_session.issue(state, key, own_token=False, expires=caller.expires_at)
    return await _signed_in(request, value, held)


async def _signed_in(
    request: Request, value: str, held: console_session.ConsoleSession
) -> Response:
    response = json_response(await _session_json(request, held))
    response.set_cookie(
        console_session.COOKIE,
        value,
        max_age=console_session.LIFETIME,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


async def sign_out(request: Request) -> Response:
    """Clear the cookie, and revoke the token a password sign-in made for the session;
    the sign-out is in the audit trail. A valid cookie must come with its CSRF nonce, so
    that another site cannot sign a user out."""
    state = server_state(request)
    held = console_session.read_cookie(state, request)
    if held is not None:
        try:
            console_session.check_change(request, held)
        except Forbidden as exc:
            return json_response({"error": str(exc)}, 403)
        await _end(request, held)
    response = json_response({"signed_out": held is not None})
    response.delete_cookie(console_session.COOKIE, path="/", secure=True, httponly=True)
    return response


async def _end(request: Request, held: console_session.ConsoleSession) -> None:
    """Revoke the session's token if the session made it, and record the sign-out under
    that token (a token revoked meanwhile leaves nothing to revoke or to name)."""
    state = server_state(request)
    grant = await run_in_threadpool(state.grant, held.token_digest)
    if grant is None:
        return

    def revoke(session: Session) -> bool:
        user = user_store.find_user(session, grant.user_name)
        now = int(time.time())
        if user is None or not user_store.revoke_token(session, user, grant.token_name, now):
            return False
        access_changed(request, session, now)
        return True

    revoked = held.own_token and await in_session(state.sessions, revoke)
    said = {"console": True, "revoked": revoked}
    await audit_trail.record(state, request, 200, said, access.caller_of_grant(grant))


async def session(request: Request) -> Response:
    """Who is signed in (user, token, role), until when, and the CSRF nonce the page
    sends with changes."""
    held = console_session.read_cookie(server_state(request), request)
    if held is None:
        return json_response({"error": "not signed in"}, 401)
    try:
        return json_response(await _session_json(request, held))
    except access.Unauthenticated as exc:
        return json_response({"error": str(exc)}, 401)


async def _session_json(request: Request, held: console_session.ConsoleSession) -> dict[str, Any]:
    state = server_state(request)
    caller = await run_in_threadpool(access.caller_for, state, held.token_digest)
    return {
        "user": caller.user,
        "token": caller.token,
        "role": caller.role.label,
        "expires": iso(held.expires),
        "csrf": held.csrf,
    }


routes = [
    Route("/", index, methods=["GET", "HEAD"]),
    Route("/console/sign-in", sign_in, methods=["POST"]),
    Route("/console/sign-out", sign_out, methods=["POST"]),
    Route("/console/session", session, methods=["GET"]),
    Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
]
