"""The SQL of the temporal apply: bulk reads and writes of ``result_rows``, per database.

``storage.results`` decides what a batch changes; every statement it needs is here, so a
change to the table (say, a partition key the writes must name) is made in one place.
Each works on a whole *wave* of a batch (at most one run per query name, see
``storage.results``) rather than on one run, so a ``/log`` request costs a handful of
statements whatever its runs and rows:

* ``confirm_open``: a full-state run's confirmation of the rows it carries that are open,
  the bulk of a snapshot, one ``UPDATE ... FROM unnest(arrays) RETURNING`` on PostgreSQL,
  so those rows never travel to Python; on SQLite a read of the open rows (a partial
  index) and the driver's ``executemany``;
* ``load_rows``: the stored rows a wave's hashes may touch, in one statement on
  PostgreSQL (an index probe per hash through a LATERAL join over arrays, which stays
  fast however long the history grows); on SQLite, in-process, an ``IN`` list per name;
* ``update_rows``: one ``UPDATE ... FROM unnest(arrays)`` by primary key on PostgreSQL
  (arrays rather than a temporary table: no catalog writes per transaction, nothing left
  on a pooled connection); the driver's ``executemany`` on SQLite;
* ``insert_rows``: ``COPY`` on PostgreSQL, the driver's ``executemany`` on SQLite;
* ``close_unconfirmed``: the close of the open rows the wave's full-state runs did not
  confirm, one statement on PostgreSQL, returning what was closed.

The driver is used directly where SQLAlchemy's per-row parameter processing and JSON
encoding would cost more than the database's own work.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
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
    """A row ``close_unconfirmed`` closed; ``columns`` only for the names it was asked
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


