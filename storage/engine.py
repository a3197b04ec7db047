"""Engines and sessions for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so two writers queue instead of failing on a lock upgrade.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolResetState, QueuePool

from storage import sqlite_guard
from storage.views import hunting_views


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use psycopg 3 for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalise_url(url)).get_backend_name() == "sqlite"


def make_engine(url: str, *, readonly: bool = False, **kwargs: Any) -> Engine:
    """Create an engine with the per-dialect settings this store relies on.

    ``readonly`` engines refuse writes at the database level (SQLite ``query_only``,
    PostgreSQL ``default_transaction_read_only``), for admin reads and user SQL.
    """
    url = normalise_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        _configure_sqlite(engine, readonly)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    if readonly:
        kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not readonly:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if readonly:
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Readers never block each other in WAL mode; writers queue on the lock up front.
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_analyst_engine(
    url: str, *, slots: int, wait: float, value_bytes: int, max_columns: int
) -> Engine:
    """The engine of analyst SQL: ``slots`` pooled connections and no overflow, so analyst
    SQL can never take a connection the server needs.

    SQLite: read-only connections guarded by ``storage.sqlite_guard``, in autocommit (no
    BEGIN, so the authorizer refuses transaction control too). PostgreSQL: ``url`` is the
    analyst role's; psycopg never prepares on its own (``DISCARD ALL`` would drop what it
    prepared), and every connection is reset with ``DISCARD ALL`` when it comes back,
    which also ends session-level advisory locks and settings.
    """
    url = normalise_url(url)
    pool = {"poolclass": QueuePool, "pool_size": slots, "max_overflow": 0, "pool_timeout": wait}
    if is_sqlite(url):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
        )
        _guard_sqlite(engine, value_bytes, max_columns)
        return engine
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_reset_on_return=None,
        connect_args={"prepare_threshold": None, "application_name": "fleetctl-analyst"},
        **pool,
    )
    event.listen(engine, "reset", _discard_all)
    return engine


def _guard_sqlite(engine: Engine, value_bytes: int, max_columns: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None
        # Text that is not UTF-8 (CAST(x'ff' AS TEXT)) is an answer, not an error.
        dbapi_conn.text_factory = _lenient_text
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        record.info["refusals"] = sqlite_guard.guard(
            dbapi_conn, hunting_views(), value_bytes, max_columns
        )


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _discard_all(dbapi_conn: Any, _record: Any, state: PoolResetState) -> None:
    dbapi_conn.rollback()
    if state.terminate_only:
        return
    dbapi_conn.autocommit = True
    try:
        dbapi_conn.execute("DISCARD ALL")
    finally:
        dbapi_conn.autocommit = False


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def statements_sent(
    session: Session, read: Callable[[Session], object], *, naming: tuple[str, ...] = ()
) -> list[tuple[str, Any]]:
    """The statements (with their parameters) that ``read(session)`` sends on the
    session's connection, those whose SQL names one of ``naming`` (all if empty): what a
    plan check EXPLAINs, or what a count of round trips counts."""
    seen: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if not naming or any(name in sql for name in naming):
            seen.append((sql, params))

    bind = session.connection()
    event.listen(bind, "before_cursor_execute", keep)
    try:
        read(session)
    finally:
        event.remove(bind, "before_cursor_execute", keep)
    return seen
