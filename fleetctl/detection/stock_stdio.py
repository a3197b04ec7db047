"""Fds 0-2 that stock osquery's tables leave out, inferred from what they do show.

Without the extension, the ``stdio_channels`` query reads a process's stdio from
``process_open_pipes``, ``process_open_files`` and ``process_open_sockets``. The third
hides sockets that are someone's stdio, in two ways:

* one row per socket (``procGetSocketInodeToProcessInfoMap`` in osquery's
  ``osquery/filesystem/linux/proc.cpp`` maps each inode to the last (pid, fd) it meets,
  pids in string order, fds in directory order): a socket held as fds 0 and 1 appears
  at fd 1 only, ``bash -i >& /dev/tcp/...`` at fd 255, and a socket a shell shares with
  its child under one of the two;
* only sockets the kernel lists in ``/proc/<pid>/net/*``: a TCP connection its peer has
  reset is in none of them and has no row at all.

A descriptor no row describes is not always a socket, though: ``process_open_pipes``
gives no row to a pipe end whose only other holders have the same mode (``cat f | sh``
once cat has exited: sh and its children all hold the read end), and a closed descriptor
has no row either. Each missing fd is filled by the first rule that applies:

1. the process's own socket row at a higher fd 0-2 (fds sharing one socket);
2. the same fd of its parent or of a child, when that is a socket osquery listed
   (inherited stdio: the row went to the other holder);

and, only when stdin and stdout are both missing (a descriptor that is both is not a
leftover pipe end: a socket, the one kind of channel both ways that no table lists):

3. its only socket above fd 2 (the query returns those for such processes); several of
   one kind give the kind alone;
4. otherwise a socket osquery could not describe (kind ``socket``).

Then a unix socket end without a path gets the path its process connected to, where the
host records ``socket_events`` for unix sockets (rule 5): the client's end of a unix
connection has no path in ``/proc/net/unix`` and no table gives its peer.

Rules 1, 3 and 4 complete only processes the query returned rows for (a process started
after the query ran has none, and nothing is known about it). A process with no row at
all gets rule 2 alone: that is also how a shell looks whose stdio is all one socket that
osquery listed under a child (``bash -i`` on /dev/tcp while it runs a command). Where the
extension's ``process_stdio`` reports, which sees every descriptor, nothing it described
is completed, and a process without rows is only one that started after the scan.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from fleetctl.detection.records import StdioEnd

if TYPE_CHECKING:
    from fleetctl.detection.snapshot import HostSnapshot

STDIO = (0, 1, 2)
SOCKET_KINDS = frozenset({"unix", "tcp", "udp", "socket"})
_SHARED = "the socket reported at fd {fd}: osquery lists a socket once, at its highest fd"


def complete_stdio(snap: HostSnapshot) -> None:
    """Fill the fds 0-2 of ``snap.stock_scanned`` processes that no row described; a
    process with no row at all only from its parent or children (rule 2)."""
    if not snap.stock_scanned:
        return  # no stock stdio query in this snapshot: nothing to complete
    missing = {
        (pid, fd)
        for pid in snap.stock_scanned
        if not any(e.source == "extension" for e in snap.stdio.get(pid, {}).values())
        for fd in STDIO
        if fd not in snap.stdio.get(pid, {})
    }
    # With the extension, a process without rows is one that started after the scan.
    extension = any(e.source == "extension" for ends in snap.stdio.values() for e in ends.values())
    unlisted = {
        (pid, fd)
        for pid in snap.processes
        if not extension and pid not in snap.stock_scanned and not snap.stdio.get(pid)
        for fd in STDIO
    }
    both_ways = {pid for pid, fd in missing if fd == 0 and (pid, 1) in missing}
    for pid, fd in sorted(missing):
        shared = _shared(snap, pid, fd)
        if shared is not None:
            _fill(snap, pid, *shared)
    _inherit(snap, _still(snap, missing) | unlisted)
    for pid, fd in sorted(_still(snap, missing)):
        if pid not in both_ways:
            continue
        end, why = _held(snap, pid, fd) or (
            StdioEnd(fd=fd, kind="socket"),
            "stdin and stdout in no stock table: a socket osquery does not list",
        )
        _fill(snap, pid, end, why)
    _connected(snap)


def _connected(snap: HostSnapshot) -> None:
    """Rule 5: a unix socket with no path reached the path its process connected to
    (``socket_events``): the one on that fd, else the only one it connected to."""
    for pid, connects in snap.unix_connects.items():
        for fd, end in list(snap.stdio.get(pid, {}).items()):
            if end.kind != "unix" or end.target or end.source == "extension":
                continue
            paths = {connects[fd]} if fd in connects else set(connects.values())
            if len(paths) == 1:
                path = paths.pop()
                known = snap.inferred_stdio.get((pid, fd))
                why = f"connected to {path} (socket_events)"
                snap.set_stdio(pid, replace(end, target=path))
                snap.inferred_stdio[(pid, fd)] = f"{known}; {why}" if known else why


def _still(snap: HostSnapshot, missing: set[tuple[int, int]]) -> set[tuple[int, int]]:
    return {(pid, fd) for pid, fd in missing if fd not in snap.stdio.get(pid, {})}


def _fill(snap: HostSnapshot, pid: int, end: StdioEnd, why: str) -> None:
    snap.set_stdio(pid, end)
    snap.inferred_stdio[(pid, end.fd)] = why


def _shared(snap: HostSnapshot, pid: int, fd: int) -> tuple[StdioEnd, str] | None:
    """Rule 1: the socket osquery reported at a higher stdio fd of the same process."""
    ends = snap.stdio.get(pid, {})
    for other in STDIO[fd + 1 :]:
        end = ends.get(other)
        if end is not None and end.kind in SOCKET_KINDS and end.inode:
            return _copy(end, fd), _SHARED.format(fd=other)
    return None


def _inherit(snap: HostSnapshot, missing: set[tuple[int, int]]) -> None:
    """Rule 2, to a fixed point: a child shares its parent's stdio unless it replaced it."""
    changed = True
    while changed and missing:
        changed = False
        for pid, fd in sorted(missing):
            found = _relative_socket(snap, pid, fd)
            if found is not None:
                relative, end = found
                _fill(snap, pid, _copy(end, fd), f"the socket at fd {fd} of {relative}, shared")
                missing.discard((pid, fd))
                changed = True


