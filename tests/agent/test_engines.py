"""Engine selection, and ``OsqueryEngine`` over osquery-python's Thrift client.

No osqueryd here, so the Thrift peer is an osquery core stand-in on a unix socket
that answers ``query``/``getQueryColumns`` by running the SQL on the embedded engine,
every value a string, as osqueryd's extension manager does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from osquery.extensions.ExtensionManager import Processor
from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from fleetctl.agent.engines import EmbeddedEngine, OsqueryEngine, describe, select_engine
from fleetctl.agent.errors import EngineError
from fleetctl.engine import Engine, QueryError, string_rows
from fleetctl.extension.server import ExtensionServer
from fleetctl.tables import STOCK_TABLES, TableSpec
from fleetctl.validate.scenarios import unix_listening
from tests.agent.conftest import HOST, AgentFactory, FleetServer, wait_for


class CoreHandler:
    """The ExtensionManager calls an osquery core answers, over the embedded engine
    (serving ``tables``: all of this project's by default)."""

    def __init__(self, tables: Mapping[str, TableSpec] | None = None) -> None:
        self.engine = Engine(tables)

    def ping(self) -> ExtensionStatus:
        return ExtensionStatus(code=0, message="OK")

    def query(self, sql: str) -> ExtensionResponse:
        try:
            result = self.engine.query(sql)
        except QueryError as exc:
            return ExtensionResponse(
                status=ExtensionStatus(code=1, message=exc.message), response=[]
            )
        return ExtensionResponse(
            status=ExtensionStatus(code=0, message="OK"),
            response=string_rows(result.rows, result.columns),
        )

    def getQueryColumns(self, sql: str) -> ExtensionResponse:
        columns = self.engine.columns(sql)
        return ExtensionResponse(
            status=ExtensionStatus(code=0, message="OK"),
            response=[{name: decl or "TEXT"} for name, decl in columns],
        )


@pytest.fixture
def core_socket(tmp_path: Path) -> Iterator[str]:
    yield from _serve_core(str(tmp_path / "osquery.em"), CoreHandler())


@pytest.fixture
def stock_core_socket(tmp_path: Path) -> Iterator[str]:
    """An osquery core without this project's extension tables."""
    yield from _serve_core(str(tmp_path / "stock.em"), CoreHandler(STOCK_TABLES))


def _serve_core(path: str, handler: CoreHandler) -> Iterator[str]:
    server = ExtensionServer(
        Processor(handler),
        TSocket.TServerSocket(unix_socket=path),
        TTransport.TBufferedTransportFactory(),
        TBinaryProtocol.TBinaryProtocolFactory(),
    )
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    wait_for(lambda: unix_listening(Path(path)), what="core socket listening")
    yield path
    server.stop()
    thread.join(timeout=5)


def test_osquery_engine_returns_string_rows_in_sql_order(core_socket: str) -> None:
    engine = OsqueryEngine(socket=core_socket)
    try:
        me = os.getpid()
        result = engine.query(f"SELECT pid, parent, name FROM processes WHERE pid = {me}")
        assert result.columns == ["pid", "parent", "name"]
        assert result.rows == [
            {"pid": str(me), "parent": str(os.getppid()), "name": result.rows[0]["name"]}
        ]
        with pytest.raises(EngineError, match="no such table: nope"):
            engine.query("SELECT * FROM nope")
        assert engine.osquery_version()  # from osquery_info, as osqueryd reports it
    finally:
        engine.close()


def test_auto_takes_osqueryd_when_its_socket_is_there(core_socket: str) -> None:
    chosen: Any = select_engine("auto", socket=core_socket)
    try:
        assert chosen.name == "osquery"
    finally:
        chosen.close()


def test_stock_refuses_an_osqueryd_that_serves_the_extension_tables(core_socket: str) -> None:
    with pytest.raises(EngineError, match=r"process_stdio, unix_socket_peers .*--stock"):
        select_engine("osquery", socket=core_socket, stock=True)
    plain = select_engine("osquery", socket=core_socket)
    try:
        assert not plain.stock
    finally:
        plain.close()


def test_stock_takes_an_osqueryd_without_them(stock_core_socket: str) -> None:
    chosen = select_engine("osquery", socket=stock_core_socket, stock=True)
    try:
        assert chosen.stock and describe(chosen) == "osquery (stock osquery)"
    finally:
        chosen.close()


def test_auto_falls_back_to_the_embedded_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fleetctl.agent.engines.find_osqueryd", lambda: None)
    monkeypatch.setattr("fleetctl.agent.engines.DEFAULT_SOCKET", "/nonexistent/osquery.em")
    assert isinstance(select_engine("auto"), EmbeddedEngine)
    stock = select_engine("auto", stock=True)
    assert isinstance(stock, EmbeddedEngine) and stock.stock
    with pytest.raises(EngineError, match="no osqueryd"):
        select_engine("osquery")
    with pytest.raises(EngineError, match="cannot connect"):
        OsqueryEngine(socket="/nonexistent/osquery.em", timeout=0.3)


def test_agent_on_osqueryd_enrolls_with_its_details_and_logs_its_rows(
    core_socket: str,
    fleet: FleetServer,
    served_config: dict[str, Any],
    make_agent: AgentFactory,
) -> None:
    me = os.getpid()
    served_config["schedule"] = {
        "me": {"query": f"SELECT pid, name FROM processes WHERE pid = {me}", "interval": 1}
    }
    agent = make_agent(fleet, engine=OsqueryEngine(socket=core_socket))
    assert agent.run_once(timeout=20)
    agent.stop()
    assert [row["pid"] for row in fleet.rows("me")] == [str(me)]
    details = fleet.admin_get(f"/hosts/{HOST}")["host_details"]
    assert details["system_info"]["hostname"] and details["platform_info"] == {}
