"""Time partitions of ``result_rows`` on PostgreSQL: the layout, its upkeep, and pruning.

A fleet's history grows by the rows that close (a process exits, a pipe goes away), and
retention removes rows closed long ago, so the table is partitioned by when a row closed,
``removed_at`` (declarative RANGE partitioning, migration 0014)::

    result_rows                 PARTITION BY RANGE (removed_at)
      result_rows_open          DEFAULT: removed_at IS NULL, every row present now
      result_rows_closed        FROM (MINVALUE) TO (MAXVALUE), PARTITION BY RANGE (removed_at)
        result_rows_20261206    one per UTC day: rows closed that day
        ...
        result_rows_closed_other  DEFAULT: closed rows of a day with no partition

Why this key and this shape:

* ``db prune`` keeps open rows and removes rows closed before a cutoff: whole days go by
  ``DROP TABLE`` (no DELETE, no dead tuples, no vacuum), the day the cutoff falls in and
  ``closed_other`` by a DELETE of their older rows.
* The as-of predicate, ``(removed_at IS NULL OR removed_at > T)`` as ``storage.results``,
  the hunting views and analysts write it, is on the partition key itself, so the planner
  keeps the open partition, ``closed_other`` and only the days after T: the partitions a
  query touches depend on how far back T is, not on how much history is kept.
* Range partitioning sends NULL keys only to a DEFAULT partition, so open rows live in
  the top level's default. A new day partition is added under ``result_rows_closed``,
  whose default holds only closed rows without a day (late or odd host times), so
  checking that default is a scan of a few rows, not of every open row.
* A primary key must include the partition key and be NOT NULL, which ``removed_at``
  is not: ids come from the old sequence, and each partition has a unique index on
  ``id`` of its own (``id_index``; unique, so the planner never doubts that an update
  by id reads one row, whatever its statistics say). Updates by id also name the row's
  ``removed_at`` so they touch one partition (``storage.rowio.update_rows``). Closing a
  row moves it from the open partition to its day's, as an UPDATE of the key does.

Host times are hostile (``unixTime`` may be any 64-bit value), so day partitions are made
only for days near the server's clock: ``AHEAD_DAYS`` ahead of today (the server keeps
them made) and, for rows that arrived late or before the store was partitioned, days
with rows in ``closed_other`` within ``LOOKBACK_DAYS`` of today. Any other closed row
stays in ``closed_other``, correct and indexed, only not dropped as a whole.

SQLite keeps one table: every function here does nothing there (prune DELETEs).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

TABLE = "result_rows"
OPEN = "result_rows_open"
CLOSED = "result_rows_closed"
OTHER = "result_rows_closed_other"
DAY = 86_400
AHEAD_DAYS = 3
LOOKBACK_DAYS = 400  # late rows of up to this many days back get their own day partition
_DAY_NAME = re.compile(r"^result_rows_(\d{8})$")
_BOUNDS = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


def is_postgres(conn: Connection | Session) -> bool:
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    return bind.dialect.name == "postgresql"


def is_partition(name: str | None) -> bool:
    """Whether ``name`` is a partition of ``result_rows`` (made at run time, so no model
    declares it: schema comparisons skip it)."""
    return name is not None and name.startswith(f"{TABLE}_")


def day_name(day_start: int) -> str:
    return f"{TABLE}_{datetime.fromtimestamp(day_start, UTC):%Y%m%d}"


def day_of(t: int) -> int:
    """The start (unix seconds, UTC) of the day ``t`` falls in."""
    return t - t % DAY


@dataclass(frozen=True)
class DayPartition:
    name: str
    start: int  # rows with start <= removed_at < end
    end: int


def day_partitions(conn: Connection | Session) -> list[DayPartition]:
    """The day partitions under ``result_rows_closed``, oldest first, from the catalog."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = CAST(:parent AS regclass)"
        ),
        {"parent": CLOSED},
    ).all()
    found = []
    for name, bound in rows:
        match = _BOUNDS.search(bound or "")
        if match and _DAY_NAME.match(name):
            found.append(DayPartition(name, int(match.group(1)), int(match.group(2))))
    return sorted(found, key=lambda p: p.start)


def id_index(conn: Connection | Session, table: str) -> None:
    """The unique index on ``id`` of one partition (SQLite's id is the rowid)."""
    conn.execute(text(f'CREATE UNIQUE INDEX "{table}_id" ON "{table}" (id)'))


def create_layout(conn: Connection) -> None:
    """The partitioned ``result_rows`` without indexes (migration 0014 copies the rows
    in first, then indexes): the open, closed and closed_other partitions."""
    conn.exec_driver_sql(
        f"""CREATE TABLE {TABLE} (
            id BIGINT NOT NULL DEFAULT nextval('result_rows_id_seq'),
            host_id BIGINT NOT NULL,
            name VARCHAR(512) NOT NULL,
            row_hash VARCHAR(32) NOT NULL,
            columns JSONB NOT NULL,
            copies INTEGER NOT NULL,
            first_seen BIGINT,
            removed_at BIGINT,
            seen_at BIGINT NOT NULL
        ) PARTITION BY RANGE (removed_at)"""
    )
    conn.exec_driver_sql(f"CREATE TABLE {OPEN} PARTITION OF {TABLE} DEFAULT")
    conn.exec_driver_sql(
        f"CREATE TABLE {CLOSED} PARTITION OF {TABLE} FOR VALUES FROM (MINVALUE) TO (MAXVALUE)"
        " PARTITION BY RANGE (removed_at)"
    )
    conn.exec_driver_sql(f"CREATE TABLE {OTHER} PARTITION OF {CLOSED} DEFAULT")
    for table in (OPEN, OTHER):
        id_index(conn, table)


