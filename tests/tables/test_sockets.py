"""process_open_sockets and listening_ports against real unix and TCP sockets."""

from __future__ import annotations

import os
import socket

from fleetctl.tables import TABLES
from tests.tables.ipc_world import IpcWorld, fd_inode


def netns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net").removeprefix("net:[").removesuffix("]")


def by_fd(rows: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {r["fd"]: r for r in rows}


def test_tcp_loopback_server_and_client(world: IpcWorld) -> None:
    server, client = world.pid("tcp_server"), world.pid("tcp_client")
    rows = TABLES["process_open_sockets"].rows({"pid": {server, client}})
    server_rows = by_fd([r for r in rows if r["pid"] == server])
    client_rows = by_fd([r for r in rows if r["pid"] == client])
    assert set(server_rows) == {10, 11}
    assert set(client_rows) == {1}
    ns = netns(server)

    listening = server_rows[10]
    assert listening == {
        "pid": server,
        "fd": 10,
        "socket": fd_inode(server, 10),
        "family": 2,
        "protocol": 6,
        "local_address": "127.0.0.1",
        "remote_address": "0.0.0.0",
        "local_port": world.tcp_port,
        "remote_port": 0,
        "path": "",
        "state": "LISTEN",
        "net_namespace": ns,
    }
    outgoing = client_rows[1]
    client_port = outgoing["local_port"]
    assert outgoing == {
        "pid": client,
        "fd": 1,
        "socket": fd_inode(client, 1),
        "family": 2,
        "protocol": 6,
        "local_address": "127.0.0.1",
        "remote_address": "127.0.0.1",
        "local_port": client_port,
        "remote_port": world.tcp_port,
        "path": "",
        "state": "ESTABLISHED",
        "net_namespace": ns,
    }
    accepted = server_rows[11]
    assert accepted == {
        "pid": server,
        "fd": 11,
        "socket": fd_inode(server, 11),
        "family": 2,
        "protocol": 6,
        "local_address": "127.0.0.1",
        "remote_address": "127.0.0.1",
        "local_port": world.tcp_port,
        "remote_port": client_port,
        "path": "",
        "state": "ESTABLISHED",
        "net_namespace": ns,
    }


def test_unix_sockets_report_bound_path_and_inode(world: IpcWorld) -> None:
    server, client = world.pid("unix_server"), world.pid("unix_client")
    rows = TABLES["process_open_sockets"].rows({"pid": {server, client}})
    got = {
        (r["pid"], r["fd"]): (r["socket"], r["family"], r["protocol"], r["path"], r["state"])
        for r in rows
    }
    path = str(world.unix_path)
    assert got == {
        (server, 10): (fd_inode(server, 10), 1, 0, path, ""),
        # /proc/net/unix shows the listener's path on accepted sockets too.
        (server, 11): (fd_inode(server, 11), 1, 0, path, ""),
        (client, 0): (fd_inode(client, 0), 1, 0, "", ""),
    }


def test_unfiltered_scan_contains_the_same_rows_and_unowned_sockets(world: IpcWorld) -> None:
    server = world.pid("tcp_server")
    rows = TABLES["process_open_sockets"].rows()
    mine = [r for r in rows if r["pid"] == server]
    assert {r["fd"] for r in mine} == {10, 11}
    # Sockets nobody holds (e.g. TIME_WAIT, the kernel's own) appear with pid -1.
    assert all(r["fd"] == -1 for r in rows if r["pid"] == -1)
    # A pid = -1 constraint disables the filter, as in osquery.
    assert len(TABLES["process_open_sockets"].rows({"pid": {-1}})) >= len(mine)


def test_listening_ports(world: IpcWorld) -> None:
    tcp, unix = world.pid("tcp_server"), world.pid("unix_server")
    rows = TABLES["listening_ports"].rows({"pid": {tcp, unix, world.pid("tcp_client")}})
    got = {(r["pid"], r["fd"]): r for r in rows}
    assert set(got) == {(tcp, 10), (unix, 10), (unix, 11)}
    assert got[(tcp, 10)] == {
        "pid": tcp,
        "port": world.tcp_port,
        "protocol": 6,
        "family": 2,
        "address": "127.0.0.1",
        "fd": 10,
        "socket": fd_inode(tcp, 10),
        "path": None,
        "net_namespace": netns(tcp),
    }
    assert got[(unix, 10)] == {
        "pid": unix,
        "port": 0,
        "protocol": 0,
        "family": 1,
        "address": None,
        "fd": 10,
        "socket": 0,
        "path": str(world.unix_path),
        "net_namespace": netns(unix),
    }


def test_ipv6_loopback_listener_is_decoded() -> None:
    if not socket.has_ipv6:
        return
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.bind(("::1", 0))
    except OSError:
        sock.close()
        return
    try:
        sock.listen(1)
        port = sock.getsockname()[1]
        rows = TABLES["process_open_sockets"].rows({"pid": {os.getpid()}})
        row = next(r for r in rows if r["fd"] == sock.fileno())
        assert (row["family"], row["local_address"], row["local_port"], row["state"]) == (
            10,
            "::1",
            port,
            "LISTEN",
        )
        assert row["remote_address"] == "::"
    finally:
        sock.close()


def test_udp_socket_has_no_state() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        rows = TABLES["process_open_sockets"].rows({"pid": {os.getpid()}})
        row = next(r for r in rows if r["fd"] == sock.fileno())
        assert (row["protocol"], row["local_port"], row["state"]) == (17, sock.getsockname()[1], "")
    finally:
        sock.close()
