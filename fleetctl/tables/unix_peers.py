"""``unix_socket_peers``: each unix socket descriptor with its peer and the peer's holder.

The socket list and peer inodes come from sock_diag (``_sockdiag``) for this network
namespace. Sockets held by processes in other namespaces are filled in from that
namespace's ``/proc/<pid>/net/unix``, which has type, state and path but no peer, so
their ``peer_inode`` is 0. Peer holders are found by the socket inode in every
process's descriptors; a peer held by several processes (a forked server) gives one row
per holder, and ``peer_pid`` may equal ``pid`` for a socketpair kept by one process.
"""

from __future__ import annotations

import os
from typing import Any

from fleetctl.tables import _proc, _sockdiag
from fleetctl.tables._sockdiag import UnixSocket
from fleetctl.tables.scan import Constraints, Scan
from fleetctl.tables.sockets import namespace_sockets, net_namespace, socket_holders

_PROC_STATES = {1: "unconnected", 2: "connecting", 3: "established", 4: "disconnecting"}


def _from_proc(entry: _proc.UnixSocketEntry) -> UnixSocket:
    state = "listen" if entry.listening else _PROC_STATES.get(entry.st, "unconnected")
    return UnixSocket(
        entry.inode, _sockdiag.SOCK_TYPES.get(entry.type, str(entry.type)), state, entry.path, 0
    )


def unix_index(scan: Scan) -> dict[int, UnixSocket]:
    """Unix sockets by inode: sock_diag for this namespace, /proc for the others."""

    def build() -> dict[int, UnixSocket]:
        try:
            index = _sockdiag.unix_sockets()
            # sock_diag answered for the namespace this process lives in.
            covered = {_proc.namespace_inode(os.getpid(), "net", "/proc")}
        except OSError:
            index, covered = {}, set()
        missing_ns: dict[int, int] = {}
        for inode, holders in socket_holders(scan).items():
            if inode not in index:
                pid = holders[0][0]
                ns = net_namespace(scan, pid)
                if ns not in covered:
                    missing_ns.setdefault(ns, pid)
        for ns, pid in missing_ns.items():
            for entry in namespace_sockets(scan, ns, pid).unix:
                if entry.inode not in index:
                    index[entry.inode] = _from_proc(entry)
        return index

    return scan.memo(("unix_index",), build)


def generate(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    index = unix_index(scan)
    holders = socket_holders(scan)
    rows: list[dict[str, Any]] = []
    for pid in scan.pids_for(constraints):
        links = scan.fds(pid)
        if not links:
            continue
        for fd in sorted(links):
            inode = _proc.link_inode(links[fd], "socket:[")
            sock = index.get(inode) if inode is not None else None
            if sock is None:
                continue
            peer = index.get(sock.peer) if sock.peer else None
            base = {
                "pid": pid,
                "fd": fd,
                "inode": sock.inode,
                "path": sock.path,
                "type": sock.type,
                "state": sock.state,
                "peer_inode": sock.peer,
                "peer_path": peer.path if peer is not None else "",
            }
            peer_holders = holders.get(sock.peer, []) if sock.peer else []
            if not peer_holders:
                rows.append({**base, "peer_pid": -1, "peer_fd": -1})
            for peer_pid, peer_fd in peer_holders:
                rows.append({**base, "peer_pid": peer_pid, "peer_fd": peer_fd})
    return rows
