"""The statements one differential post costs through ``ingest_log``: a fixed number,
whatever its rows, so a return to statements per row or per query fails here. The
row writes of ``storage.rowio`` go to the driver directly and are counted beside."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetctl.server.node_service import ingest_log
from storage.engine import make_engine, make_sessionmaker, session_scope, statements_sent
from storage.results import ApplyStats
from tests.storage.hosts import enrolled_host
from tests.storage.test_applied_rows import diff

NAMES = ("pack_ipc_processes", "pack_ipc_pipes", "pack_ipc_sockets")
# host lock (PostgreSQL: an advisory lock; SQLite: the transaction's BEGIN IMMEDIATE,
# sent before the post's own statements), host, deliveries, query states (one SELECT,
# one executemany UPDATE), deliveries upsert
STATEMENTS = {"postgresql": 6, "sqlite": 5}


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
        costs = []
        for counter, closed, opened in ((1, 5, 5), (2, 5, 50)):
            applied: list[ApplyStats] = []
            post = posting(host_id, differential(counter, closed, opened), applied)
            with session_scope(sessions) as session:
                seen = statements_sent(session, post)
            [stats] = applied
            assert (stats.runs, stats.opened, stats.closed, stats.rejected) == (
                len(NAMES),
                len(NAMES) * opened,
                len(NAMES) * closed,
                0,
            )
            costs.append(len(seen))
        assert costs == [STATEMENTS[engine.dialect.name]] * 2, costs
    finally:
        engine.dispose()
