"""One host's detection state kept current from row changes, so a batch costs what changed.

A full judgement reads every detection row of the host, parses them into a
``HostSnapshot``, builds every execution path and judges every path key. This module
keeps all three between batches and moves them forward from the rows that opened and
closed (what the result store reports for each applied run):

1. **Rows.** The host's current detection rows, by stored query name and row hash, with
   two indexes: the pids each row mentions (pid, parent, partner, peer ...) and the pid
   that owns it (its ``pid`` column: the rows a reader files under that pid).
2. **Snapshot.** Only the records a changed row can alter are parsed again, with the
   same readers, in the order a full parse meets the rows (by query, then row hash):
   first the process record of every pid a changed row adds to (its own pid, the parent
   or partner it names) -- from the process's own rows when its lineage row gives every
   field a row of another process could fill in, else from every row naming it; then
   the per-pid entries (stdio, pipes, FIFOs, sockets, listeners) of every pid whose rows
   changed or whose rows name a process whose start time changed (a reused pid makes a
   partner's row stale), against copies of the current records. The logins and Windows
   pipe lists are re-read whole when one of their rows changed. What is inferred across
   processes (``HostSnapshot.finish``: stdio only ``pipe_partners`` saw, what stock
   osquery leaves out) is cheap and is worked out again on the whole host.
3. **Paths.** Building a path records each fact of the snapshot it read: a pid's process
   record and stdio, its unix peers and connects; what it derives of another process as
   the derived value (the FIFOs, sockets, endpoints and listeners it holds, the inodes
   on its stdio); the servers of a socket path, the processes on a TCP endpoint, the
   logins. After a batch every recorded fact is compared between the old and the new
   snapshot, and exactly the paths that read a changed fact are built again (with those
   of new processes): a changed row reaches its process, the children whose lineage
   shows it, the processes at the other ends of its channels and those that share a
   socket path, by what they read rather than by a rule written down twice. A path
   does not record the facts of its own pid: it is built again whenever an entry of
   its pid changes, which keeps the index to the facts processes share.

Equal to a full parse whenever that parse does not depend on the order of its rows:
rows that disagree about a process (two start times for a pid no lineage row settles)
are read in the fixed order here, and in the store's order by a full parse.

The caller judges only the keys of the paths that changed (``Update.keys``). Event
queries keep their window: their rows leave the state when they age out of it, which is
a change like any other. ``full_rebuild`` is what a host whose state is unknown gets;
``tests/detection/test_incremental.py`` checks that both always agree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fleetctl.detection._readers import EVENT_COLUMNS, is_process_query, reader_for
from fleetctl.detection.compact import compact
from fleetctl.detection.normalize import to_int
from fleetctl.detection.paths import ExecutionPath, PathBuilder, ProcessRef, is_judged
from fleetctl.detection.records import NamedPipe, Process, Row, Session, process_from_row
from fleetctl.detection.reported import Reported
from fleetctl.detection.snapshot import HostSnapshot

# Columns naming a pid whose process record a row adds to: process rows (lineage, exec
# events) name their parent, grandparent and responsible process; other rows their
# partner or peer. Partners' start times are also checked against their records.
PROCESS_PIDS = ("pid", "parent", "ppid", "parent_pid", "grandparent_pid", "responsible_pid")
OTHER_PIDS = ("pid", "partner_pid", "peer_pid")
# What ``_readers._add_joined`` gives a process named by another process's row.
JOINED_FIELDS = ("parent", "name", "path", "cmdline", "start_time")
# Queries whose rows form one host-wide list (order matters): re-read whole on a change.
LIST_QUERIES = frozenset(
    {"logged_in_users", "named_pipes", "named_pipes_snapshot", "known_tool_pipes"}
)
# Per-pid entries a reader files under the row's own pid.
OWNED = ("stdio", "pipes", "fifos", "unix_peers", "unix_paths", "unix_connects", "listeners")

# The snapshot's per-pid families, and the fact families whose value is worked out from
# those of their own pid alone (``inferred`` is keyed by (pid, fd); ``listening`` and
# ``named_pipes`` also read the host's pipe list).
PER_PID = (
    "processes",
    "stdio",
    "pipes",
    "fifos",
    "unix_peers",
    "unix_paths",
    "unix_connects",
    "listeners",
)
PID_FACTS = frozenset(
    {
        "proc",
        "stdio",
        "inferred",
        "pipes",
        "fifos",
        "unix_peers",
        "unix_paths",
        "unix_connects",
        "listeners",
        "fifo_paths",
        "socket_paths",
        "network",
        "inodes",
        "listening",
        "named_pipes",
    }
)
PIPE_LIST_FACTS = frozenset({"listening", "named_pipes"})
# A path does not record the facts of its own pid: their value changes only when an
# entry of that pid changes (the pid "moved") or, for the pipe-list facts, when a pipe
# of that pid comes or goes, and such a pid's path is built again anyway. They are most
# of what a path reads (its record, stdio, each fd's inference, sockets), so leaving
# them out keeps the readers index to the facts shared between processes.

Fact = tuple[str, Any]
RowKey = tuple[str, str]  # (stored query name, row hash)
K = TypeVar("K")
V = TypeVar("V")


class ChangedRow(Protocol):
    """A row that opened or closed, as ``storage.results.ChangedRow`` gives it."""

    @property
    def hash(self) -> str: ...
    @property
    def columns(self) -> Mapping[str, str]: ...
    @property
    def first_seen(self) -> int | None: ...


@dataclass
class _Table:
    """The current rows of one stored query name."""

    query: str
    rows: dict[str, Row] = field(default_factory=dict)
    first_seen: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Update:
    """What a batch changed: paths built again or gone (by pid), the path keys to judge
    (old and new keys of those paths), and whether everything was rebuilt."""

    changed: frozenset[int]
    removed: frozenset[int]
    keys: frozenset[str]
    full: bool = False
    rows: int = 0  # rows parsed again


def _pids(row: Row, columns: tuple[str, ...]) -> frozenset[int]:
    found = set()
    for col in columns:
        value = to_int(row.get(col))
        if value is not None and value > 0:
            found.add(value)
    return frozenset(found)


def _mentions(query: str, row: Row) -> frozenset[int]:
    """The pids whose process record this row adds to."""
    return _pids(row, PROCESS_PIDS if is_process_query(query, [row]) else OTHER_PIDS)


def _partner(query: str, row: Row) -> int | None:
    """The partner whose start time decides whether the row is current."""
    return None if is_process_query(query, [row]) else to_int(row.get("partner_pid"))


def _owner(row: Row) -> int | None:
    pid = to_int(row.get("pid"))
    return pid if pid is not None and pid >= 0 else None


# -- recording what a path reads ----------------------------------------------------------


class _Reads:
    """The facts read by the path being built."""

    def __init__(self) -> None:
        self.current: set[Fact] = set()


class _Recorded(dict[K, V]):
    """A read-only view of ``data`` that records every key looked up as a fact."""

    def __init__(self, data: Mapping[K, V], family: str, reads: _Reads) -> None:
        super().__init__()
        self._data = data
        self._family = family
        self._reads = reads

    def get(self, key: K, default: Any = None) -> Any:
        self._reads.current.add((self._family, key))
        return self._data.get(key, default)

    def __getitem__(self, key: K) -> V:
        self._reads.current.add((self._family, key))
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        self._reads.current.add((self._family, key))
        return key in self._data


class _Refs(Mapping[int, ProcessRef]):
    """Process refs built on first use (a path reads a few processes, not all)."""

    def __init__(self, snap: HostSnapshot) -> None:
        self._snap = snap
        self._refs: dict[int, ProcessRef] = {}

    def __getitem__(self, pid: int) -> ProcessRef:
        ref = self._refs.get(pid)
        if ref is None:
            ref = self._refs[pid] = ProcessRef.of(self._snap.processes[pid], self._snap.platform)
        return ref

    def __iter__(self) -> Iterator[int]:
        return iter(self._snap.processes)

    def __len__(self) -> int:
        return len(self._snap.processes)


class _Facts:
    """Host-wide indexes of one snapshot, and the value of any fact a path can read."""

    def __init__(self, snap: HostSnapshot) -> None:
        self.snap = snap
        self._tcp: dict[str, set[int]] | None = None
        self._servers: dict[str, frozenset[int]] | None = None
        self._pipes: dict[int, tuple[NamedPipe, ...]] | None = None

    @property
    def tcp_ends(self) -> dict[str, set[int]]:
        if self._tcp is None:
            self._tcp = {}
            for pid, ends in self.snap.stdio.items():
                for end in ends.values():
                    if end.kind == "tcp" and "->" in end.target:
                        self._tcp.setdefault(end.target, set()).add(pid)
        return self._tcp

    def servers(self, path: str) -> frozenset[int]:
        if self._servers is None:
            found: dict[str, set[int]] = {}
            for pid, held in self.snap.listeners.items():
                for lst in held:
                    found.setdefault(lst.path, set()).add(pid)
            for pid, paths in self.snap.unix_paths.items():
                for p in paths:
                    found.setdefault(p, set()).add(pid)
            self._servers = {p: frozenset(pids) for p, pids in found.items()}
        return self._servers.get(path, frozenset())

    def named_pipes(self, pid: int) -> tuple[NamedPipe, ...]:
        if self._pipes is None:
            found: dict[int, list[NamedPipe]] = {}
            for pipe in self.snap.named_pipes:
                if pipe.pid is not None:
                    found.setdefault(pipe.pid, []).append(pipe)
            self._pipes = {p: tuple(v) for p, v in found.items()}
        return self._pipes.get(pid, ())

    def value(self, fact: Fact) -> object:
        family, key = fact
        snap = self.snap
        if family == "proc":
            return snap.processes.get(key)
        if family == "stdio":
            return snap.stdio.get(key)
        if family == "inferred":
            return snap.inferred_stdio.get(key)
        if family == "tcp":
            return frozenset(self.tcp_ends.get(key, ()))
        if family == "server":
            return self.servers(key)
        if family == "named_pipes":
            return self.named_pipes(key)
        if family == "sessions":
            return tuple(snap.sessions)
        if family == "fifo_paths":
            return snap.fifo_paths(key)
        if family == "socket_paths":
            return snap.socket_paths(key)
        if family == "network":
            return snap.network_endpoints(key)
        if family == "listening":
            return self.listening(key)
        if family == "inodes":
            return self.inodes(key)
        return getattr(snap, family).get(key)  # fifos, unix_peers, unix_paths, ...

    def listening(self, pid: int) -> tuple[str, ...]:
        """``HostSnapshot.listening`` with the Windows pipes from an index."""
        snap = self.snap
        found = [lst.describe() for lst in snap.listeners.get(pid, [])]
        found += [
            f"unix:{p.path}" for p in snap.unix_peers.get(pid, []) if p.state == "listen" and p.path
        ]
        found += [f"pipe:{p.name}" for p in self.named_pipes(pid)]
        return tuple(dict.fromkeys(found))

    def inodes(self, pid: int) -> frozenset[int]:
        """The inodes on a process's stdio (what its descendants may have inherited)."""
        return frozenset(e.inode for e in self.snap.stdio.get(pid, {}).values() if e.inode)


