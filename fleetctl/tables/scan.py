"""``Scan``: one look at the system, shared by every table a single query reads.

A query that joins process_open_pipes, process_stdio and processes needs the same
``/proc/<pid>/fd`` listings three times over; reading them once per query is what keeps
the tables within a small factor of a bare /proc walk. A Scan is cheap to create and
must not outlive its query: its caches are a snapshot, and stale on the next query.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Hashable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, TypeVar, cast

from fleetctl.tables import _proc

if TYPE_CHECKING:
    from fleetctl.tables.runtime import AgentRuntime

T = TypeVar("T")

Constraints = Mapping[str, AbstractSet[Any]]
"""Equality/IN constraints pushed down by the engine: ``{"pid": {1234, 5678}}``."""


def int_values(constraints: Constraints, column: str) -> set[int] | None:
    """The integer values a column is constrained to, or None when unconstrained.

    Values that are not integers (``pid = 'x'``) match nothing, so they are dropped and
    an empty set is returned rather than None.
    """
    values = constraints.get(column)
    if values is None:
        return None
    result: set[int] = set()
    for value in values:
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            result.add(value)
        elif isinstance(value, float) and value.is_integer():
            result.add(int(value))
        elif isinstance(value, str | bytes):
            text = value.decode() if isinstance(value, bytes) else value
            try:
                result.add(int(text.strip(), 10))
            except ValueError:
                continue
    return result


class Scan:
    """Per-query cache over /proc plus the runtime facts of the agent."""

    def __init__(
        self,
        proc_root: str = _proc.PROC,
        *,
        etc_root: str = "/etc",
        utmp_path: str = "/var/run/utmp",
        runtime: AgentRuntime | None = None,
    ) -> None:
        self.proc_root = proc_root
        self.etc_root = etc_root
        self.utmp_path = utmp_path
        self._runtime = runtime
        self._pids: list[int] | None = None
        self._fds: dict[int, dict[int, str] | None] = {}
        self._modes: dict[tuple[int, int], str] = {}
        self._stats: dict[tuple[int, int], os.stat_result | None] = {}
        self._path_fifo: dict[str, bool] = {}
        self._memo: dict[Hashable, Any] = {}

    @property
    def runtime(self) -> AgentRuntime:
        if self._runtime is None:
            from fleetctl.tables.runtime import AgentRuntime

            self._runtime = AgentRuntime()
        return self._runtime

    # -- processes

    def pids(self) -> list[int]:
        """Every process id, listed once per scan."""
        if self._pids is None:
            self._pids = _proc.list_pids(self.proc_root)
        return self._pids

    def pids_for(self, constraints: Constraints, column: str = "pid") -> list[int]:
        """Pids a table must read: the constrained ones that exist, else all of them."""
        wanted = int_values(constraints, column)
        if wanted is None:
            return self.pids()
        if self._pids is not None:
            present = set(self._pids)
            return sorted(pid for pid in wanted if pid in present)
        return sorted(pid for pid in wanted if pid > 0 and os.path.isdir(f"{self.proc_root}/{pid}"))

    # -- descriptors

    def fds(self, pid: int) -> dict[int, str] | None:
        """``{fd: link target}`` of a process; None when it is gone or unreadable."""
        try:
            return self._fds[pid]
        except KeyError:
            links = _proc.read_fd_links(pid, self.proc_root)
            self._fds[pid] = links
            return links

    def fds_of(self, pids: Iterable[int]) -> dict[int, dict[int, str]]:
        result = {}
        for pid in pids:
            links = self.fds(pid)
            if links is not None:
                result[pid] = links
        return result

    def all_fds(self) -> dict[int, dict[int, str]]:
        """Descriptors of every readable process (each fd directory read once per scan)."""
        return self.memo(("all_fds",), lambda: self.fds_of(self.pids()))

    def mode(self, pid: int, fd: int) -> str:
        """``r``/``w``/``rw`` of a descriptor from its link permissions (lstat)."""
        key = (pid, fd)
        try:
            return self._modes[key]
        except KeyError:
            mode = _proc.fd_lstat_mode(pid, fd, self.proc_root)
            self._modes[key] = mode
            return mode

    def target_stat(self, pid: int, fd: int) -> os.stat_result | None:
        """stat() of the descriptor's target."""
        key = (pid, fd)
        try:
            return self._stats[key]
        except KeyError:
            st = _proc.fd_stat(pid, fd, self.proc_root)
            self._stats[key] = st
            return st

    def path_is_fifo(self, path: str) -> bool:
        """Whether ``path`` is a FIFO in this process's mount namespace, cached by path
        (used for /dev/*, which every process holds open; anything else is stat()ed per
        descriptor). A path that cannot be stat()ed counts as a possible FIFO."""
        try:
            return self._path_fifo[path]
        except KeyError:
            try:
                result = stat.S_ISFIFO(os.stat(path).st_mode)
            except OSError:
                result = True
            self._path_fifo[path] = result
            return result

    # -- shared derived data

    def has_memo(self, key: Hashable) -> bool:
        return key in self._memo

    def memo(self, key: Hashable, factory: Callable[[], T]) -> T:
        """Compute ``factory()`` once per scan under ``key`` (indexes shared by tables)."""
        try:
            return cast(T, self._memo[key])
        except KeyError:
            value = factory()
            self._memo[key] = value
            return value
