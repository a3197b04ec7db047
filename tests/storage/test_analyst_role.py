"""The PostgreSQL analyst role: exactly the intended privileges, provisioning as far as
the store's owner may, and servers that refuse a role that is missing or too strong."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from fleetctl.cli import main
from storage import analyst_role
from storage.engine import make_analyst_engine, make_engine
from storage.migrate import upgrade
from storage.views import hunting_views
from tests.conftest import PG_ADMIN_URL, RunningServer, _truncate_pg

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
FILE_AND_ADMIN = (
    "pg_catalog.pg_read_file(text)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_ls_dir(text)",
    "pg_catalog.pg_stat_file(text)",
    "pg_catalog.lo_import(text)",
    "pg_catalog.lo_export(oid,text)",
    "pg_catalog.pg_reload_conf()",
)


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def holds(conn: psycopg.Connection[Any], check: str, *args: Any) -> bool:
    """One ``has_*_privilege`` answer."""
    row = conn.execute(f"SELECT {check}", args).fetchone()
    return bool(row and row[0])


def privileges(url: str) -> dict[str, Any]:
    """Everything the analyst role of ``url``'s database may do there, as a superuser sees it."""
    role = analyst_role.role_name(database_of(url))
    with psycopg.connect(url) as conn:
        relations = conn.execute(
            "SELECT c.oid, c.relname, c.relkind FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace"
            " AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
        ).fetchall()
        tables = {}
        for oid, name, kind in relations:
            if kind == "S":
                check, kinds = "has_sequence_privilege(%s, %s::oid, %s)", ("USAGE", "SELECT")
            else:
                check, kinds = "has_table_privilege(%s, %s::oid, %s)", TABLE_PRIVILEGES
            granted = [p for p in kinds if holds(conn, check, role, oid, p)]
            columns = kind != "S" and holds(
                conn, "has_any_column_privilege(%s, %s::oid, 'SELECT')", role, oid
            )
            if granted or columns:
                tables[name] = granted
        database = [
            p
            for p in ("CONNECT", "CREATE", "TEMPORARY")
            if holds(conn, "has_database_privilege(%s, current_database(), %s)", role, p)
        ]
        schema = [
            p
            for p in ("USAGE", "CREATE")
            if holds(conn, "has_schema_privilege(%s, 'public', %s)", role, p)
        ]
        functions = conn.execute(
            "SELECT 'pg_catalog.' || p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY(%s)"
            " AND p.provolatile = 'v'"  # ts_rewrite(tsquery, tsquery, tsquery) runs no SQL
            " AND has_function_privilege(%s, p.oid, 'EXECUTE')",
            (list(analyst_role.REVOKED_FUNCTIONS), role),
        ).fetchall()
        files = [
            f
            for f in FILE_AND_ADMIN
            if holds(conn, "has_function_privilege(%s, %s, 'EXECUTE')", role, f)
        ]
        attributes = conn.execute(
            "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,"
            " rolreplication, rolbypassrls, rolconfig,"
            " array(SELECT roleid::regrole::text FROM pg_auth_members WHERE member = r.oid)"
            " FROM pg_roles r WHERE rolname = %s",
            (role,),
        ).fetchone()
    return {
        "tables": tables,
        "database": database,
        "schema": schema,
        "risky functions": [f for (f,) in functions] + files,
        "attributes": attributes,
    }


def test_the_analyst_role_has_exactly_the_intended_privileges(pg_database: str) -> None:
    assert privileges(pg_database) == {
        "tables": {view: ["SELECT"] for view in hunting_views()},
        "database": ["CONNECT"],
        "schema": ["USAGE"],
        "risky functions": [],
        "attributes": (
            False,  # superuser
            False,  # inherit
            False,  # createrole
            False,  # createdb
            True,  # login
            False,  # replication
            False,  # bypassrls
            [
                "default_transaction_read_only=on",
                "statement_timeout=10s",
                "lock_timeout=5s",
                "idle_in_transaction_session_timeout=30s",
                "work_mem=8MB",
                "temp_file_limit=256MB",
            ],
            [],  # member of no role
        ),
    }


def test_the_owner_keeps_the_functions_ingest_needs(pg_database: str) -> None:
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT pg_try_advisory_xact_lock(1)").fetchone() == (True,)


def test_role_names_fit_postgresql_identifiers() -> None:
    assert analyst_role.role_name("fleet") == "fleet_analyst"
    long = analyst_role.role_name("d" * 70)
    assert len(long.encode()) == 63 and long.endswith("_analyst")
    assert long != analyst_role.role_name("d" * 69)


