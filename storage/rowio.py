"""Bulk reads and writes of ``result_rows``, tuned per database.

Ingest touches up to 1,024 rows per request, so these avoid the ORM unit of work:
lookups are one statement per run (PostgreSQL: an index probe per hash through a
LATERAL join, which stays fast however long the history grows; SQLite: an IN list on the
same index), inserts are ``COPY`` on PostgreSQL and ``executemany`` on SQLite, and
updates are one ``executemany`` by id. On PostgreSQL the table is partitioned by
``removed_at`` (``storage.partitions``): an update by id also names the ``removed_at`` the
row was read with, so it probes one partition instead of every day's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, or_, select, text, update
from sqlalchemy.orm import Session

from storage.base import in_chunks
from storage.models import ResultRow

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
_TABLE = cast(Table, ResultRow.__table__)
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


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


_PG_LOAD = text(
    """
    SELECT r.id, r.row_hash, r.copies, r.first_seen, r.removed_at, r.seen_at
    FROM unnest(CAST(:hashes AS varchar[])) AS h(row_hash)
    CROSS JOIN LATERAL (
        SELECT id, row_hash, copies, first_seen, removed_at, seen_at
        FROM result_rows
        WHERE host_id = :host_id AND name = :name AND row_hash = h.row_hash
          AND (removed_at IS NULL OR removed_at >= :since)
        OFFSET 0  -- a fence: keeps one index probe per hash whatever the statistics say
    ) AS r
    """
)


def load_rows(
    session: Session, host_id: int, name: str, hashes: Iterable[str], since: int
) -> dict[str, list[Stored]]:
    """Rows of these hashes that are open, tombstones, or closed at/after ``since``."""
    hash_list = list(hashes)
    found: dict[str, list[Stored]] = {}
    if not hash_list:
        return found
    if _is_postgres(session):
        results: Iterable[Any] = session.execute(
            _PG_LOAD, {"hashes": hash_list, "host_id": host_id, "name": name, "since": since}
        )
    else:
        results = []
        t = _TABLE.c
        for chunk in in_chunks(hash_list):
            results.extend(
                session.execute(
                    select(t.id, t.row_hash, t.copies, t.first_seen, t.removed_at, t.seen_at).where(
                        t.host_id == host_id,
                        t.name == name,
                        t.row_hash.in_(chunk),
                        or_(t.removed_at.is_(None), t.removed_at >= since),
                    )
                )
            )
    for r in results:
        found.setdefault(r.row_hash, []).append(Stored(*r))
    return found


def insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    # The driver directly: SQLAlchemy's per-row parameter processing and JSON encoding
    # cost more than the database's own insert.
    dbapi: Any = session.connection().connection.driver_connection
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


def _update(where_key: Any) -> Any:
    return (
        update(_TABLE)
        .where(_TABLE.c.id == bindparam("_id"), where_key)
        .values(
            copies=bindparam("_copies"),
            first_seen=bindparam("_first_seen"),
            removed_at=bindparam("_removed_at"),
            seen_at=bindparam("_seen_at"),
        )
    )


_UPDATE_OPEN = _update(_TABLE.c.removed_at.is_(None))
_UPDATE_CLOSED = _update(_TABLE.c.removed_at == bindparam("_key"))


def update_rows(session: Session, rows: Iterable[Stored]) -> int:
    """Write back the dirty rows: the open ones (most) and the closed ones (tombstones)
    in one statement each, so each names a single partition."""
    params: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for r in rows:
        if r.dirty:
            params[r.key is None].append(
                {
                    "_id": r.id,
                    "_key": r.key,
                    "_copies": r.copies,
                    "_first_seen": r.first_seen,
                    "_removed_at": r.removed_at,
                    "_seen_at": r.seen_at,
                }
            )
    for is_open, batch in params.items():
        if batch:
            session.execute(_UPDATE_OPEN if is_open else _UPDATE_CLOSED, batch)
    return sum(len(batch) for batch in params.values())
