"""What server processes sharing one store tell each other through it (session passed in).

``fleetctl serve --workers N`` runs N processes, and replicas may share a PostgreSQL
store too; each keeps caches and detection state in its own memory. The store is the
source of truth they meet in:

* change events (``fleet_events``): a process that re-issues or revokes a node key says
  so in the same transaction; the others read the recent events every second and forget
  the host's cached keys. A revoked token or enroll secret, or a user disabled or given
  another role (``ACCESS``), makes them read the tokens and secrets again;
* detection marks (``detection_marks``): a result batch that touched a detection query
  counts up its host's version in the batch's transaction; the worker that judges the
  host counts ``judged`` up to what it judged, so a host is pending while
  ``judged < version``, whichever process stored the batch and whichever died since;
* detection changes (``detection_changes``): a process that stores a host's batch but
  does not judge the host keeps the batch's row changes under its version, in the same
  transaction; the judge reads them in version order and moves the host forward instead
  of rebuilding it, then deletes them;
* detection worker status (``detection_workers``): each detection worker's counters,
  rewritten every few seconds, so any process answers for the fleet.

Fleet-wide locks (one holder among every process) are ``storage.fleet_locks``.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from storage.models import DetectionChange, DetectionMark, DetectionWorker, FleetEvent
from storage.results import AppliedRows, ChangedRow

NODE_KEY = "node_key"  # a host's node key was re-issued or revoked
ACCESS = "access"  # a token or enroll secret revoked, a user disabled or given a role
# Classes of the two-key PostgreSQL advisory locks (a key space of their own, apart
# from ``storage.hosts.lock_host``'s single-key locks).
JUDGE_LOCK_CLASS = 0x464A  # "FJ": one judge per host at a time


# -- change events ---------------------------------------------------------------------


def publish(session: Session, kind: str, host_id: int | None, now: int) -> None:
    """Record a change the other processes must act on (committed with the change)."""
    session.add(FleetEvent(kind=kind, host_id=host_id, at=now))


def recent_events(session: Session, since: int) -> list[tuple[int, str, int | None]]:
    """(id, kind, host id) of the events recorded at or after ``since``, oldest first."""
    rows = session.execute(
        select(FleetEvent.id, FleetEvent.kind, FleetEvent.host_id)
        .where(FleetEvent.at >= since)
        .order_by(FleetEvent.id)
    ).all()
    return [(int(i), str(k), None if h is None else int(h)) for i, k, h in rows]


def prune_events(session: Session, before: int) -> int:
    """Delete events recorded before ``before``; how many went."""
    result = session.execute(delete(FleetEvent).where(FleetEvent.at < before))
    return int(getattr(result, "rowcount", 0) or 0)


# -- detection marks -------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    host_id: int
    version: int
    rebuild: bool
    marked_at: int


def mark_host(session: Session, host_id: int, now: int, *, rebuild: bool) -> int:
    """Count up the host's detection version in the caller's transaction (which holds
    the host's write lock, so versions follow store order); the new version.

    ``marked_at`` is when the host last went from judged to pending; ``rebuild`` stays
    set until the judge catches up."""
    mark = session.get(DetectionMark, host_id)
    if mark is None:
        mark = DetectionMark(host_id=host_id, version=0, judged=0, rebuild=False, marked_at=now)
        session.add(mark)
    if mark.judged >= mark.version:
        mark.marked_at = now
        mark.rebuild = False
    mark.version += 1
    mark.rebuild = mark.rebuild or rebuild
    session.flush()
    return int(mark.version)


def pending_marks(session: Session, slots: int, slot: int) -> list[Mark]:
    """Hosts of ``slot`` (``host_id % slots``) with batches not judged yet."""
    rows = session.execute(
        select(
            DetectionMark.host_id,
            DetectionMark.version,
            DetectionMark.rebuild,
            DetectionMark.marked_at,
        ).where(DetectionMark.judged < DetectionMark.version, DetectionMark.host_id % slots == slot)
    ).all()
    return [Mark(int(h), int(v), bool(r), int(at)) for h, v, r, at in rows]


def set_judged(session: Session, judged: Iterable[tuple[int, int]]) -> None:
    """Record (host id, version) as judged; a version already passed stays."""
    for host_id, version in judged:
        session.execute(
            update(DetectionMark)
            .where(DetectionMark.host_id == host_id, DetectionMark.judged < version)
            .values(judged=version)
        )


def keep_changes(
    session: Session, host_id: int, version: int, applied: Sequence[AppliedRows], now: int
) -> None:
    """Keep the detection row changes of the host's batch ``version`` for its judge (in
    the batch's transaction: the judge that sees the version finds them). Changes that
    cannot be written down are not kept: the judge then rebuilds the host, and the
    batch, already stored, is never refused for it."""
    runs = [
        [
            a.name,
            a.query,
            a.full_state,
            a.baseline,
            [[r.hash, dict(r.columns), r.first_seen] for r in a.opened],
            [[r.hash, dict(r.columns), r.first_seen] for r in a.closed],
        ]
        for a in applied
    ]
    try:
        payload = zlib.compress(orjson.dumps(runs), 1)
    except (TypeError, orjson.JSONEncodeError):
        return
    session.execute(
        insert(DetectionChange).values(
            host_id=host_id, version=version, stored_at=now, payload=payload
        )
    )


def kept_changes(
    session: Session, host_id: int, versions: Collection[int]
) -> dict[int, list[AppliedRows]]:
    """version -> the row changes kept for it, of those of ``versions`` that were kept."""
    if not versions:
        return {}
    found = session.execute(
        select(DetectionChange.version, DetectionChange.payload).where(
            DetectionChange.host_id == host_id,
            DetectionChange.version.between(min(versions), max(versions)),
        )
    )
    return {int(v): _applied(payload) for v, payload in found if v in versions}


def _applied(payload: bytes) -> list[AppliedRows]:
    def rows(listed: list[list[Any]]) -> tuple[ChangedRow, ...]:
        return tuple(ChangedRow(h, columns, first) for h, columns, first in listed)

    return [
        AppliedRows(name, query, rows(opened), rows(closed), full_state, baseline)
        for name, query, full_state, baseline, opened, closed in orjson.loads(
            zlib.decompress(payload)
        )
    ]


def forget_changes(session: Session, host_id: int, upto: int) -> None:
    """Drop the host's kept changes of versions up to ``upto`` (judged)."""
    session.execute(
        delete(DetectionChange).where(
            DetectionChange.host_id == host_id, DetectionChange.version <= upto
        )
    )


def prune_changes(session: Session, before: int) -> int:
    """Drop kept changes stored before ``before`` (no judge took them: it rebuilt the
    host, or the host left the fleet); how many."""
    result = session.execute(delete(DetectionChange).where(DetectionChange.stored_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


def pending_summary(session: Session) -> tuple[int, int | None]:
    """Hosts pending fleet-wide, and when the oldest of them was marked (None: none)."""
    count, oldest = session.execute(
        select(func.count(), func.min(DetectionMark.marked_at)).where(
            DetectionMark.judged < DetectionMark.version
        )
    ).one()
    return int(count), None if oldest is None else int(oldest)


def lock_judge(session: Session, host_id: int) -> None:
    """One judge per host at a time, for the rest of the transaction, among every
    process. PostgreSQL: a transaction-scoped advisory lock; SQLite: the write
    transaction (``BEGIN IMMEDIATE``) already serialises judges."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:cls, :key)"),
            {"cls": JUDGE_LOCK_CLASS, "key": host_id % 2**31},
        )


# -- detection worker status -----------------------------------------------------------


def save_worker_status(
    session: Session, worker: str, slot: int | None, status: dict[str, Any], now: int
) -> None:
    row = session.get(DetectionWorker, worker)
    if row is None:
        session.add(DetectionWorker(worker=worker, slot=slot, updated_at=now, status=status))
        return
    row.slot, row.updated_at, row.status = slot, now, status


def worker_statuses(session: Session, since: int) -> list[tuple[str, int | None, dict[str, Any]]]:
    """(worker, slot, status) of the workers that reported at or after ``since``."""
    rows = session.execute(
        select(DetectionWorker.worker, DetectionWorker.slot, DetectionWorker.status)
        .where(DetectionWorker.updated_at >= since)
        .order_by(DetectionWorker.worker)
    ).all()
    return [(str(w), None if s is None else int(s), dict(st)) for w, s, st in rows]


def forget_workers(session: Session, before: int) -> None:
    """Drop the status of workers silent since before ``before`` (gone, or restarted)."""
    session.execute(delete(DetectionWorker).where(DetectionWorker.updated_at < before))