_PG_LOAD = """
    SELECT h.slot, r.id, r.row_hash, r.copies, r.first_seen, r.removed_at, r.seen_at
    FROM unnest(CAST(%(slots)s AS integer[]), CAST(%(hashes)s AS varchar[])) AS h(slot, row_hash)
    CROSS JOIN LATERAL (
        SELECT id, row_hash, copies, first_seen, removed_at, seen_at
        FROM result_rows
        WHERE host_id = %(host_id)s
          AND name = (CAST(%(names)s AS varchar[]))[h.slot]
          AND row_hash = h.row_hash
          AND (removed_at IS NULL OR removed_at >= (CAST(%(sinces)s AS bigint[]))[h.slot])
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
        slots: list[int] = []
        hashes: list[str] = []
        for slot, want in enumerate(wanted, 1):
            slots.extend([slot] * len(want.hashes))
            hashes.extend(want.hashes)
        if not hashes:
            return found
        params = {
            "slots": slots,
            "hashes": hashes,
            "host_id": host_id,
            "names": [w.name for w in wanted],
            "sinces": [w.since for w in wanted],
        }
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


def insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert new rows (``_COLUMNS`` keys; ``columns`` a mapping, JSON-encoded here)."""
    if not rows:
        return
    dbapi = _driver(session)
    if _is_postgres(session):
        with (
            dbapi.cursor() as cur,
            cur.copy(f"COPY result_rows ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(
                    [orjson.dumps(row[c]).decode() if c == "columns" else row[c] for c in _COLUMNS]
                )
        return
    dbapi.executemany(
        _SQLITE_INSERT,
        [
            tuple(orjson.dumps(row[c]).decode() if c == "columns" else row[c] for c in _COLUMNS)
            for row in rows
        ],
    )


_PG_CONFIRM = """
    UPDATE result_rows AS r
    SET copies = CASE WHEN r.seen_at = s.t THEN r.copies + s.n ELSE s.n END, seen_at = s.t
    FROM (
        SELECT h.slot, h.row_hash, h.n,
            (CAST(%(names)s AS varchar[]))[h.slot] AS name,
            (CAST(%(times)s AS bigint[]))[h.slot] AS t
        FROM unnest(CAST(%(slots)s AS integer[]), CAST(%(hashes)s AS varchar[]),
                    CAST(%(copies)s AS integer[])) AS h(slot, row_hash, n)
    ) AS s
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
        slots: list[int] = []
        hashes: list[str] = []
        copies: list[int] = []
        for slot, run in enumerate(runs, 1):
            slots.extend([slot] * len(run.copies))
            hashes.extend(run.copies)
            copies.extend(run.copies.values())
        if not hashes:
            return confirmed
        params = {
            "host_id": host_id,
            "slots": slots,
            "hashes": hashes,
            "copies": copies,
            "names": [r.name for r in runs],
            "times": [r.t for r in runs],
        }
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


_PG_UPDATE = """
    UPDATE result_rows AS r
    SET copies = s.copies, first_seen = s.first_seen, removed_at = s.removed_at,
        seen_at = s.seen_at
    FROM unnest(
        CAST(%(ids)s AS bigint[]), CAST(%(copies)s AS integer[]), CAST(%(first_seen)s AS bigint[]),
        CAST(%(removed_at)s AS bigint[]), CAST(%(seen_at)s AS bigint[])
    ) AS s(id, copies, first_seen, removed_at, seen_at)
    WHERE r.id = s.id
    """
_SQLITE_UPDATE = (
    "UPDATE result_rows SET copies = ?, first_seen = ?, removed_at = ?, seen_at = ? WHERE id = ?"
)


def update_rows(session: Session, rows: Iterable[Stored]) -> int:
    """Write back the lifetime fields of the ``dirty`` rows; how many there were."""
    dirty = [r for r in rows if r.dirty]
    if not dirty:
        return 0
    if _is_postgres(session):
        _pg(
            session,
            _PG_UPDATE,
            {
                "ids": [r.id for r in dirty],
                "copies": [r.copies for r in dirty],
                "first_seen": [r.first_seen for r in dirty],
                "removed_at": [r.removed_at for r in dirty],
                "seen_at": [r.seen_at for r in dirty],
            },
        )
    else:
        _driver(session).executemany(
            _SQLITE_UPDATE,
            [(r.copies, r.first_seen, r.removed_at, r.seen_at, r.id) for r in dirty],
        )
    return len(dirty)


_PG_CLOSE = """
    UPDATE result_rows AS r SET removed_at = s.t
    FROM unnest(CAST(%(names)s AS varchar[]), CAST(%(times)s AS bigint[])) AS s(name, t)
    WHERE r.host_id = %(host_id)s AND r.name = s.name
      AND r.removed_at IS NULL AND r.seen_at < s.t AND r.first_seen <= s.t
    RETURNING r.name, r.row_hash,
        CASE WHEN r.name = ANY(CAST(%(returned)s AS varchar[])) THEN r.columns END, r.first_seen
    """
_SQLITE_CLOSE = (
    "UPDATE result_rows SET removed_at = ?1"
    " WHERE host_id = ?2 AND name = ?3 AND removed_at IS NULL AND seen_at < ?1"
    " AND first_seen <= ?1"
    " RETURNING row_hash, CASE WHEN ?4 THEN columns END, first_seen"
)


def close_unconfirmed(
    session: Session, host_id: int, runs: Sequence[tuple[str, int]], returned: Collection[str]
) -> list[Closed]:
    """Close, at each run's time, the open rows of its name (``runs`` are (name, time),
    one per name) that it did not confirm: not seen at that time, and not added after it.
    Returns the closed rows, with their columns for the names in ``returned``."""
    if not runs:
        return []
    if _is_postgres(session):
        params = {
            "host_id": host_id,
            "names": [name for name, _ in runs],
            "times": [t for _, t in runs],
            "returned": list(returned),
        }
        return [Closed(*row) for row in _pg(session, _PG_CLOSE, params)]
    closed: list[Closed] = []
    cur = _driver(session).cursor()
    for name, t in runs:
        for h, columns, first in cur.execute(
            _SQLITE_CLOSE, (t, host_id, name, name in returned)
        ).fetchall():
            closed.append(
                Closed(name, h, None if columns is None else orjson.loads(columns), first)
            )
    cur.close()
    return closed
