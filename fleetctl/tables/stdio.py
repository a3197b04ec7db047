"""``process_stdio``: what fds 0-2 of each process are connected to, and who is at the
other end.

This is the "IPC channel that fed a process" of the detection model: a shell whose
stdin is a pipe from a web server, a FIFO in /dev/shm, a unix socket or a TCP socket
looks very different from one on a pty. Kinds:

``tty`` (/dev/ttyN, /dev/tty, /dev/console), ``pty`` (/dev/pts/N, /dev/ptmx), ``pipe``,
``fifo``, ``unix``, ``tcp``, ``udp``, ``file`` (regular files and directories), ``null``
(/dev/null), ``other`` (devices, anon inodes, other sockets) and ``closed``.

Partners are other processes holding the opposite end of the pipe or FIFO (osquery's
reader/writer rule from process_open_pipes) or the peer of a unix socket; one row per
partner descriptor, -1 when there is none. Processes without any descriptor (kernel
threads, zombies) have no rows.
"""

from __future__ import annotations

import socket
import stat
from typing import Any

from fleetctl.stdio_kinds import device_kind
from fleetctl.tables import _proc, pipes
from fleetctl.tables.scan import Constraints, Scan
from fleetctl.tables.sockets import inet_by_inode, net_namespace, socket_holders
from fleetctl.tables.unix_peers import unix_index

STDIO_FDS = (0, 1, 2)
_INET_KINDS = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}


def _endpoint(address: str, port: int, family: int) -> str:
    if family == socket.AF_INET6:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


class _Row:
    """One classified descriptor before partner expansion."""

    __slots__ = ("inode", "kind", "partners", "target")

    def __init__(
        self, kind: str, target: str, inode: int = 0, partners: list[tuple[int, int]] | None = None
    ) -> None:
        self.kind = kind
        self.target = target
        self.inode = inode
        self.partners = partners or []


def _pipe_row(scan: Scan, end: pipes.PipeEnd, kind: str, target: str) -> _Row:
    index = pipes.holder_index(scan, named=end.type == "named")
    found = index.partners(end, scan.mode(end.pid, end.fd)) or []
    return _Row(kind, target, end.inode, [(pid, fd) for pid, fd, _mode in found if pid != end.pid])


def _socket_row(scan: Scan, pid: int, inode: int, target: str) -> _Row:
    unix = unix_index(scan).get(inode)
    if unix is not None:
        peer = unix_index(scan).get(unix.peer) if unix.peer else None
        shown = unix.path or (peer.path if peer is not None else "") or target
        holders = socket_holders(scan).get(unix.peer, []) if unix.peer else []
        return _Row("unix", shown, inode, [(p, f) for p, f in holders if p != pid])
    inet = inet_by_inode(scan, net_namespace(scan, pid), pid).get(inode)
    if inet is not None:
        shown = (
            _endpoint(inet.local_address, inet.local_port, inet.family)
            + "->"
            + _endpoint(inet.remote_address, inet.remote_port, inet.family)
        )
        return _Row(_INET_KINDS.get(inet.protocol, "other"), shown, inode)
    return _Row("other", target, inode)


def classify(scan: Scan, pid: int, fd: int, target: str | None) -> _Row:
    """Kind, shown target, inode and partner descriptors of one stdio descriptor."""
    if target is None:
        return _Row("closed", "")
    if target.startswith("pipe:["):
        end = pipes.end_of(scan, pid, fd, target, named=False)
        if end is not None:
            return _pipe_row(scan, end, "pipe", target)
        return _Row("other", target)
    if target.startswith("socket:["):
        inode = _proc.link_inode(target, "socket:[")
        if inode is not None:
            return _socket_row(scan, pid, inode, target)
        return _Row("other", target)
    if not target.startswith("/"):
        return _Row("other", target)
    kind = device_kind(target)
    if kind is not None:
        return _Row(kind, target)
    st = scan.target_stat(pid, fd)
    if st is None:
        return _Row("other", target)
    if stat.S_ISFIFO(st.st_mode):
        end = pipes.end_of(scan, pid, fd, target, named=True)
        if end is not None:
            return _pipe_row(scan, end, "fifo", target)
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return _Row("file", target)
    return _Row("other", target)


def generate(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for pid in scan.pids_for(constraints):
        links = scan.fds(pid)
        if not links:
            continue
        for fd in STDIO_FDS:
            target = links.get(fd)
            found = classify(scan, pid, fd, target)
            base = {
                "pid": pid,
                "fd": fd,
                "kind": found.kind,
                "target": found.target,
                "inode": found.inode,
                "mode": scan.mode(pid, fd) if target is not None else "",
            }
            if not found.partners:
                rows.append({**base, "partner_pid": -1, "partner_fd": -1})
            for partner_pid, partner_fd in found.partners:
                rows.append({**base, "partner_pid": partner_pid, "partner_fd": partner_fd})
    return rows
