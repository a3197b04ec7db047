"""``HostSnapshot``: one host's processes and IPC objects at one time, indexed by pid.

Input is what the shipped packs return, row by row, every value a string as osquery logs
it (``""`` for NULL): ``packs/ipc-telemetry.json`` (lineage, pipes, unix sockets,
listeners, FIFOs, stdio, logins), ``packs/ipc-telemetry-extension.json`` (``process_stdio``
and ``unix_socket_peers``), ``packs/ipc-telemetry-windows.json`` (``pipes``, lineage, Office
and DCOM children) and ``packs/ipc-telemetry-macos.json`` (EndpointSecurity execs). Rows of
any other query that look like process rows (``pid`` and a parent column) are read as
processes, so a plain ``SELECT ... FROM processes`` log works too.

A snapshot is only as consistent as its rows: scheduled queries run at different moments
and pids are reused. Every row that carries the process's ``start_time`` is checked
against the lineage row of the same pid and dropped when they differ (``stale_rows``
counts them), which is what keying processes on ``(pid, start_time)`` buys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleetctl.detection._readers import (
    DARWIN_QUERIES,
    WINDOWS_QUERIES,
    is_process_query,
    reader_for,
)
from fleetctl.detection.normalize import is_windows_path
from fleetctl.detection.records import (
    Fifo,
    Listener,
    NamedPipe,
    PipeEnd,
    Process,
    Row,
    Session,
    StdioEnd,
    UnixPeer,
)
from fleetctl.detection.reported import Reported
from fleetctl.detection.stock_stdio import complete_stdio
from storage.runs import split_query_name


@dataclass
class HostSnapshot(Reported):
    """Everything one host reported, indexed by pid; build it with ``from_results``.
    The row readers fill its ``Reported``; what is built from that lives here."""

    host: str
    platform: str = "linux"
    observed_at: float | None = None
    #: How each fd 0-2 no row described was inferred (``stock_stdio``).
    inferred_stdio: dict[tuple[int, int], str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    _children: dict[int, list[int]] | None = field(default=None, repr=False, compare=False)

    # -- building ------------------------------------------------------------------------

    @classmethod
    def from_results(
        cls,
        host: str,
        results: Mapping[str, Iterable[Row]],
        *,
        platform: str | None = None,
        observed_at: float | None = None,
    ) -> HostSnapshot:
        """A snapshot from ``{query name: rows}``.

        Names are the packs' query names (``process_lineage``) or the names osqueryd logs
        (``pack_ipc-telemetry_process_lineage``, split by the default rule: pass names
        whose pack has a ``_`` in it already split, as ingest stores them).
        """
        return cls.from_queries(
            host,
            [(split_query_name(name).query, rows) for name, rows in results.items()],
            platform=platform,
            observed_at=observed_at,
        )

    @classmethod
    def from_queries(
        cls,
        host: str,
        results: Iterable[tuple[str, Iterable[Row]]],
        *,
        platform: str | None = None,
        observed_at: float | None = None,
    ) -> HostSnapshot:
        """A snapshot from ``(query name, rows)`` pairs (a query may come more than once,
        from several packs). Process rows are read first, so the ``start_time`` checks
        of the other rows have something to compare with."""
        snapshot = cls(host=host, platform=platform or "", observed_at=observed_at)
        named = [(name, list(rows)) for name, rows in results]
        named.sort(key=lambda item: not is_process_query(item[0], item[1]))
        for name, rows in named:
            snapshot.add_rows(name, rows)
        snapshot.platform = platform or snapshot.guess_platform(name for name, _ in named)
        snapshot.finish()
        return snapshot

    def add_rows(self, query: str, rows: Iterable[Row]) -> None:
        """Read the rows of one query (by its pack query name) into the snapshot."""
        rows = list(rows)
        reader = reader_for(query, rows)
        if reader is None:
            self.skipped.append(query)
            return
        reader(self, rows)
        self._children = None

    def finish(self) -> None:
        """Fill stdio that only ``pipe_partners`` saw, then what stock osquery's tables
        leave out (``stock_stdio``), once every query has been read."""
        for pid, ends in self.pipes.items():
            for fd in (0, 1, 2):
                if fd in self.stdio.get(pid, {}):
                    continue
                mine = [e for e in ends if e.fd == fd]
                if not mine:
                    continue
                fifo_path = next((f.path for f in self.fifos.get(pid, []) if f.fd == fd), "")
                self.set_stdio(
                    pid,
                    StdioEnd(
                        fd=fd,
                        kind="fifo" if mine[0].type == "named" else "pipe",
                        target=fifo_path,
                        inode=mine[0].inode,
                        mode=mine[0].mode,
                        partners=tuple(
                            sorted(
                                {e.partner_pid for e in mine if e.partner_pid and e.partner_pid > 0}
                            )
                        ),
                    ),
                )
        complete_stdio(self)
        self.stdio = {pid: ends for pid, ends in self.stdio.items() if ends}

    def guess_platform(self, queries: Iterable[str]) -> str:
        names = set(queries)
        if names & WINDOWS_QUERIES or any(is_windows_path(p.path) for p in self.processes.values()):
            return "windows"
        if names & DARWIN_QUERIES or any(
            p.pidversion is not None or p.signing_id for p in self.processes.values()
        ):
            return "darwin"
        return "linux"

    # -- navigation ----------------------------------------------------------------------

    def children(self, pid: int) -> list[int]:
        if self._children is None:
            index: dict[int, list[int]] = {}
            for proc in self.processes.values():
                if proc.parent is not None and proc.parent != proc.pid:
                    index.setdefault(proc.parent, []).append(proc.pid)
            self._children = {k: sorted(v) for k, v in index.items()}
        return self._children.get(pid, [])

    def ancestors(self, pid: int) -> list[Process]:
        """Parent, grandparent, ... up to the root; stops on unknown pids and cycles."""
        chain: list[Process] = []
        seen = {pid}
        current = self.processes.get(pid)
        while current is not None and current.parent is not None and current.parent > 0:
            if current.parent in seen:
                break
            seen.add(current.parent)
            parent = self.processes.get(current.parent)
            if parent is None:
                break
            chain.append(parent)
            current = parent
        return chain

    def descendants(self, pid: int) -> list[int]:
        out: list[int] = []
        stack = list(self.children(pid))
        seen = {pid}
        while stack:
            child = stack.pop()
            if child in seen:
                continue
            seen.add(child)
            out.append(child)
            stack.extend(self.children(child))
        return out

    def fifo_paths(self, pid: int) -> tuple[str, ...]:
        """Named FIFOs a process holds open, from ``named_fifos`` and its stdio, sorted:
        the order the store returns rows in (an index's) must not change the evidence."""
        paths = {f.path for f in self.fifos.get(pid, []) if f.path}
        paths |= {
            e.target for e in self.stdio.get(pid, {}).values() if e.kind == "fifo" and e.target
        }
        return tuple(sorted(paths))

    def socket_paths(self, pid: int) -> tuple[str, ...]:
        """Unix socket paths a process holds: bound paths, the paths of its peers and the
        paths it connected to."""
        paths = list(self.unix_paths.get(pid, ()))
        paths += self.unix_connects.get(pid, {}).values()
        for peer in self.unix_peers.get(pid, []):
            paths += [p for p in (peer.path, peer.peer_path) if p]
        paths += [
            e.target
            for e in self.stdio.get(pid, {}).values()
            if e.kind == "unix" and e.target.startswith(("/", "@"))
        ]
        return tuple(dict.fromkeys(paths))

    def network_endpoints(self, pid: int) -> tuple[str, ...]:
        """TCP/UDP connections on a process's stdio (``local->remote``)."""
        return tuple(
            dict.fromkeys(
                e.target for e in self.stdio.get(pid, {}).values() if e.kind in ("tcp", "udp")
            )
        )

    def unix_servers(self, path: str) -> set[int]:
        """Processes holding a unix socket bound to ``path`` (listeners, accepted ends)."""
        found = {pid for pid, held in self.listeners.items() if any(x.path == path for x in held)}
        return found | {pid for pid, held in self.unix_paths.items() if path in held}

    def listening(self, pid: int) -> tuple[str, ...]:
        found = [lst.describe() for lst in self.listeners.get(pid, [])]
        found += [
            f"unix:{p.path}" for p in self.unix_peers.get(pid, []) if p.state == "listen" and p.path
        ]
        found += [f"pipe:{p.name}" for p in self.named_pipes if p.pid == pid]
        return tuple(dict.fromkeys(found))

    def sessions_for(self, pids: Iterable[int], tty: str) -> list[Session]:
        """Logins whose tty is ``tty`` or whose session leader is one of ``pids``."""
        wanted = set(pids)
        return [
            s
            for s in self.sessions
            if (tty and s.tty == tty) or (s.pid is not None and s.pid in wanted)
        ]


__all__ = [
    "Fifo",
    "HostSnapshot",
    "Listener",
    "NamedPipe",
    "PipeEnd",
    "Process",
    "Session",
    "StdioEnd",
    "UnixPeer",
]
