"""The statements one differential post costs through ``ingest_log``: a fixed number,
whatever its rows, so a return to statements per row or per query fails here.

``storage.rowio`` sends the stream counters' and the rows' statements to the driver
directly, so SQLAlchemy's count leaves them out; on PostgreSQL, where each statement is a
round trip, every statement the connection's cursors send is counted as well."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import psycopg
from sqlalchemy.orm import Session

from fleetctl.server.node_service import ingest_log
from storage.engine import make_engine, make_sessionmaker, session_scope, statements_sent
from storage.results import ApplyStats
from tests.storage.hosts import enrolled_host
from tests.storage.test_applied_rows import diff

NAMES = ("pack_ipc_processes", "pack_ipc_pipes", "pack_ipc_sockets")
# Through SQLAlchemy: host lock (PostgreSQL: an advisory lock; SQLite: the transaction's
# BEGIN IMMEDIATE, sent before the post's own statements), host, and the delivery's
# digests read and replaced (one statement on PostgreSQL, two on SQLite).
STATEMENTS = {"postgresql": 3, "sqlite": 3}
# All of a PostgreSQL post's round trips: those three, and through the driver the stream
# counters' read, the rows' read and the one write of rows and counters.
ROUND_TRIPS = 6


class Counting(psycopg.Cursor[Any]):
    """A psycopg cursor that keeps the SQL of each statement it sends in ``sent``."""

    sent: ClassVar[list[str]] = []

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self.sent.append(str(query))
        return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        self.sent.append(str(query))
        super().executemany(query, params_seq, **kwargs)


def costs_of(session: Session, post: Callable[[Session], object]) -> tuple[int, int | None]:
    """The statements ``post(session)`` sends through SQLAlchemy, and on PostgreSQL all
    those the connection's cursors send, whoever sends them (None on SQLite)."""
    dbapi = session.connection().connection.driver_connection
    if not isinstance(dbapi, psycopg.Connection):
        return len(statements_sent(session, post)), None
    Counting.sent = []
    dbapi.cursor_factory = Counting
    try:
        through_sqlalchemy = len(statements_sent(session, post))
    finally:
        dbapi.cursor_factory = psycopg.Cursor
    return through_sqlalchemy, len(Counting.sent)


def differential(counter: int, closed: int, opened: int) -> list[dict[str, Any]]:
    """Each query closes ``closed`` rows the run before added and adds ``opened``."""
    t = 10 + counter
    return [
        diff(
            action,
            counter * 10_000 - p if action == "removed" else (counter + 1) * 10_000 - p,
            t,
            counter,
            name,
        )
        for name in NAMES
        for action, rows in (("removed", closed), ("added", opened))
        for p in range(rows)
    ]


def posting(host_id: int, lines: list[Any], into: list[ApplyStats]) -> Callable[[Any], None]:
    """``ingest_log`` of ``lines`` as the statements' reader, its stats kept ``into``."""
    return lambda session: into.append(ingest_log(session, host_id, "result", lines, 20))


def test_a_differential_post_costs_the_same_statements_whatever_its_rows(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        with session_scope(sessions) as session:
            host_id = enrolled_host(session)
        with session_scope(sessions) as session:
            baseline = [diff("added", 10_000 - p, 10, 0, n) for n in NAMES for p in range(5)]
            ingest_log(session, host_id, "result", baseline, 10)
        costs, trips = [], []
        for counter, closed, opened in ((1, 5, 5), (2, 5, 50), (3, 50, 5)):
            applied: list[ApplyStats] = []
            post = posting(host_id, differential(counter, closed, opened), applied)
            with session_scope(sessions) as session:
                cost, sent = costs_of(session, post)
            costs.append(cost)
            trips.append(sent)
            [stats] = applied
            assert (stats.runs, stats.opened, stats.closed, stats.rejected) == (
                len(NAMES),
                len(NAMES) * opened,
                len(NAMES) * closed,
                0,
            )
        assert costs == [STATEMENTS[engine.dialect.name]] * 3, costs
        pg = engine.dialect.name == "postgresql"
        assert trips == [ROUND_TRIPS if pg else None] * 3, trips
    finally:
        engine.dispose()
