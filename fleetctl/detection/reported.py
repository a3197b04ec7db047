"""``Reported``: what a host's rows say about its processes and IPC objects, by pid.

The row readers (``_readers``) fill it, one family of pack query each; ``HostSnapshot``
extends it with what is inferred and built once every query has been read. Readers see
only this class, so the dependency runs one way: snapshot -> readers -> reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetctl.detection.normalize import to_int
from fleetctl.detection.records import (
    Fifo,
    Listener,
    NamedPipe,
    PipeEnd,
    Process,
    Session,
    StdioEnd,
    UnixPeer,
    same_start,
)


@dataclass(kw_only=True)
class Reported:
    """Rows of one host, filed by pid as the readers understand them."""

    processes: dict[int, Process] = field(default_factory=dict)
    stdio: dict[int, dict[int, StdioEnd]] = field(default_factory=dict)
    pipes: dict[int, list[PipeEnd]] = field(default_factory=dict)
    fifos: dict[int, list[Fifo]] = field(default_factory=dict)
    unix_peers: dict[int, list[UnixPeer]] = field(default_factory=dict)
    unix_paths: dict[int, set[str]] = field(default_factory=dict)
    #: Unix socket paths each process connected to, by fd (``socket_events``).
    unix_connects: dict[int, dict[int, str]] = field(default_factory=dict)
    listeners: dict[int, list[Listener]] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    named_pipes: list[NamedPipe] = field(default_factory=list)
    #: Stock ``stdio_channels``: processes it returned rows for and their sockets above
    #: fd 2 (``stock_stdio`` infers fds 0-2 from them).
    stock_scanned: set[int] = field(default_factory=set)
    stock_sockets: dict[int, list[StdioEnd]] = field(default_factory=dict)
    stale_rows: int = 0

    def add_process(self, process: Process) -> Process:
        """Insert or merge a process record; a different start time replaces a joined one."""
        current = self.processes.get(process.pid)
        if current is None:
            self.processes[process.pid] = process
            return process
        if not same_start(process.start_time, current.start_time):
            if process.rank > current.rank:
                self.processes[process.pid] = process
                return process
            return current
        current.merge(process)
        return current

    def is_current(self, pid: int, start_time: object) -> bool:
        """False when a row's start_time shows it describes an earlier process with ``pid``."""
        proc = self.processes.get(pid)
        if proc is None or same_start(to_int(start_time), proc.start_time):
            return True
        self.stale_rows += 1
        return False

    def set_stdio(self, pid: int, end: StdioEnd) -> None:
        """Set one fd of ``pid``, copying the pid's ends: a snapshot shares them with the
        state it was taken from (``HostDetection``), which must not see its additions."""
        self.stdio[pid] = {**self.stdio.get(pid, {}), end.fd: end}