class _View(HostSnapshot):
    """A snapshot whose lookups are recorded; host-wide scans read ``_Facts`` indexes."""

    def __init__(self, snap: HostSnapshot, facts: _Facts, reads: _Reads) -> None:
        super().__init__(host=snap.host, platform=snap.platform, observed_at=snap.observed_at)
        self._facts = facts
        self._reads = reads
        self.processes = _Recorded(snap.processes, "proc", reads)
        self.stdio = _Recorded(snap.stdio, "stdio", reads)
        self.inferred_stdio = _Recorded(snap.inferred_stdio, "inferred", reads)
        self.pipes = _Recorded(snap.pipes, "pipes", reads)
        self.fifos = _Recorded(snap.fifos, "fifos", reads)
        self.unix_peers = _Recorded(snap.unix_peers, "unix_peers", reads)
        self.unix_paths = _Recorded(snap.unix_paths, "unix_paths", reads)
        self.unix_connects = _Recorded(snap.unix_connects, "unix_connects", reads)
        self.listeners = _Recorded(snap.listeners, "listeners", reads)
        self._sessions = snap.sessions

    def unix_servers(self, path: str) -> set[int]:
        self._reads.current.add(("server", path))
        return set(self._facts.servers(path))

    # What a path reads of another process is recorded as the value it derives, not as
    # the records it is derived from: a pipe hub whose partners change still holds the
    # same FIFOs and sockets, and the paths of its partners stay as they are.

    def listening(self, pid: int) -> tuple[str, ...]:
        self._reads.current.add(("listening", pid))
        return self._facts.listening(pid)

    def fifo_paths(self, pid: int) -> tuple[str, ...]:
        self._reads.current.add(("fifo_paths", pid))
        return self._facts.snap.fifo_paths(pid)

    def socket_paths(self, pid: int) -> tuple[str, ...]:
        self._reads.current.add(("socket_paths", pid))
        return self._facts.snap.socket_paths(pid)

    def network_endpoints(self, pid: int) -> tuple[str, ...]:
        self._reads.current.add(("network", pid))
        return self._facts.snap.network_endpoints(pid)

    def sessions_for(self, pids: Iterable[int], tty: str) -> list[Session]:
        self._reads.current.add(("sessions", None))
        wanted = set(pids)
        return [
            s
            for s in self._sessions
            if (tty and s.tty == tty) or (s.pid is not None and s.pid in wanted)
        ]

    def children(self, pid: int) -> list[int]:
        raise NotImplementedError("paths do not read children; record them before they do")


