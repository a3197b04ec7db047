"""Admin API: tokens. ``POST /tokens`` makes one (shown once), ``GET /tokens`` lists them,
``DELETE /tokens/{name}`` revokes one. Anyone manages their own tokens; only an admin
another user's (``user``). A token's role is at most its user's, and at most the role of
the caller who makes it; and it expires no later than the caller's own token, so a
stolen session cannot leave behind a token that outlasts it. ``ttl`` is a duration up to
a year, 30 days without one (or less: at most the caller's own token's time left);
``never`` is an admin's choice, and so only made with a token that itself never expires
(the first admin's ``fleetctl-cli`` token, or the command line over the store).

A revocation takes effect at once in this process and, through a change event, in the
other server processes at their next read of the events (about a second).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.errors import BadRequest, Forbidden, NotFound
from fleetctl.roles import Role
from fleetctl.server.access import Caller, access_changed, caller_of, requires
from fleetctl.server.admin_api import admin_endpoint, admin_write_endpoint
from fleetctl.server.admin_params import column_length, required_text, text_param
from fleetctl.server.auth import digest, new_secret
from fleetctl.timeutil import format_duration, iso, parse_duration, shown
from storage import users as user_store
from storage.users import TokenInfo, User

PREFIX = "/api/v1/admin"
DEFAULT_TTL = 30 * 86_400  # a token made on purpose (a script's, a CI job's)
LONGEST_TTL = 365 * 86_400
NEVER = "never"


def user_for(session: Session, caller: Caller, name: str | None) -> User:
    """The user a call acts on: the caller, or (an admin only) the one named."""
    if name is None or name == caller.user:
        if caller.user_id is None:
            raise BadRequest("name the user with 'user' (the command line has none of its own)")
        name = caller.user
    elif caller.role < Role.ADMIN:
        raise Forbidden(f"only an admin manages another user's tokens ({caller.user} is not)")
    user = user_store.find_user(session, name)
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


def lifetime(ttl: str, longest: int) -> int:
    """The seconds ``ttl`` says (a duration), refused unless from 1 s to ``longest``: every
    token made on request ends, within a bound."""
    try:
        seconds = parse_duration(ttl)
    except ValueError:
        seconds = 0
    if not 0 < seconds <= longest:
        raise BadRequest(
            f"'ttl' must be a duration from 1s to {format_duration(longest)}, not {shown(ttl)}"
        )
    return seconds


def token_expiry(ttl: str | None, caller: Caller, now: int) -> int | None:
    """When a token ``caller`` makes now expires (None: never): after ``ttl``, a duration
    up to a year or ``never`` (an admin's choice); without one, after 30 days or when the
    caller's own token does, if sooner. Never after the caller's own token."""
    own = caller.expires_at
    if ttl is None:
        return now + DEFAULT_TTL if own is None else min(now + DEFAULT_TTL, own)
    if ttl == NEVER and caller.role < Role.ADMIN:
        raise Forbidden(f"only an admin makes a token that never expires ({caller.user} is not)")
    expires = None if ttl == NEVER else now + lifetime(ttl, LONGEST_TTL)
    if own is not None and (expires is None or expires > own):
        raise Forbidden(
            f"a token cannot outlive the one that makes it: {caller.token} expires at {iso(own)}"
        )
    return expires


def token_role(wanted: str | None, user: User, caller: Caller) -> Role:
    """The role of a new token: as asked, at most the user's and the caller's."""
    ceiling = min(Role.named(user.role), caller.role)
    if wanted is None:
        return ceiling
    role = Role.named(wanted)
    if role > ceiling:
        raise Forbidden(f"a token of {user.name} made by {caller.user} is at most {ceiling.label}")
    return role


def make_token(
    session: Session, user: User, name: str, role: Role, now: int, expires_at: int | None
) -> dict[str, Any]:
    """Store a new token of ``user``; the answer that shows it, once."""
    token = new_secret()
    user_store.add_token(session, user, name, role.label, digest(token), now, expires_at)
    return {
        "token": token,
        "user": user.name,
        "name": name,
        "role": role.label,
        "expires_at": iso(expires_at),
    }


def token_json(token: TokenInfo, now: int) -> dict[str, Any]:
    state = "revoked" if token.revoked_at is not None else "live"
    if state == "live" and token.expires_at is not None and token.expires_at <= now:
        state = "expired"
    return {
        "id": token.id,
        "user": token.user,
        "name": token.name,
        "role": token.role,
        "state": state,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "revoked_at": iso(token.revoked_at),
        "last_used_at": iso(token.last_used_at),
    }


@requires(Role.OBSERVER)
@admin_write_endpoint
def create_token(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    caller = caller_of(request)
    user = user_for(session, caller, text_param(body, "user", max_length=128))
    name = required_text(body, "name", max_length=column_length("ApiToken.name"))
    now = int(time.time())
    role = token_role(text_param(body, "role", max_length=16), user, caller)
    expires_at = token_expiry(text_param(body, "ttl", max_length=32), caller, now)
    try:
        return make_token(session, user, name, role, now, expires_at)
    except user_store.Conflict as exc:
        raise BadRequest(str(exc)) from None


@requires(Role.OBSERVER)
@admin_endpoint
def list_tokens(request: Request, session: Session) -> dict[str, Any]:
    """The caller's tokens; an admin's call lists everyone's, or ``user``'s."""
    caller = caller_of(request)
    named = text_param(request.query_params, "user", max_length=128)
    everyone = caller.role == Role.ADMIN and named is None
    user = None if everyone else user_for(session, caller, named)
    now = int(time.time())
    return {"tokens": [token_json(t, now) for t in user_store.tokens(session, user)]}


@requires(Role.OBSERVER)
@admin_write_endpoint
def revoke_token(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    caller = caller_of(request)
    user = user_for(session, caller, text_param(request.query_params, "user", max_length=128))
    name = request.path_params["name"]
    now = int(time.time())
    if not user_store.revoke_token(session, user, name, now):
        raise NotFound(f"{user.name} has no live token named {name!r}")
    access_changed(request, session, now)
    return {"user": user.name, "name": name, "revoked_at": iso(now)}


routes = [
    Route(f"{PREFIX}/tokens", create_token, methods=["POST"]),
    Route(f"{PREFIX}/tokens", list_tokens, methods=["GET"]),
    Route(f"{PREFIX}/tokens/{{name}}", revoke_token, methods=["DELETE"]),
]
