"""The SQL of the temporal apply: bulk reads and writes of ``result_rows``, per database.

``storage.results`` decides what a batch changes; every statement it needs is here, so a
change to the table (say, a partition key the writes must name) is made in one place.
Each works on a whole *wave* of a batch (at most one run per query name, see
``storage.results``) rather than on one run, so a ``/log`` request costs a handful of
statements whatever its runs and rows:

* ``confirm_open``: a full-state run's confirmation of the rows it carries that are open,
  the bulk of a snapshot, one ``UPDATE ... FROM (rows) RETURNING`` on PostgreSQL, so
  those rows never travel to Python; on SQLite a read of the open rows (a partial
  index) and the driver's ``executemany``;
* ``load_rows``: the stored rows a wave's hashes may touch, in one statement on
  PostgreSQL (an index probe per hash through a LATERAL join, which stays fast however
  long the history grows); on SQLite, in-process, an ``IN`` list per name;
* ``write_rows``: the wave's writes in one statement on PostgreSQL: an ``UPDATE`` by
  primary key of the rows it changed, an ``INSERT ... SELECT`` of its new rows and, in
  a batch's first wave, the upsert of its stream counters, as data-modifying CTEs of
  the ``UPDATE ... RETURNING`` that closes the open rows its full-state runs did not
  confirm, each part there only when it has rows (rows as parameters rather than a
  temporary table: no catalog writes per transaction, nothing left on a pooled
  connection); many new rows are a ``COPY`` first. On SQLite, the driver's
  ``executemany`` and a close per name;
* ``read_streams`` / ``write_streams``: the stream counters (``query_states``) of a
  batch's query names, read as tuples before its runs are checked.

On PostgreSQL a statement's rows travel as one JSON parameter (``_json``) that the
statement unpacks, not as arrays: psycopg escapes each element of an array parameter in
Python, which cost more than the database's work on a differential post.

The driver is used directly where SQLAlchemy's per-row parameter processing and JSON
encoding would cost more than the database's own work.

On PostgreSQL the table is partitioned by ``removed_at`` (``storage.partitions``): a write
by id also names the ``removed_at`` the row was read with, so it probes one partition
instead of every day's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.orm import Session

from storage.base import in_chunks

_COLUMNS = (
    "host_id",
    "name",
    "row_hash",
    "columns",
    "copies",
    "first_seen",
    "removed_at",
    "seen_at",
)
# A new row, as ``write_rows`` takes it: the values of ``_COLUMNS`` (``columns`` a mapping).
NewRow = tuple[int, str, str, Mapping[str, str], int, int | None, int | None, int]
REMOVED_AT = _COLUMNS.index("removed_at")
_SQLITE_INSERT = (
    f"INSERT INTO result_rows ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)


@dataclass
class Stored:
    """An existing row's mutable lifetime fields; ``dirty`` ones are written back."""

    id: int
    row_hash: str
    copies: int
    first_seen: int | None
    removed_at: int | None
    seen_at: int
    dirty: bool = False
    key: int | None = field(init=False)  # removed_at as read: the row's partition

    def __post_init__(self) -> None:
        self.key = self.removed_at

    def set(self, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self, key, value)
        self.dirty = True


@dataclass(frozen=True)
class Wanted:
    """The rows ``load_rows`` reads for one query name: of these hashes, those open,
    tombstones, or closed at/after ``since``."""

    name: str
    hashes: Collection[str]
    since: int


@dataclass(frozen=True)
class Closed:
    """A row ``write_rows`` closed; ``columns`` only for the names it was asked
    to return them for (as stored), else None."""

    name: str
    row_hash: str
    columns: dict[str, Any] | None
    first_seen: int | None


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _driver(session: Session) -> Any:
    """The DB-API connection of the session's transaction."""
    return session.connection().connection.driver_connection


