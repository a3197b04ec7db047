"""Nothing is lost and nothing is stored twice: server outage, lost answers, agent
restart and a node key the server no longer knows."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import ResultRow
from tests.agent.conftest import (
    HOST,
    AgentFactory,
    FleetServer,
    RecordingTransport,
    children_sql,
    spawn_sleep,
    wait_for,
)


def history(server: FleetServer, name: str) -> list[tuple[str, int | None, int | None]]:
    """Every row the server ever stored for ``name``: (pid, first_seen, removed_at)."""
    engine = make_engine(server.db)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            rows = session.execute(
                select(ResultRow.columns, ResultRow.first_seen, ResultRow.removed_at).where(
                    ResultRow.name == name
                )
            ).all()
    finally:
        engine.dispose()
    return [(r[0]["pid"], r[1], r[2]) for r in rows]


def pids(rows: list[dict[str, Any]]) -> set[int]:
    return {int(r["pid"]) for r in rows}


def counter(agent_state: Any, name: str) -> int:
    with agent_state.reading() as conn:
        row = conn.execute("SELECT counter FROM query_state WHERE name = ?", (name,)).fetchone()
    return -1 if row is None else int(row[0])


def test_outage_then_agent_restart_deliver_everything_exactly_once(
    any_fleet: FleetServer, served_config: dict[str, Any], make_agent: AgentFactory
) -> None:
    fleet = any_fleet
    served_config["schedule"] = {"children": {"query": children_sql(), "interval": 1}}
    a, b, c = spawn_sleep(), None, None
    server = fleet
    agent = make_agent(fleet)
    try:
        agent.start()
        wait_for(lambda: pids(server.rows("children")) == {a.pid}, what="baseline")

        server.stop()  # the server goes away; the agent keeps running its schedule
        b = spawn_sleep()
        wait_for(lambda: counter(agent.state, "children") == 1, what="diff while down")
        a.kill()
        a.wait()
        wait_for(lambda: counter(agent.state, "children") == 2, what="second diff while down")
        assert agent.buffer.count("result") == 2  # added b, removed a: buffered on disk
        assert agent.forwarder.backoff["result"].failures >= 1

        server = server.restart()  # same database, same port
        wait_for(lambda: pids(server.rows("children")) == {b.pid}, what="delivery")
        wait_for(lambda: agent.buffer.count() == 0, what="empty buffer")

        agent.stop()  # the agent restarts on the same state directory
        c = spawn_sleep()
        again = make_agent(server)
        again.start()
        wait_for(lambda: pids(server.rows("children")) == {b.pid, c.pid}, what="after restart")
        assert counter(again.state, "children") == 3  # no new baseline: the diff goes on
        assert again.keys.enrollments == 0
        assert server.queries()["children"]["counter"] == 3
        assert server.data_loss() == []
        stored = history(server, "children")
        assert Counter(pid for pid, _, _ in stored) == {str(a.pid): 1, str(b.pid): 1, str(c.pid): 1}
        closed = {pid for pid, _, removed_at in stored if removed_at is not None}
        assert closed == {str(a.pid)}
        assert server.admin_get(f"/hosts/{HOST}")["host"]["enroll_count"] == 1
    finally:
        server.stop()
        for child in (a, b, c):
            if child is not None:
                child.kill()
                child.wait()


def test_lost_answers_are_resent_and_stored_once(
    fleet: FleetServer, served_config: dict[str, Any], make_agent: AgentFactory
) -> None:
    served_config["schedule"] = {"children": {"query": children_sql(), "interval": 1}}
    a = spawn_sleep()
    wire = RecordingTransport(fleet.ca, lose_log_answers=3)
    agent = make_agent(fleet, http_transport=wire)
    try:
        agent.start()
        wait_for(lambda: pids(fleet.rows("children")) == {a.pid}, what="baseline")
        b = spawn_sleep()
        wait_for(lambda: pids(fleet.rows("children")) == {a.pid, b.pid}, what="diff")
        wait_for(
            lambda: wire.lose_log_answers == 0 and agent.buffer.count() == 0,
            what="every answer lost once, then delivered",
        )
        lost = [e for e in wire.exchanges if e.path.endswith("/log") and e.answer is None]
        assert len(lost) == 3
        assert fleet.data_loss() == []
        assert Counter(pid for pid, _, _ in history(fleet, "children")) == {
            str(a.pid): 1,
            str(b.pid): 1,
        }
        b.kill()
        b.wait()
    finally:
        a.kill()
        a.wait()


def test_node_invalid_reenrolls_and_sends_the_buffered_lines_under_the_new_key(
    fleet: FleetServer, served_config: dict[str, Any], make_agent: AgentFactory
) -> None:
    served_config["schedule"] = {"children": {"query": children_sql(), "interval": 1}}
    a = spawn_sleep()
    wire = RecordingTransport(fleet.ca)
    agent = make_agent(fleet, http_transport=wire, distributed=False, flags={"config_refresh": 0})
    b = None
    try:
        agent.start()
        wait_for(lambda: pids(fleet.rows("children")) == {a.pid}, what="baseline")
        old_key = agent.keys.current()
        fleet.rekey_host()
        b = spawn_sleep()
        wait_for(lambda: pids(fleet.rows("children")) == {a.pid, b.pid}, what="re-enrolled")
        assert agent.keys.enrollments == 2
        assert agent.keys.current() not in (None, old_key)
        paths = [
            (
                e.path.rsplit("/", 1)[-1],
                e.body.get("node_key"),
                (e.answer or {}).get("node_invalid"),
            )
            for e in wire.exchanges
        ]
        refused = next(
            i
            for i, (p, key, invalid) in enumerate(paths)
            if p == "log" and key == old_key and invalid
        )
        enrolled = next(i for i, (p, _, _) in enumerate(paths) if i > refused and p == "enroll")
        accepted = [
            e
            for e in wire.exchanges[enrolled:]
            if e.path.endswith("/log")
            and e.body["node_key"] == agent.keys.current()
            and any(line.get("columns", {}).get("pid") == str(b.pid) for line in e.body["data"])
        ]
        assert accepted and accepted[0].answer == {"node_invalid": False}
        assert fleet.admin_get(f"/hosts/{HOST}")["host"]["enroll_count"] == 2
        assert fleet.data_loss() == []
    finally:
        for child in (a, b):
            if child is not None:
                child.kill()
                child.wait()
