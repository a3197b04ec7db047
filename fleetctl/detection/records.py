"""The records a ``HostSnapshot`` is made of: processes, stdio ends, pipes, FIFOs, sockets.

Each record keeps the facts of one row family after parsing osquery's strings; nothing
here judges them. ``Process.merge`` decides which row wins when several describe the same
process: a row from the processes table itself (``LINEAGE``) beats an exec event
(``EVENT``), which beats columns a join copied from a parent or partner (``JOINED``); among
equals the later row wins, so the newest of several ES exec events of one pid is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from fleetctl.detection.normalize import argv0, basename, text, to_int

Row = Mapping[str, Any]

JOINED, EVENT, LINEAGE = 1, 2, 3
# Two queries can report one process's start_time a second apart: it is boot time plus
# the start tick, and boot time is recomputed from the clock on every read.
START_TIME_SLACK = 2


def same_start(a: int | None, b: int | None) -> bool:
    """Whether two start times can belong to the same process (unknown matches anything)."""
    return a is None or b is None or abs(a - b) <= START_TIME_SLACK


@dataclass
class Process:
    """One process as the rows describe it; ``key`` is ``(pid, start_time)``."""

    pid: int
    parent: int | None = None
    start_time: int | None = None
    name: str = ""
    path: str = ""
    cmdline: str = ""
    uid: int | None = None
    euid: int | None = None
    username: str = ""
    cwd: str = ""
    pgroup: int | None = None
    cgroup: str = ""
    session_id: int | None = None
    pidversion: int | None = None
    responsible_pid: int | None = None
    original_parent: int | None = None
    elevated: bool | None = None
    signing_id: str = ""
    team_id: str = ""
    exec_time: int | None = None
    rank: int = JOINED

    @property
    def key(self) -> tuple[int, int | None]:
        """Identity across pid reuse: start time, or macOS's pidversion for ES rows."""
        return (self.pid, self.start_time if self.start_time is not None else self.pidversion)

    @property
    def basename(self) -> str:
        """Executable basename; the process name or argv[0] when the path is unknown."""
        return basename(self.path) or self.name or argv0(self.cmdline)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the process goes by, for pattern matching: exe basename and comm, and
        argv[0] only when the executable path is unknown (rows without a path column)."""
        found = [basename(self.path), self.name]
        if not self.path:
            found.append(argv0(self.cmdline))
        return tuple(dict.fromkeys(n for n in found if n))

    def merge(self, other: Process) -> None:
        """Take ``other``'s values: all if it ranks as high or higher, else only blanks."""
        for name in _MERGED:
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is None or theirs == "" or theirs == mine:
                continue
            if other.rank >= self.rank or mine is None or mine == "":
                setattr(self, name, theirs)
        self.rank = max(self.rank, other.rank)


_MERGED = tuple(f.name for f in fields(Process) if f.name not in ("pid", "rank"))


@dataclass(frozen=True)
class StdioEnd:
    """What one of fds 0-2 is connected to; ``partners`` hold the other end.

    ``source`` is ``extension`` for ``process_stdio`` rows and ``stock`` for the
    ``stdio_channels`` query over stock tables; the extension sees unix socket peers, so
    its rows win when both describe a descriptor.
    """

    fd: int
    kind: str
    target: str = ""
    inode: int | None = None
    mode: str = ""
    partners: tuple[int, ...] = ()
    source: str = "stock"


@dataclass(frozen=True)
class PipeEnd:
    """One ``process_open_pipes`` end with its partner (``pipe_partners`` query)."""

    pid: int
    fd: int
    inode: int | None
    type: str
    mode: str
    partner_pid: int | None
    partner_fd: int | None


@dataclass(frozen=True)
class Fifo:
    """A named FIFO open in a process, with its path (``named_fifos`` query)."""

    pid: int
    path: str
    fd: int | None
    mode: str
    partner_pid: int | None


@dataclass(frozen=True)
class UnixPeer:
    """A unix socket of ``pid`` and the process on the other end (``unix_socket_peers``)."""

    pid: int
    path: str
    type: str
    state: str
    peer_pid: int | None
    peer_path: str


@dataclass(frozen=True)
class Listener:
    """A listening socket: a unix path, or a TCP/UDP port when ``port`` is set."""

    pid: int
    path: str = ""
    port: int | None = None
    address: str = ""
    protocol: int | None = None

    def describe(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        proto = {6: "tcp", 17: "udp"}.get(self.protocol or 0, "port")
        return f"{proto}:{self.address or '*'}:{self.port}"


@dataclass(frozen=True)
class Session:
    """A login from ``logged_in_users``: user, tty, remote host, session leader pid."""

    user: str
    tty: str
    host: str
    pid: int | None
    type: str = ""


@dataclass(frozen=True)
class NamedPipe:
    """A Windows named pipe (bare name, as ``pipes.name`` reports it) and its server pid."""

    name: str
    pid: int | None


def process_from_row(row: Row, rank: int = LINEAGE) -> Process | None:
    """A ``Process`` from any row with the processes table's column names."""
    pid = to_int(row.get("pid"))
    if pid is None or pid < 0:
        return None
    elevated = to_int(row.get("elevated_token"))
    return Process(
        pid=pid,
        parent=to_int(text(row, "parent", "ppid", "parent_pid")),
        start_time=to_int(row.get("start_time")),
        name=text(row, "name"),
        path=text(row, "path"),
        cmdline=text(row, "cmdline"),
        uid=to_int(row.get("uid")),
        euid=to_int(row.get("euid")),
        username=text(row, "username"),
        cwd=text(row, "cwd"),
        pgroup=to_int(row.get("pgroup")),
        cgroup=text(row, "cgroup_path"),
        session_id=to_int(row.get("session_id")),
        pidversion=to_int(row.get("pidversion")),
        responsible_pid=to_int(row.get("responsible_pid")),
        original_parent=to_int(row.get("original_parent")),
        elevated=None if elevated is None else bool(elevated),
        signing_id=text(row, "signing_id"),
        team_id=text(row, "team_id"),
        exec_time=to_int(row.get("time")),
        rank=rank,
    )