def _pg(session: Session, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement through psycopg, planned for its own arrays each time: a plan
    prepared for arrays of another size (psycopg prepares a statement run five times)
    can join every open row of the host with every hash, or worse, for a batch it did
    not foresee."""
    with _driver(session).cursor() as cur:
        cur.execute(sql, params, prepare=False)
        return cur.fetchall() if cur.description is not None else []


def _json(value: Any) -> str:
    """``value`` as one JSON parameter, which the statement unpacks: orjson encodes a
    wave's rows in one C call, where psycopg's array parameters escape every element in
    Python (most of a small post's time). Arrays of arrays are cast to ``jsonb``, parsed
    once, as each ``->>`` on a ``json`` element parses it again."""
    return orjson.dumps(value).decode()


# Probes arrive as one flat JSON array of arrays: a set-returning function is estimated
# at 100 rows, so nesting two (runs, then their hashes) is estimated at 10,000 and the
# plan's cost crosses ``jit_above_cost``: tens of ms of JIT compilation for a small post.
_PG_LOAD = """
    WITH wanted AS (
        SELECT CAST(w->>0 AS integer) AS slot, CAST(w->>1 AS varchar) AS name,
            CAST(w->>2 AS bigint) AS since, CAST(w->>3 AS varchar) AS row_hash
        FROM jsonb_array_elements(CAST(%(wanted)s AS jsonb)) AS w
    )
    SELECT h.slot, r.id, r.row_hash, r.copies, r.first_seen, r.removed_at, r.seen_at
    FROM wanted AS h
    CROSS JOIN LATERAL (
        SELECT id, row_hash, copies, first_seen, removed_at, seen_at
        FROM result_rows
        WHERE host_id = %(host_id)s AND name = h.name AND row_hash = h.row_hash
          AND (removed_at IS NULL OR removed_at >= h.since)
        OFFSET 0  -- a fence: keeps one index probe per hash whatever the statistics say
    ) AS r
    """
_SQLITE_LOAD = (
    "SELECT id, row_hash, copies, first_seen, removed_at, seen_at FROM result_rows"
    " WHERE host_id = ? AND name = ? AND (removed_at IS NULL OR removed_at >= ?)"
    " AND row_hash IN ({})"
)


def load_rows(
    session: Session, host_id: int, wanted: Sequence[Wanted]
) -> list[dict[str, list[Stored]]]:
    """For each ``Wanted`` (in order): its hash -> the stored rows of that hash that are
    open, tombstones, or closed at/after its ``since``."""
    found: list[dict[str, list[Stored]]] = [{} for _ in wanted]
    if _is_postgres(session):
        probes = [(slot, w.name, w.since, h) for slot, w in enumerate(wanted, 1) for h in w.hashes]
        if not probes:
            return found
        params = {"host_id": host_id, "wanted": _json(probes)}
        for slot, *row in _pg(session, _PG_LOAD, params):
            found[slot - 1].setdefault(row[1], []).append(Stored(*row))
        return found
    cur = _driver(session).cursor()
    for want, into in zip(wanted, found, strict=True):
        for chunk in in_chunks(list(want.hashes)):
            sql = _SQLITE_LOAD.format(", ".join("?" * len(chunk)))
            for row in cur.execute(sql, (host_id, want.name, want.since, *chunk)):
                into.setdefault(row[1], []).append(Stored(*row))
    cur.close()
    return found


_PG_CONFIRM = """
    WITH carried AS (  -- one flat array, as ``_PG_LOAD``'s
        SELECT CAST(c->>0 AS integer) AS slot, CAST(c->>1 AS varchar) AS name,
            CAST(c->>2 AS bigint) AS t, CAST(c->>3 AS varchar) AS row_hash,
            CAST(c->>4 AS integer) AS n
        FROM jsonb_array_elements(CAST(%(carried)s AS jsonb)) AS c
    )
    UPDATE result_rows AS r
    SET copies = CASE WHEN r.seen_at = s.t THEN r.copies + s.n ELSE s.n END, seen_at = s.t
    FROM carried AS s
    WHERE r.host_id = %(host_id)s AND r.name = s.name AND r.row_hash = s.row_hash
      AND r.removed_at IS NULL AND r.first_seen IS NOT NULL
    RETURNING s.slot, r.row_hash
    """
_SQLITE_OPEN = (
    "SELECT id, row_hash, copies, seen_at FROM result_rows"
    " WHERE host_id = ? AND name = ? AND removed_at IS NULL AND first_seen IS NOT NULL"
)
_SQLITE_CONFIRM = "UPDATE result_rows SET copies = ?, seen_at = ? WHERE id = ?"


@dataclass(frozen=True)
class Confirming:
    """A full-state run's rows for ``confirm_open``: copies per row hash, at time ``t``."""

    name: str
    t: int
    copies: Mapping[str, int]


def confirm_open(session: Session, host_id: int, runs: Sequence[Confirming]) -> list[set[str]]:
    """Confirm, for each run (at most one per name), the open rows it carries: each takes
    the run's copies (added to them if the same run already confirmed it: a run split
    over several lines) and ``seen_at`` becomes the run's time. Returns, per run, the
    hashes it confirmed; its other rows are the caller's to reopen or insert."""
    confirmed: list[set[str]] = [set() for _ in runs]
    if _is_postgres(session):
        carried = [
            (slot, run.name, run.t, h, n)
            for slot, run in enumerate(runs, 1)
            for h, n in run.copies.items()
        ]
        if not carried:
            return confirmed
        params = {"host_id": host_id, "carried": _json(carried)}
        for slot, h in _pg(session, _PG_CONFIRM, params):
            confirmed[slot - 1].add(h)
        return confirmed
    dbapi = _driver(session)
    writes: list[tuple[int, int, int]] = []
    for run, done in zip(runs, confirmed, strict=True):
        for row_id, h, stored, seen_at in dbapi.execute(_SQLITE_OPEN, (host_id, run.name)):
            n = run.copies.get(h)
            if n is not None:
                writes.append((stored + n if seen_at == run.t else n, run.t, row_id))
                done.add(h)
    if writes:
        dbapi.executemany(_SQLITE_CONFIRM, writes)
    return confirmed


# A stream's fields, in ``query_states``' columns; ``read_streams`` gives tuples of them
# and ``write_streams`` takes them.
STREAM_FIELDS = (
    "name",
    "pack",
    "query",
    "epoch",
    "counter",
    "last_unix_time",
    "updated_at",
    "zero_counter_diffs",
)
_STREAM_COLUMNS = ", ".join(f'"{f}"' for f in STREAM_FIELDS)
_PG_READ_STREAMS = (
    f"SELECT {_STREAM_COLUMNS} FROM query_states"
    " WHERE host_id = %(host_id)s AND name = ANY(%(names)s)"
)
_SQLITE_READ_STREAMS = (
    f"SELECT {_STREAM_COLUMNS} FROM query_states WHERE host_id = ? AND name IN ({{}})"
)
_MOVED = ", ".join(f"{f} = excluded.{f}" for f in STREAM_FIELDS[3:])
_PG_WRITE_STREAMS = f"""
        INSERT INTO query_states (host_id, {_STREAM_COLUMNS})
        SELECT %(host_id)s, CAST(s->>0 AS varchar), CAST(s->>1 AS varchar),
            CAST(s->>2 AS varchar), CAST(s->>3 AS bigint), CAST(s->>4 AS bigint),
            CAST(s->>5 AS bigint), CAST(s->>6 AS bigint), CAST(s->>7 AS boolean)
        FROM jsonb_array_elements(CAST(%(streams)s AS jsonb)) AS s
        ON CONFLICT (host_id, name) DO UPDATE SET {_MOVED}
    """
_SQLITE_WRITE_STREAMS = (
    f"INSERT INTO query_states (host_id, {_STREAM_COLUMNS})"
    f" VALUES ({', '.join('?' * (len(STREAM_FIELDS) + 1))})"
    f" ON CONFLICT (host_id, name) DO UPDATE SET {_MOVED}"
)


def read_streams(session: Session, host_id: int, names: Sequence[str]) -> list[tuple[Any, ...]]:
    """The host's ``query_states`` of ``names`` (as stored), as ``STREAM_FIELDS`` tuples:
    one statement through the driver, as every post of every host starts with it."""
    if _is_postgres(session):
        return _pg(session, _PG_READ_STREAMS, {"host_id": host_id, "names": list(names)})
    dbapi = _driver(session)
    found: list[tuple[Any, ...]] = []
    for chunk in in_chunks(names):
        sql = _SQLITE_READ_STREAMS.format(", ".join("?" * len(chunk)))
        found += [(*row[:7], bool(row[7])) for row in dbapi.execute(sql, (host_id, *chunk))]
    return found


def write_streams(session: Session, host_id: int, streams: Sequence[tuple[Any, ...]]) -> None:
    """Insert or move on the host's streams (``STREAM_FIELDS`` tuples), in one statement."""
    if not streams:
        return
    if _is_postgres(session):
        _pg(session, _PG_WRITE_STREAMS, {"host_id": host_id, "streams": _json(streams)})
        return
    _driver(session).executemany(_SQLITE_WRITE_STREAMS, [(host_id, *s) for s in streams])


# Above this many new rows a wave's inserts are a COPY of their own; below, they join
# the one write statement (a COPY costs a round trip more than it saves for a diff's few).
COPY_ABOVE = 256

# The parts of a wave's one write statement, each a CTE; a wave's statement holds only
# the parts it has rows for, as each UPDATE of the partitioned table is planned for every
# partition it may touch, on every post. The stored rows it changes are read from one
# CTE and split by a filter on it, whose estimate (a row) keeps each UPDATE a probe by id
# whatever the open partition's statistics say.
_CHANGED = """
        UPDATE result_rows AS r
        SET copies = s.copies, first_seen = s.first_seen, removed_at = s.removed_at,
            seen_at = s.seen_at
        FROM changed AS s
        WHERE {where} AND r.id = s.id
    """
_PG_WRITE_PARTS = {
    "changed": """
        SELECT * FROM json_to_recordset(CAST(%(changed)s AS json))
            AS s(id bigint, key bigint, copies integer, first_seen bigint, removed_at bigint,
                 seen_at bigint)
    """,
    # rows read open: the open partition alone
    "changed_open": _CHANGED.format(where="s.key IS NULL AND r.removed_at IS NULL"),
    # tombstones and closed rows: the days they were read in
    "changed_closed": _CHANGED.format(where="s.key IS NOT NULL AND r.removed_at = s.key"),
    "streams": _PG_WRITE_STREAMS,
    "added": """
        INSERT INTO result_rows
            (host_id, name, row_hash, columns, copies, first_seen, removed_at, seen_at)
        SELECT %(host_id)s, CAST(n->>1 AS varchar), CAST(n->>2 AS varchar),
            n->3, CAST(n->>4 AS integer), CAST(n->>5 AS bigint),
            CAST(n->>6 AS bigint), CAST(n->>7 AS bigint)
        FROM jsonb_array_elements(CAST(%(added)s AS jsonb)) AS n  -- NewRow arrays
    """,
}
_PG_CLOSE = """
    UPDATE result_rows AS r SET removed_at = c.t
    FROM json_to_recordset(CAST(%(closing)s AS json))
        AS c(name varchar, t bigint, returned boolean)
    WHERE r.host_id = %(host_id)s AND r.name = c.name
      AND r.removed_at IS NULL AND r.seen_at < c.t AND r.first_seen <= c.t
    RETURNING r.name, r.row_hash, CASE WHEN c.returned THEN r.columns END, r.first_seen
    """
_PG_NOTHING_CLOSED = "SELECT NULL, NULL, NULL, NULL WHERE false"


def _pg_write(parts: Collection[str]) -> str:
    """The write statement of a wave with rows for ``parts`` (``_PG_WRITE_PARTS`` keys
    and, if it closes rows, ``closing``)."""
    ctes = [f"{key} AS ({sql})" for key, sql in _PG_WRITE_PARTS.items() if key in parts]
    main = _PG_CLOSE if "closing" in parts else _PG_NOTHING_CLOSED
    return f"WITH {', '.join(ctes)} {main}" if ctes else main


_SQLITE_UPDATE = (
    "UPDATE result_rows SET copies = ?, first_seen = ?, removed_at = ?, seen_at = ? WHERE id = ?"
)
_SQLITE_CLOSE = (
    "UPDATE result_rows SET removed_at = ?1"
    " WHERE host_id = ?2 AND name = ?3 AND removed_at IS NULL AND seen_at < ?1"
    " AND first_seen <= ?1"
    " RETURNING row_hash, CASE WHEN ?4 THEN columns END, first_seen"
)


def write_rows(
    session: Session,
    host_id: int,
    touched: Iterable[Stored],
    inserts: list[NewRow],
    closing: Sequence[tuple[str, int]],
    returned: Collection[str],
    streams: Sequence[tuple[Any, ...]] = (),
) -> list[Closed]:
    """Write a wave: the lifetime fields of the ``dirty`` stored rows, the new rows
    (``NewRow``), then the close, at each full-state run's
    time, of the open rows of its name (``closing``: (name, time), one per name) that it
    did not confirm (not seen at that time, not added after it). Returns the closed rows,
    with their columns for the names in ``returned``. ``streams`` are stream counters
    to write as ``write_streams`` does, in the same statement on PostgreSQL.

    On PostgreSQL this is one statement (its parts see the table as it was before it, so
    the close cannot meet the rows it changes or adds: those it reopens were closed, the
    ones it adds are new); more than ``COPY_ABOVE`` new rows are a COPY first."""
    dirty = list({r.id: r for r in touched if r.dirty}.values())  # a row may be touched twice
    if not _is_postgres(session):
        write_streams(session, host_id, streams)
        return _sqlite_write(session, host_id, dirty, inserts, closing, returned)
    if len(inserts) > COPY_ABOVE:
        _copy_rows(session, inserts)
        inserts = []
    rows = {
        "changed": dirty,
        "streams": streams,
        "added": inserts,
        "closing": [{"name": name, "t": t, "returned": name in returned} for name, t in closing],
    }
    params = {key: _json(value) for key, value in rows.items() if value}
    if not params:
        return []
    parts = set(params)
    if any(r.key is None for r in dirty):
        parts.add("changed_open")
    if any(r.key is not None for r in dirty):
        parts.add("changed_closed")
    sql = _pg_write(parts)
    return [Closed(*row) for row in _pg(session, sql, {"host_id": host_id, **params})]


def _copy_rows(session: Session, rows: list[NewRow]) -> None:
    with (
        _driver(session).cursor() as cur,
        cur.copy(f"COPY result_rows ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
    ):
        for row in _with_json(rows):
            copy.write_row(row)


def _with_json(rows: list[NewRow]) -> list[tuple[Any, ...]]:
    """The rows with their columns as JSON text, as COPY and SQLite take them."""
    return [
        (host, name, h, orjson.dumps(cols).decode(), *rest) for host, name, h, cols, *rest in rows
    ]


def _sqlite_write(
    session: Session,
    host_id: int,
    dirty: list[Stored],
    inserts: list[NewRow],
    closing: Sequence[tuple[str, int]],
    returned: Collection[str],
) -> list[Closed]:
    """``write_rows`` on SQLite: the driver's ``executemany`` in-process, then a close
    per name."""
    dbapi = _driver(session)
    if dirty:
        dbapi.executemany(
            _SQLITE_UPDATE,
            [(r.copies, r.first_seen, r.removed_at, r.seen_at, r.id) for r in dirty],
        )
    if inserts:
        dbapi.executemany(_SQLITE_INSERT, _with_json(inserts))
    closed: list[Closed] = []
    for name, t in closing:
        for h, columns, first in dbapi.execute(
            _SQLITE_CLOSE, (t, host_id, name, name in returned)
        ).fetchall():
            closed.append(
                Closed(name, h, None if columns is None else orjson.loads(columns), first)
            )
    return closed
