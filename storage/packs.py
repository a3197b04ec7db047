"""Packs with versions (session passed in). Applying the same content is a no-op."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import PackRecord, PackVersion


@dataclass(frozen=True)
class StoredPack:
    name: str
    version: int
    body: dict[str, Any] | None
    labels: tuple[str, ...]
    created_at: int


def _digest(body: dict[str, Any] | None, labels: tuple[str, ...]) -> str:
    payload = orjson.dumps({"body": body, "labels": sorted(labels)}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()


def _stored(name: str, v: PackVersion) -> StoredPack:
    return StoredPack(name, v.version, v.body, tuple(v.labels or ()), v.created_at)


def current_packs(session: Session) -> list[StoredPack]:
    """The latest version of every pack that is not deleted, by name."""
    rows = session.execute(
        select(PackRecord.name, PackVersion)
        .join(
            PackVersion,
            (PackVersion.pack_id == PackRecord.id)
            & (PackVersion.version == PackRecord.current_version),
        )
        .where(PackRecord.deleted.is_(False))
        .order_by(PackRecord.name)
    )
    return [_stored(name, version) for name, version in rows]


def get_pack(session: Session, name: str, version: int | None = None) -> StoredPack | None:
    record = session.scalars(select(PackRecord).where(PackRecord.name == name)).first()
    if record is None:
        return None
    wanted = record.current_version if version is None else version
    row = session.get(PackVersion, (record.id, wanted))
    return None if row is None else _stored(name, row)


def versions(session: Session, name: str) -> list[StoredPack]:
    record = session.scalars(select(PackRecord).where(PackRecord.name == name)).first()
    if record is None:
        return []
    rows = session.scalars(
        select(PackVersion).where(PackVersion.pack_id == record.id).order_by(PackVersion.version)
    )
    return [_stored(name, v) for v in rows]


def _new_version(
    session: Session, name: str, body: dict[str, Any] | None, labels: tuple[str, ...], now: int
) -> tuple[str, int]:
    digest = _digest(body, labels)
    record = session.scalars(
        select(PackRecord).where(PackRecord.name == name).with_for_update()
    ).first()
    if record is None:
        if body is None:
            return "absent", 0
        record = PackRecord(name=name, current_version=0, deleted=False, updated_at=now)
        session.add(record)
        session.flush()
    else:
        current = session.get(PackVersion, (record.id, record.current_version))
        if current is not None and current.sha256 == digest:
            return "unchanged", record.current_version
    record.current_version += 1
    record.deleted = body is None
    record.updated_at = now
    session.add(
        PackVersion(
            pack_id=record.id,
            version=record.current_version,
            body=body,
            labels=list(labels),
            sha256=digest,
            created_at=now,
        )
    )
    action = (
        "deleted" if body is None else ("created" if record.current_version == 1 else "updated")
    )
    return action, record.current_version


def apply_pack(
    session: Session, name: str, body: dict[str, Any], labels: tuple[str, ...], now: int
) -> tuple[str, int]:
    """Store ``body`` as the pack's next version; ('created'|'updated'|'unchanged', version)."""
    return _new_version(session, name, body, labels, now)


def delete_pack(session: Session, name: str, now: int) -> tuple[str, int]:
    """Record a deletion as a version, so the history shows when hosts lost the pack."""
    return _new_version(session, name, None, (), now)


def pack_names(session: Session) -> list[str]:
    return list(session.scalars(select(PackRecord.name)))
