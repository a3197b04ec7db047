"""Where the agent's SQL runs: the embedded engine, or a real osqueryd over Thrift.

* ``EmbeddedEngine``: ``fleetctl.engine`` over this project's Linux tables, in process;
  with ``stock=True`` over osquery's own tables only, as a stock osqueryd without this
  project's extension reports them (``fleetctl.tables.STOCK_TABLES``).
* ``OsqueryEngine``: osquery-python's ``ExtensionClient`` on a running osqueryd's
  extensions socket, or ``SpawnInstance`` starting an osqueryd of its own. osqueryd
  answers ``query`` with every value a string, as it logs them.
* ``select_engine("auto")`` takes osqueryd when it finds one (a socket, then a binary),
  else the embedded engine.

Both return ``Rows`` (column names in SQL order, one dict per row) or raise
``EngineError`` with osquery's message (``no such table: x``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fleetctl.agent.errors import EngineError
from fleetctl.engine import Engine, QueryError
from fleetctl.tables import EXTENSION_TABLES, STOCK_TABLES, AgentRuntime

#: The osqueryd release whose agent behaviour this project reproduces; packs and
#: queries with a ``version`` requirement are compared against it on the embedded engine.
EMULATED_OSQUERY_VERSION = "5.23.0"

DEFAULT_SOCKET = "/var/osquery/osquery.em"
OSQUERYD_CANDIDATES = ("/usr/bin/osqueryd", "/opt/osquery/bin/osqueryd", "/usr/local/bin/osqueryd")
THRIFT_TIMEOUT_MS = 60_000


@dataclass
class Rows:
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


class QueryEngine(Protocol):
    """What the agent needs from an engine."""

    name: str
    #: Whether the engine is known to serve only osquery's own tables.
    stock: bool

    def query(self, sql: str) -> Rows: ...

    def osquery_version(self) -> str: ...

    def close(self) -> None: ...


class EmbeddedEngine:
    """``fleetctl.engine.Engine`` with the agent's runtime behind the osquery_* tables.

    ``stock``: serve what a stock osqueryd serves, so that detection is judged on what
    most fleets actually run: queries naming ``process_stdio`` or ``unix_socket_peers``
    fail with osqueryd's ``no such table``, the registry lists neither (so the extension
    pack's discovery keeps it inactive), and the tables return osquery's rows.
    """

    name = "embedded"

    def __init__(
        self, runtime: AgentRuntime | None = None, *, stock: bool = False, **engine_kw: Any
    ) -> None:
        self.runtime = runtime if runtime is not None else AgentRuntime()
        self.stock = stock
        tables = STOCK_TABLES if stock else None
        self._engine = Engine(tables, runtime=self.runtime, **engine_kw)

    def query(self, sql: str) -> Rows:
        try:
            result = self._engine.query(sql)
        except QueryError as exc:
            raise EngineError(exc.message) from exc
        return Rows(result.columns, result.rows)

    def osquery_version(self) -> str:
        return EMULATED_OSQUERY_VERSION

    def close(self) -> None:
        pass


class OsqueryEngine:
    """A real osqueryd through osquery-python: ``socket`` to attach, else ``osqueryd`` to spawn.

    One Thrift client is not safe across threads, so calls are serialised.
    """

    name = "osquery"
    stock = False

    def __init__(
        self, socket: str | None = None, osqueryd: str | None = None, timeout: float = 5.0
    ) -> None:
        import osquery  # imported here: the embedded engine never needs Thrift

        self._lock = threading.Lock()
        self._instance: Any = None
        if socket:
            self._connection: Any = osquery.ExtensionClient(socket)
            _set_timeout(self._connection)
            if not self._connection.open(timeout=timeout):  # returns False, never raises
                raise EngineError(f"cannot connect to osqueryd's extensions socket {socket}")
        else:
            self._instance = osquery.SpawnInstance(osqueryd)
            try:
                self._instance.open(timeout=timeout)
            except Exception as exc:
                raise EngineError(f"cannot start osqueryd {osqueryd or ''}: {exc}") from exc
            self._connection = self._instance.connection
            _set_timeout(self._connection)
        self._client = self._connection.extension_client()
        self._wait_until_ready(timeout)
        self._version: str | None = None

    def _wait_until_ready(self, timeout: float) -> None:
        """SpawnInstance returns before the socket accepts (osquery-python #87): ping it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._lock:
                    self._client.ping()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise EngineError(f"osqueryd does not answer: {exc}") from exc
                with contextlib.suppress(Exception):
                    self._connection.open(timeout=0.2, interval=0.05)
                time.sleep(0.05)

    def query(self, sql: str) -> Rows:
        try:
            with self._lock:
                response = self._client.query(sql)
                if response.status.code != 0:
                    raise EngineError(response.status.message)
                described = self._client.getQueryColumns(sql)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"osqueryd: {type(exc).__name__}: {exc}") from exc
        rows: list[dict[str, Any]] = list(response.response or [])
        columns = [name for row in (described.response or []) for name in row]
        if not columns and rows:
            columns = list(rows[0])
        return Rows(columns, rows)

    def osquery_version(self) -> str:
        if self._version is None:
            rows = self.query("SELECT version FROM osquery_info").rows
            self._version = str(rows[0]["version"]) if rows else "0.0.0"
        return self._version

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()
        if self._instance is not None and self._instance.instance is not None:
            self._instance.instance.kill()
            self._instance.instance.wait()
            self._instance.instance = None


