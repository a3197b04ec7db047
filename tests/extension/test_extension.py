"""The osquery extension: plugin routes and rows, in-process and over real Thrift.

No osqueryd here, so the Thrift side is exercised the way osqueryd drives an extension:
a client on the extension's unix socket calling ``ping`` and ``call("table", name,
{"action": "generate", "context": ...})`` with TBufferedTransport + TBinaryProtocol.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import osquery
import pytest
from click.testing import CliRunner
from osquery.extensions.Extension import Client
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from fleetctl.cli import main
from fleetctl.extension import plugins
from fleetctl.extension.server import build_server
from tests.tables.ipc_world import IpcWorld, fd_inode, wait_until


@pytest.fixture(autouse=True)
def registered() -> None:
    plugins.register_plugins()


def context_for(*pids: int) -> str:
    """The context JSON osqueryd sends for ``WHERE pid IN (...)``."""
    return json.dumps(
        {
            "constraints": [
                {
                    "name": "pid",
                    "affinity": "BIGINT",
                    "list": [{"op": 2, "expr": str(pid)} for pid in pids],
                }
            ],
            "colsUsed": [],
            "colsUsedBitset": 0,
        }
    )


def test_columns_route_announces_types_and_index_option() -> None:
    response = osquery.ExtensionManager().call("table", "process_stdio", {"action": "columns"})
    assert response.status.code == 0
    assert [(r["name"], r["type"], r["op"]) for r in response.response] == [
        ("pid", "BIGINT", "1"),
        ("fd", "INTEGER", "0"),
        ("kind", "TEXT", "0"),
        ("target", "TEXT", "0"),
        ("inode", "BIGINT", "0"),
        ("mode", "TEXT", "0"),
        ("partner_pid", "BIGINT", "0"),
        ("partner_fd", "BIGINT", "0"),
    ]
    registry = osquery.ExtensionManager().registry()["table"]
    assert set(registry) >= {"unix_socket_peers", "process_stdio"}


def test_generate_in_process_returns_strings(world: IpcWorld) -> None:
    client = world.pid("unix_client")
    response = osquery.ExtensionManager().call(
        "table", "process_stdio", {"action": "generate", "context": context_for(client)}
    )
    assert response.status.code == 0
    assert response.response == [
        {
            "pid": str(client),
            "fd": "0",
            "kind": "unix",
            "target": str(world.unix_path),
            "inode": str(fd_inode(client, 0)),
            "mode": "rw",
            "partner_pid": str(world.pid("unix_server")),
            "partner_fd": "11",
        },
        {
            "pid": str(client),
            "fd": "1",
            "kind": "null",
            "target": "/dev/null",
            "inode": "0",
            "mode": "rw",
            "partner_pid": "-1",
            "partner_fd": "-1",
        },
        {
            "pid": str(client),
            "fd": "2",
            "kind": "null",
            "target": "/dev/null",
            "inode": "0",
            "mode": "rw",
            "partner_pid": "-1",
            "partner_fd": "-1",
        },
    ]


def test_generate_without_context_covers_all_processes(world: IpcWorld) -> None:
    response = osquery.ExtensionManager().call("table", "unix_socket_peers", {"action": "generate"})
    pids = {int(r["pid"]) for r in response.response}
    assert {world.pid("unix_server"), world.pid("unix_client")} <= pids


def test_constraints_on_other_columns_are_not_pushed_down() -> None:
    spec = plugins.ProcessStdioTable().spec
    ctx = {
        "constraints": [
            {"name": "kind", "list": [{"op": 2, "expr": "pipe"}]},
            {"name": "pid", "list": [{"op": 2, "expr": "1"}, {"op": 16, "expr": "5"}]},
        ]
    }
    assert plugins.constraints_from_context(spec, ctx) == {"pid": {"1"}}


@pytest.fixture
def thrift_client(tmp_path: Path) -> Iterator[Client]:
    """A real extension Thrift server on a unix socket, and a client as osqueryd uses."""
    path = str(tmp_path / "osquery.em.1234")
    server = build_server(path)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    transport = TTransport.TBufferedTransport(TSocket.TSocket(unix_socket=path))

    def accepted() -> bool:
        """Connected: the socket file appears at bind, before the server listens."""
        try:
            transport.open()
        except TTransport.TTransportException:
            return False
        return True

    wait_until(accepted, what="extension socket accepting")
    try:
        yield Client(TBinaryProtocol.TBinaryProtocol(transport))
    finally:
        transport.close()
        server.stop()
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_thrift_ping_and_generate(world: IpcWorld, thrift_client: Client) -> None:
    assert thrift_client.ping().code == 0
    server, client = world.pid("unix_server"), world.pid("unix_client")
    response = thrift_client.call(
        "table", "unix_socket_peers", {"action": "generate", "context": context_for(server, client)}
    )
    assert response.status.code == 0
    got = {(r["pid"], r["fd"]): r for r in response.response}
    assert got[(str(client), "0")] == {
        "pid": str(client),
        "fd": "0",
        "inode": str(fd_inode(client, 0)),
        "path": "",
        "type": "stream",
        "state": "established",
        "peer_inode": str(fd_inode(server, 11)),
        "peer_pid": str(server),
        "peer_fd": "11",
        "peer_path": str(world.unix_path),
    }
    assert got[(str(server), "10")]["state"] == "listen"
    assert got[(str(server), "10")]["peer_pid"] == "-1"
    assert set(got) == {(str(server), "10"), (str(server), "11"), (str(client), "0")}

    stdio = thrift_client.call(
        "table",
        "process_stdio",
        {"action": "generate", "context": context_for(world.pid("pipe_reader"))},
    )
    assert stdio.response[0]["kind"] == "pipe"
    assert stdio.response[0]["partner_pid"] == str(world.pid("pipe_writer"))

    columns = thrift_client.call("table", "unix_socket_peers", {"action": "columns"})
    assert [r["name"] for r in columns.response][:3] == ["pid", "fd", "inode"]
    unknown = thrift_client.call("table", "no_such_table", {"action": "generate"})
    assert unknown.status.code == 1


def test_extension_command_fails_cleanly_without_osqueryd(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "extension",
            "--socket",
            str(tmp_path / "none.em"),
            "--timeout",
            "0.2",
            "--interval",
            "0.1",
        ],
    )
    assert result.exit_code == 1
    assert "Could not open socket" in result.stderr
