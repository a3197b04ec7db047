"""Findings, their occurrences and their history (session passed in).

A finding is a (host, path key); each process on that path is an occurrence, identified
by pid and start time (pids are reused), stored once with its evidence and never
rewritten but for its ``last_seen``. So a later incident on the same path can neither
hide behind an earlier one nor overwrite its evidence.

Triage: ``ack`` means the incidents so far are handled: every open occurrence is covered
(``acked_at``) and the finding is ``acked``, with who, when and why. An occurrence after
that reopens it (``reopened``; the ack stays on record). ``suppress`` covers them too,
once the caller has made the path key a baseline entry. A finding's severity and score
are those of its most severe open occurrence (with none open they stay as they were),
and each change of status or severity is a ``finding_history`` row.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.orm import Session, defer

from storage.base import in_chunks
from storage.models import FindingChange as FindingChange  # record types returned
from storage.models import FindingOccurrence as FindingOccurrence
from storage.models import FindingRecordRow as FindingRecordRow
from storage.models import Host

DETECTION = "detection"  # who changes what the detector decides
STATUSES = ("open", "reopened", "acked", "suppressed")
# A status filter: ``open`` asks for what needs a look, reopened findings included.
MATCHING = {"open": ("open", "reopened")}
HANDLED = ("acked", "suppressed")
SINCE_LIMIT = 100  # occurrences listed per finding for ``occurred_since``
# Whether two start times can belong to the same process: the detector's rule.
SameStart = Callable[[int | None, int | None], bool]


class Occurrence(Protocol):
    """What the store keeps of one process on a finding's path."""

    @property
    def pid(self) -> int: ...
    @property
    def start_time(self) -> int | None: ...
    @property
    def severity(self) -> str: ...
    @property
    def score(self) -> int: ...
    @property
    def seen_during_learning(self) -> bool: ...


