"""The statements one differential post costs through ``ingest_log``: a fixed number,
whatever its rows, so a return to statements per row or per query fails here. The
row writes of ``storage.rowio`` go to the driver directly and are counted beside."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from fleetctl.server.node_service import ingest_log
from storage.engine import make_engine, make_sessionmaker, session_scope
from tests.storage.hosts import enrolled_host

NAMES = ("pack_ipc_processes", "pack_ipc_pipes", "pack_ipc_sockets")
# host lock (+ BEGIN IMMEDIATE on SQLite), host, deliveries, query states (one SELECT,
# one executemany UPDATE), deliveries upsert
STATEMENTS = 6


def line(name: str, t: int, counter: int, action: str, pid: int) -> dict[str, Any]:
    return {
        "name": name,
        "hostIdentifier": "h1",
        "unixTime": t,
        "epoch": 0,
        "counter": counter,
        "numerics": False,
        "columns": {"pid": str(pid)},
        "action": action,
    }


def differential(counter: int, closed: int, opened: int) -> list[dict[str, Any]]:
    """Each query closes ``closed`` rows the run before added and adds ``opened``."""
    t = 10 + counter
    return [
        line(
            name,
            t,
            counter,
            action,
            counter * 10_000 - p if action == "removed" else (counter + 1) * 10_000 - p,
        )
        for name in NAMES
        for action, rows in (("removed", closed), ("added", opened))
        for p in range(rows)
    ]


def counted(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_a_differential_post_costs_the_same_statements_whatever_its_rows(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        with session_scope(sessions) as session:
            host_id = enrolled_host(session)
        with session_scope(sessions) as session:
            baseline = [line(n, 10, 0, "added", 10_000 - p) for n in NAMES for p in range(5)]
            ingest_log(session, host_id, "result", baseline, 10)
        costs = []
        for counter, closed, opened in ((1, 5, 5), (2, 5, 50)):
            gen = counted(engine)
            seen = next(gen)
            with session_scope(sessions) as session:
                stats = ingest_log(
                    session, host_id, "result", differential(counter, closed, opened), 20
                )
            gen.close()
            assert (stats.runs, stats.opened, stats.closed, stats.rejected) == (
                len(NAMES),
                len(NAMES) * opened,
                len(NAMES) * closed,
                0,
            )
            costs.append(len(seen))
        assert costs == [STATEMENTS, STATEMENTS], costs
    finally:
        engine.dispose()
