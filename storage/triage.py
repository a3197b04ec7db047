"""What a finding's triage reads from the store (session passed in), every read bounded.

The triage questions of a finding (``fleetctl.detection.triage`` judges them) need a
few narrow slices of a host's history: the rows of some queries that name a process (by
pid) or an IPC object (by path) over a time window, the parent/child pairs the detector
recorded on the host and the fleet, the data-loss markers and quarantined lines of the
window, and how far the host's history reaches. Each read takes a ``limit`` and says
when it cut: a finding on a busy host must answer as fast as one on an idle host.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from storage.encoding import encoder_for, unescape_row
from storage.models import (
    DataLoss,
    FindingOccurrence,
    Host,
    ParentChild,
    QueryState,
    RejectedLine,
    ResultRow,
)


@dataclass(frozen=True)
class StoredRow:
    """One stored result row: the pack query it answers, its columns as the host sent
    them, and its lifetime (``first_seen`` None: it predates the collected history)."""

    query: str
    columns: dict[str, str]
    first_seen: int | None
    removed_at: int | None


@dataclass(frozen=True)
class Slice:
    """Rows of a bounded read; ``cut`` when more matched than ``limit``."""

    rows: list[StoredRow]
    cut: bool


@dataclass(frozen=True)
class PairSighting:
    """A parent/child pair the detector recorded on a host, first seen when."""

    host: str
    parent: str
    child: str
    first_seen: int


@dataclass(frozen=True)
class Gap:
    """A data-loss marker of the host (``fleetctl data-loss``)."""

    name: str
    kind: str
    detail: str
    unix_time: int
    resolved_at: int | None


def _names(session: Session, host_id: int, queries: Collection[str]) -> dict[str, str]:
    """Stored query name -> pack query name, for the host's names of ``queries``."""
    return {
        name: query
        for name, query in session.execute(
            select(QueryState.name, QueryState.query).where(
                QueryState.host_id == host_id, QueryState.query.in_(sorted(queries))
            )
        )
    }


def _during(start: int, end: int) -> ColumnElement[bool]:
    """Rows present at some moment of ``[start, end]``."""
    return and_(
        or_(ResultRow.first_seen.is_(None), ResultRow.first_seen <= end),
        or_(ResultRow.removed_at.is_(None), ResultRow.removed_at > start),
    )


def rows_where(
    session: Session,
    host_id: int,
    queries: Collection[str],
    column: str | Sequence[str],
    values: Collection[str],
    start: int,
    end: int,
    limit: int,
) -> Slice:
    """Rows of the host's ``queries`` whose ``column`` (or one of several) is one of
    ``values`` and that existed at some moment from ``start`` to ``end``, oldest first.

    Each read scans the host's stored rows of those queries (JSON has no index here),
    so callers read once per question, not once per value."""
    names = _names(session, host_id, queries)
    if not names or not values:
        return Slice([], False)
    enc = encoder_for(session)
    wanted = sorted({enc.text(v) for v in values})
    columns = [column] if isinstance(column, str) else list(column)
    return _oldest_first(
        session,
        host_id,
        names,
        limit,
        _during(start, end),  # the window before the JSON test: integers are cheap
        or_(*(ResultRow.columns[c].as_string().in_(wanted) for c in columns)),
    )


def _like_suffix(value: str) -> str:
    """A LIKE pattern for text ending in ``/value`` (wildcards in it escaped)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%/{escaped}"


def starts_of(
    session: Session,
    host_id: int,
    queries: Collection[str],
    parent: str,
    child: str,
    before: int,
    limit: int,
) -> Slice:
    """Process rows of the host first seen before ``before`` whose executable is named
    ``child`` and whose parent's is named ``parent`` (by path, or by name where the row
    has no path): the starts of such children the host's history holds."""
    names = _names(session, host_id, queries)
    if not names:
        return Slice([], False)
    enc = encoder_for(session)
    cols = ResultRow.columns
    child_named = or_(
        cols["path"].as_string().like(_like_suffix(enc.text(child)), escape="\\"),
        cols["name"].as_string() == enc.text(child),
    )
    parent_named = or_(
        cols["parent_path"].as_string().like(_like_suffix(enc.text(parent)), escape="\\"),
        cols["parent_name"].as_string() == enc.text(parent),
    )
    return _oldest_first(
        session,
        host_id,
        names,
        limit,
        or_(ResultRow.first_seen.is_(None), ResultRow.first_seen < before),
        child_named,
        parent_named,
    )


def _oldest_first(
    session: Session,
    host_id: int,
    names: Mapping[str, str],
    limit: int,
    *where: ColumnElement[bool],
) -> Slice:
    """At most ``limit`` rows of the host's stored ``names`` (stored name -> query)
    matching ``where``, oldest first, and whether more matched."""
    stmt = (
        select(ResultRow.name, ResultRow.columns, ResultRow.first_seen, ResultRow.removed_at)
        .where(ResultRow.host_id == host_id, ResultRow.name.in_(sorted(names)), *where)
        .order_by(ResultRow.first_seen, ResultRow.id)
        .limit(limit + 1)
    )
    found = [
        StoredRow(names[name], unescape_row(columns or {}), first, removed)
        for name, columns, first, removed in session.execute(stmt)
    ]
    return Slice(found[:limit], len(found) > limit)


