"""Who is calling the admin API: a bearer token, or the web console's session cookie.

The console signs in with an admin token once; the answer is a cookie holding no state
on the server: the token's SHA-256 digest, an expiry and a CSRF nonce, signed with a key
kept in the store (``store_secrets``), so that every worker process and replica accepts
it. Each call checks again that the digest is still an admin token's, so revoking the
token ends its console sessions as it ends its bearer calls (within the token cache's
ten seconds, ``ServerState.token_digests``).

A cookie travels with every request the browser makes to this origin, so a change made
with it must prove it comes from the console's own page: the ``X-CSRF-Token`` header
carries the nonce (which only a page of this origin can read, from ``/console/session``),
and the browser's ``Origin`` and ``Sec-Fetch-Site`` headers, when sent, must name this
origin. ``authenticate`` is the one check the admin API's endpoints call.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

from fleetctl.server.auth import bearer_token, digest, matches_any
from fleetctl.server.responses import json_response
from fleetctl.server.state import ServerState
from storage.engine import session_scope
from storage.store_secrets import ensure_secret

COOKIE = "fleetctl_console"
LIFETIME = 8 * 3600
SIGNING_SECRET = "console_signing_key"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
_SALT = "fleetctl-console-session"
_DIGEST_KEY = "fleetctl.token_digest"  # where the scope keeps the caller's token digest


@dataclass(frozen=True)
class ConsoleSession:
    """What a console cookie says: whose token, until when, and the CSRF nonce."""

    token_digest: str
    expires: int
    csrf: str


def serializer(key: str) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt=_SALT)


def signing_key(state: ServerState) -> str:
    """The store's console signing key, read (or made) once per process."""
    if state.console_key is None:
        with session_scope(state.sessions) as session:
            state.console_key = ensure_secret(session, SIGNING_SECRET)
    return state.console_key


def issue(state: ServerState, token: str, now: float | None = None) -> tuple[str, ConsoleSession]:
    """A signed cookie value for a signed-in admin token, and what it holds."""
    now = time.time() if now is None else now
    held = ConsoleSession(digest(token), int(now) + LIFETIME, secrets.token_urlsafe(24))
    value = serializer(signing_key(state)).dumps(
        {"t": held.token_digest, "e": held.expires, "c": held.csrf}
    )
    return value, held


def read_cookie(state: ServerState, request: Request) -> ConsoleSession | None:
    """The session the request's cookie holds, if it is ours, unexpired, and its token
    still valid; None otherwise (forged, expired, revoked or absent)."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    try:
        data: Any = serializer(signing_key(state)).loads(value)
        held = ConsoleSession(str(data["t"]), int(data["e"]), str(data["c"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    if held.expires <= time.time() or not _valid_digest(state, held.token_digest):
        return None
    return held


def _valid_digest(state: ServerState, offered: str) -> bool:
    ok = False
    for stored in state.token_digests():
        ok |= hmac.compare_digest(offered.encode(), stored.encode())
    return ok


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this origin (requests
    without these headers, from non-browser clients, pass: they carry no ambient cookie
    of a victim, and the CSRF header still has to match)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin is None or origin == own


def authenticate(request: Request, state: ServerState) -> Response | None:
    """The admin API's check: None when the caller may go on (and then ``token_digest``
    names its token), else the refusal to answer: 401 without a valid token or cookie,
    403 for a change by cookie without the CSRF nonce or from another origin."""
    token = bearer_token(request)
    if token:
        if not matches_any(token, state.token_digests()):
            return json_response({"error": "missing or invalid admin token"}, 401)
        request.scope[_DIGEST_KEY] = digest(token)
        return None
    held = read_cookie(state, request)
    if held is None:
        return json_response({"error": "missing or invalid admin token"}, 401)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), held.csrf.encode()):
            return json_response({"error": "missing or wrong X-CSRF-Token header"}, 403)
        if not same_origin(request):
            return json_response({"error": "cross-origin request refused"}, 403)
    request.scope[_DIGEST_KEY] = held.token_digest
    return None


def token_digest(request: Request) -> str:
    """The digest of the admin token the request was authenticated with."""
    known: str | None = request.scope.get(_DIGEST_KEY)
    return known if known is not None else digest(bearer_token(request))
