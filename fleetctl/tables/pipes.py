"""``process_open_pipes`` and the pipe/FIFO holder index it shares with process_stdio.

Semantics of ``osquery/tables/system/linux/process_open_pipes.cpp``:

* an end is an fd whose link is ``pipe:[N]`` (type ``anonymous``, inode N) or whose
  target is a FIFO (type ``named``, inode of the FIFO file);
* ends holding the same pipe are partners; ``mode`` (``r``/``w``/``rw``) comes from the
  permission bits of the ``/proc/<pid>/fd/<fd>`` link;
* each end gets one row per partner end whose mode differs or when its own mode is
  ``rw``, so rows appear in both directions and a process holding both ends has
  ``pid == partner_pid`` rows; an end with no other holder gets one row with NULL
  partner columns; ends that share a pipe but only with same-mode ends get no row.

Two deliberate differences, both fixing false links rather than changing results on a
normal host: FIFOs are found by stat()ing the /proc link instead of the path string (so
deleted FIFOs and FIFOs in other mount namespaces are seen), and ends are linked by
(type, device, inode) instead of the bare inode number, which can collide between
pipefs and a disk filesystem. Targets under /dev/ are the exception to the first: they
are stat()ed once by path, as osquery does for every path, because every process has
/dev/null and a pty open and a stat per descriptor would double the cost of a scan.

``generate_stock`` drops both differences, for an agent that must report exactly what a
stock osqueryd reports (``fleetctl agent --stock``): ``getNamedPipeInfo`` stat()s the
link's text as a path in osqueryd's own mount namespace (a deleted FIFO, ``... (deleted)``,
is no FIFO), and ``genPipes`` groups ends in a map keyed by the bare inode.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any, NamedTuple

from fleetctl.tables import _proc
from fleetctl.tables.scan import Constraints, Scan

PipeKey = tuple[Any, ...]
Holder = tuple[int, int]
_DIGITS = re.compile(r"\d+")


class PipeEnd(NamedTuple):
    pid: int
    fd: int
    inode: int
    type: str  # "anonymous" or "named"
    key: PipeKey


def end_of(scan: Scan, pid: int, fd: int, target: str, named: bool) -> PipeEnd | None:
    """The pipe end behind one descriptor, or None. FIFOs are only looked for (one stat
    per path descriptor outside /dev) when ``named`` is true."""
    if target.startswith("pipe:["):
        inode = _proc.link_inode(target, "pipe:[")
        if inode is None:
            return None
        return PipeEnd(pid, fd, inode, "anonymous", ("anonymous", inode))
    if named and target.startswith("/"):
        if target.startswith("/dev/") and not scan.path_is_fifo(target):
            return None
        st = scan.target_stat(pid, fd)
        if st is not None and stat.S_ISFIFO(st.st_mode):
            return PipeEnd(pid, fd, st.st_ino, "named", ("named", st.st_dev, st.st_ino))
    return None


def ends_of(scan: Scan, pid: int, links: dict[int, str], named: bool = True) -> list[PipeEnd]:
    ends = []
    for fd in sorted(links):
        end = end_of(scan, pid, fd, links[fd], named)
        if end is not None:
            ends.append(end)
    return ends


class PipeIndex:
    """Every (pid, fd) holding each pipe, across all processes.

    Holders of one pipe are grouped by open mode on first use, so finding an end's
    partners costs O(partners) rather than O(holders): thousands of processes can share
    one pipe (a make jobserver, a log pipe inherited by every child of a service).
    """

    def __init__(
        self, scan: Scan, holders: dict[PipeKey, list[Holder]], ends: dict[int, list[PipeEnd]]
    ) -> None:
        self.scan = scan
        self.holders = holders
        self.ends = ends  # pid -> its pipe ends, in fd order
        self._by_mode: dict[PipeKey, dict[str, list[Holder]]] = {}

    def _groups(self, key: PipeKey) -> dict[str, list[Holder]]:
        try:
            return self._by_mode[key]
        except KeyError:
            groups: dict[str, list[Holder]] = {}
            for pid, fd in self.holders.get(key, ()):
                groups.setdefault(self.scan.mode(pid, fd), []).append((pid, fd))
            self._by_mode[key] = groups
            return groups

    def partners(self, end: PipeEnd, mode: str) -> list[tuple[int, int, str]] | None:
        """(pid, fd, mode) of each partner end by osquery's reader/writer rule (modes
        differ, or this end is ``rw``), or None when the end is the pipe's only holder."""
        holders = self.holders.get(end.key)
        if holders is None or len(holders) <= 1:
            return None
        result = []
        for other_mode, members in self._groups(end.key).items():
            if other_mode == mode and mode != "rw":
                continue
            for pid, fd in members:
                if pid != end.pid or fd != end.fd:
                    result.append((pid, fd, other_mode))
        return result


