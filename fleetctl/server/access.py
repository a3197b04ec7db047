"""Who calls the admin API, and whether their role lets them call a route.

``identify`` turns a request (a bearer token, or the web console's cookie) into its
``Caller`` (user, token name, effective role) or refuses it (401); ``requires``
declares, on the handler where the route is defined, the lowest role that may call it.
A handler without a declaration is refused to everyone, so a route added without a
decision fails closed (and the route-by-role test fails).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session
from starlette.requests import Request

from fleetctl.roles import Role
from fleetctl.server import console_session
from fleetctl.server.auth import bearer_token, digest
from fleetctl.server.state import ServerState, server_state
from storage import coordination
from storage.users import Grant

H = TypeVar("H", bound=Callable[..., object])


class Unauthenticated(Exception):
    """No token, or one that is unknown, revoked, expired or of a disabled user."""


@dataclass(frozen=True)
class Caller:
    user: str
    token: str  # the token's name
    role: Role  # the lower of the token's role and its user's current one
    user_id: int | None  # None: the command line over the store directly (``local``)
    expires_at: int | None = None  # when the token ends (None: never)


# The command line over the store directly already holds the store itself.
LOCAL = Caller("local", "local", Role.ADMIN, None)


def identify(request: Request) -> Caller:
    """The caller the request's bearer token, or else its console cookie, stands for.
    A change made with the cookie must also come from the console's own page
    (``console_session.check_change``: ``Forbidden`` otherwise)."""
    state = server_state(request)
    token = bearer_token(request)
    if token:
        return caller_for(state, digest(token))
    held = console_session.read_cookie(state, request)
    if held is None:
        raise Unauthenticated("missing or invalid admin token")
    console_session.check_change(request, held)
    return caller_for(state, held.token_digest)


def caller_for(state: ServerState, key: str) -> Caller:
    """The caller a token digest stands for, if the token is live (401 otherwise)."""
    if key in state.own_token_digests:
        return LOCAL
    grant = state.grant(key)
    if grant is None:
        raise Unauthenticated("missing or invalid admin token")
    if grant.user_disabled:
        raise Unauthenticated(f"user {grant.user_name} is disabled")
    now = int(time.time())
    if grant.expires_at is not None and grant.expires_at <= now:
        raise Unauthenticated(f"token {grant.token_name} has expired: sign in again")
    state.token_uses.seen(grant.token_id, now)
    return caller_of_grant(grant)


def caller_of_grant(grant: Grant) -> Caller:
    """Who a token's grant names, whether or not it is still live (a sign-out is
    recorded under the token it ends)."""
    role = min(Role.named(grant.token_role), Role.named(grant.user_role))
    return Caller(grant.user_name, grant.token_name, role, grant.user_id, grant.expires_at)


def requires(role: Role) -> Callable[[H], H]:
    """Declare the lowest role that may call the decorated admin handler."""

    def declare(handler: H) -> H:
        handler.required_role = role  # type: ignore[attr-defined]
        return handler

    return declare


def required_role(handler: object) -> Role | None:
    """The role ``handler`` declared (None: no decision, refused to everyone)."""
    role = getattr(handler, "required_role", None)
    return role if isinstance(role, Role) else None


def access_changed(request: Request, session: Session, now: int) -> None:
    """After a token or enroll secret is revoked, or a user disabled or given another
    role: tell every server process to read tokens and secrets again, and do so here at
    once (after the commit: a call meanwhile must not read the old state back)."""
    coordination.publish(session, coordination.ACCESS, None, now)
    session.commit()
    server_state(request).forget_grants()


def caller_of(request: Request) -> Caller:
    """The caller of an admin handler (set by the admin endpoint wrappers)."""
    caller: Caller = request.state.caller
    return caller
