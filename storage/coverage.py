"""What the store knows of each host's telemetry, for the coverage report (session
passed in): per scheduled query how far its history reaches and when it last reported,
its current rows or how often given columns are filled in them, and the gaps recorded
as data loss.

Queries are named by (pack, query) as the host's logged names split at ingest
(``QueryState.pack``/``query``), so a pack delimiter other than ``_`` changes nothing.
Summaries are computed by the database; only small tables (flags, event publishers,
the schedule) come back whole.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, String, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from storage.base import in_chunks
from storage.encoding import unescape, unescape_row
from storage.models import DataLoss, QueryState, ResultRow

#: (pack, query); pack is None for a query of the host's own schedule.
QueryKey = tuple[str | None, str]
#: Cell values that say nothing: osquery logs NULL as "", and -1 for an unknown pid.
BLANKS = ("", "-1")


@dataclass(frozen=True)
class QueryHistory:
    """One scheduled query's stream on one host."""

    name: str  # as the host logs it
    pack: str | None
    query: str
    first_row: int | None  # the oldest stored row's first_seen: how far history reaches
    last_result: int  # the newest run's unixTime
    open_rows: int  # rows present now


@dataclass(frozen=True)
class Gap:
    """A data-loss marker of one query stream: history before ``at`` is not continuous."""

    name: str
    pack: str | None
    query: str
    kind: str  # counter_gap | epoch_change | rebaseline
    at: int
    detail: str
    resolved: bool


@dataclass
class Fill:
    """How many present rows a query has, and in how many each column says something."""

    rows: int = 0
    filled: dict[str, int] = field(default_factory=dict)


def _pairs(queries: Collection[QueryKey]) -> ColumnElement[bool]:
    return or_(
        *(
            and_(
                QueryState.pack.is_(None) if pack is None else QueryState.pack == pack,
                QueryState.query == query,
            )
            for pack, query in queries
        )
    )


def _joined() -> ColumnElement[bool]:
    return and_(QueryState.host_id == ResultRow.host_id, QueryState.name == ResultRow.name)


def histories(session: Session, host_ids: Sequence[int]) -> dict[int, list[QueryHistory]]:
    """host id -> each query the host ever reported, with its reach and last result."""
    out: dict[int, list[QueryHistory]] = {h: [] for h in host_ids}
    for chunk in in_chunks(list(host_ids)):
        reach = (
            select(
                ResultRow.host_id,
                ResultRow.name,
                func.min(ResultRow.first_seen).label("first_row"),
                func.sum(case((ResultRow.removed_at.is_(None), 1), else_=0)).label("open_rows"),
            )
            .where(ResultRow.host_id.in_(chunk))
            .group_by(ResultRow.host_id, ResultRow.name)
            .subquery()
        )
        query = (
            select(QueryState, reach.c.first_row, reach.c.open_rows)
            .outerjoin(
                reach, and_(reach.c.host_id == QueryState.host_id, reach.c.name == QueryState.name)
            )
            .where(QueryState.host_id.in_(chunk))
            .order_by(QueryState.host_id, QueryState.name)
        )
        for state, first_row, open_rows in session.execute(query):
            out[state.host_id].append(
                QueryHistory(
                    name=unescape(state.name),
                    pack=None if state.pack is None else unescape(state.pack),
                    query=unescape(state.query),
                    first_row=first_row,
                    last_result=state.last_unix_time,
                    open_rows=int(open_rows or 0),
                )
            )
    return out


def current_rows(
    session: Session, host_ids: Sequence[int], queries: Collection[QueryKey]
) -> dict[int, dict[QueryKey, list[dict[str, str]]]]:
    """host id -> (pack, query) -> the rows present now, as the host sent them. For
    small state tables (flags, event publishers, the schedule): every row is loaded."""
    out: dict[int, dict[QueryKey, list[dict[str, str]]]] = {h: {} for h in host_ids}
    if not queries:
        return out
    for chunk in in_chunks(list(host_ids)):
        query = (
            select(QueryState.host_id, QueryState.pack, QueryState.query, ResultRow.columns)
            .join(ResultRow, _joined())
            .where(QueryState.host_id.in_(chunk), _pairs(queries), ResultRow.removed_at.is_(None))
            .order_by(ResultRow.id)
        )
        for host_id, pack, name, columns in session.execute(query):
            key = (None if pack is None else unescape(pack), unescape(name))
            out[host_id].setdefault(key, []).append(unescape_row(columns or {}))
    return out


def fills(
    session: Session,
    host_ids: Sequence[int],
    queries: Collection[QueryKey],
    columns: Sequence[str],
) -> dict[int, dict[QueryKey, Fill]]:
    """host id -> (pack, query) -> present rows, and per column how many of them hold a
    value other than ``BLANKS``, counted by the database (a process table is large)."""
    out: dict[int, dict[QueryKey, Fill]] = {h: {} for h in host_ids}
    if not queries:
        return out
    said = [
        func.sum(
            case(
                (func.coalesce(cast(ResultRow.columns[c].as_string(), String), "").in_(BLANKS), 0),
                else_=1,
            )
        )
        for c in columns
    ]
    for chunk in in_chunks(list(host_ids)):
        query = (
            select(QueryState.host_id, QueryState.pack, QueryState.query, func.count(), *said)
            .join(ResultRow, _joined())
            .where(QueryState.host_id.in_(chunk), _pairs(queries), ResultRow.removed_at.is_(None))
            .group_by(QueryState.host_id, QueryState.pack, QueryState.query)
        )
        for host_id, pack, name, rows, *counts in session.execute(query):
            key = (None if pack is None else unescape(pack), unescape(name))
            out[host_id][key] = Fill(
                int(rows), {c: int(n or 0) for c, n in zip(columns, counts, strict=True)}
            )
    return out


def gaps(session: Session, host_ids: Sequence[int]) -> dict[int, list[Gap]]:
    """host id -> the data-loss markers of its query streams, oldest first."""
    out: dict[int, list[Gap]] = {h: [] for h in host_ids}
    for chunk in in_chunks(list(host_ids)):
        query = (
            select(DataLoss, QueryState.pack, QueryState.query)
            .outerjoin(
                QueryState,
                and_(QueryState.host_id == DataLoss.host_id, QueryState.name == DataLoss.name),
            )
            .where(DataLoss.host_id.in_(chunk))
            .order_by(DataLoss.unix_time, DataLoss.id)
        )
        for marker, pack, name in session.execute(query):
            out[marker.host_id].append(
                Gap(
                    name=unescape(marker.name),
                    pack=None if pack is None else unescape(pack),
                    query=unescape(name if name is not None else marker.name),
                    kind=marker.kind,
                    at=marker.unix_time,
                    detail=marker.detail,
                    resolved=marker.resolved_at is not None,
                )
            )
    return out


__all__ = [
    "BLANKS",
    "Fill",
    "Gap",
    "QueryHistory",
    "QueryKey",
    "current_rows",
    "fills",
    "gaps",
    "histories",
]