def holder_index(scan: Scan, named: bool) -> PipeIndex:
    """The pipe holder index of this scan; FIFOs only if ``named`` (finding them costs a
    stat() per path descriptor of every process)."""

    def build() -> PipeIndex:
        holders: dict[PipeKey, list[Holder]] = {}
        ends: dict[int, list[PipeEnd]] = {}
        for pid, links in scan.all_fds().items():
            own = ends_of(scan, pid, links, named)
            if own:
                ends[pid] = own
                for end in own:
                    holders.setdefault(end.key, []).append((pid, end.fd))
        return PipeIndex(scan, holders, ends)

    # An index with FIFOs is a superset of one without: reuse it when already built.
    if not named and scan.has_memo(("pipe_index", True)):
        named = True
    return scan.memo(("pipe_index", named), build)


def _stock_end(
    pid: int, fd: int, target: str, stat_path: dict[str, os.stat_result | None]
) -> PipeEnd | None:
    """osquery's ``getPipeInfo``: ``pipe:`` anywhere in the text is an anonymous pipe (its
    inode the first run of digits); any other text but a socket or anon inode is
    stat()ed as a path and is a named pipe when that is a FIFO."""
    if "pipe:" in target:
        digits = _DIGITS.search(target)
        inode = int(digits.group()) if digits else 0
        return PipeEnd(pid, fd, inode, "anonymous", (inode,))
    if "socket:" in target or "anon_inode:" in target:
        return None
    if target not in stat_path:
        try:
            stat_path[target] = os.stat(target)
        except (OSError, ValueError):
            stat_path[target] = None
    st = stat_path[target]
    if st is None or not stat.S_ISFIFO(st.st_mode):
        return None
    return PipeEnd(pid, fd, st.st_ino, "named", (st.st_ino,))


def stock_index(scan: Scan) -> PipeIndex:
    """The holder index as osquery's ``genPipes`` builds it: every pid in string order,
    each pid's descriptors in string order (``procDescriptors`` fills a
    ``std::map<std::string, std::string>``), ends grouped by the bare inode."""

    def build() -> PipeIndex:
        holders: dict[PipeKey, list[Holder]] = {}
        ends: dict[int, list[PipeEnd]] = {}
        stat_path: dict[str, os.stat_result | None] = {}
        fds = scan.all_fds()
        for pid in sorted(fds, key=str):
            for fd in sorted(fds[pid], key=str):
                end = _stock_end(pid, fd, fds[pid][fd], stat_path)
                if end is not None:
                    ends.setdefault(pid, []).append(end)
                    holders.setdefault(end.key, []).append((pid, fd))
        return PipeIndex(scan, holders, ends)

    return scan.memo(("pipe_index_stock",), build)


def generate_stock(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    """``process_open_pipes`` exactly as osqueryd generates it (see the module docstring).
    osquery reads every process whatever the constraints; SQLite applies them after."""
    index = stock_index(scan)
    wanted = set(scan.pids_for(constraints))
    own = [end for pid in sorted(index.ends, key=str) if pid in wanted for end in index.ends[pid]]
    return _rows(scan, index, own)


def generate(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    pids = scan.pids_for(constraints)
    own: list[PipeEnd] = []
    if "pid" not in constraints:
        index = holder_index(scan, named=True)
        for pid in pids:
            own.extend(index.ends.get(pid, ()))
    else:
        for pid in pids:
            links = scan.fds(pid)
            if links:
                own.extend(ends_of(scan, pid, links))
        index = holder_index(scan, named=any(end.type == "named" for end in own))
    return _rows(scan, index, own)


def _rows(scan: Scan, index: PipeIndex, own: list[PipeEnd]) -> list[dict[str, Any]]:
    """One row per (end, partner end) by osquery's reader/writer rule."""
    rows: list[dict[str, Any]] = []
    for end in own:
        mode = scan.mode(end.pid, end.fd)
        base = {"pid": end.pid, "fd": end.fd, "mode": mode, "inode": end.inode, "type": end.type}
        found = index.partners(end, mode)
        if found is None:
            rows.append({**base, "partner_pid": None, "partner_fd": None, "partner_mode": None})
            continue
        for partner_pid, partner_fd, partner_mode in found:
            rows.append(
                {
                    **base,
                    "partner_pid": partner_pid,
                    "partner_fd": partner_fd,
                    "partner_mode": partner_mode,
                }
            )
    return rows