def _relative_socket(snap: HostSnapshot, pid: int, fd: int) -> tuple[str, StdioEnd] | None:
    proc = snap.processes.get(pid)
    relatives = [("its parent", proc.parent)] if proc is not None and proc.parent else []
    relatives += [("its child", child) for child in snap.children(pid)]
    for relation, other in relatives:
        if other is None:
            continue
        end = snap.stdio.get(other, {}).get(fd)
        if end is not None and end.kind in SOCKET_KINDS and end.inode:
            return f"{relation} {other}", end
    return None


def _held(snap: HostSnapshot, pid: int, fd: int) -> tuple[StdioEnd, str] | None:
    """Rule 3: the process's only socket above fd 2, or the kind its sockets share."""
    held = snap.stock_sockets.get(pid, [])
    if len(held) == 1:
        return _copy(held[0], fd), _SHARED.format(fd=held[0].fd)
    kinds = {e.kind for e in held}
    if len(kinds) == 1:
        kind = kinds.pop()
        fds = ", ".join(str(e.fd) for e in held)
        return StdioEnd(fd=fd, kind=kind), f"one of its {kind} sockets at fds {fds}"
    return None


def _copy(end: StdioEnd, fd: int) -> StdioEnd:
    return StdioEnd(fd=fd, kind=end.kind, target=end.target, inode=end.inode, mode=end.mode)
