"""unix_socket_peers: peers from sock_diag joined to the processes holding them."""

from __future__ import annotations

import os
import socket

from fleetctl.tables import TABLES
from fleetctl.tables._sockdiag import decode_name, unix_sockets
from tests.tables.ipc_world import IpcWorld, fd_inode


def rows(*pids: int) -> dict[tuple[object, object], dict[str, object]]:
    found = TABLES["unix_socket_peers"].rows({"pid": set(pids)})
    return {(r["pid"], r["fd"]): r for r in found}


def test_client_server_connection_both_ways(world: IpcWorld) -> None:
    server, client = world.pid("unix_server"), world.pid("unix_client")
    path = str(world.unix_path)
    listen_ino, accepted_ino = fd_inode(server, 10), fd_inode(server, 11)
    client_ino = fd_inode(client, 0)
    assert rows(server, client) == {
        (server, 10): {
            "pid": server,
            "fd": 10,
            "inode": listen_ino,
            "path": path,
            "type": "stream",
            "state": "listen",
            "peer_inode": 0,
            "peer_pid": -1,
            "peer_fd": -1,
            "peer_path": "",
        },
        (server, 11): {
            "pid": server,
            "fd": 11,
            "inode": accepted_ino,
            "path": path,
            "type": "stream",
            "state": "established",
            "peer_inode": client_ino,
            "peer_pid": client,
            "peer_fd": 0,
            "peer_path": "",
        },
        (client, 0): {
            "pid": client,
            "fd": 0,
            "inode": client_ino,
            "path": "",
            "type": "stream",
            "state": "established",
            "peer_inode": accepted_ino,
            "peer_pid": server,
            "peer_fd": 11,
            "peer_path": path,
        },
    }


def test_socketpair_split_between_processes(world: IpcWorld) -> None:
    left, right = world.pid("pair_left"), world.pid("pair_right")
    left_ino, right_ino = fd_inode(left, 0), fd_inode(right, 1)
    got = rows(left, right)
    assert set(got) == {(left, 0), (right, 1)}
    assert (
        got[(left, 0)]["peer_inode"],
        got[(left, 0)]["peer_pid"],
        got[(left, 0)]["peer_fd"],
    ) == (right_ino, right, 1)
    assert (
        got[(right, 1)]["peer_inode"],
        got[(right, 1)]["peer_pid"],
        got[(right, 1)]["peer_fd"],
    ) == (left_ino, left, 0)
    assert got[(left, 0)]["inode"] == left_ino


def test_socketpair_in_one_process_and_dgram_and_abstract_names() -> None:
    pid = os.getpid()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    name = f"fleetctl-test-{pid}"
    abstract.bind("\0" + name)
    try:
        got = rows(pid)
        ra, rb = got[(pid, a.fileno())], got[(pid, b.fileno())]
        assert (ra["type"], ra["peer_pid"], ra["peer_fd"]) == ("dgram", pid, b.fileno())
        assert (rb["peer_pid"], rb["peer_fd"]) == (pid, a.fileno())
        bound = got[(pid, abstract.fileno())]
        assert (bound["type"], bound["state"], bound["path"]) == (
            "seqpacket",
            "unconnected",
            "@" + name,
        )
    finally:
        for s in (a, b, abstract):
            s.close()


def test_peer_gone_is_reported_as_none() -> None:
    a, b = socket.socketpair()
    b.close()
    try:
        row = rows(os.getpid())[(os.getpid(), a.fileno())]
        assert (row["peer_pid"], row["peer_fd"]) == (-1, -1)
    finally:
        a.close()


def test_sock_diag_agrees_with_proc_net_unix() -> None:
    """Every socket in /proc/net/unix is in the sock_diag dump with the same path."""
    diag = unix_sockets()
    with open("/proc/net/unix") as f:
        lines = f.read().splitlines()[1:]
    for line in lines:
        fields = line.split(None, 7)
        inode = int(fields[6])
        if inode in diag and len(fields) > 7:
            assert diag[inode].path == fields[7]


def test_decode_name() -> None:
    assert decode_name(b"/run/x.sock\0") == "/run/x.sock"
    assert decode_name(b"\0abstract") == "@abstract"
    assert decode_name(b"") == ""
