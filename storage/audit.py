"""The audit trail (session passed in): append an entry, list them, verify the chain.

Each entry's ``hash`` is the SHA-256 of the previous entry's hash and the entry's own
fields, so the entries form one chain in id order. Appends take turns (a PostgreSQL
advisory lock; SQLite's one writer), so the chain never forks; the table's triggers
refuse UPDATE and DELETE. ``verify`` walks the chain: an entry whose fields were edited
no longer matches its hash, and one removed leaves the next entry pointing at a hash
that is not its predecessor's. (Removing the newest entries leaves no such trace in the
chain itself.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from storage.models import AuditEntry

GENESIS = "0" * 64  # the previous hash of the first entry
AUDIT_LOCK_CLASS = 0x4641  # "FA": one appender at a time (PostgreSQL advisory lock)
VERIFY_BATCH = 1000


@dataclass(frozen=True)
class Entry:
    """What an entry says; ``id``, ``prev_hash`` and ``hash`` once stored."""

    at: int
    actor: str
    token: str
    source: str
    action: str
    target: str
    details: dict[str, Any]
    outcome: str
    status: int
    id: int | None = None
    prev_hash: str = ""
    hash: str = ""

    def digest(self, prev_hash: str) -> str:
        fields = [prev_hash, *(getattr(self, name) for name in SIGNED)]
        return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


# What an entry's hash covers, in this order (with the previous entry's hash first).
SIGNED = ("at", "actor", "token", "source", "action", "target", "details", "outcome", "status")


def append(session: Session, entry: Entry) -> str:
    """Add ``entry`` at the end of the chain (in the caller's transaction); its hash."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:c, 0)"), {"c": AUDIT_LOCK_CLASS})
    prev = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    prev_hash = prev or GENESIS
    digest = entry.digest(prev_hash)
    session.execute(
        insert(AuditEntry).values(
            **{name: getattr(entry, name) for name in SIGNED}, prev_hash=prev_hash, hash=digest
        )
    )
    return digest


def _entry(row: AuditEntry) -> Entry:
    return Entry(**{name: getattr(row, name) for name in (*SIGNED, "id", "prev_hash", "hash")})


def entries(
    session: Session, *, since: int | None = None, actor: str | None = None, limit: int = 1000
) -> list[Entry]:
    """The newest ``limit`` entries (from ``since``, by ``actor``), oldest first."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    return [_entry(r) for r in reversed(session.scalars(query).all())]


@dataclass(frozen=True)
class Break:
    """Where the chain does not hold: the entry, and why."""

    id: int
    problem: str


@dataclass(frozen=True)
class Verification:
    entries: int
    breaks: tuple[Break, ...]

    @property
    def intact(self) -> bool:
        return not self.breaks


def _chain(session: Session) -> Iterator[Entry]:
    after = 0
    while True:
        batch = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.id > after)
            .order_by(AuditEntry.id)
            .limit(VERIFY_BATCH)
        ).all()
        if not batch:
            return
        for row in batch:
            yield _entry(row)
        after = batch[-1].id


def verify(session: Session) -> Verification:
    """Walk the whole chain in id order and name every entry that breaks it."""
    breaks, count, expected = [], 0, GENESIS
    for entry in _chain(session):
        count += 1
        assert entry.id is not None
        if entry.prev_hash != expected:
            breaks.append(Break(entry.id, "does not follow the entry before it (one removed?)"))
        if entry.digest(entry.prev_hash) != entry.hash:
            breaks.append(Break(entry.id, "its fields do not match its hash (edited?)"))
        expected = entry.hash
    return Verification(count, tuple(breaks))
