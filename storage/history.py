"""A host's stored rows with their lifetimes, read once for a replay of its history.

A replay of detection moves one host's state forward through time. Instead of asking
"which rows were present at t" once per change time (an as-of query each, whose cost
grows with the history), it reads every row of a query name that was present at the
replay's start or appeared later, with its ``first_seen`` and ``removed_at``, in one
select; the caller sorts them into the change times itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from storage.models import ResultRow


@dataclass(frozen=True)
class HistoryRow:
    """One stored row with its lifetime: present from ``first_seen`` (None: a tombstone,
    present since before the collected history) until ``removed_at`` (None: still open).
    Columns are as stored, as ``storage.results.ChangedRow`` gives them."""

    hash: str
    columns: Mapping[str, str]
    first_seen: int | None
    removed_at: int | None


def rows_alive_since(
    session: Session, host_id: int, name: str, start: int | None
) -> list[HistoryRow]:
    """The rows of stored name ``name`` (as ``results.query_names`` gives it) present at
    ``start`` or any time after it (rows removed at or before ``start`` never are); with
    ``start`` None only the open rows."""
    alive = (
        ResultRow.removed_at.is_(None)
        if start is None
        else or_(ResultRow.removed_at.is_(None), ResultRow.removed_at > start)
    )
    stmt = select(
        ResultRow.row_hash, ResultRow.columns, ResultRow.first_seen, ResultRow.removed_at
    ).where(ResultRow.host_id == host_id, ResultRow.name == name, alive)
    rows = session.execute(stmt)
    return [HistoryRow(h, dict(c), first, removed) for h, c, first, removed in rows]


__all__ = ["HistoryRow", "rows_alive_since"]