def _set_timeout(connection: Any) -> None:
    """osquery-python sets no socket timeout, so a hung osqueryd would block us forever."""
    inner = getattr(connection._transport, "_TBufferedTransport__trans", None)
    if inner is not None and hasattr(inner, "setTimeout"):
        inner.setTimeout(THRIFT_TIMEOUT_MS)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def find_osqueryd() -> str | None:
    found = shutil.which("osqueryd")
    if found:
        return found
    return next((p for p in OSQUERYD_CANDIDATES if os.access(p, os.X_OK)), None)


def select_engine(
    kind: str,
    *,
    socket: str | None = None,
    osqueryd: str | None = None,
    runtime: AgentRuntime | None = None,
    stock: bool = False,
) -> QueryEngine:
    """``embedded``, ``osquery`` (socket, else spawn) or ``auto`` (osqueryd when present).

    ``stock``: the embedded engine serves osquery's own tables only; an osqueryd is
    stock already, and is refused if it has this project's extension tables loaded.
    """
    if kind == "embedded":
        return EmbeddedEngine(runtime, stock=stock)
    if kind not in ("osquery", "auto"):
        raise ValueError(f"unknown engine {kind!r}: use auto, embedded or osquery")
    sock = socket or (DEFAULT_SOCKET if _is_socket(DEFAULT_SOCKET) else None)
    binary = osqueryd or (None if sock else find_osqueryd())
    if kind == "auto" and not sock and not binary:
        return EmbeddedEngine(runtime, stock=stock)
    if not sock and not binary:
        raise EngineError(
            "no osqueryd found: pass --osquery-socket or --osqueryd, or use --engine embedded"
        )
    if binary and not sock and not Path(binary).exists():
        raise EngineError(f"no osqueryd at {binary}")
    engine = OsqueryEngine(socket=sock, osqueryd=binary)
    if stock:
        _require_stock(engine)
        engine.stock = True
    return engine


def describe(engine: QueryEngine) -> str:
    """``embedded``, ``embedded (stock osquery)`` or ``osquery``, for what the CLI prints."""
    return f"{engine.name} (stock osquery)" if engine.stock else engine.name


def _require_stock(engine: QueryEngine) -> None:
    """Refuse an osqueryd that serves this project's tables: it is not stock."""
    names = ", ".join(f"'{name}'" for name in EXTENSION_TABLES)
    found = engine.query(
        f"SELECT name FROM osquery_registry WHERE registry = 'table' AND name IN ({names})"
    ).rows
    if found:
        engine.close()
        loaded = ", ".join(sorted(str(r["name"]) for r in found))
        raise EngineError(
            f"osqueryd serves {loaded} (the fleetctl extension is loaded): "
            "--stock needs an osqueryd without it"
        )
