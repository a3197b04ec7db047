"""Failed sign-ins (session passed in): written as they happen, read back by address, by
user name or both, so that every server process counts the same failures.

The table stays small: each write first forgets the failures older than the caller's
window, and then all but the newest ``keep`` failures, whatever their age (a spray of
failures from many addresses must not grow it without bound).
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.models import SignInFailure

ADDRESS_LENGTH = 64
USER_LENGTH = 128


def record_failure(
    session: Session, address: str, user: str | None, now: int, *, forget_before: int, keep: int
) -> None:
    """Write a failure from ``address`` for ``user`` (None: no user name), after forgetting
    those at or before ``forget_before`` and all but the newest ``keep``."""
    session.execute(delete(SignInFailure).where(SignInFailure.at <= forget_before))
    newest = session.scalar(select(func.max(SignInFailure.id)))
    if newest is not None and newest >= keep:
        session.execute(delete(SignInFailure).where(SignInFailure.id <= newest - keep + 1))
    session.add(
        SignInFailure(
            at=now,
            address=address[:ADDRESS_LENGTH],
            user_name=None if user is None else user[:USER_LENGTH],
        )
    )
    session.flush()


def failure_times(
    session: Session,
    since: int,
    limit: int,
    *,
    address: str | None = None,
    user: str | None = None,
) -> list[int]:
    """When the newest ``limit`` failures after ``since`` happened, newest first: those
    from ``address``, for ``user``, or (both given) from that address for that user."""
    query = select(SignInFailure.at).where(SignInFailure.at > since)
    if address is not None:
        query = query.where(SignInFailure.address == address[:ADDRESS_LENGTH])
    if user is not None:
        query = query.where(SignInFailure.user_name == user[:USER_LENGTH])
    found = session.scalars(query.order_by(SignInFailure.at.desc()).limit(limit))
    return [int(at) for at in found]
