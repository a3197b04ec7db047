"""The database a store lives in: create it when missing, and say in one line what a
database error means (refused, authentication, missing, read-only) without a traceback."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from storage.engine import is_sqlite, normalise_url


class DatabaseProblem(Exception):
    """A database that cannot be used, said in words an admin can act on."""


def shown(url: str | URL) -> str:
    """The URL as the admin writes it (no driver name), its password hidden."""
    parsed = make_url(str(url) if isinstance(url, str) else url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database or another dialect)."""
    if not is_sqlite(url):
        return None
    database = make_url(normalise_url(url)).database
    return Path(database) if database and database != ":memory:" else None


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database of ``url`` if it does not exist (a SQLite file is
    created by its first connection); True when it was created. A login that may not
    create databases gets a ``DatabaseProblem`` saying how to create it."""
    if is_sqlite(url):
        return False
    target = make_url(normalise_url(url))
    name = target.database or ""
    server = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(name)
            try:
                conn.execute(text(f"CREATE DATABASE {quoted}"))
            except DBAPIError as exc:
                raise DatabaseProblem(
                    f"database {name!r} does not exist and {target.username or 'this login'}"
                    f" may not create it ({first_line(exc)}); create it with: createdb -h"
                    f" {target.host or 'localhost'} -p {target.port or 5432} -O"
                    f" {target.username or 'postgres'} {name}"
                ) from None
            return True
    except SQLAlchemyError as exc:
        raise DatabaseProblem(describe(exc, url)) from None
    finally:
        server.dispose()


def first_line(exc: BaseException) -> str:
    """The driver's own first line of an error."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0].strip() if lines else type(original).__name__


def describe(exc: BaseException, url: str | None = None) -> str:
    """One line for a database error: what happened, where, and what to do."""
    where = f" at {shown(url)}" if url else ""
    message = first_line(exc)
    lowered = message.lower()
    if "does not exist" in lowered and "database" in lowered:
        hint = "; `fleetctl db upgrade --db URL` creates it"
    elif "connection refused" in lowered or "could not connect" in lowered:
        hint = "; is the database server running?"
    elif "password authentication failed" in lowered or "no password supplied" in lowered:
        hint = "; check the user and password in the URL"
    elif "read-only" in lowered or "readonly" in lowered:
        hint = "; the database refuses writes"
    elif "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        hint = "; run `fleetctl db upgrade` for this database"
    else:
        hint = ""
    return f"database error{where}: {message}{hint}"
