"""``--stock``: the embedded agent as a stock osqueryd without this project's extension.

osqueryd without the extension has no ``process_stdio`` and no ``unix_socket_peers``:
naming them is SQLite's ``no such table``, its registry does not list them, so the
extension pack's discovery (``osquery_registry`` rows) keeps that pack from running.
"""

from __future__ import annotations

from typing import Any

import pytest

from fleetctl.agent.engines import EmbeddedEngine, describe
from fleetctl.agent.errors import EngineError
from fleetctl.packs.loader import load_file, pack_files, shipped_packs_dir
from tests.agent.conftest import AgentFactory, FleetServer

EXTENSION_PACK = "ipc-telemetry-extension"


def shipped_pack(name: str) -> dict[str, Any]:
    packs = {p.name: p for f in pack_files([shipped_packs_dir()]) for p in load_file(f)}
    return packs[name].to_osquery()


def test_stock_engine_serves_osquerys_tables_only() -> None:
    engine = EmbeddedEngine(stock=True)
    assert describe(engine) == "embedded (stock osquery)"
    for table in ("process_stdio", "unix_socket_peers"):
        with pytest.raises(EngineError, match=f"no such table: {table}"):
            engine.query(f"SELECT * FROM {table}")
    registered = engine.query(
        "SELECT name FROM osquery_registry WHERE registry = 'table' "
        "AND name IN ('process_stdio', 'unix_socket_peers', 'process_open_sockets')"
    ).rows
    assert registered == [{"name": "process_open_sockets"}]
    extensions = engine.query("SELECT name, type FROM osquery_extensions").rows
    assert extensions == [{"name": "core", "type": "core"}]
    for sql in shipped_pack(EXTENSION_PACK)["discovery"]:
        assert engine.query(sql).rows == []


def test_the_full_engine_still_serves_the_extension_tables() -> None:
    engine = EmbeddedEngine()
    assert describe(engine) == "embedded"
    for sql in shipped_pack(EXTENSION_PACK)["discovery"]:
        assert engine.query(sql).rows == [{"1": 1}]
    assert {r["name"] for r in engine.query("SELECT name FROM osquery_extensions").rows} == {
        "core",
        "fleetctl",
    }


@pytest.mark.parametrize("stock", [True, False], ids=["stock", "extension"])
def test_a_stock_agent_never_runs_the_extension_pack(
    stock: bool, fleet: FleetServer, served_config: dict[str, Any], make_agent: AgentFactory
) -> None:
    served_config["packs"] = {
        EXTENSION_PACK: shipped_pack(EXTENSION_PACK),
        "ipc-telemetry": shipped_pack("ipc-telemetry"),
    }
    agent = make_agent(fleet, engine=EmbeddedEngine(stock=stock))
    assert agent.run_once(timeout=60)
    reported = set(fleet.queries())
    stdio = f"pack_{EXTENSION_PACK}_process_stdio"
    assert "pack_ipc-telemetry_stdio_channels" in reported
    assert (stdio in reported) is not stock
    packs = {p.name: p.active for p in agent.engine.runtime.packs}  # type: ignore[attr-defined]
    assert packs == {EXTENSION_PACK: not stock, "ipc-telemetry": True}
    errors = [
        line["message"]
        for line in fleet.admin_get("/status-logs", host="agent-under-test")["status_logs"]
        if "no such table" in str(line.get("message"))
    ]
    assert errors == []
