"""Execution paths: one record per (parent, child) with the IPC channel that fed the child.

This is section 3 of ``../shared/detection/ipc-abuse.md``: IPC alone is everywhere, IPC
that *leads to execution* is the signal. For every process with a parent the record says
who (child, parent, grandparent, user, session, cgroup), what each of fds 0-2 is connected
to and which process holds the other end, and whether the parent is an IPC server.

Facts only: nothing here consults a baseline. ``feeds`` lists the channels through which
something outside the child's own lineage reaches its stdio (a FIFO, a unix or TCP socket,
or a pipe from a process that itself holds one); ``fleetctl.detection.scoring`` decides
which of them an admin expects.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from fleetctl.detection.catalog import DOWNLOADERS, matches_any
from fleetctl.detection.normalize import normalize_cmdline, short_tty
from fleetctl.detection.records import Process
from fleetctl.detection.snapshot import HostSnapshot

IPC_KINDS = frozenset({"fifo", "unix", "tcp", "udp", "socket"})
# Processes whose end of a channel is plumbing, not an outside feed.
LOCAL_RELATIONS = frozenset({"self", "parent", "ancestor", "descendant"})
NO_STDIO = "-"
EUID_CAP = 500

_CONTAINER_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"docker[-/]([0-9a-f]{12})"), "docker:{}"),
    (re.compile(r"libpod-(?:conmon-)?([0-9a-f]{12})"), "podman:{}"),
    (re.compile(r"cri-containerd-([0-9a-f]{12})"), "containerd:{}"),
    (re.compile(r"crio-([0-9a-f]{12})"), "crio:{}"),
    (re.compile(r"kubepods.*?pod([0-9a-f_-]{36})"), "k8s-pod:{}"),
    (re.compile(r"/lxc(?:\.payload)?[./]([^/]+)"), "lxc:{}"),
    (re.compile(r"/machine\.slice/(?:machine-)?([^/]+)\.scope"), "machine:{}"),
)
_UNIT = re.compile(r"/([^/]+\.(?:service|scope))(?:/|$)")


@dataclass(frozen=True)
class ProcessRef:
    """A process as a path and its evidence name it; ``shape`` is the normalised cmdline."""

    pid: int
    start_time: int | None
    name: str
    basename: str
    path: str
    cmdline: str
    shape: str
    uid: int | None
    euid: int | None
    username: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, proc: Process, platform: str) -> ProcessRef:
        names = proc.names
        basename = proc.basename
        if platform == "windows":  # case-insensitive names, matched in lower case
            names = tuple(n.lower() for n in names)
            basename = basename.lower()
        return cls(
            pid=proc.pid,
            start_time=proc.start_time,
            name=proc.name,
            basename=basename,
            path=proc.path,
            cmdline=proc.cmdline,
            shape=normalize_cmdline(proc.cmdline),
            uid=proc.uid,
            euid=proc.euid,
            username=proc.username,
            names=names,
        )

    @property
    def user(self) -> str:
        """``alice``, or ``uid=1000`` / ``uid=1000 euid=0`` when the name is unknown."""
        if self.username:
            return self.username
        if self.uid is None and self.euid is None:
            return ""
        if self.euid is not None and self.euid != self.uid:
            return f"uid={self.uid} euid={self.euid}"
        return f"uid={self.uid}"

    @property
    def label(self) -> str:
        return f"{self.basename or '?'}[{self.pid}]"


@dataclass(frozen=True)
class Partner:
    """The process at the other end of a channel, and the IPC objects it holds."""

    pid: int
    process: ProcessRef | None
    relation: str  # self, parent, ancestor, descendant, sibling, other, unknown
    fifos: tuple[str, ...] = ()
    sockets: tuple[str, ...] = ()
    network: tuple[str, ...] = ()
    listening: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.process.label if self.process else f"?[{self.pid}]"


@dataclass(frozen=True)
class Channel:
    """One of the child's fds 0-2: kind (tty, pty, pipe, fifo, unix, tcp, ...) and ends.

    ``inferred`` says how the channel was worked out when no row of stock osquery's
    tables described the fd (``fleetctl.detection.stock_stdio``); empty when one did.
    """

    fd: int
    kind: str
    target: str
    mode: str
    partners: tuple[Partner, ...] = ()
    inode: int | None = None
    inferred: str = ""


KIND_WORDS = {
    "fifo": "FIFO",
    "unix": "unix socket",
    "tcp": "TCP socket",
    "udp": "UDP socket",
    "socket": "socket",
    "download": "download",
    "pipe": "pipe",
}


@dataclass(frozen=True)
class Feed:
    """IPC reaching a process's stdio from outside its own lineage.

    ``route`` is ``direct`` (the fd itself is the FIFO or socket), ``relay`` (an anonymous
    pipe to a process that holds a FIFO or socket, or is a downloader such as curl) or
    ``foreign`` (a plain pipe to a process that is neither an ancestor, a descendant nor
    a sibling in a shell pipeline). ``direction`` is ``in`` when the process reads the fd
    (stdin, sockets, FIFOs opened read-write) and ``out`` when it only writes to it (its
    output leaves through the channel). ``paths`` are the FIFO/socket paths or endpoints.
    """

    fd: int
    kind: str  # fifo, unix, tcp, udp, socket, download, pipe
    route: str
    paths: tuple[str, ...]
    partner: Partner | None
    direction: str = "in"

    def describe(self) -> str:
        what = KIND_WORDS.get(self.kind, self.kind)
        where = f" {', '.join(self.paths)}" if self.paths else ""
        who = self.partner.label if self.partner else "not seen"
        if self.route == "direct":
            return f"fd {self.fd} is a {what}{where}, other end {who}"
        arrow = "from" if self.direction == "in" else "to"
        held = f" which holds a {what}{where}" if self.kind not in ("pipe", "download") else ""
        if self.kind == "download":
            held = " (a downloader)"
        return f"fd {self.fd} is a pipe {arrow} {who}{held}"


@dataclass(frozen=True)
class ExecutionPath:
    """One (parent, child) execution with its channel; ``path_key()`` is its identity."""

    host: str
    platform: str
    observed_at: float | None
    child: ProcessRef
    parent: ProcessRef | None
    grandparent: ProcessRef | None
    lineage: tuple[ProcessRef, ...]  # child, parent, ... up to the root
    channels: tuple[Channel, ...]
    feeds: tuple[Feed, ...]
    parent_feeds: tuple[Feed, ...]
    parent_listeners: tuple[str, ...]
    child_listeners: tuple[str, ...]
    tty: str = ""
    session: str = ""
    cgroup: str = ""
    container: str = ""
    responsible: ProcessRef | None = None

    @property
    def forked(self) -> bool:
        """A fork that did not exec: same executable and command line as its parent
        (a forking server's worker). It was not *started* by the parent in the sense that
        matters here, so parent/child signals do not apply."""
        parent = self.parent
        return (
            parent is not None
            and bool(self.child.path)
            and (self.child.path, self.child.cmdline) == (parent.path, parent.cmdline)
        )

    @property
    def euid_bucket(self) -> str:
        euid = self.child.euid if self.child.euid is not None else self.child.uid
        return NO_STDIO if euid is None else str(min(euid, EUID_CAP))

    def stdio_kinds(self) -> tuple[str, ...]:
        """Sorted distinct kinds of fds 0-2 (empty when no stdio was collected)."""
        return tuple(sorted({c.kind for c in self.channels}))

    def seen_at(self, at: float) -> ExecutionPath:
        """This path as observed at ``at``: a shallow copy that keeps its computed key
        (``dataclasses.replace`` would build it anew and compute the key again, for every
        path under a key a batch touches)."""
        path = copy.copy(self)
        object.__setattr__(path, "observed_at", at)
        return path

    def path_key(self) -> str:
        """``child|min(euid,500)|parent|grandparent|kinds``, e.g. ``sh|0|socat|socat|unix``.

        chainguard's osquery-defense-kit uses the first four fields as its exception key;
        the stdio kinds make ``sh`` on a pty and ``sh`` on a TCP socket different paths.
        ``?`` is an unknown process, ``-`` no grandparent or no collected stdio.
        """
        return self._key

    @cached_property
    def _key(self) -> str:
        """Computed once per path: detection asks a kept path for its key at every batch
        that touches its key (the path is frozen, so the key cannot change)."""
        kinds = "+".join(self.stdio_kinds()) or NO_STDIO
        fields = (
            self.child.basename or "?",
            self.euid_bucket,
            self.parent.basename if self.parent else "?",
            self.grandparent.basename if self.grandparent else NO_STDIO,
            kinds,
        )
        return "|".join(f.replace("%", "%25").replace("|", "%7C") for f in fields)


def container_hint(cgroup: str) -> str:
    """``docker:<id12>``, ``k8s-pod:<uid>``, ``unit:ssh.service`` ... from a cgroup path."""
    for pattern, label in _CONTAINER_PATTERNS:
        found = pattern.search(cgroup)
        if found:
            return label.format(found.group(1))
    unit = _UNIT.findall(cgroup)
    return f"unit:{unit[-1]}" if unit else ""


class PathBuilder:
    """Per-snapshot indexes shared by every path (and trace) of one snapshot."""

    def __init__(self, snap: HostSnapshot) -> None:
        self.snap = snap
        self.refs = {pid: ProcessRef.of(p, snap.platform) for pid, p in snap.processes.items()}
        self.tcp_ends: dict[str, set[int]] = {}
        for pid, ends in snap.stdio.items():
            for end in ends.values():
                if end.kind == "tcp" and "->" in end.target:
                    self.tcp_ends.setdefault(end.target, set()).add(pid)

    def relation(self, pid: int, other: int) -> str:
        proc = self.snap.processes.get(pid)
        if other == pid:
            return "self"
        if proc is not None and other == proc.parent:
            return "parent"
        if any(a.pid == other for a in self.snap.ancestors(pid)):
            return "ancestor"
        other_proc = self.snap.processes.get(other)
        if other_proc is None:
            return "unknown"
        if any(a.pid == pid for a in self.snap.ancestors(other)):
            return "descendant"
        if proc is not None and other_proc.parent == proc.parent:
            return "sibling"
        return "other"

    def partner(self, pid: int, other: int) -> Partner:
        snap = self.snap
        return Partner(
            pid=other,
            process=self.refs.get(other),
            relation=self.relation(pid, other),
            fifos=snap.fifo_paths(other),
            sockets=snap.socket_paths(other),
            network=snap.network_endpoints(other),
            listening=snap.listening(other),
        )

    def partner_pids(self, pid: int, kind: str, target: str, listed: tuple[int, ...]) -> list[int]:
        """Partners from the rows, else the loopback TCP twin or the only unix peer."""
        if listed:
            return list(listed)
        if kind == "tcp" and "->" in target:
            local, remote = target.split("->", 1)
            return sorted(self.tcp_ends.get(f"{remote}->{local}", set()) - {pid})
        if kind == "unix":
            peers = {
                p.peer_pid
                for p in self.snap.unix_peers.get(pid, [])
                if p.peer_pid
                and p.peer_pid != pid
                and p.state != "listen"
                and (not target or target in (p.path, p.peer_path))
            }
            if not peers and target in self.snap.unix_connects.get(pid, {}).values():
                # A client's end: the peer is the one process serving the path it reached.
                peers = self.snap.unix_servers(target) - {pid}
            if len(peers) == 1:
                return list(peers)
        return []

    def channels(self, pid: int) -> tuple[Channel, ...]:
        out = []
        for fd, end in sorted(self.snap.stdio.get(pid, {}).items()):
            others = self.partner_pids(pid, end.kind, end.target, end.partners)
            out.append(
                Channel(
                    fd=fd,
                    kind=end.kind,
                    target=end.target,
                    mode=end.mode,
                    partners=tuple(self.partner(pid, o) for o in others),
                    inode=end.inode,
                    inferred=self.snap.inferred_stdio.get((pid, fd), ""),
                )
            )
        return tuple(out)

    def inherited(self, pid: int) -> set[int]:
        """Inodes on the stdio of ``pid``'s ancestors: a child holding one inherited it,
        and the IPC it carries reached the ancestor, not the child."""
        return {
            end.inode
            for a in self.snap.ancestors(pid)
            for end in self.snap.stdio.get(a.pid, {}).values()
            if end.inode
        }

    def feeds(self, pid: int, channels: Iterable[Channel]) -> tuple[Feed, ...]:
        out: list[Feed] = []
        inherited = self.inherited(pid)
        channels = tuple(channels)
        stdin = {ch.inode for ch in channels if ch.fd == 0 and ch.inode}
        for ch in channels:
            if ch.inode and ch.inode in inherited:
                continue
            outside = [p for p in ch.partners if p.relation not in LOCAL_RELATIONS]
            direction = "in" if _reads(ch, stdin) else "out"
            if ch.kind in IPC_KINDS:
                # Children holding the same FIFO or socket inherited it and say nothing
                # about who feeds it; an ancestor at the other end is plumbing.
                if not outside and any(p.relation in ("parent", "ancestor") for p in ch.partners):
                    continue
                out.append(
                    Feed(
                        ch.fd,
                        ch.kind,
                        "direct",
                        (ch.target,) if ch.target else (),
                        outside[0] if outside else None,
                        direction,
                    )
                )
            elif ch.kind == "pipe":
                out.extend(f for p in outside if (f := _relayed(ch.fd, p, direction)) is not None)
        return tuple(out)

    def path(self, proc: Process) -> ExecutionPath:
        snap = self.snap
        chain = [proc, *snap.ancestors(proc.pid)]
        lineage = tuple(self.refs[p.pid] for p in chain)
        parent = lineage[1] if len(lineage) > 1 else None
        grandparent = lineage[2] if len(lineage) > 2 else None
        channels = self.channels(proc.pid)
        parent_channels = self.channels(parent.pid) if parent is not None else ()
        tty = next(
            (
                short_tty(c.target)
                for c in channels
                if c.kind in ("tty", "pty") and c.target != "/dev/ptmx"
            ),
            "",
        )
        responsible = None
        if proc.responsible_pid not in (None, proc.pid, proc.parent):
            responsible = self.refs.get(proc.responsible_pid or 0)
        return ExecutionPath(
            host=snap.host,
            platform=snap.platform,
            observed_at=snap.observed_at,
            child=lineage[0],
            parent=parent,
            grandparent=grandparent,
            lineage=lineage,
            channels=channels,
            feeds=self.feeds(proc.pid, channels),
            parent_feeds=self.feeds(parent.pid, parent_channels) if parent is not None else (),
            parent_listeners=self.parent_listeners(proc),
            child_listeners=snap.listening(proc.pid),
            tty=tty,
            session=self.session(chain, tty, proc),
            cgroup=proc.cgroup,
            container=container_hint(proc.cgroup),
            responsible=responsible,
        )

    def parent_listeners(self, proc: Process) -> tuple[str, ...]:
        """The parent's listening sockets and pipes; a forked worker's are its server's."""
        snap = self.snap
        parent = snap.processes.get(proc.parent) if proc.parent else None
        if parent is None:
            return ()
        found = list(snap.listening(parent.pid))
        server = snap.processes.get(parent.parent) if parent.parent else None
        if server is not None and server.path and server.path == parent.path:
            found += snap.listening(server.pid)
        return tuple(dict.fromkeys(found))

    def session(self, chain: list[Process], tty: str, proc: Process) -> str:
        logins = self.snap.sessions_for((p.pid for p in chain), tty)
        if logins:
            s = logins[0]
            origin = f" from {s.host}" if s.host else ""
            return f"{s.user}{origin} on {s.tty} (leader {s.pid})"
        if proc.session_id is not None:
            return f"session {proc.session_id}"
        return ""


def _reads(ch: Channel, stdin: set[int]) -> bool:
    """Whether the process reads this fd (``stdin``: the inodes on its fd 0). Stock socket
    rows carry no mode: such a socket is read both ways, except on stdout or stderr with
    something else on stdin, where it is only where the process writes (every systemd
    service's output goes to the journal's socket, whose client end has no path and
    whose other end stock tables cannot name)."""
    if ch.fd == 0 or "r" in ch.mode:
        return True
    if ch.mode or ch.kind not in IPC_KINDS:
        return False
    return ch.fd > 2 or (ch.inode is not None and ch.inode in stdin)


def _relayed(fd: int, partner: Partner, direction: str) -> Feed | None:
    """What an anonymous pipe to an outside process carries, judged by that process."""
    if partner.relation == "sibling" and not (
        partner.fifos or partner.network or partner.sockets or _is_downloader(partner)
    ):
        return None  # an ordinary shell pipeline: cat file | sh
    if partner.fifos:
        return Feed(fd, "fifo", "relay", partner.fifos, partner, direction)
    if partner.network:
        return Feed(fd, "tcp", "relay", partner.network, partner, direction)
    if partner.sockets:
        return Feed(fd, "unix", "relay", partner.sockets, partner, direction)
    if _is_downloader(partner):
        return Feed(fd, "download", "relay", (), partner, direction)
    return Feed(fd, "pipe", "foreign", (), partner, direction)


def _is_downloader(partner: Partner) -> bool:
    return partner.process is not None and matches_any(partner.process.names, DOWNLOADERS)


def _is_kernel_thread(proc: Process, platform: str) -> bool:
    return platform == "linux" and not proc.path and not proc.cmdline


def is_judged(proc: Process, platform: str) -> bool:
    """Whether a process has an execution path: it has a parent and is no kernel thread."""
    return proc.parent is not None and proc.parent > 0 and not _is_kernel_thread(proc, platform)


def build_paths(snapshot: HostSnapshot) -> list[ExecutionPath]:
    """Every execution path of a snapshot, one per process that has a parent, by pid."""
    builder = PathBuilder(snapshot)
    return [
        builder.path(proc)
        for _, proc in sorted(snapshot.processes.items())
        if is_judged(proc, snapshot.platform)
    ]
