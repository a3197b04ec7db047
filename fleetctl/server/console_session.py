"""The web console's session cookie.

Signing in to the console (with a user name and password, or with an API token) answers
a cookie holding no state on the server: the digest of the token the session acts with,
an expiry, a CSRF nonce and whether the token was made for this session; signed with a
key kept in the store (``store_secrets``), so that every worker process and replica
accepts it. Whose token it is, its role and whether it is still live are decided on
every call as for a bearer token (``access.caller_for``), so revoking the token, or
disabling its user, ends the console sessions that use it.

A cookie travels with every request the browser makes to this origin, so a change made
with it must prove it comes from the console's own page: the ``X-CSRF-Token`` header
carries the nonce (which only a page of this origin can read, from ``/console/session``),
and the browser's ``Origin`` and ``Sec-Fetch-Site`` headers, when sent, must name this
origin (``check_change``).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request

from fleetctl.errors import Forbidden
from fleetctl.server.state import ServerState
from storage.engine import session_scope
from storage.store_secrets import ensure_secret

COOKIE = "fleetctl_console"
LIFETIME = 8 * 3600
SIGNING_SECRET = "console_signing_key"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
_SALT = "fleetctl-console-session"


@dataclass(frozen=True)
class ConsoleSession:
    """What a console cookie says: whose token, until when, the CSRF nonce, and whether
    the token was made for this session (signing out then revokes it)."""

    token_digest: str
    expires: int
    csrf: str
    own_token: bool = False


def serializer(key: str) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt=_SALT)


def signing_key(state: ServerState) -> str:
    """The store's console signing key, read (or made) once per process."""
    if state.console_key is None:
        with session_scope(state.sessions) as session:
            state.console_key = ensure_secret(session, SIGNING_SECRET)
    return state.console_key


def issue(
    state: ServerState,
    token_digest: str,
    *,
    own_token: bool,
    expires: int | None = None,
    now: float | None = None,
) -> tuple[str, ConsoleSession]:
    """A signed cookie value for a session acting with the token of ``token_digest``,
    and what it holds; it ends at ``expires`` when that comes before ``LIFETIME``."""
    now = time.time() if now is None else now
    end = int(now) + LIFETIME if expires is None else min(expires, int(now) + LIFETIME)
    held = ConsoleSession(token_digest, end, secrets.token_urlsafe(24), own_token)
    value = serializer(signing_key(state)).dumps(
        {"t": held.token_digest, "e": held.expires, "c": held.csrf, "o": held.own_token}
    )
    return value, held


def read_cookie(state: ServerState, request: Request) -> ConsoleSession | None:
    """The session the request's cookie holds, if it is ours and unexpired; None
    otherwise (forged, expired or absent). Whether its token is still live is the
    caller's check (``access.caller_for``)."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    try:
        data: Any = serializer(signing_key(state)).loads(value)
        held = ConsoleSession(str(data["t"]), int(data["e"]), str(data["c"]), bool(data["o"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    return held if held.expires > time.time() else None


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


def check_change(request: Request, held: ConsoleSession) -> None:
    """Refuse (``Forbidden``) a change made with the cookie that does not carry the
    session's CSRF nonce or that another origin sent."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), held.csrf.encode()):
        raise Forbidden("missing or wrong X-CSRF-Token header")
    if not same_origin(request):
        raise Forbidden("cross-origin request refused")
