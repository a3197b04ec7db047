"""The web console: its page and static assets at ``/``, and signing in and out.

The console is plain HTML and ES modules shipped in the wheel
(``fleetctl/console/static``, vendored libraries with their licenses under ``vendor/``);
it reads and changes everything through the admin JSON API, with the session cookie of
``console_session`` instead of a bearer token. Every answer of the server carries a
strict Content-Security-Policy (no inline script, nothing from another origin) and
headers that keep browsers from sniffing types or leaking the URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetctl.errors import BadRequest, PayloadTooLarge
from fleetctl.server import console_session
from fleetctl.server.auth import matches_any
from fleetctl.server.body import read_json_object
from fleetctl.server.responses import json_response
from fleetctl.server.state import ServerState, in_session, server_state
from fleetctl.timeutil import iso
from storage import hosts as host_store

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
    """Trade an admin token (JSON ``{"token": ...}``) for the session cookie; repeated
    failures from one address slow down as failed enrollments do."""
    state = server_state(request)
    if not console_session.same_origin(request):
        return json_response({"error": "cross-origin request refused"}, 403)
    address = request.client.host if request.client else "local"
    try:
        token = await _offered_token(request)
    except PayloadTooLarge as exc:
        return json_response({"error": str(exc)}, 413)
    except BadRequest as exc:
        return json_response({"error": str(exc)}, 400)
    if state.throttle.delay(address) > 0 or not matches_any(token, state.token_digests()):
        state.throttle.record(address)
        return json_response({"error": "invalid admin token"}, 401)
    value, held = console_session.issue(state, token)
    response = json_response(await _session_json(state, held))
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


async def _offered_token(request: Request) -> str:
    body = await read_json_object(request, MAX_SIGN_IN_BODY)
    token = body.get("token")
    if not isinstance(token, str) or not token.strip():
        raise BadRequest("'token' must be a non-empty string")
    return token.strip()


async def sign_out(request: Request) -> Response:
    """Clear the cookie. A valid cookie must come with its CSRF nonce, so that another
    site cannot sign an admin out."""
    state = server_state(request)
    held = console_session.read_cookie(state, request)
    if held is not None:
        refused = console_session.authenticate(request, state)
        if refused is not None:
            return refused
    response = json_response({"signed_out": held is not None})
    response.delete_cookie(console_session.COOKIE, path="/", secure=True, httponly=True)
    return response


async def session(request: Request) -> Response:
    """Who is signed in, until when, and the CSRF nonce the page sends with changes."""
    state = server_state(request)
    held = console_session.read_cookie(state, request)
    if held is None:
        return json_response({"error": "not signed in"}, 401)
    return json_response(await _session_json(state, held))


async def _session_json(state: ServerState, held: console_session.ConsoleSession) -> dict[str, Any]:
    name = await in_session(
        state.readonly_sessions, lambda db: host_store.token_name(db, held.token_digest)
    )
    return {"token": name or "unknown token", "expires": iso(held.expires), "csrf": held.csrf}


routes = [
    Route("/", index, methods=["GET", "HEAD"]),
    Route("/console/sign-in", sign_in, methods=["POST"]),
    Route("/console/sign-out", sign_out, methods=["POST"]),
    Route("/console/session", session, methods=["GET"]),
    Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
]
