"""osquery's differential engine: previous results per query name, epoch and counter.

``osquery/core/query.cpp`` ``Query::addNewResults`` and ``protocol.md`` section 2:

* A run is a new epoch when the name has no stored results or they were stored under
  another ``--schedule_epoch``: the stored state is replaced and every current row is
  ``added`` with ``counter = 0`` (nothing at all when there are no rows).
* Otherwise the rows are diffed against the previous run as a multiset; only a run
  that changes something stores the new rows and increments the counter by 1.
* A different SQL under the same name is not a new epoch: a normal diff, counter + 1.
* Queries on ``*_events`` tables are not diffed: every row is ``added``; their epoch
  starts at counter 1 because they carry no full state.
* A name that leaves the config keeps its state for 592200 s, then it is purged.

``apply`` reads and writes through the caller's connection, inside the transaction
that also buffers the run's log lines.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

PURGE_SECONDS = 592200
_EVENT_TABLE = re.compile(r"\b\w+_events\b", re.IGNORECASE)

Row = dict[str, Any]


@dataclass
class DiffOutcome:
    added: list[Row] = field(default_factory=list)
    removed: list[Row] = field(default_factory=list)
    counter: int = 0
    new_epoch: bool = False


def normalise(row: Mapping[str, Any]) -> Row:
    """osquery's stored form: NULL becomes "", bytes become text; numbers stay numbers."""
    out: Row = {}
    for key, value in row.items():
        if value is None:
            out[key] = ""
        elif isinstance(value, bytes):
            out[key] = value.decode("utf-8", "replace")
        elif isinstance(value, bool):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def row_key(row: Mapping[str, Any]) -> bytes:
    """Identity of a row: its string form with sorted keys (numerics do not matter)."""
    return orjson.dumps(
        {k: v if isinstance(v, str) else str(v) for k, v in row.items()},
        option=orjson.OPT_SORT_KEYS,
    )


def diff(previous: list[Row], current: list[Row]) -> tuple[list[Row], list[Row]]:
    """(added, removed) as multisets: added in current order, removed in previous order."""
    remaining = Counter(row_key(r) for r in previous)
    added = []
    for row in current:
        key = row_key(row)
        if remaining[key] > 0:
            remaining[key] -= 1
        else:
            added.append(row)
    removed: list[Row] = []
    for row in previous:
        key = row_key(row)
        if remaining[key] > 0:
            remaining[key] -= 1
            removed.append(row)
    return added, removed


def is_event_query(sql: str) -> bool:
    return bool(_EVENT_TABLE.search(sql))


def apply(
    conn: sqlite3.Connection,
    name: str,
    sql: str,
    epoch: int,
    rows: Iterable[Mapping[str, Any]],
    now: int,
) -> DiffOutcome:
    """Diff ``rows`` against the stored previous run of ``name`` and store what changed."""
    current = [normalise(r) for r in rows]
    stored = conn.execute(
        "SELECT query, epoch, counter, rows FROM query_state WHERE name = ?", (name,)
    ).fetchone()
    events = is_event_query(sql)
    if stored is None or stored[1] != epoch:
        outcome = DiffOutcome(added=current, counter=1 if events and current else 0, new_epoch=True)
        _store(conn, name, sql, epoch, outcome.counter, [] if events else current, now)
        return outcome
    previous_sql, _, counter, blob = stored
    added: list[Row] = current
    removed: list[Row] = []
    if not events:
        added, removed = diff(orjson.loads(blob), current)
    if added or removed:
        counter += 1
        _store(conn, name, sql, epoch, counter, [] if events else current, now)
    elif previous_sql != sql:
        conn.execute("UPDATE query_state SET query = ? WHERE name = ?", (sql, name))
    return DiffOutcome(added=added, removed=removed, counter=counter)


def _store(
    conn: sqlite3.Connection,
    name: str,
    sql: str,
    epoch: int,
    counter: int,
    rows: list[Row],
    now: int,
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO query_state (name, query, epoch, counter, rows, scheduled_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (name, sql, epoch, counter, orjson.dumps(rows), now),
    )


def mark_scheduled(conn: sqlite3.Connection, names: Iterable[str], now: int) -> int:
    """Note which names the config still schedules; purge the ones gone for too long."""
    conn.executemany(
        "UPDATE query_state SET scheduled_at = ? WHERE name = ?", [(now, n) for n in names]
    )
    cursor = conn.execute("DELETE FROM query_state WHERE scheduled_at < ?", (now - PURGE_SECONDS,))
    return cursor.rowcount
