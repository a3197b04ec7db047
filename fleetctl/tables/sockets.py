"""``process_open_sockets`` and ``listening_ports``, plus the per-namespace socket lists.

Follows ``osquery/tables/networking/linux/process_open_sockets.cpp``: socket inodes are
mapped to (pid, fd) from ``/proc/<pid>/fd``; socket details come from
``/proc/<pid>/net/{icmp,tcp,udp,udplite,raw}[6]``, ``unix`` and ``packet``, read once per
network namespace; sockets nobody holds are reported with pid and fd -1 unless the
query filters on pid (a ``pid = -1`` constraint turns the filter off, as in osquery).
When several processes hold one socket, osquery keeps the holder it met last while
walking pids in string order; so does this table, to report the same row.
"""

from __future__ import annotations

import socket
from typing import Any, NamedTuple

from fleetctl.tables import _proc
from fleetctl.tables.scan import Constraints, Scan, int_values

# Plain ints: the socket module's IntEnum members would leak into rows as enums.
AF_UNIX, AF_INET, AF_INET6, AF_PACKET = (
    int(socket.AF_UNIX),
    int(socket.AF_INET),
    int(socket.AF_INET6),
    int(socket.AF_PACKET),
)


class NamespaceSockets(NamedTuple):
    inet: list[_proc.InetSocket]
    unix: list[_proc.UnixSocketEntry]
    packet: list[_proc.PacketSocket]


def net_namespace(scan: Scan, pid: int) -> int:
    """Network namespace inode of a process (0 when unknown, as osquery uses)."""
    return scan.memo(("netns", pid), lambda: _proc.namespace_inode(pid, "net", scan.proc_root) or 0)


def namespace_sockets(scan: Scan, ns: int, pid: int) -> NamespaceSockets:
    """All sockets of a network namespace, read through a process living in it."""

    def read() -> NamespaceSockets:
        base = f"{scan.proc_root}/{pid}/net/"
        inet: list[_proc.InetSocket] = []
        for protocol, stem in _proc.INET_PROTOCOLS:
            for family, suffix in ((AF_INET, ""), (AF_INET6, "6")):
                text = _proc.read_text(base + stem + suffix)
                if text:
                    inet.extend(_proc.parse_net_inet(text, family, protocol))
        unix_text = _proc.read_text(base + "unix")
        packet_text = _proc.read_text(base + "packet")
        return NamespaceSockets(
            inet=inet,
            unix=_proc.parse_net_unix(unix_text) if unix_text else [],
            packet=_proc.parse_net_packet(packet_text) if packet_text else [],
        )

    return scan.memo(("netns_sockets", ns), read)


def inet_by_inode(scan: Scan, ns: int, pid: int) -> dict[int, _proc.InetSocket]:
    return scan.memo(
        ("inet_by_inode", ns), lambda: {s.inode: s for s in namespace_sockets(scan, ns, pid).inet}
    )


def socket_holders(scan: Scan) -> dict[int, list[tuple[int, int]]]:
    """Every (pid, fd) holding each socket inode, across all processes."""

    def build() -> dict[int, list[tuple[int, int]]]:
        index: dict[int, list[tuple[int, int]]] = {}
        for pid, links in scan.all_fds().items():
            for fd, target in links.items():
                if target.startswith("socket:["):
                    inode = _proc.link_inode(target, "socket:[")
                    if inode is not None:
                        index.setdefault(inode, []).append((pid, fd))
        return index

    return scan.memo(("socket_holders",), build)


def socket_rows(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    wanted = int_values(constraints, "pid")
    pid_filter = wanted is not None and -1 not in wanted
    pids = scan.pids_for(constraints) if pid_filter else scan.pids()

    owners: dict[int, tuple[int, int]] = {}
    namespaces: dict[int, int] = {}  # ns inode -> a pid to read it through
    unknown_ns_pid: int | None = None
    for pid in sorted(pids, key=str):
        links = scan.fds(pid)
        if links:
            for fd, target in links.items():
                if target.startswith("socket:["):
                    inode = _proc.link_inode(target, "socket:[")
                    if inode is not None:
                        owners[inode] = (pid, fd)
        ns = net_namespace(scan, pid)
        if ns:
            namespaces.setdefault(ns, pid)
        elif unknown_ns_pid is None:
            unknown_ns_pid = pid
    # osquery reads sockets through a pid whose namespace is unreadable as namespace "0"
    # even when that duplicates a namespace already read (pid 1 is often unreadable);
    # only fall back to it when no namespace could be identified at all.
    if not namespaces and unknown_ns_pid is not None:
        namespaces[0] = unknown_ns_pid

    rows: list[dict[str, Any]] = []

    def emit(inode: int, ns: int, fields: dict[str, Any]) -> None:
        owner = owners.get(inode)
        if owner is None:
            if pid_filter:
                return
            owner = (-1, -1)
        rows.append(
            {"pid": owner[0], "fd": owner[1], "socket": inode, **fields, "net_namespace": str(ns)}
        )

    for ns, pid in namespaces.items():
        found = namespace_sockets(scan, ns, pid)
        for s in found.inet:
            emit(
                s.inode,
                ns,
                {
                    "family": s.family,
                    "protocol": s.protocol,
                    "local_address": s.local_address,
                    "remote_address": s.remote_address,
                    "local_port": s.local_port,
                    "remote_port": s.remote_port,
                    "path": "",
                    "state": s.state,
                },
            )
        for u in found.unix:
            emit(
                u.inode,
                ns,
                {
                    "family": AF_UNIX,
                    "protocol": u.protocol,
                    "local_address": "",
                    "remote_address": "",
                    "local_port": 0,
                    "remote_port": 0,
                    "path": u.path,
                    "state": "",
                },
            )
        for p in found.packet:
            emit(
                p.inode,
                ns,
                {
                    "family": AF_PACKET,
                    "protocol": p.protocol,
                    "local_address": "",
                    "remote_address": "",
                    "local_port": 0,
                    "remote_port": 0,
                    "path": "",
                    "state": "NONE",
                },
            )
    return rows


def generate_open_sockets(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    return socket_rows(constraints, scan)


def generate_listening_ports(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    """osquery's listening_ports.cpp over process_open_sockets: unix sockets with a path,
    inet sockets whose remote port is 0, and every other family (packet) as is."""
    rows = []
    for s in socket_rows(constraints, scan):
        family = s["family"]
        if family == AF_UNIX and not s["path"]:
            continue
        if family in (AF_INET, AF_INET6) and s["remote_port"] != 0:
            continue
        row: dict[str, Any] = {
            "pid": s["pid"],
            "protocol": s["protocol"],
            "family": family,
            "fd": s["fd"],
            "net_namespace": s["net_namespace"],
            "address": None,
            "path": None,
        }
        if family == AF_UNIX:
            row.update(port=0, path=s["path"], socket=0)
        else:
            row.update(address=s["local_address"], port=s["local_port"], socket=s["socket"])
        rows.append(row)
    return rows
