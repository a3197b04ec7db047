"""The processes whose data reaches a child: from its fds 0-2 upstream along pipes,
FIFOs and unix sockets to the farthest process the snapshot names.

The first hop is the process at the other end of the child's channel (a socat handler,
the ``cat`` reading a FIFO); beyond it, who fed that process (the FIFO's writer, the
unix socket's client). Only channels a process reads are followed, and a pipe from a
process's own parent is how it was started, not what fed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fleetctl.detection.paths import KIND_WORDS, PathBuilder
from fleetctl.detection.snapshot import HostSnapshot

MAX_DEPTH = 5  # hops from the child along IPC channels
DEFAULT_LIMIT = 20


@dataclass(frozen=True)
class Hop:
    """A process reached along an IPC channel: from which process, through what."""

    depth: int
    pid: int
    from_pid: int
    via: str
    path: str = ""  # the FIFO or socket path the hop went through, if any


@dataclass(frozen=True)
class Chain:
    """The processes at the other end of the child's channels, and beyond.

    ``hops`` in the order found (fd 0 first, depth first: the way commands flow into a
    shell); ``initiator`` is the farthest process reached; ``dangling`` describes channel
    ends no row names a process for; ``paths`` are the FIFO and socket paths involved."""

    hops: tuple[Hop, ...] = ()
    initiator: int | None = None
    dangling: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    cut: bool = False

    def route(self) -> list[Hop]:
        """The hops from the child to the initiator, in order."""
        by_pid = {h.pid: h for h in self.hops}
        out: list[Hop] = []
        current = by_pid.get(self.initiator or -1)
        while current is not None and len(out) <= MAX_DEPTH:
            out.append(current)
            current = by_pid.get(current.from_pid)
        return list(reversed(out))


def _reads(mode: str) -> bool:
    """Whether an end opened with ``mode`` can bring data in (unknown: assume it can)."""
    return not mode or "r" in mode


def _writes(mode: str) -> bool:
    return not mode or "w" in mode


def fifo_ends(snap: HostSnapshot) -> dict[str, dict[int, str]]:
    """FIFO path -> the processes holding it open, with their open mode."""
    ends: dict[str, dict[int, str]] = {}
    for pid, held in snap.fifos.items():
        for fifo in held:
            if fifo.path:
                ends.setdefault(fifo.path, {})[pid] = fifo.mode
    for pid, stdio in snap.stdio.items():
        for end in stdio.values():
            if end.kind == "fifo" and end.target:
                ends.setdefault(end.target, {}).setdefault(pid, end.mode)
    return ends


def _neighbours(
    snap: HostSnapshot, builder: PathBuilder, pid: int, fifos: Mapping[str, Mapping[int, str]]
) -> list[tuple[int, str, str]]:
    """(process, how, path) whose data can reach ``pid``: the other end of a stdio fd it
    reads, the writers of a FIFO it reads, its unix socket peers and the servers of the
    paths it connected to. Output (a pipe it only writes to) leads nowhere upstream."""
    found: list[tuple[int, str, str]] = []
    for ch in builder.channels(pid):
        if ch.fd != 0 and not _reads(ch.mode):
            continue
        for partner in ch.partners:
            if ch.kind == "pipe" and partner.relation in ("parent", "ancestor"):
                continue  # how it was started, not what fed it: its lineage shows that
            target = f" {ch.target}" if ch.target else ""
            path = ch.target if ch.kind in ("fifo", "unix") else ""
            found.append((partner.pid, f"fd {ch.fd} {ch.kind}{target}", path))
    for path, holders in fifos.items():
        if pid in holders and _reads(holders[pid]):
            found += [
                (other, f"FIFO {path}", path)
                for other, mode in sorted(holders.items())
                if _writes(mode)
            ]
    for peer in snap.unix_peers.get(pid, []):
        if peer.peer_pid and peer.state != "listen":
            where = peer.path or peer.peer_path
            found.append((peer.peer_pid, f"unix socket {where}".rstrip(), where))
    for path in snap.unix_connects.get(pid, {}).values():
        servers = sorted(snap.unix_servers(path))
        found += [(server, f"unix socket {path}", path) for server in servers]
    return [(other, how, path) for other, how, path in found if other != pid and other > 0]


def initiator_chain(snap: HostSnapshot, pid: int, limit: int = DEFAULT_LIMIT) -> Chain:
    """Walk from ``pid`` upstream along the channels it reads (fd 0 first), depth first,
    to at most ``MAX_DEPTH`` hops and ``limit`` processes; the child's own descendants
    are not walked (they inherit its channels and feed nothing into it)."""
    builder = PathBuilder(snap)
    fifos = fifo_ends(snap)
    skip = {pid, *snap.descendants(pid)}
    hops: list[Hop] = []
    seen = set(skip)
    paths: dict[str, None] = {}
    cut = False

    def walk(current: int, depth: int) -> None:
        nonlocal cut
        if depth > MAX_DEPTH:
            return
        for other, how, path in _neighbours(snap, builder, current, fifos):
            if path:
                paths[path] = None
            if other in seen:
                continue
            if len(hops) >= limit:
                cut = True
                return
            seen.add(other)
            hops.append(Hop(depth, other, current, how, path))
            walk(other, depth + 1)

    walk(pid, 1)
    dangling = tuple(
        f"fd {ch.fd} is a {KIND_WORDS.get(ch.kind, ch.kind)}{' ' + ch.target if ch.target else ''}"
        for ch in builder.channels(pid)
        if ch.kind in ("fifo", "unix", "tcp", "udp", "socket", "pipe") and not ch.partners
    )
    for ch in builder.channels(pid):
        if ch.kind in ("fifo", "unix") and ch.target.startswith("/"):
            paths[ch.target] = None
    for listener in builder.parent_listeners(snap.processes[pid]) if pid in snap.processes else ():
        if listener.startswith("unix:"):
            paths[listener.removeprefix("unix:")] = None
    initiator = None
    if hops:  # the first hop found at the greatest depth: fd 0's route wins ties
        deepest = max(h.depth for h in hops)
        initiator = next(h.pid for h in hops if h.depth == deepest)
    return Chain(tuple(hops), initiator, dangling, tuple(paths), cut)
