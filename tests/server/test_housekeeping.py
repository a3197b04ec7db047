"""The server's periodic work survives a failing round (say, the database restarting)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, update

from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import Host
from tests.conftest import RunningServer


def test_housekeeping_goes_on_after_a_round_fails(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    state = server.thread.state
    calls: list[float] = []

    def failing_flush() -> None:
        calls.append(time.monotonic())
        raise RuntimeError("database is restarting")

    with caplog.at_level("ERROR", logger="fleetctl.server"):
        monkeypatch.setattr(state, "flush_checkins", failing_flush)
        deadline = time.monotonic() + 10
        while len(calls) < 3:
            assert time.monotonic() < deadline, "housekeeping stopped after a failure"
            time.sleep(0.1)
    assert "housekeeping failed" in caplog.text

    # Once the database is back, check-ins are written again.
    monkeypatch.undo()
    node = server.node("back", "u-back")
    node.enroll()
    engine = make_engine(server.settings.db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        session.execute(update(Host).values(last_seen=1))
    node.call("/distributed/read")
    deadline = time.monotonic() + 10
    while True:
        with session_scope(make_sessionmaker(engine)) as session:
            if session.scalars(select(Host.last_seen)).one() > 1:
                break
        assert time.monotonic() < deadline, "the check-in was never written"
        time.sleep(0.2)
    engine.dispose()
