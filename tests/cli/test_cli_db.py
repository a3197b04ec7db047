"""``fleetctl db``: the store the server ran on, a dry run, a confirmed short retention,
each prune in the audit trail, a missing PostgreSQL database created, and every database
error said in one line."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from fleetctl.cli import main
from fleetctl.timeutil import parse_time
from storage.database import shown
from storage.engine import make_engine
from storage.migrate import current_revision, head_revision, upgrade
from tests.conftest import PG_ADMIN_URL, RunningServer

PROC = "pack_ipc-telemetry_process_lineage"


def db(*args: str) -> Result:
    return CliRunner().invoke(main, ["db", *args])


def snapshot(t: int, rows: list[dict[str, str]]) -> dict[str, object]:
    return {"name": PROC, "hostIdentifier": "web-1", "unixTime": t, "epoch": 0,
            "counter": 0, "numerics": False, "action": "snapshot", "snapshot": rows}  # fmt: skip


def test_db_commands_use_the_store_the_server_ran_on(server: RunningServer) -> None:
    head = head_revision()
    current = db("current")  # no --db: the context file names the server's store
    assert current.exit_code == 0 and current.output == f"{head} (head {head})\n"


def test_prune_dry_run_counts_and_deletes_nothing(server: RunningServer) -> None:
    node = server.node("web-1", "u-web-1")
    node.enroll()
    node.log("result", [snapshot(1000, [{"pid": "1", "name": "init"}])])
    node.log("result", [snapshot(2000, [])])  # the row closed in 1970
    dry = db("prune", "--older-than", "1d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would prune 1 closed rows")
    # A row closed in 1970 has no day partition on PostgreSQL: it is deleted on its own
    # (older day partitions, empty, may go whole: the store's days depend on the clock).
    assert dry.output.splitlines()[1].endswith("1 rows to delete one by one")
    done = db("prune", "--older-than", "1d").output
    assert done.startswith("pruned 1 closed rows")
    assert done.splitlines()[1].endswith("1 rows deleted one by one")
    assert db("prune", "--older-than", "1d").output.startswith("pruned 0 closed rows")


def prunes(server: RunningServer) -> list[dict[str, Any]]:
    entries = server.admin().get("/api/v1/admin/audit").json()["audit"]
    return [e for e in entries if e["action"] == "fleetctl db prune"]


def test_each_prune_is_in_the_audit_trail_with_what_it_removed(server: RunningServer) -> None:
    node = server.node("web-1", "u-web-1")
    node.enroll()
    node.log("result", [snapshot(1000, [{"pid": "1", "name": "init"}])])
    node.log("result", [snapshot(2000, [])])
    started = int(time.time())
    assert db("prune", "--older-than", "2d", "--dry-run").exit_code == 0
    assert db("prune", "--older-than", "2d").exit_code == 0
    assert db("prune", "--older-than", "2d").exit_code == 0
    entries = prunes(server)
    assert [(e["user"], e["token"], e["source"], e["outcome"], e["status"]) for e in entries] == [
        ("local", "local", "local", "ok", 0)
    ] * 3
    assert all(started <= parse_time(e["at"]) <= time.time() for e in entries)
    cutoffs = [parse_time(e["details"]["cutoff"]) for e in entries]
    assert all(abs(c - (started - 2 * 86400)) <= 60 for c in cutoffs)
    said = [(e["details"]["older_than"], e["details"]["dry_run"]) for e in entries]
    assert said == [("2d", True), ("2d", False), ("2d", False)]
    removed = [e["details"]["removed"] for e in entries]
    assert [(r["closed_rows"], r["live_queries_and_hunt_runs"]) for r in removed] == [
        (1, 0),
        (1, 0),
        (0, 0),
    ]
    verified = CliRunner().invoke(main, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output


def test_a_retention_under_a_day_needs_yes(server: RunningServer) -> None:
    refused = db("prune", "--older-than", "1h")
    assert refused.exit_code == 2 and "add --yes if that is meant" in refused.output
    assert db("prune", "--older-than", "1h", "--yes").exit_code == 0


def test_no_store_is_an_error_not_a_new_empty_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETCTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLEETCTL_DB", raising=False)
    for args in (("current",), ("prune", "--older-than", "90d")):
        result = db(*args)
        assert result.exit_code == 1
        assert "no store at" in result.output and "fleetctl up" in result.output
    assert not (tmp_path / "home" / "fleet.db").exists()


def test_database_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETCTL_HOME", str(tmp_path))
    refused = db("current", "--db", "postgresql://postgres@127.0.0.1:1/x")
    assert refused.exit_code == 1
    assert "is the database server running?" in refused.output
    assert "Traceback" not in refused.output and refused.output.count("\n") == 1


@pytest.fixture
def pg_names() -> object:
    """A database and a role name of this test's own, dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"fleetctl_created_{suffix}", f"fleetctl_nocreate_{suffix}")
    yield names
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{names[0]}"')
        conn.execute(f'DROP ROLE IF EXISTS "{names[0]}_analyst"')
        conn.execute(f'DROP ROLE IF EXISTS "{names[1]}"')


def test_upgrade_creates_a_missing_postgresql_database(
    pg_names: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETCTL_HOME", str(tmp_path))
    database, login = pg_names
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{login}" LOGIN NOCREATEDB')
    server = PG_ADMIN_URL.rsplit("/", 1)[0].split("@", 1)[1]
    refused = db("upgrade", "--db", f"postgresql://{login}@{server}/{database}")
    assert refused.exit_code == 1 and refused.output.count("\n") == 1
    assert "may not create it" in refused.output and "createdb -h" in refused.output
    made = db("upgrade", "--db", f"postgresql://postgres@{server}/{database}")
    assert made.exit_code == 0, made.output
    assert f"created database postgresql://postgres@{server}/{database}" in made.output
    assert f"schema at {head_revision()}" in made.output


def test_a_store_behind_the_code_is_upgraded_or_named_before_it_is_read(
    pg_names: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read without a server, an older SQLite store upgrades itself (as `serve` does); a
    PostgreSQL store at an older revision is named with the command that upgrades it."""
    monkeypatch.setenv("FLEETCTL_HOME", str(tmp_path))
    older = "0011"
    sqlite_url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(sqlite_url)
    upgrade(engine, older)
    assert current_revision(engine) == older
    read = CliRunner().invoke(main, ["hosts", "list", "--db", sqlite_url])
    assert read.exit_code == 0, read.output
    assert current_revision(engine) == head_revision()
    engine.dispose()

    database = pg_names[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    pg_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    engine = make_engine(pg_url)
    upgrade(engine, older)
    engine.dispose()
    refused = CliRunner().invoke(main, ["hosts", "list", "--db", pg_url])
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1] == (
        f"Error: database schema is at {older}, code expects {head_revision()}: "
        f"run `fleetctl db upgrade --db {shown(pg_url)}` first"
    )
