"""Users and their admin API tokens (session passed in).

Roles are the server's to order and check (``fleetctl.roles``); they are stored here by
name. A token is a user's: it carries its own role, which the server caps at the user's
current role, an optional expiry and, once revoked, the time it was. Only SHA-256
digests of tokens are stored; passwords only as the hash the caller made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from storage.base import ids_by_time
from storage.models import ApiToken
from storage.models import User as User  # the record type users are returned as


class Conflict(ValueError):
    """A name is already taken."""


@dataclass(frozen=True)
class Grant:
    """What a live (not revoked) token allows, as the store says now."""

    token_id: int
    token_name: str
    token_role: str
    expires_at: int | None
    user_id: int
    user_name: str
    user_role: str
    user_disabled: bool


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user: str
    name: str
    role: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


def add_user(session: Session, name: str, role: str, password_hash: str, now: int) -> User:
    if find_user(session, name) is not None:
        raise Conflict(f"a user named {name!r} exists")
    user = User(name=name, role=role, password_hash=password_hash, created_at=now)
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).first()


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def set_role(session: Session, user: User, role: str) -> None:
    user.role = role
    session.flush()


def set_disabled(session: Session, user: User, disabled: bool) -> None:
    user.disabled = disabled
    session.flush()


def set_password(session: Session, user: User, password_hash: str) -> None:
    user.password_hash = password_hash
    session.flush()


def add_token(
    session: Session,
    user: User,
    name: str,
    role: str,
    token_hash: str,
    now: int,
    expires_at: int | None,
) -> ApiToken:
    """A new token of ``user``; its name must not be one of the user's live tokens'."""
    taken = session.scalar(
        select(ApiToken.id).where(
            ApiToken.user_id == user.id, ApiToken.name == name, ApiToken.revoked_at.is_(None)
        )
    )
    if taken is not None:
        raise Conflict(f"{user.name} already has a live token named {name!r}")
    token = ApiToken(
        user_id=user.id,
        name=name,
        role=role,
        token_hash=token_hash,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    return token


def _grants_of(session: Session, *where: Any) -> dict[str, Grant]:
    rows = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.revoked_at.is_(None), *where)
    )
    return {
        token.token_hash: Grant(
            token.id,
            token.name,
            token.role,
            token.expires_at,
            user.id,
            user.name,
            user.role,
            user.disabled,
        )
        for token, user in rows
    }


def grants(session: Session) -> dict[str, Grant]:
    """token digest -> what it allows, for every token not revoked (expired ones too:
    the caller compares the expiry with its clock)."""
    return _grants_of(session)


def grant(session: Session, token_hash: str) -> Grant | None:
    """What the token with this digest allows (None: unknown or revoked)."""
    return _grants_of(session, ApiToken.token_hash == token_hash).get(token_hash)


def has_live_token(session: Session, token_hash: str) -> bool:
    found = session.scalar(
        select(ApiToken.id).where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
    )
    return found is not None


def tokens(session: Session, user: User | None = None) -> list[TokenInfo]:
    """Every token (of ``user``), oldest first, revoked ones included."""
    query = select(ApiToken, User.name).join(User, User.id == ApiToken.user_id)
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return [
        TokenInfo(
            t.id, owner, t.name, t.role, t.created_at, t.expires_at, t.revoked_at, t.last_used_at
        )
        for t, owner in session.execute(query.order_by(ApiToken.id))
    ]


def touch_tokens(session: Session, last_used: Mapping[int, int]) -> None:
    """Record when tokens (by id) were last used (flushed periodically). A time never
    moves back: another server process may flush an older use later."""
    for ts, ids in ids_by_time(last_used):
        session.execute(
            update(ApiToken)
            .where(
                ApiToken.id.in_(ids),
                or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < ts),
            )
            .values(last_used_at=ts)
            .execution_options(synchronize_session=False)
        )


def revoke_token(session: Session, user: User, name: str, now: int) -> int:
    """Revoke ``user``'s live tokens named ``name``; how many."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