class TracingBuilder(PathBuilder):
    """``PathBuilder`` over a recorded view: ``trace`` gives a path and the facts it read."""

    def __init__(self, snap: HostSnapshot, facts: _Facts) -> None:
        # No PathBuilder.__init__: its host-wide indexes come from ``facts``, read through
        # recorders, so that building one path costs that path.
        self._reads = _Reads()
        self._facts = facts
        self.snap = _View(snap, facts, self._reads)
        self.refs = _Recorded(_Refs(snap), "proc", self._reads)
        self.tcp_ends = _Recorded(facts.tcp_ends, "tcp", self._reads)

    def inherited(self, pid: int) -> set[int]:
        out: set[int] = set()
        for ancestor in self.snap.ancestors(pid):
            self._reads.current.add(("inodes", ancestor.pid))
            out |= self._facts.inodes(ancestor.pid)
        return out

    def trace(self, proc: Process) -> tuple[ExecutionPath, tuple[Fact, ...]]:
        """The path of ``proc`` and the facts of other pids (and host-wide) it read."""
        self._reads.current = set()
        path = self.path(proc)
        return path, tuple(f for f in self._reads.current if not _own(f, proc.pid))


def _fact_pid(fact: Fact) -> Any:
    family, key = fact
    return key[0] if family == "inferred" else key