class Finding(Protocol):
    """What the store keeps of a finding the detector made (``fleetctl.detection``)."""

    @property
    def id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def parent(self) -> str: ...
    @property
    def child(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def score(self) -> int: ...
    @property
    def new_on_host(self) -> bool: ...
    @property
    def new_on_fleet(self) -> bool: ...
    @property
    def seen_during_learning(self) -> bool: ...
    @property
    def first_seen(self) -> float: ...
    @property
    def last_seen(self) -> float: ...
    @property
    def occurrences(self) -> Sequence[Occurrence]: ...
    def occurrence_document(self, occurrence: Any, /) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Listed:
    """A finding as a list shows it: the row, its host, how many occurrences and when
    the newest came, its leading occurrence (the most severe open one, else the newest:
    the one its severity and reasons come from) and those asked for by time."""

    row: FindingRecordRow
    host: str
    occurrences: int = 0
    last_occurrence: int | None = None
    lead: FindingOccurrence | None = None
    since: list[FindingOccurrence] = field(default_factory=list)


# -- what the detector found ---------------------------------------------------------


def save_findings(
    session: Session, host_id: int, findings: Iterable[Finding], same_start: SameStart
) -> list[str]:
    """Store each finding's new occurrences and move the known ones' ``last_seen``
    (an occurrence is known when its pid and, by ``same_start``, its start time match);
    reopen a handled finding that got a new occurrence. Ids of the findings that are new."""
    created = []
    for finding in findings:
        at = int(finding.last_seen)
        row = session.get(FindingRecordRow, finding.id)
        if row is None:
            row = _create(session, host_id, finding, at)
            created.append(finding.id)
        added = _store_occurrences(session, row, finding, at, same_start)
        row.last_seen = max(row.last_seen, at)
        if added:
            row.pid = max(added, key=lambda o: o.score).pid
            if row.status in HANDLED:
                _set_status(session, row, "reopened", DETECTION, "a new occurrence", at)
        _rescore(session, row, at)
    return created


def _create(session: Session, host_id: int, finding: Finding, at: int) -> FindingRecordRow:
    row = FindingRecordRow(
        id=finding.id,
        host_id=host_id,
        path_key=finding.key,
        pid=finding.pid,
        parent=finding.parent,
        child=finding.child,
        severity=finding.severity,
        score=finding.score,
        status="open",
        new_on_host=finding.new_on_host,
        new_on_fleet=finding.new_on_fleet,
        seen_during_learning=finding.seen_during_learning,
        first_seen=int(finding.first_seen),
        last_seen=at,
        note="",
    )
    session.add(row)
    session.flush()  # the finding before the rows that refer to it
    why = "seen while its host was learning" if finding.seen_during_learning else ""
    _record(session, row.id, at, "status", None, "open", DETECTION, why)
    _record(session, row.id, at, "severity", None, finding.severity, DETECTION)
    return row


def _store_occurrences(
    session: Session, row: FindingRecordRow, finding: Finding, at: int, same_start: SameStart
) -> list[FindingOccurrence]:
    """New occurrences of ``finding`` (added to the session); known ones seen again."""
    pids = sorted({o.pid for o in finding.occurrences})
    known: list[FindingOccurrence] = []
    for chunk in in_chunks(pids):  # without their documents: only last_seen moves
        known += session.scalars(
            select(FindingOccurrence)
            .options(defer(FindingOccurrence.document))
            .where(FindingOccurrence.finding_id == row.id, FindingOccurrence.pid.in_(chunk))
        )
    added = []
    for occurrence in finding.occurrences:
        same = next(
            (
                k
                for k in known
                if k.pid == occurrence.pid and same_start(k.start_time, occurrence.start_time)
            ),
            None,
        )
        if same is not None:
            same.last_seen = max(same.last_seen, at)
            continue
        new = FindingOccurrence(
            finding_id=row.id,
            pid=occurrence.pid,
            start_time=occurrence.start_time,
            severity=occurrence.severity,
            score=occurrence.score,
            seen_during_learning=occurrence.seen_during_learning,
            first_seen=at,
            last_seen=at,
            acked_at=None,
            document=finding.occurrence_document(occurrence),
        )
        session.add(new)
        known.append(new)
        added.append(new)
    return added


def _rescore(session: Session, row: FindingRecordRow, at: int) -> None:
    """Severity and score of the most severe open occurrence (unchanged if none is open)."""
    best = session.execute(
        select(FindingOccurrence.severity, FindingOccurrence.score)
        .where(FindingOccurrence.finding_id == row.id, FindingOccurrence.acked_at.is_(None))
        .order_by(FindingOccurrence.score.desc())
        .limit(1)
    ).first()
    if best is None:
        return
    severity, score = best
    if severity != row.severity:
        _record(session, row.id, at, "severity", row.severity, severity, DETECTION)
    row.severity, row.score = severity, score


# -- triage ------------------------------------------------------------------------------


def ack(session: Session, row: FindingRecordRow, actor: str, note: str, now: int) -> None:
    """The incidents so far are handled; a later occurrence reopens the finding."""
    _cover(session, row, now)
    _set_status(session, row, "acked", actor, note, now)
    row.acked_by, row.acked_at = actor, now
    row.note = note or row.note


def suppress(session: Session, row: FindingRecordRow, actor: str, note: str, now: int) -> None:
    """The path is accepted (the caller made its key a baseline entry)."""
    _cover(session, row, now)
    _set_status(session, row, "suppressed", actor, note, now)
    row.note = note or row.note


def _cover(session: Session, row: FindingRecordRow, now: int) -> None:
    session.execute(
        update(FindingOccurrence)
        .where(FindingOccurrence.finding_id == row.id, FindingOccurrence.acked_at.is_(None))
        .values(acked_at=now)
    )


def _set_status(
    session: Session, row: FindingRecordRow, status: str, actor: str, note: str, at: int
) -> None:
    if row.status != status:
        _record(session, row.id, at, "status", row.status, status, actor, note)
        row.status = status


def _record(
    session: Session,
    finding_id: str,
    at: int,
    what: str,
    old: str | None,
    new: str,
    actor: str,
    note: str = "",
) -> None:
    session.add(
        FindingChange(
            finding_id=finding_id, at=at, field=what, old=old, new=new, actor=actor, note=note
        )
    )


# -- reading ---------------------------------------------------------------------------


def list_findings(
    session: Session,
    *,
    host_id: int | None = None,
    status: str | None = None,
    since: int | None = None,
    until: int | None = None,
    occurred_since: int | None = None,
    min_score: int | None = None,
    severities: Collection[str] | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[Listed]:
    """Findings, most severe first, ``limit`` from ``offset`` of that order (pages).
    ``status`` ``open`` includes ``reopened``; ``severities``: only those; ``since`` and
    ``until`` keep the findings seen in that time (last seen then or later, first seen
    then or earlier), in the statement so that a page is full;
    ``occurred_since`` keeps findings with an occurrence first seen then or later, and
    lists those occurrences (newest first) with each.

    Each row's occurrence count and newest time come in the row's own statement: on
    PostgreSQL (read committed) a second statement could see a later commit than the
    row, a count that its status and severity do not yet reflect."""
    count = select(func.count()).where(_its_occurrences()).scalar_subquery()
    newest = select(func.max(FindingOccurrence.first_seen)).where(_its_occurrences())
    stmt = select(FindingRecordRow, Host.host_identifier, count, newest.scalar_subquery()).join(
        Host, Host.id == FindingRecordRow.host_id
    )
    if host_id is not None:
        stmt = stmt.where(FindingRecordRow.host_id == host_id)
    if status is not None:
        stmt = stmt.where(FindingRecordRow.status.in_(MATCHING.get(status, (status,))))
    if since is not None:
        stmt = stmt.where(FindingRecordRow.last_seen >= since)
    if until is not None:
        stmt = stmt.where(FindingRecordRow.first_seen <= until)
    if occurred_since is not None:
        stmt = stmt.where(
            FindingRecordRow.id.in_(
                select(FindingOccurrence.finding_id).where(
                    FindingOccurrence.first_seen >= occurred_since
                )
            )
        )
    if min_score is not None:
        stmt = stmt.where(FindingRecordRow.score >= min_score)
    if severities is not None:
        stmt = stmt.where(FindingRecordRow.severity.in_(list(severities)))
    stmt = stmt.order_by(
        FindingRecordRow.score.desc(), FindingRecordRow.first_seen.desc(), FindingRecordRow.id
    )
    found = [
        (row, host, int(n), None if last is None else int(last))
        for row, host, n, last in session.execute(stmt.limit(limit).offset(offset))
    ]
    return _described(session, found, occurred_since)


def _its_occurrences() -> Any:
    """Correlates a subquery over occurrences with the finding row of the outer query."""
    return FindingOccurrence.finding_id == FindingRecordRow.id


def describe(session: Session, row: FindingRecordRow, host: str) -> Listed:
    """One finding as ``list_findings`` shows it."""
    n, last = session.execute(
        select(func.count(), func.max(FindingOccurrence.first_seen)).where(
            FindingOccurrence.finding_id == row.id
        )
    ).one()
    return _described(session, [(row, host, int(n), last)], None)[0]


def _described(
    session: Session,
    found: Sequence[tuple[FindingRecordRow, str, int, int | None]],
    occurred_since: int | None,
) -> list[Listed]:
    ids = [row.id for row, *_ in found]
    leads = _leading(session, ids)
    recent = _occurred_since(session, ids, occurred_since) if occurred_since is not None else {}
    return [
        Listed(row, host, count, newest, leads.get(row.id), recent.get(row.id, []))
        for row, host, count, newest in found
    ]


def _first_per_finding(
    session: Session,
    ids: Sequence[str],
    order: Sequence[ColumnElement[Any]],
    keep: int,
    *where: ColumnElement[bool],
) -> dict[str, list[FindingOccurrence]]:
    """finding id -> its first ``keep`` occurrences in ``order`` (of those ``where``
    holds), in that order: ranked in the statement, so a finding with a thousand
    occurrences costs what one with ``keep`` does."""
    rank = (
        func.row_number()
        .over(partition_by=FindingOccurrence.finding_id, order_by=order)
        .label("rank")
    )
    found: dict[str, list[FindingOccurrence]] = {}
    for chunk in in_chunks(ids):
        ranked = (
            select(FindingOccurrence.id, rank)
            .where(FindingOccurrence.finding_id.in_(chunk), *where)
            .subquery()
        )
        kept = select(ranked.c.id).where(ranked.c.rank <= keep)
        for occurrence in session.scalars(
            select(FindingOccurrence).where(FindingOccurrence.id.in_(kept)).order_by(*order)
        ):
            found.setdefault(occurrence.finding_id, []).append(occurrence)
    return found


def _leading(session: Session, ids: Sequence[str]) -> dict[str, FindingOccurrence]:
    """finding id -> its most severe open occurrence, else its newest."""
    order = (
        case((FindingOccurrence.acked_at.is_(None), 0), else_=1),
        FindingOccurrence.score.desc(),
        FindingOccurrence.first_seen.desc(),
        FindingOccurrence.id.desc(),
    )
    return {fid: firsts[0] for fid, firsts in _first_per_finding(session, ids, order, 1).items()}


def _occurred_since(
    session: Session, ids: Sequence[str], since: int
) -> dict[str, list[FindingOccurrence]]:
    """finding id -> its occurrences first seen at ``since`` or later, newest first, at
    most ``SINCE_LIMIT`` each."""
    newest_first = (FindingOccurrence.first_seen.desc(), FindingOccurrence.id.desc())
    return _first_per_finding(
        session, ids, newest_first, SINCE_LIMIT, FindingOccurrence.first_seen >= since
    )


def get_finding(session: Session, finding_id: str) -> tuple[FindingRecordRow, str] | None:
    """The one finding whose id starts with ``finding_id`` (None: none or several)."""
    found = session.execute(
        select(FindingRecordRow, Host.host_identifier)
        .join(Host, Host.id == FindingRecordRow.host_id)
        .where(FindingRecordRow.id.startswith(finding_id, autoescape=True))
        .limit(2)
    ).all()
    return (found[0][0], found[0][1]) if len(found) == 1 else None


def finding_for(session: Session, host_id: int, key: str) -> FindingRecordRow | None:
    return session.scalars(
        select(FindingRecordRow).where(
            FindingRecordRow.host_id == host_id, FindingRecordRow.path_key == key
        )
    ).first()


def occurrences(
    session: Session, finding_id: str, limit: int | None = None
) -> list[FindingOccurrence]:
    """A finding's occurrences, newest first."""
    stmt = (
        select(FindingOccurrence)
        .where(FindingOccurrence.finding_id == finding_id)
        .order_by(FindingOccurrence.first_seen.desc(), FindingOccurrence.id.desc())
    )
    return list(session.scalars(stmt if limit is None else stmt.limit(limit)))


def history(session: Session, finding_id: str) -> list[FindingChange]:
    """A finding's changes of status and severity, oldest first."""
    return list(
        session.scalars(
            select(FindingChange)
            .where(FindingChange.finding_id == finding_id)
            .order_by(FindingChange.at, FindingChange.id)
        )
    )


def status_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(FindingRecordRow.status, func.count()).group_by(FindingRecordRow.status)
    )
    return {status: int(n) for status, n in rows}


__all__ = [
    "DETECTION",
    "STATUSES",
    "Listed",
    "ack",
    "describe",
    "finding_for",
    "get_finding",
    "history",
    "list_findings",
    "occurrences",
    "save_findings",
    "status_counts",
    "suppress",
]
