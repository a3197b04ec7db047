"""Analyst SQL in the server: its own engine, connection slots and threads.

A call takes one of ``analyst_slots`` places, waiting at most ``wait`` seconds (then
``AnalystBusy``, a 503), and runs in a worker thread of its own limiter on a pool of
the same size without overflow. Ingest and check-ins use the store's engine and
Starlette's default thread limiter, so slow analyst SQL never holds what they need.

On PostgreSQL the engine logs in as the analyst role: the one ``--analyst-db`` names, or
``<database>_analyst`` with the password the store keeps (``storage.analyst_role``). It
is used only once ``analyst_role.problems`` finds nothing wrong with it; until then
every call answers ``AnalystUnavailable`` (503) saying how to create the role.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import anyio
import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from fleetctl.errors import BadRequest, Unavailable
from fleetctl.settings import Settings
from storage import analyst_role, analyst_sql
from storage.analyst_sql import Caps, Refused, SQLResult
from storage.engine import is_sqlite, make_analyst_engine

HOW_TO = (
    "run `fleetctl db upgrade` as the store's owner; if it prints SQL for a superuser, a"
    " superuser must run it (`fleetctl db analyst-role --print-sql` prints it again)"
)


class AnalystBusy(Unavailable):
    """Every analyst SQL slot is taken; the caller should try again shortly."""


class AnalystUnavailable(Unavailable):
    """PostgreSQL has no usable analyst role; the message says how to create it."""


class AnalystSQL:
    """One server's analyst SQL: caps, admission, threads and the (lazily made) engine."""

    def __init__(self, settings: Settings, store: Engine, wait: float = 1.0) -> None:
        self.settings = settings
        self.store = store
        self.wait = wait
        self.slots = settings.analyst_slots
        self.caps = Caps(timeout_s=settings.analyst_timeout, total_bytes=settings.analyst_max_bytes)
        self._admission = anyio.Semaphore(self.slots)
        self._threads = anyio.CapacityLimiter(self.slots)
        self._lock = threading.Lock()
        self._engine: Engine | None = None

    async def run(self, sql: str, limit: int) -> SQLResult:
        """Run ``sql`` in an analyst slot, or raise ``AnalystBusy`` after ``wait``."""
        admitted = False
        with anyio.move_on_after(self.wait):
            await self._admission.acquire()
            admitted = True
        if not admitted:
            raise AnalystBusy(
                f"all {self.slots} analyst SQL slots are busy; try again in a few seconds"
            )
        try:
            caps = replace(self.caps, rows=limit)
            return await anyio.to_thread.run_sync(self._run, sql, caps, limiter=self._threads)
        finally:
            self._admission.release()

    def _run(self, sql: str, caps: Caps) -> SQLResult:
        try:
            return analyst_sql.run(self.engine(), sql, caps)
        except Refused as exc:
            raise BadRequest(str(exc)) from None
        except SQLAlchemyError as exc:  # no connection could be made: the database is away
            raise AnalystUnavailable(
                f"analyst SQL cannot reach the database: {_first_line(exc)}"
            ) from exc

    def engine(self) -> Engine:
        """The analyst engine, made (and, on PostgreSQL, checked) on first use; a role
        found unusable is looked at again on the next call, so fixing it needs no restart."""
        with self._lock:
            if self._engine is None:
                self._engine = self._make()
            return self._engine

    def _make(self) -> Engine:
        url = self.settings.db_url
        if not is_sqlite(url) and not self.settings.analyst_db:
            with self.store.connect() as conn:
                password = analyst_role.stored_password(conn)
            if password is None:
                raise AnalystUnavailable(f"the store has no analyst role yet: {HOW_TO}")
            url = analyst_role.analyst_url(url, password).render_as_string(hide_password=False)
        engine = make_analyst_engine(
            self.settings.analyst_db or url,
            slots=self.slots,
            wait=self.wait,
            value_bytes=self.caps.value_bytes,
            max_columns=self.caps.columns,
        )
        if engine.dialect.name == "postgresql":
            _check_role(engine)
        return engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


def _check_role(engine: Engine) -> None:
    """Refuse a role that cannot log in or may do more than read the views."""
    role = engine.url.username
    try:
        with engine.connect() as conn:
            found = analyst_role.problems(conn)
    except DBAPIError as exc:
        engine.dispose()
        raise AnalystUnavailable(
            f"cannot log in as the analyst role {role}: {_first_line(exc)}; {HOW_TO}"
        ) from exc
    if found:
        engine.dispose()
        raise AnalystUnavailable(
            f"the analyst role {role} is not safe to use: {'; '.join(found)}; {HOW_TO}"
        )


def _first_line(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    lines = str(orig or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