def test_db_upgrade_reports_the_role_and_print_sql_hides_the_password(pg_database: str) -> None:
    upgraded = CliRunner().invoke(main, ["db", "upgrade", "--db", pg_database])
    assert upgraded.exit_code == 0, upgraded.output
    role = analyst_role.role_name(database_of(pg_database))
    assert f"analyst role {role}: applied role, grants, superuser" in upgraded.output
    printed = CliRunner().invoke(main, ["db", "analyst-role", "--print-sql", "--db", pg_database])
    assert printed.exit_code == 0, printed.output
    engine = make_engine(pg_database)
    with engine.connect() as conn:
        password = analyst_role.stored_password(conn)
    engine.dispose()
    assert password and password not in printed.output
    assert "PASSWORD 'SCRAM-SHA-256$4096:" in printed.output
    assert "GRANT SELECT ON " in printed.output and '"public"."hunt_hosts"' in printed.output
    assert "REVOKE EXECUTE ON FUNCTION" not in printed.output  # already revoked


def test_a_discarded_connection_holds_no_advisory_lock(pg_database: str) -> None:
    """The analyst pool's reset (DISCARD ALL) ends session locks and settings."""
    engine = make_analyst_engine(pg_database, slots=1, wait=1, value_bytes=1024, max_columns=10)
    try:
        pooled = engine.raw_connection()
        raw: Any = pooled.driver_connection
        pid = raw.execute("SELECT pg_backend_pid()").fetchone()[0]
        raw.execute("SELECT pg_advisory_lock(424242)")
        raw.execute("SET work_mem = '64MB'")
        pooled.close()
        with psycopg.connect(pg_database) as other:
            held = other.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242"
            ).fetchone()
        assert held == (0,)
        pooled = engine.raw_connection()
        raw = pooled.driver_connection
        assert raw.execute("SELECT pg_backend_pid()").fetchone()[0] == pid  # same session
        assert raw.execute("SHOW work_mem").fetchone()[0] != "64MB"
        pooled.close()
    finally:
        engine.dispose()


@pytest.fixture
def owner_database() -> Iterator[str]:
    """A fresh store owned by a role with CREATEROLE but not superuser, and migrated by it."""
    suffix = uuid.uuid4().hex[:10]
    owner, name = f"fleetctl_owner_{suffix}", f"fleetctl_owned_{suffix}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN CREATEROLE')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    base = PG_ADMIN_URL.rsplit("@", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql://{owner}@{base}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{analyst_role.role_name(name)}"')
        conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


def test_an_owner_without_superuser_gets_the_sql_a_superuser_must_run(
    owner_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(owner_database)
    done = analyst_role.provision(engine)
    assert done.applied == ("role", "grants")
    assert done.pending_sql.startswith("REVOKE EXECUTE ON FUNCTION\n")
    assert "pg_catalog.pg_advisory_lock(bigint)" in done.pending_sql
    assert "GRANT EXECUTE ON FUNCTION" in done.pending_sql  # back to the owner
    assert "temp_file_limit" in done.pending_sql

    # Until a superuser has run it, the server refuses analyst SQL and says why.
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    srv = RunningServer(home, owner_database)
    try:
        answer = srv.admin().post("/api/v1/admin/sql", json={"sql": "SELECT 1"})
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error.startswith(f"the analyst role {done.role} is not safe to use: it may still")
        assert "fleetctl db analyst-role --print-sql" in error

        superuser_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database_of(owner_database)
        with psycopg.connect(superuser_url, autocommit=True) as conn:
            conn.execute(done.pending_sql)  # type: ignore[call-overload]
        assert analyst_role.provision(engine) == analyst_role.Provisioned(
            done.role, ("role", "grants"), ""
        )
        with engine.begin() as conn:  # the owner's ingest lock still works
            assert conn.scalar(text("SELECT pg_try_advisory_xact_lock(7)")) is True
        answer = srv.admin().post("/api/v1/admin/sql", json={"sql": "SELECT 1 AS one"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["rows"] == [{"one": 1}]
    finally:
        srv.stop()
        engine.dispose()


@pytest.fixture
def pg_store(pg_database: str) -> str:
    """The session's PostgreSQL store, emptied (a server's first start writes its secret)."""
    _truncate_pg(pg_database)
    return pg_database


def test_a_superuser_analyst_url_is_refused(
    pg_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_database = pg_store
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    srv = RunningServer(home, pg_database, analyst_db=pg_database)
    try:
        answer = srv.admin().post("/api/v1/admin/sql", json={"sql": "SELECT 1"})
        assert answer.status_code == 503
        assert answer.json()["error"].startswith(
            "the analyst role postgres is not safe to use: it has SUPER, CREATEROLE, CREATEDB,"
            " REPLICATION, BYPASSRLS"
        )
    finally:
        srv.stop()


def test_an_analyst_url_that_cannot_log_in_is_refused(
    pg_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_database = pg_store
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    nobody = pg_database.replace("postgres@", "fleetctl_nobody_here@")
    srv = RunningServer(home, pg_database, analyst_db=nobody)
    try:
        answer = srv.admin().post("/api/v1/admin/sql", json={"sql": "SELECT 1"})
        assert answer.status_code == 503
        assert answer.json()["error"].startswith(
            "cannot log in as the analyst role fleetctl_nobody_here:"
        )
    finally:
        srv.stop()
