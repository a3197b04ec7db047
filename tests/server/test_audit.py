"""The audit trail through a real server, on SQLite and PostgreSQL: what is recorded
(changes, queries with their SQL, refused tokens; secrets hidden), that the table
refuses edits, and that ``fleetctl audit verify`` catches an entry edited or removed
behind its back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from fleetctl.cli import main
from fleetctl.cli.client import ssl_context
from fleetctl.server.local import store_client
from storage import audit
from storage.engine import make_engine, make_sessionmaker, session_scope
from tests.conftest import RunningServer

API = "/api/v1/admin"


def trail(admin: httpx.Client) -> list[dict[str, Any]]:
    answer = admin.get(f"{API}/audit")
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["audit"]
    return entries


def test_changes_queries_and_refused_tokens_are_recorded(server: RunningServer) -> None:
    admin = server.admin()
    ran = admin.post(f"{API}/sql", json={"sql": "SELECT count(*) AS n FROM hunt_hosts"})
    assert ran.status_code == 200, ran.text
    bad = admin.post(f"{API}/sql", json={"sql": "DELETE FROM hosts"})
    assert bad.status_code == 400
    stranger = httpx.post(
        f"{server.url}{API}/sql",
        json={"sql": "SELECT 1"},
        headers={"Authorization": "Bearer guessed-token"},
        verify=ssl_context(server.ca),
    )
    assert stranger.status_code == 401
    labelled = admin.post(
        f"{API}/labels", json={"name": "web", "hosts": [], "secret": "s3", "note": "x"}
    )
    assert labelled.status_code == 200, labelled.text
    admin.get(f"{API}/hosts")  # a read: not recorded

    entries = trail(admin)
    assert [(e["action"], e["outcome"], e["status"]) for e in entries] == [
        ("POST /api/v1/admin/sql", "ok", 200),
        ("POST /api/v1/admin/sql", "refused", 400),
        ("POST /api/v1/admin/sql", "refused", 401),
        ("POST /api/v1/admin/labels", "ok", 200),
    ]
    ok, refused, stranger_entry, label = entries
    assert ok["details"] == {"body": {"sql": "SELECT count(*) AS n FROM hunt_hosts"}}
    assert refused["details"]["body"]["sql"] == "DELETE FROM hosts"
    assert ok["user"] == refused["user"] != "-"
    assert stranger_entry["user"] == "-" and "guessed-token" not in str(stranger_entry)
    assert label["details"]["body"]["secret"] == "[hidden]"
    assert all(e["source"] == "127.0.0.1" for e in entries)
    assert admin.get(f"{API}/audit", params={"user": "nobody"}).json()["audit"] == []


def test_the_command_line_over_the_store_is_recorded_as_local(server: RunningServer) -> None:
    with store_client(server.settings.db_url, timeout=30) as local:
        local.post(f"{API}/labels", json={"name": "web", "hosts": []}).raise_for_status()
    (entry,) = trail(server.admin())
    assert (entry["user"], entry["token"], entry["source"]) == ("local", "local", "local")
    assert (entry["action"], entry["outcome"]) == ("POST /api/v1/admin/labels", "ok")


def listed(*args: str) -> list[tuple[str, str]]:
    """``fleetctl audit ARGS``: who did what, entry by entry."""
    result = CliRunner().invoke(main, ["audit", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return [(e["user"], e["action"]) for e in json.loads(result.stdout)]


def test_audit_lists_by_time_and_user_name_with_or_without_list(server: RunningServer) -> None:
    engine = make_engine(server.settings.db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        old = audit.Entry(
            int(time.time()) - 2 * 86400, "ana", "nb", "10.0.0.1", "POST /x", "", {}, "ok", 200
        )
        audit.append(session, old)
    engine.dispose()
    server.admin().post(f"{API}/sql", json={"sql": "SELECT 1 AS n"}).raise_for_status()
    recent = [("admin", f"POST {API}/sql")]
    assert listed("--since", "1d") == listed("list", "--since", "1d") == recent
    assert listed("--since", "3d") == listed() == [("ana", "POST /x"), *recent]
    assert listed("--user", "ana") == [("ana", "POST /x")]
    assert listed("--since", "1d", "--user", "ana") == []
    assert listed("--user", "nb") == []  # a token's name is not a user's


def test_the_table_refuses_edits_and_verify_finds_them(server: RunningServer) -> None:
    admin = server.admin()
    for n in range(4):
        admin.post(f"{API}/sql", json={"sql": f"SELECT {n} AS n"}).raise_for_status()
    intact = CliRunner().invoke(main, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    assert "audit trail intact: 4 entries" in intact.output

    engine = make_engine(server.settings.db_url)
    for statement in ("UPDATE audit_log SET actor = 'someone'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))

    # Behind the triggers' back, as the database's owner could: one entry's SQL edited,
    # another removed.
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        conn.execute(
            text("UPDATE audit_log SET details = :d WHERE id = 2"),
            {"d": '{"body": {"sql": "SELECT 42 AS n"}}'},
        )
        conn.execute(text("DELETE FROM audit_log WHERE id = 3"))
    engine.dispose()

    broken = CliRunner().invoke(main, ["audit", "verify", "--format", "json"])
    assert broken.exit_code == 1
    assert '"id":2' in broken.output.replace(" ", "") and "edited" in broken.output
    assert '"id":4' in broken.output.replace(" ", "") and "removed" in broken.output
    listed = CliRunner().invoke(main, ["audit", "list", "--format", "json"])
    assert listed.exit_code == 0 and "SELECT 42" in listed.output


def test_entries_are_also_appended_to_the_audit_file(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    path = tmp_path / "audit.jsonl"
    server = RunningServer(home, db_url, audit_file=path)
    try:
        admin = server.admin()
        admin.post(f"{API}/sql", json={"sql": "SELECT 1 AS n"}).raise_for_status()
        refused = admin.post(f"{API}/users", json={"name": "x", "role": "root", "password": "p"})
        assert refused.status_code == 400
        stored = trail(admin)
    finally:
        server.stop()
    assert path.stat().st_mode & 0o777 == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["actor"], e["action"], e["status"], e["details"]) for e in lines] == [
        (e["user"], e["action"], e["status"], e["details"]) for e in stored
    ]
    assert all(len(e["hash"]) == 64 for e in lines)
    assert lines[0]["actor"] == "admin" and lines[0]["token"] == "fleetctl-cli"
    assert lines[1]["details"]["body"]["password"] == "[hidden]"
