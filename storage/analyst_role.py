"""The PostgreSQL analyst role: a login role that reads the hunting views and nothing else.

Roles are cluster-wide and grants are per database, so each fleet database gets its own
role, ``<database>_analyst``. Its password lives in ``store_secrets``, which only the
owner role reads, so every server replica of the store can connect as it. PostgreSQL
views read their tables with the view owner's rights, so SELECT on the views is all the
role needs; it gets no other table, no schema CREATE, no TEMP.

What a non-superuser may run by default is wider than that: the statements that narrow
it fall into three groups by who may run them.

- role: the role's attributes, password (as a SCRAM verifier computed here, so the plain
  text reaches neither the server's logs nor printed SQL) and settings: CREATEROLE.
- grants: CONNECT, schema USAGE, SELECT on the views, and no TEMP for PUBLIC: the
  database owner.
- superuser: revoking PUBLIC's EXECUTE on the pg_catalog functions that lock, signal,
  write or read large objects, set settings or run SQL text given as a string (and
  granting them back to the owner, whose ingest takes ``pg_advisory_xact_lock``), and
  ``temp_file_limit``.

``provision`` runs the groups the connected role may run and returns the SQL of the
others for a superuser; ``problems`` is what a server checks, as the analyst, before it
runs analyst SQL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL, make_url

from storage.engine import normalise_url
from storage.store_secrets import ensure_secret, stored_secret
from storage.views import hunting_views

PASSWORD_SECRET = "analyst_role_password"
MAX_IDENTIFIER = 63

# Role defaults: each analyst statement is also run under a SET LOCAL statement_timeout.
ROLE_SETTINGS = (
    ("default_transaction_read_only", "on"),
    ("statement_timeout", "10s"),
    ("lock_timeout", "5s"),
    ("idle_in_transaction_session_timeout", "30s"),
    ("work_mem", "8MB"),
)
SUPERUSER_SETTINGS = (("temp_file_limit", "256MB"),)

# Volatile pg_catalog functions PUBLIC may run by default that take locks (and can stall
# ingest, which locks per host), signal backends, touch large objects, change settings,
# emit WAL or replication state, maintain indexes, or execute SQL passed as text
# (around the one-statement rule); then those PostgreSQL already keeps from PUBLIC (files,
# server administration), so that ``problems`` refuses a role someone granted them.
REVOKED_FUNCTIONS = (
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_unlock",
    "pg_advisory_unlock_all", "pg_advisory_unlock_shared", "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared",
    "lo_close", "lo_creat", "lo_create", "lo_export", "lo_from_bytea", "lo_get",
    "lo_import", "lo_lseek", "lo_lseek64", "lo_open", "lo_put", "lo_tell", "lo_tell64",
    "lo_truncate", "lo_truncate64", "lo_unlink", "loread", "lowrite",
    "pg_cancel_backend", "pg_terminate_backend", "pg_notify", "set_config",
    "pg_logical_emit_message", "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot", "pg_copy_logical_replication_slot",
    "pg_copy_physical_replication_slot", "pg_drop_replication_slot",
    "pg_replication_slot_advance", "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes", "pg_logical_slot_peek_changes",
    "pg_logical_slot_peek_binary_changes", "pg_import_system_collations", "pg_nextoid",
    "pg_stop_making_pinned_objects", "pg_read_file_old", "pg_rotate_logfile_old",
    "brin_summarize_new_values", "brin_summarize_range", "brin_desummarize_range",
    "gin_clean_pending_list",
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
    "cursor_to_xmlschema", "ts_stat", "ts_rewrite",
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir",
    "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_reload_conf",
    "pg_rotate_logfile", "pg_promote", "pg_switch_wal", "pg_create_restore_point",
    "pg_backup_start", "pg_backup_stop", "pg_log_backend_memory_contexts",
)  # fmt: skip

# Each overload as ``pg_catalog.name(argument types)``, and whether PUBLIC may run it.
_FUNCTIONS_SQL = text(
    """SELECT p.oid, 'pg_catalog.' || p.oid::regprocedure::text AS signature,
        p.proacl IS NULL OR EXISTS (
            SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a
            WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_may
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'pg_catalog' AND p.proname = ANY(:names) AND p.provolatile = 'v'
    ORDER BY signature"""
)


class AnalystRoleError(RuntimeError):
    """The analyst role cannot be used as it is; the message says what to run."""


def role_name(database: str) -> str:
    """``<database>_analyst``, shortened with a digest to PostgreSQL's 63-byte limit."""
    name = f"{database}_analyst"
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(database.encode()).hexdigest()[:8]
    room = MAX_IDENTIFIER - len(f"_{digest}_analyst")
    head = database.encode()[:room].decode(errors="ignore")
    return f"{head}_{digest}_analyst"


def analyst_url(store_url: str, password: str) -> URL:
    """The store URL (host, port, database, options) with the analyst's user and password."""
    url = make_url(normalise_url(store_url))
    return url.set(username=role_name(url.database or ""), password=password)


def stored_password(conn: Connection) -> str | None:
    return stored_secret(conn, PASSWORD_SECRET)


def ensure_password(conn: Connection) -> str:
    """The analyst's password, created once per store (replicas race harmlessly)."""
    return ensure_secret(conn, PASSWORD_SECRET)


@dataclass(frozen=True)
class RolePlan:
    """The statements that make the analyst role what it should be, by who may run them."""

    role: str
    role_sql: tuple[str, ...]
    grant_sql: tuple[str, ...]
    superuser_sql: tuple[str, ...]

    def script(self, *groups: tuple[str, ...]) -> str:
        chosen = groups or (self.role_sql, self.grant_sql, self.superuser_sql)
        return "".join(f"{statement};\n" for group in chosen for statement in group)


@dataclass(frozen=True)
class Provisioned:
    role: str
    applied: tuple[str, ...]  # the groups run: "role", "grants", "superuser"
    pending_sql: str  # what a superuser still has to run ("" when nothing)


def plan(conn: Connection) -> RolePlan:
    """Read the database's state and write the statements (and the password secret)."""
    facts = conn.execute(
        text(
            """SELECT current_database() AS db, current_user AS owner,
                current_schema() AS schema, r.rolsuper AS owner_super
            FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"""
        )
    ).one()
    role = role_name(facts.db)
    existing = conn.execute(
        text(
            """SELECT r.rolsuper OR r.rolreplication OR r.rolbypassrls AS privileged,
                array(SELECT m.roleid::regrole::text FROM pg_catalog.pg_auth_members m
                      WHERE m.member = r.oid) AS memberships,
                coalesce(r.rolconfig, '{}') AS settings
            FROM pg_catalog.pg_roles r WHERE r.rolname = :role"""
        ),
        {"role": role},
    ).one_or_none()
    quote = _quoter(conn)
    password = _scram_verifier(conn, role, ensure_password(conn))
    # Only what PUBLIC may run now is revoked and granted back: granting the owner what
    # PUBLIC never had (server-side lo_import) would widen the owner's rights.
    functions = [
        f.signature
        for f in conn.execute(_FUNCTIONS_SQL, {"names": list(REVOKED_FUNCTIONS)})
        if f.public_may
    ]
    return RolePlan(
        role=role,
        role_sql=_role_sql(quote, role, password, existing),
        grant_sql=_grant_sql(quote, role, facts.db, facts.schema),
        superuser_sql=_superuser_sql(
            quote, role, facts.owner, functions, bool(facts.owner_super), existing
        ),
    )


def provision(engine: Engine) -> Provisioned:
    """Create or update the role with what the connected role may do; one transaction."""
    with engine.begin() as conn:
        may = conn.execute(
            text(
                """SELECT r.rolsuper AS superuser, r.rolsuper OR r.rolcreaterole AS createrole,
                    r.rolsuper OR d.datdba = r.oid AS owns_database
                FROM pg_catalog.pg_roles r, pg_catalog.pg_database d
                WHERE r.rolname = current_user AND d.datname = current_database()"""
            )
        ).one()
        role_plan = plan(conn)
        groups = (
            ("role", role_plan.role_sql, may.createrole),
            ("grants", role_plan.grant_sql, may.createrole and may.owns_database),
            ("superuser", role_plan.superuser_sql, may.superuser),
        )
        applied: list[str] = []
        pending: list[tuple[str, ...]] = []
        for name, statements, allowed in groups:
            # A group runs only when every group before it did: grants need the role.
            if allowed and not pending:
                for statement in statements:
                    conn.exec_driver_sql(statement)
                applied.append(name)
            else:
                pending.append(statements)
    return Provisioned(
        role_plan.role, tuple(applied), role_plan.script(*pending) if pending else ""
    )


def problems(conn: Connection) -> list[str]:
    """What is wrong with the role ``conn`` is logged in as, for analyst SQL; [] if none."""
    found: list[str] = []
    me = conn.execute(
        text(
            """SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
                r.rolbypassrls, r.rolinherit,
                array(SELECT m.roleid::regrole::text FROM pg_catalog.pg_auth_members m
                      WHERE m.member = r.oid) AS memberships
            FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"""
        )
    ).one()
    attributes = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
    powers = [a[3:].upper() for a in attributes if getattr(me, a)]
    if powers:
        found.append(f"it has {', '.join(powers)}")
    if me.memberships:
        found.append(f"it is a member of {', '.join(me.memberships)}")
    runnable = conn.scalars(
        text(
            f"SELECT signature FROM ({_FUNCTIONS_SQL.text}) AS f"
            " WHERE pg_catalog.has_function_privilege(f.oid, 'EXECUTE')"
        ),
        {"names": list(REVOKED_FUNCTIONS)},
    ).all()
    if runnable:
        shown = ", ".join(runnable[:4]) + (" ..." if len(runnable) > 4 else "")
        found.append(f"it may still run {len(runnable)} risky functions ({shown})")
    readable = conn.execute(
        text(
            """SELECT c.relname, pg_catalog.has_table_privilege(c.oid, 'SELECT') AS can_read
            FROM pg_catalog.pg_class c
            WHERE c.relnamespace = current_schema()::regnamespace
              AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"""
        )
    ).all()
    views = set(hunting_views())
    extra = sorted(r.relname for r in readable if r.can_read and r.relname not in views)
    if extra:
        found.append(f"it may read {', '.join(extra)}")
    unread = sorted(views - {r.relname for r in readable if r.can_read})
    if unread:
        found.append(f"it may not read {', '.join(unread)}")
    return found


def _quoter(conn: Connection) -> Any:
    raw = conn.connection.driver_connection

    def quote(value: str, *, literal: bool = False) -> str:
        part = sql.Literal(value) if literal else sql.Identifier(value)
        return part.as_string(raw)

    return quote


def _scram_verifier(conn: Connection, role: str, password: str) -> str:
    pgconn: Any = conn.connection.driver_connection.pgconn  # type: ignore[union-attr]
    verifier: bytes = pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    return verifier.decode()


def _role_sql(quote: Any, role: str, password: str, existing: Any) -> tuple[str, ...]:
    r = quote(role)
    statements = []
    if existing is None:
        statements.append(
            f"CREATE ROLE {r} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
            " NOREPLICATION NOBYPASSRLS"
        )
    # (NO)SUPERUSER, REPLICATION and BYPASSRLS may be altered by superusers only.
    statements.append(
        f"ALTER ROLE {r} WITH LOGIN NOCREATEDB NOCREATEROLE NOINHERIT"
        f" PASSWORD {quote(password, literal=True)}"
    )
    for name, value in ROLE_SETTINGS:
        statements.append(f"ALTER ROLE {r} SET {name} = {quote(value, literal=True)}")
    for membership in existing.memberships if existing is not None else ():
        statements.append(f"REVOKE {membership} FROM {r}")
    return tuple(statements)


def _grant_sql(quote: Any, role: str, database: str, schema: str) -> tuple[str, ...]:
    r, db, s = quote(role), quote(database), quote(schema)
    views = ", ".join(f"{s}.{quote(v)}" for v in hunting_views())
    return (
        f"REVOKE ALL ON DATABASE {db} FROM {r}",
        f"REVOKE ALL ON SCHEMA {s} FROM {r}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {r}",
        f"REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {db} TO {r}",
        f"GRANT USAGE ON SCHEMA {s} TO {r}",
        f"GRANT SELECT ON {views} TO {r}",
    )


def _superuser_sql(
    quote: Any, role: str, owner: str, functions: list[str], owner_super: bool, existing: Any
) -> tuple[str, ...]:
    r = quote(role)
    statements = []
    if existing is not None and existing.privileged:
        statements.append(f"ALTER ROLE {r} WITH NOSUPERUSER NOREPLICATION NOBYPASSRLS")
    if functions:
        listed = "".join(f"\n    {f}," for f in functions).rstrip(",")
        statements.append(f"REVOKE EXECUTE ON FUNCTION{listed}\nFROM PUBLIC")
        if not owner_super:
            statements.append(f"GRANT EXECUTE ON FUNCTION{listed}\nTO {quote(owner)}")
    settings = existing.settings if existing is not None else []
    for name, value in SUPERUSER_SETTINGS:
        if f"{name}={value}" not in settings:
            statements.append(f"ALTER ROLE {r} SET {name} = {quote(value, literal=True)}")
    return tuple(statements)
