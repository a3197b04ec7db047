"""A running server keeps the result history's day partitions made ahead (PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import partitions
from storage.engine import make_engine
from tests.conftest import RunningServer, _truncate_pg


def test_the_server_makes_the_days_ahead(
    pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _truncate_pg(pg_database)
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    today = partitions.day_of(int(time.time()))
    ahead = partitions.day_name(today + partitions.AHEAD_DAYS * partitions.DAY)
    engine = make_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(text(f'DROP TABLE IF EXISTS "{ahead}"'))

    def days() -> set[str]:
        with engine.connect() as conn:
            return {p.name for p in partitions.day_partitions(conn)}

    assert ahead not in days()
    server = RunningServer(home, pg_database)
    try:
        deadline = time.monotonic() + 30
        while ahead not in days():
            assert time.monotonic() < deadline, "the server made no day partition ahead"
            time.sleep(0.2)
    finally:
        server.stop()
        engine.dispose()