def add_day(conn: Connection | Session, day_start: int) -> int:
    """Give the day starting at ``day_start`` its partition, moving its rows out of
    ``closed_other``; returns how many moved. The new table is filled and checked before
    it is attached, so attaching scans neither it nor more than ``closed_other``."""
    name, end = day_name(day_start), day_start + DAY
    run = conn.execute
    run(text(f'CREATE TABLE "{name}" (LIKE {TABLE} INCLUDING DEFAULTS)'))
    id_index(conn, name)
    moved = run(
        text(
            f"WITH moved AS (DELETE FROM {OTHER} WHERE removed_at >= :lo AND removed_at < :hi"
            f' RETURNING *) INSERT INTO "{name}" SELECT * FROM moved'
        ),
        {"lo": day_start, "hi": end},
    ).rowcount  # type: ignore[attr-defined]
    # A valid CHECK that implies the bound lets ATTACH skip scanning the new table.
    run(
        text(
            f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_bound" CHECK (removed_at IS NOT NULL'
            f" AND removed_at >= {day_start} AND removed_at < {end})"
        )
    )
    run(text(f'ALTER TABLE {CLOSED} ATTACH PARTITION "{name}" FOR VALUES FROM ({day_start})'
             f" TO ({end})"))  # fmt: skip
    run(text(f'ALTER TABLE "{name}" DROP CONSTRAINT "{name}_bound"'))
    return int(moved or 0)


@dataclass
class Ensured:
    """What ``ensure_days`` did: the partitions it made and the rows it moved into them."""

    created: list[str] = field(default_factory=list)
    moved: int = 0


def ensure_days(
    conn: Connection | Session,
    now: int | None = None,
    ahead: int = AHEAD_DAYS,
    lookback: int = LOOKBACK_DAYS,
    lock_timeout_s: int | None = None,
) -> Ensured:
    """Make the day partitions from yesterday to ``ahead`` days after today, and those of
    the days within ``lookback`` days whose rows wait in ``closed_other``. Call it in a
    transaction; nothing happens on SQLite. Attaching a day locks ``closed_other``, which
    every as-of read scans: a server passes ``lock_timeout_s`` and tries again later
    rather than queue reads behind a long query."""
    done = Ensured()
    if not is_postgres(conn):
        return done
    if lock_timeout_s is not None:
        conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_s)}s'"))
    # Replicas keep the same partitions: one at a time.
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('result_rows partitions'))"))
    today = day_of(int(time.time()) if now is None else now)
    have = {p.start for p in day_partitions(conn)}
    waiting = conn.execute(
        text(
            f"SELECT DISTINCT removed_at - removed_at % {DAY} FROM {OTHER}"
            " WHERE removed_at >= :lo AND removed_at < :hi"
        ),
        {"lo": today - lookback * DAY, "hi": today + (ahead + 1) * DAY},
    ).scalars()
    wanted = {today + k * DAY for k in range(-1, ahead + 1)} | set(waiting)
    for day in sorted(wanted - have):
        done.moved += add_day(conn, day)
        done.created.append(day_name(day))
    return done


@dataclass
class Pruned:
    """What ``prune_days`` removed: day partitions dropped whole, with their rows
    (``reltuples``, the planner's count, where ANALYZE has run; else counted)."""

    dropped: list[str] = field(default_factory=list)
    dropped_rows: int = 0


def _row_count(conn: Connection | Session, name: str) -> int:
    estimate = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": name}
    ).scalar()
    if estimate is not None and estimate >= 0:
        return int(estimate)
    return int(conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar() or 0)


def prune_days(conn: Connection | Session, older_than: int, dry_run: bool = False) -> Pruned:
    """Drop the day partitions whose every row closed before ``older_than`` (dropping
    takes a brief exclusive lock on ``result_rows_closed``). The rest of what is older
    (the day the cutoff falls in, ``closed_other``) is for the caller's DELETE."""
    pruned = Pruned()
    if not is_postgres(conn):
        return pruned
    for part in day_partitions(conn):
        if part.end > older_than:
            break
        pruned.dropped.append(part.name)
        pruned.dropped_rows += _row_count(conn, part.name)
        if not dry_run:
            conn.execute(text(f'DROP TABLE "{part.name}"'))
    return pruned


def holding_older(conn: Connection | Session, older_than: int) -> list[str]:
    """The tables that may still hold rows closed before ``older_than`` once
    ``prune_days`` dropped what it could: SQLite's one table; on PostgreSQL the day the
    cutoff falls in and ``closed_other`` (never the open rows' partition)."""
    if not is_postgres(conn):
        return [TABLE]
    straddling = [p.name for p in day_partitions(conn) if p.start < older_than < p.end]
    return [*straddling, OTHER]


def partition_names(conn: Connection | Session) -> list[str]:
    """Every leaf partition of ``result_rows`` (for sizes and plans)."""
    return list(
        conn.execute(
            text(
                "SELECT relid::regclass::text FROM pg_partition_tree(CAST(:t AS regclass))"
                " WHERE isleaf"
            ),
            {"t": TABLE},
        ).scalars()
    )


def compared(obj: object, name: str | None, type_: str, reflected: bool, other: object) -> bool:
    """Alembic's ``include_object``: schema comparisons skip the partitions (with their
    indexes), which PostgreSQL's partitioning adds beyond the models."""
    return not (type_ == "table" and reflected and is_partition(name))
