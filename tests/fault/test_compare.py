"""The fault suite's judge must be able to fail: a store missing or doubling a row is
reported, and the same store as the hosts sent it is not."""

from __future__ import annotations

from sqlalchemy import text

from storage.engine import make_engine
from tests.conftest import RunningServer
from tests.fault.streams import Script, compare


def _send(server: RunningServer, script: Script) -> None:
    node = server.node(identifier=script.identifier, uuid=f"uuid-{script.identifier}")
    node.enroll()
    for interval, lines in enumerate(script.result_lines):
        assert all("error" not in a for a in node.log("result", lines))
        assert "error" not in node.log("status", [script.status_lines[interval]])[0]


def _execute(db_url: str, sql: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


def test_compare_accepts_the_store_and_catches_each_fault(server: RunningServer) -> None:
    script = Script.generate("judge", intervals=6, rows=30, seed=3)
    _send(server, script)
    db = server.settings.db_url
    assert compare(db, [script]).ok

    _execute(db, "DELETE FROM result_rows WHERE id = (SELECT min(id) FROM result_rows)")
    after_delete = compare(db, [script])
    assert after_delete.missing and not after_delete.ok

    _execute(
        db,
        "INSERT INTO result_rows (host_id, name, row_hash, columns, copies, first_seen,"
        " removed_at, seen_at) SELECT host_id, name, row_hash, columns, copies, first_seen,"
        " removed_at, seen_at FROM result_rows WHERE id = (SELECT max(id) FROM result_rows)",
    )
    assert compare(db, [script]).duplicated

    _execute(db, "DELETE FROM status_logs WHERE id = (SELECT min(id) FROM status_logs)")
    assert compare(db, [script]).status_lines