def _own(fact: Fact, pid: int) -> bool:
    return fact[0] in PID_FACTS and _fact_pid(fact) == pid


# -- the host's state ------------------------------------------------------------------------


@dataclass
class HostDetection:
    """One host's rows, snapshot and paths, moved forward by row changes.

    ``events`` are the query names (as packs name them) whose rows are events, visible
    for ``window`` seconds after they first appeared (``first_seen``)."""

    host: str
    events: Collection[str] = ()
    window: int = 600
    tables: dict[str, _Table] = field(default_factory=dict)
    raw: Reported = field(default_factory=Reported)
    snapshot: HostSnapshot | None = None
    paths: dict[int, ExecutionPath] = field(default_factory=dict)
    reads: dict[int, tuple[Fact, ...]] = field(default_factory=dict)
    readers: dict[Fact, list[int]] = field(default_factory=dict)
    by_key: dict[str, list[int]] = field(default_factory=dict)
    judged_at: dict[str, float] = field(default_factory=dict)
    at: float = 0.0
    _mentioned_by: dict[int, list[RowKey]] = field(default_factory=dict)
    _partnered_by: dict[int, list[RowKey]] = field(default_factory=dict)
    _owned: dict[int, list[RowKey]] = field(default_factory=dict)
    _owners: set[int] = field(default_factory=set)  # owners of changed rows
    _dirty: set[int] = field(default_factory=set)
    _lists_dirty: bool = False
    _facts: dict[Fact, Fact] = field(default_factory=dict)  # one tuple per fact read

    # -- rows -----------------------------------------------------------------------------

    def _table(self, name: str, query: str) -> _Table:
        table = self.tables.get(name)
        if table is None:
            table = self.tables[name] = _Table(query)
        return table

    def _visible(self, query: str, first_seen: int | None, at: float) -> bool:
        return query not in self.events or (
            first_seen is not None and first_seen >= at - self.window
        )

    def _open(self, name: str, table: _Table, row: ChangedRow) -> None:
        key = (name, row.hash)
        if row.hash in table.rows:
            self._close(name, table, row.hash)
        columns = table.rows[row.hash] = compact(row.columns)
        if table.query in self.events:  # only event rows age out of the state
            table.first_seen[row.hash] = row.first_seen
        if table.query in LIST_QUERIES:
            self._lists_dirty = True
        pids = _mentions(table.query, columns)
        for pid in pids:
            self._mentioned_by.setdefault(pid, []).append(key)
        partner = _partner(table.query, columns)
        if partner is not None:
            self._partnered_by.setdefault(partner, []).append(key)
        owner = _owner(columns)
        if owner is not None:
            self._owned.setdefault(owner, []).append(key)
            self._owners.add(owner)
        self._dirty |= pids

    def _close(self, name: str, table: _Table, row_hash: str) -> None:
        columns = table.rows.pop(row_hash, None)
        if columns is None:
            return  # not present (aged out, or a change the state already had)
        table.first_seen.pop(row_hash, None)
        if table.query in LIST_QUERIES:
            self._lists_dirty = True
        key = (name, row_hash)
        pids = _mentions(table.query, columns)  # what ``_open`` filed it under
        for pid in pids:
            _discard(self._mentioned_by, pid, key)
        partner = _partner(table.query, columns)
        if partner is not None:
            _discard(self._partnered_by, partner, key)
        owner = _owner(columns)
        if owner is not None:
            _discard(self._owned, owner, key)
            self._owners.add(owner)
        self._dirty |= pids

    def change(
        self,
        name: str,
        query: str,
        opened: Iterable[ChangedRow],
        closed: Iterable[ChangedRow],
    ) -> None:
        """Apply one run's row changes (closed first: a diff can close and reopen a row)."""
        table = self._table(name, query)
        for row in closed:
            self._close(name, table, row.hash)
        for row in opened:
            if self._visible(query, row.first_seen, self.at):
                self._open(name, table, row)

    def _age(self, at: float) -> None:
        """Event rows that left the window since the last update are closed."""
        for name, table in self.tables.items():
            if table.query not in self.events:
                continue
            old = [
                h
                for h, first in table.first_seen.items()
                if not self._visible(table.query, first, at)
            ]
            for row_hash in old:
                self._close(name, table, row_hash)

    def _ordered(self, keys: Iterable[RowKey] | None = None) -> list[tuple[str, list[Row]]]:
        """(query, rows) in the order ``HostSnapshot.from_queries`` reads a full snapshot:
        by stored name, process queries first, rows by hash (``canonical``); only ``keys``
        when given. A fixed order makes the rows of any subset meet in the order a full
        parse meets them, which is what lets a subset be parsed alone."""
        grouped: dict[str, list[Row]] = {}
        if keys is None:
            keys = [(name, h) for name, table in self.tables.items() for h in table.rows]
        for name, row_hash in sorted(keys):
            grouped.setdefault(name, []).append(self.tables[name].rows[row_hash])
        named = [(self.tables[n].query, rows) for n, rows in sorted(grouped.items())]
        named.sort(key=lambda item: not is_process_query(item[0], item[1]))
        return named

    # -- snapshot ---------------------------------------------------------------------------

    def _finished(self, at: float) -> HostSnapshot:
        """The snapshot of ``raw`` with what ``finish`` infers (on copies: ``raw`` stays)."""
        raw = self.raw
        snap = HostSnapshot(host=self.host, observed_at=at)
        snap.processes = dict(raw.processes)
        snap.stdio = dict(raw.stdio)  # a pid's ends are copied when written (set_stdio)
        snap.pipes = dict(raw.pipes)
        snap.fifos = dict(raw.fifos)
        snap.unix_peers = dict(raw.unix_peers)
        snap.unix_paths = dict(raw.unix_paths)
        snap.unix_connects = dict(raw.unix_connects)
        snap.listeners = dict(raw.listeners)
        snap.sessions = list(raw.sessions)
        snap.named_pipes = list(raw.named_pipes)
        snap.stock_scanned = set(raw.stock_scanned)
        snap.stock_sockets = dict(raw.stock_sockets)
        snap.stale_rows = raw.stale_rows
        snap.platform = snap.guess_platform(t.query for t in self.tables.values())
        snap.finish()
        return snap

    def _reparse(self) -> int:
        """Parse again what the changed rows can alter (see the module's docstring), in
        two steps: the process records of the pids the changed rows add to, then the
        per-pid entries of the pids whose rows changed or name a process whose start
        time changed (a pid reused, a process come or gone). Returns rows parsed."""
        dirty, self._dirty = self._dirty, set()
        owners, self._owners = self._owners, set()
        raw = self.raw
        # 1. Process records. One whose own lineage row gives every field that another
        # process's row could fill in (``_settled``) follows from its own rows: it is
        # read with them in step 2. Any other is read from every row that adds to it.
        settled: dict[int, Process] = {}
        unsettled = set()
        for pid in dirty:
            lineage = self._settled(self._owned.get(pid, ()))
            if lineage is not None:
                settled[pid] = lineage
            else:
                unsettled.add(pid)
        keys = {k for pid in unsettled for k in self._mentioned_by.get(pid, ())}
        found = self._parse(keys, seeded=lambda pid: pid not in unsettled).processes
        restarted = set()
        for pid in unsettled:
            old, new = raw.processes.get(pid), found.get(pid)
            if (old is None) != (new is None) or (old and new and old.start_time != new.start_time):
                restarted.add(pid)
            _put(raw.processes, pid, new)
        for pid, lineage in settled.items():
            old = raw.processes.get(pid)
            if old is None or old.start_time != lineage.start_time:
                restarted.add(pid)
        # 2. Per-pid entries (and settled records) of the pids whose rows changed, whose
        # record is settled, or whose rows name a process whose start time changed.
        owners |= restarted | set(settled)
        for pid in restarted:
            owners |= {
                o for k in self._partnered_by.get(pid, ()) if (o := self._owner_of(k)) is not None
            }
        owned = {k for pid in owners for k in self._owned.get(pid, ())}
        entries = self._parse(owned, seeded=lambda pid: pid not in settled)
        for pid in settled:
            raw.processes[pid] = entries.processes[pid]
        for pid in owners:
            for name in OWNED:
                _put(getattr(raw, name), pid, getattr(entries, name).get(pid))
            _put(raw.stock_sockets, pid, entries.stock_sockets.get(pid))
            if pid in entries.stock_scanned:
                raw.stock_scanned.add(pid)
            else:
                raw.stock_scanned.discard(pid)
        if self._lists_dirty:
            self._lists_dirty = False
            lists = Reported()
            listed = [
                (n, h) for n, t in self.tables.items() if t.query in LIST_QUERIES for h in t.rows
            ]
            for query, rows in self._ordered(listed):
                if (reader := reader_for(query, rows)) is not None:
                    reader(lists, rows)
            raw.sessions, raw.named_pipes = lists.sessions, lists.named_pipes
        return len(keys) + len(owned)

    def _settled(self, owned: Iterable[RowKey]) -> Process | None:
        """A process's lineage row when its record follows from its own rows alone: it
        has one lineage row (a process row of the highest rank) and that row gives every
        field a row of another process can fill in. Such rows (naming it as a parent or
        partner) rank lower, so they only fill in blanks, and it has none they could."""
        lineage = []
        for name, row_hash in owned:
            table = self.tables[name]
            row = table.rows[row_hash]
            if is_process_query(table.query, [row]) and not any(
                row.get(c, "") != "" for c in EVENT_COLUMNS
            ):
                lineage.append(process_from_row(row))
        if len(lineage) != 1 or lineage[0] is None:
            return None
        found = lineage[0]
        return found if all(getattr(found, f) not in (None, "") for f in JOINED_FIELDS) else None

    def _parse(self, keys: set[RowKey], seeded: Callable[[int], bool]) -> Reported:
        """The rows ``keys`` read alone, over copies of the current records of the pids
        they name for which ``seeded`` holds (records that those rows do not decide)."""
        sub = Reported()
        current = self.raw.processes
        for name, row_hash in keys:
            query, row = self.tables[name].query, self.tables[name].rows[row_hash]
            for pid in _mentions(query, row):
                if pid not in sub.processes and pid in current and seeded(pid):
                    sub.processes[pid] = copy.copy(current[pid])
            partner = _partner(query, row)
            if (
                partner is not None
                and partner not in sub.processes
                and partner in current
                and seeded(partner)
            ):
                sub.processes[partner] = copy.copy(current[partner])
        for query, rows in self._ordered(keys):
            reader = reader_for(query, rows)
            if reader is not None:
                reader(sub, rows)
        return sub

    def _owner_of(self, key: RowKey) -> int | None:
        name, row_hash = key
        return _owner(self.tables[name].rows[row_hash])

    # -- paths ------------------------------------------------------------------------------

    def _set_path(self, pid: int, path: ExecutionPath | None, reads: Collection[Fact]) -> None:
        old = self.paths.pop(pid, None)
        if old is not None:
            _discard(self.by_key, old.path_key(), pid)
        for fact in self.reads.pop(pid, ()):
            _discard(self.readers, fact, pid)
            if fact not in self.readers:
                del self._facts[fact]
        if path is None:
            return
        self.paths[pid] = path
        self.by_key.setdefault(path.path_key(), []).append(pid)
        if reads:
            # Most facts are read by many paths (a parent's record, the host's logins):
            # each path keeps the one shared tuple, not the one its trace made.
            shared = tuple(self._facts.setdefault(fact, fact) for fact in reads)
            self.reads[pid] = shared
            for fact in shared:
                self.readers.setdefault(fact, []).append(pid)

    def full_rebuild(self, at: float) -> Update:
        """Parse every row and build every path (a host whose state is unknown)."""
        self.at = at
        self._age(at)
        self._dirty.clear()
        self._owners.clear()
        self._lists_dirty = False
        raw = Reported()
        for query, rows in self._ordered():
            reader = reader_for(query, rows)
            if reader is not None:
                reader(raw, rows)
        self.raw = raw
        old_keys = set(self.by_key)
        self.paths, self.reads, self.readers, self.by_key, self._facts = {}, {}, {}, {}, {}
        snap = self.snapshot = self._finished(at)
        builder = TracingBuilder(snap, _Facts(snap))
        for pid, proc in sorted(snap.processes.items()):
            if is_judged(proc, snap.platform):
                self._set_path(pid, *builder.trace(proc))
        return Update(
            frozenset(self.paths),
            frozenset(),
            frozenset(old_keys | set(self.by_key)),
            True,
            self.row_count(),
        )

    def update(self, at: float) -> Update:
        """Move snapshot and paths forward to the rows changed since the last update."""
        if self.snapshot is None or at < self.at:
            return self.full_rebuild(at)
        self.at = at
        self._age(at)
        if not self._dirty and not self._owners and not self._lists_dirty:
            return Update(frozenset(), frozenset(), frozenset())
        old = self.snapshot
        candidates = self._dirty | self._owners
        rows = self._reparse()
        new = self.snapshot = self._finished(at)
        if new.platform != old.platform:
            return self.full_rebuild(at)
        before, after = _Facts(old), _Facts(new)
        moved = _moved_pids(old, new)
        pipe_list = old.named_pipes != new.named_pipes
        affected: set[int] = set()
        for fact, pids in self.readers.items():
            family = fact[0]
            if (
                family in PID_FACTS
                and _fact_pid(fact) not in moved
                and not (pipe_list and family in PIPE_LIST_FACTS)
            ):
                continue  # nothing of its pid changed: neither did its value
            a, b = before.value(fact), after.value(fact)
            if a is not b and a != b:
                affected.update(pids)
        candidates |= affected | moved  # a moved pid's own facts are not recorded
        if pipe_list:
            candidates |= {p.pid for p in (*old.named_pipes, *new.named_pipes) if p.pid}
        builder = TracingBuilder(new, after)
        changed, removed, keys = set(), set(), set()
        for pid in sorted(candidates):
            old_path = self.paths.get(pid)
            if old_path is not None:
                keys.add(old_path.path_key())
            proc = new.processes.get(pid)
            if proc is not None and is_judged(proc, new.platform):
                path, reads = builder.trace(proc)
                self._set_path(pid, path, reads)
                keys.add(path.path_key())
                changed.add(pid)
            elif old_path is not None:
                self._set_path(pid, None, ())
                removed.add(pid)
        return Update(frozenset(changed), frozenset(removed), frozenset(keys), False, rows)

    # -- judging ----------------------------------------------------------------------------

    def group(self, keys: Iterable[str], at: float) -> list[ExecutionPath]:
        """The current paths of ``keys`` as of ``at`` (what a full judgement would pass the
        detector for those keys), in pid order."""
        pids = sorted({pid for key in keys for pid in self.by_key.get(key, ())})
        out = []
        for pid in pids:
            path = self.paths[pid]
            if path.observed_at != at:
                path = self.paths[pid] = path.seen_at(at)
            out.append(path)
        return out

    def unchanged(self, paths: Iterable[ExecutionPath], update: Update) -> list[ExecutionPath]:
        """Those of ``paths`` (from ``group``) that ``update`` did not build again, under a
        key judged since they were built: ``Detector.detect`` need not score them again,
        which in a pool of a hundred workers is all but the one that was replaced."""
        if update.full:
            return []
        return [
            p for p in paths if p.child.pid not in update.changed and p.path_key() in self.judged_at
        ]

    def stale_keys(self, at: float, every: float) -> set[str]:
        """Current keys not judged for ``every`` seconds: judged again so that their
        sightings and findings keep a fresh ``last_seen``."""
        return {k for k in self.by_key if self.judged_at.get(k, 0.0) <= at - every}

    def judged(self, keys: Iterable[str], at: float) -> None:
        for key in keys:
            self.judged_at[key] = at
        for key in [k for k in self.judged_at if k not in self.by_key]:
            del self.judged_at[key]

    def row_count(self) -> int:
        return sum(len(t.rows) for t in self.tables.values())


def _moved_pids(old: HostSnapshot, new: HostSnapshot) -> set[int]:
    """The pids with an entry of a per-pid family that differs between two snapshots: a
    fact of any other pid keeps its value, and comparing it again would cost the whole
    host per batch. Entries a batch did not touch are the same objects (a cheap test)."""
    moved = set()
    for name in PER_PID:
        a, b = getattr(old, name), getattr(new, name)
        for pid in a.keys() | b.keys():
            x, y = a.get(pid), b.get(pid)
            if x is not y and x != y:
                moved.add(pid)
    a, b = old.inferred_stdio, new.inferred_stdio
    moved.update(pid for pid, fd in a.keys() | b.keys() if a.get((pid, fd)) != b.get((pid, fd)))
    return moved


def _discard(index: dict[Any, list[Any]], key: Any, value: Any) -> None:
    """Remove ``value`` from the list of ``key`` (lists: a few entries each, and a
    list of one costs a quarter of a set of one)."""
    found = index.get(key)
    if found is not None and value in found:
        found.remove(value)
        if not found:
            del index[key]


def _put(target: dict[int, Any], pid: int, value: Any) -> None:
    if value is None:
        target.pop(pid, None)
    else:
        target[pid] = value