def history_start(session: Session, host_id: int, queries: Collection[str]) -> int | None:
    """When the host's oldest stored row of ``queries`` was first seen (None: no rows);
    what pruning left is all a count of earlier starts can see."""
    names = _names(session, host_id, queries)
    if not names:
        return None
    oldest: int | None = session.scalar(
        select(func.min(ResultRow.first_seen)).where(
            ResultRow.host_id == host_id, ResultRow.name.in_(sorted(names))
        )
    )
    return oldest


def pair_sightings(
    session: Session,
    parents: Collection[str],
    child: str | None,
    limit: int,
    host_id: int | None = None,
) -> tuple[list[PairSighting], bool]:
    """Parent/child pairs recorded under ``parents`` on every host (or one), of
    ``child`` only when given, oldest first; and whether ``limit`` cut them."""
    if not parents:
        return [], False
    stmt = (
        select(Host.host_identifier, ParentChild.parent, ParentChild.child, ParentChild.first_seen)
        .join(Host, Host.id == ParentChild.host_id)
        .where(ParentChild.parent.in_(sorted(parents)))
    )
    if child is not None:
        stmt = stmt.where(ParentChild.child == child)
    if host_id is not None:
        stmt = stmt.where(ParentChild.host_id == host_id)
    found = [
        PairSighting(host, parent, kid, first)
        for host, parent, kid, first in session.execute(
            stmt.order_by(ParentChild.first_seen, Host.host_identifier).limit(limit + 1)
        )
    ]
    return found[:limit], len(found) > limit


def host_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Host)) or 0)


def gaps_between(session: Session, host_id: int, start: int, end: int, limit: int) -> list[Gap]:
    """The host's data-loss markers recorded from ``start`` to ``end``, oldest first."""
    stmt = (
        select(DataLoss)
        .where(
            DataLoss.host_id == host_id,
            DataLoss.unix_time >= start,
            DataLoss.unix_time <= end,
        )
        .order_by(DataLoss.unix_time, DataLoss.id)
        .limit(limit)
    )
    return [
        Gap(m.name, m.kind, m.detail, m.unix_time, m.resolved_at) for m in session.scalars(stmt)
    ]


def rejected_between(session: Session, host_id: int, start: int, end: int) -> int:
    """How many of the host's log lines were quarantined from ``start`` to ``end``."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(RejectedLine)
            .where(
                RejectedLine.host_id == host_id,
                RejectedLine.received_at >= start,
                RejectedLine.received_at <= end,
            )
        )
        or 0
    )


def last_runs(session: Session, host_id: int) -> dict[str, int]:
    """Pack query name -> the time of the host's latest run of it (any pack)."""
    runs: dict[str, int] = {}
    for query, last in session.execute(
        select(QueryState.query, QueryState.last_unix_time).where(QueryState.host_id == host_id)
    ):
        runs[query] = max(runs.get(query, 0), last)
    return runs


#: The query of the ``telemetry-health`` pack that reports ``osquery_schedule``.
SCHEDULE_QUERY = "schedule_health"


@dataclass(frozen=True)
class ScheduleReport:
    """The host's latest report of its own schedule: when it came, and per query (by the
    pack query's name) when osqueryd last executed it."""

    at: int
    last_executed: dict[str, int]


def _same_query() -> ColumnElement[bool]:
    return and_(QueryState.host_id == ResultRow.host_id, QueryState.name == ResultRow.name)


def schedule_report(session: Session, host_id: int) -> ScheduleReport | None:
    """What the host's latest ``schedule_health`` snapshot says of its queries (None: it
    never sent one). A differential query logs only changes, so its silence says nothing;
    the schedule's ``last_executed`` says whether it ran. osqueryd names a scheduled query
    as it names its logged results, so the rows match the host's query states by name."""
    at = session.scalar(
        select(func.max(QueryState.last_unix_time)).where(
            QueryState.host_id == host_id, QueryState.query == SCHEDULE_QUERY
        )
    )
    if at is None:
        return None
    names = {
        name: query
        for name, query in session.execute(
            select(QueryState.name, QueryState.query).where(QueryState.host_id == host_id)
        )
    }
    executed: dict[str, int] = {}
    for (columns,) in session.execute(
        select(ResultRow.columns)
        .join(QueryState, _same_query())
        .where(
            ResultRow.host_id == host_id,
            QueryState.query == SCHEDULE_QUERY,
            ResultRow.removed_at.is_(None),
        )
    ):
        row = unescape_row(columns or {})
        query, when = names.get(row.get("name", "")), row.get("last_executed", "")
        if query is not None and when.isdigit() and int(when) > 0:
            executed[query] = max(executed.get(query, 0), int(when))
    return ScheduleReport(int(at), executed)


def occurrence(session: Session, finding_id: str, occurrence_id: int) -> FindingOccurrence | None:
    """One occurrence of a finding, by its id."""
    return session.scalars(
        select(FindingOccurrence).where(
            FindingOccurrence.finding_id == finding_id, FindingOccurrence.id == occurrence_id
        )
    ).first()


__all__ = [
    "Gap",
    "PairSighting",
    "ScheduleReport",
    "Slice",
    "StoredRow",
    "gaps_between",
    "history_start",
    "host_count",
    "last_runs",
    "occurrence",
    "pair_sightings",
    "rejected_between",
    "rows_where",
    "schedule_report",
    "starts_of",
]
