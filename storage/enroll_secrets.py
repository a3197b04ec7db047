"""Enroll secrets (session passed in): named, stored as SHA-256 digests only, each able
to put the hosts it enrolls in a label, rotated or revoked without forgetting them (a
revoked secret is kept, for the record, and enrolls nothing)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import EnrollSecret as EnrollSecret  # the record type of secrets
from storage.models import Label, LabelMembership


class Conflict(ValueError):
    """The name or the secret is already stored."""


@dataclass(frozen=True)
class Accepted:
    """What an enrolling secret does: its name, and the label its hosts join (or None)."""

    name: str
    label_id: int | None


@dataclass(frozen=True)
class SecretInfo:
    name: str
    label: str | None
    created_at: int
    revoked_at: int | None


def accepted(session: Session) -> dict[str, Accepted]:
    """digest -> what it does, for every secret not revoked."""
    rows = session.execute(
        select(EnrollSecret.secret_hash, EnrollSecret.name, EnrollSecret.label_id).where(
            EnrollSecret.revoked_at.is_(None)
        )
    )
    return {digest: Accepted(name, label_id) for digest, name, label_id in rows}


def any_stored(session: Session) -> bool:
    """Whether any secret was ever stored (revoked ones count: a store whose secrets were
    all revoked stays closed, rather than getting a new one)."""
    return session.scalar(select(EnrollSecret.id).limit(1)) is not None


def ensure_secret(session: Session, secret_hash: str, now: int) -> None:
    """Store a secret given at start (once; a known one, even revoked, stays as it is),
    named ``default`` when that name is free, else ``secret-`` and its digest's head."""
    if session.scalar(select(EnrollSecret.id).where(EnrollSecret.secret_hash == secret_hash)):
        return
    taken = session.scalar(select(EnrollSecret.id).where(EnrollSecret.name == "default"))
    name = "default" if taken is None else f"secret-{secret_hash[:8]}"
    add_secret(session, name, secret_hash, None, now)


def add_secret(
    session: Session, name: str, secret_hash: str, label_id: int | None, now: int
) -> EnrollSecret:
    if find_secret(session, name) is not None:
        raise Conflict(f"an enroll secret named {name!r} exists")
    found = session.scalar(select(EnrollSecret.name).where(EnrollSecret.secret_hash == secret_hash))
    if found is not None:
        raise Conflict(f"that secret is already stored, as {found!r}")
    secret = EnrollSecret(name=name, secret_hash=secret_hash, label_id=label_id, created_at=now)
    session.add(secret)
    session.flush()
    return secret


def find_secret(session: Session, name: str) -> EnrollSecret | None:
    return session.scalars(select(EnrollSecret).where(EnrollSecret.name == name)).first()


def secrets(session: Session) -> list[SecretInfo]:
    """Every secret, revoked ones too, oldest first."""
    rows = session.execute(
        select(EnrollSecret, Label.name)
        .outerjoin(Label, Label.id == EnrollSecret.label_id)
        .order_by(EnrollSecret.id)
    )
    return [SecretInfo(s.name, label, s.created_at, s.revoked_at) for s, label in rows]


def revoke(session: Session, secret: EnrollSecret, now: int) -> None:
    secret.revoked_at = now
    session.flush()


def retire(session: Session, secret: EnrollSecret, now: int, *, revoke_it: bool) -> str:
    """Move a secret being rotated out of its name (to ``name~id``), revoked unless it
    should keep enrolling for a while; the name it has now."""
    secret.name = f"{secret.name}~{secret.id}"
    if revoke_it:
        secret.revoked_at = now
    session.flush()
    return secret.name


def join_label(session: Session, label_id: int, host_id: int, now: int) -> None:
    """Put an enrolling host in its secret's label (a manual label), unless the label
    was deleted since the secret was read."""
    if session.get(Label, label_id) is None:
        return
    membership = session.get(LabelMembership, (label_id, host_id))
    if membership is None:
        session.add(
            LabelMembership(label_id=label_id, host_id=host_id, member=True, evaluated_at=now)
        )
    else:
        membership.member, membership.evaluated_at = True, now
    session.flush()
