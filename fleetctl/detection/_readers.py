"""Row readers for ``Reported``, one per family of pack query.

Each reader takes the rows of one query exactly as osquery returns them (column names of
the shipped packs, string values) and files them into ``Reported``. Columns a query
copied from a joined parent, grandparent or partner (``parent_name``, ``partner_path``,
``peer_name`` ...) become lower-ranked process records, so a parent that the lineage query
left out (a process without a readable executable, pid 1 in a container) still has a
name in the lineage chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from fleetctl.detection.normalize import text, to_int
from fleetctl.detection.records import (
    EVENT,
    JOINED,
    LINEAGE,
    Fifo,
    Listener,
    NamedPipe,
    PipeEnd,
    Process,
    Row,
    Session,
    StdioEnd,
    UnixPeer,
    process_from_row,
)
from fleetctl.detection.reported import Reported
from fleetctl.stdio_kinds import device_kind

Reader = Callable[[Reported, Sequence[Row]], None]

# Queries whose rows are processes (lineage snapshots, exec events, hunt views).
PROCESS_QUERIES = frozenset(
    {
        "process_lineage",
        "process_lineage_darwin",
        "process_exec_events",
        "office_lolbin_children",
        "office_lolbin_starts",
        "dcom_launched_processes",
        "es_exec_lineage",
        "es_xpc_spawned",
        "es_office_osascript_children",
        "socat_ncat_children",
        "dbus_daemon_children",
        "dbus_daemon_exec_events",
        "office_interpreter_chains",
        "office_interpreter_chains_macos",
    }
)
WINDOWS_QUERIES = frozenset(
    {
        "named_pipes",
        "named_pipes_snapshot",
        "known_tool_pipes",
        "office_lolbin_children",
        "office_lolbin_starts",
        "dcom_launched_processes",
        "office_interpreter_chains",
    }
)
DARWIN_QUERIES = frozenset(
    {
        "process_lineage_darwin",
        "es_exec_lineage",
        "es_xpc_spawned",
        "es_office_osascript_children",
        "office_interpreter_chains_macos",
    }
)
EVENT_COLUMNS = ("syscall", "event_type", "datetime", "pidversion")
_PARENT_COLUMNS = ("parent", "ppid", "parent_pid")


def _add(snap: Reported, row: Row, rank: int, **columns: str) -> bool:
    """Add the process a row describes (``columns`` renames); False if the row is stale."""
    source = {key: row.get(col, "") for key, col in columns.items()} if columns else row
    proc = process_from_row(source, rank)
    if proc is None:
        return False
    snap.add_process(proc)
    return snap.is_current(proc.pid, proc.start_time)


def _add_joined(
    snap: Reported, pid: int | None, row: Row, prefix: str, parent: int | None = None
) -> None:
    """A process record from the ``<prefix>name/path/cmdline/start_time`` columns."""
    if pid is None or pid <= 0:
        return
    proc = Process(
        pid=pid,
        parent=parent,
        rank=JOINED,
        name=text(row, f"{prefix}name"),
        path=text(row, f"{prefix}path", f"{prefix}process_path"),
        cmdline=text(row, f"{prefix}cmdline"),
        start_time=to_int(row.get(f"{prefix}start_time")),
    )
    if proc.name or proc.path or proc.cmdline:
        snap.add_process(proc)


def read_processes(snap: Reported, rows: Sequence[Row]) -> None:
    """Lineage snapshots, exec events (audit, ES, ETW) and hunt views of processes."""

    def when(row: Row) -> int:
        return to_int(row.get("time")) or 0

    for row in sorted(rows, key=when):
        rank = EVENT if any(row.get(c, "") != "" for c in EVENT_COLUMNS) else LINEAGE
        if not _add(snap, row, rank):
            continue
        parent = to_int(text(row, *_PARENT_COLUMNS))
        grandparent = to_int(row.get("grandparent_pid"))
        _add_joined(snap, parent, row, "parent_", parent=grandparent)
        if row.get("pcmdline"):  # processes joined to the parent's cmdline in older packs
            _add_joined(snap, parent, {"cmdline": row["pcmdline"]}, "")
        _add_joined(snap, grandparent, row, "grandparent_")
        _add_joined(snap, to_int(row.get("responsible_pid")), row, "responsible_")


def _partners(snap: Reported, rows: Sequence[Row], pid_col: str, prefix: str) -> set[int]:
    """Partner pids of rows, after checking each partner's start time against lineage."""
    found: set[int] = set()
    for row in rows:
        pid = to_int(row.get(pid_col))
        if pid is None or pid <= 0:
            continue
        _add_joined(snap, pid, row, prefix)
        if snap.is_current(pid, row.get(f"{prefix}start_time")):
            found.add(pid)
    return found


def _group(rows: Sequence[Row]) -> dict[tuple[int, int], list[Row]]:
    grouped: dict[tuple[int, int], list[Row]] = {}
    for row in rows:
        pid, fd = to_int(row.get("pid")), to_int(row.get("fd"))
        if pid is not None and fd is not None:
            grouped.setdefault((pid, fd), []).append(row)
    return grouped


def _target(target: str) -> str:
    """Drop ``pipe:[n]``/``socket:[n]`` link texts: the inode column already has them."""
    return "" if target.startswith(("pipe:[", "socket:[", "anon_inode:")) else target


def path_kind(target: str) -> str:
    """Kind of a stdio fd that ``process_open_files`` showed as a path."""
    return device_kind(target) or "file"


def read_process_stdio(snap: Reported, rows: Sequence[Row]) -> None:
    """The extension's ``process_stdio``: kind, target and partner of fds 0-2."""
    for (pid, fd), group in _group(rows).items():
        if not _add(snap, group[0], LINEAGE):
            continue
        first = group[0]
        kind = text(first, "kind") or "other"
        if kind == "other" and text(first, "target").startswith("socket:["):
            # A socket in no unix or inet table (a TCP connection the peer already closed,
            # netlink, vsock): what the stock stdio query calls ``socket``.
            kind = "socket"
        snap.set_stdio(
            pid,
            StdioEnd(
                fd=fd,
                kind=kind,
                target=_target(text(first, "target")),
                inode=to_int(first.get("inode")) or None,
                mode=text(first, "mode"),
                partners=tuple(sorted(_partners(snap, group, "partner_pid", "partner_") - {pid})),
                source="extension",
            ),
        )


def read_stdio_channels(snap: Reported, rows: Sequence[Row]) -> None:
    """The stock ``stdio_channels`` union: pipe/FIFO rows, path rows and socket rows.

    Socket rows above fd 2 come only for processes whose fds 0-2 the other rows do not
    explain; they are kept aside for ``stock_stdio``, which fills those fds once every
    query has been read (osquery lists a socket once, at its highest fd).
    """
    for (pid, fd), group in _group(rows).items():
        if not _add(snap, group[0], JOINED):
            continue
        snap.stock_scanned.add(pid)
        if fd > 2:
            first = group[0]
            snap.stock_sockets.setdefault(pid, []).append(
                StdioEnd(
                    fd=fd,
                    kind=text(first, "kind") or "socket",
                    target=_target(text(first, "target")),
                    inode=to_int(first.get("inode")),
                )
            )
            continue
        known = snap.stdio.get(pid, {}).get(fd)
        if known is not None and known.source == "extension":
            continue
        kinds = {text(r, "kind") for r in group}
        paths = [text(r, "target") for r in group if text(r, "kind") == "path"]
        pipe_rows = [r for r in group if text(r, "kind") in ("pipe", "fifo")]
        if pipe_rows:
            kind = "fifo" if "fifo" in kinds else "pipe"
            partners = _partners(snap, pipe_rows, "partner_pid", "partner_") - {pid}
            end = StdioEnd(
                fd=fd,
                kind=kind,
                target=paths[0] if kind == "fifo" and paths else "",
                inode=to_int(pipe_rows[0].get("inode")),
                mode=text(pipe_rows[0], "mode"),
                partners=tuple(sorted(partners)),
            )
        elif paths:
            end = StdioEnd(fd=fd, kind=path_kind(paths[0]), target=paths[0])
        else:
            first = group[0]
            kind = text(first, "kind") or "other"
            end = StdioEnd(
                fd=fd,
                kind=kind,
                target=_target(text(first, "target")),
                inode=to_int(first.get("inode")),
            )
        snap.set_stdio(pid, end)


def read_pipe_partners(snap: Reported, rows: Sequence[Row]) -> None:
    for row in rows:
        pid = to_int(row.get("pid"))
        if pid is None or not _add(snap, row, JOINED):
            continue
        partner = to_int(row.get("partner_pid"))
        _add_joined(snap, partner, row, "partner_")
        if partner is not None and not snap.is_current(partner, row.get("partner_start_time")):
            continue
        snap.pipes.setdefault(pid, []).append(
            PipeEnd(
                pid=pid,
                fd=to_int(row.get("fd")) or 0,
                inode=to_int(row.get("inode")),
                type=text(row, "type"),
                mode=text(row, "mode"),
                partner_pid=partner,
                partner_fd=to_int(row.get("partner_fd")),
            )
        )


def read_named_fifos(snap: Reported, rows: Sequence[Row]) -> None:
    for row in rows:
        pid = to_int(row.get("pid"))
        if pid is None or not _add(
            snap,
            row,
            JOINED,
            pid="pid",
            name="name",
            path="process_path",
            cmdline="cmdline",
            uid="uid",
        ):
            continue
        partner = to_int(row.get("partner_pid"))
        _add_joined(snap, partner, row, "partner_")
        snap.fifos.setdefault(pid, []).append(
            Fifo(
                pid=pid,
                path=text(row, "path"),
                fd=to_int(row.get("fd")),
                mode=text(row, "mode"),
                partner_pid=partner,
            )
        )


def read_unix_peers(snap: Reported, rows: Sequence[Row]) -> None:
    for row in rows:
        pid = to_int(row.get("pid"))
        if pid is None or not _add(
            snap, row, JOINED, pid="pid", name="name", path="process_path", start_time="start_time"
        ):
            continue
        peer = to_int(row.get("peer_pid"))
        _add_joined(snap, peer, row, "peer_")
        snap.unix_peers.setdefault(pid, []).append(
            UnixPeer(
                pid=pid,
                path=text(row, "path"),
                type=text(row, "type"),
                state=text(row, "state"),
                peer_pid=peer if peer is not None and peer > 0 else None,
                peer_path=text(row, "peer_path"),
            )
        )


def read_unix_sockets(snap: Reported, rows: Sequence[Row]) -> None:
    for row in rows:
        pid = to_int(row.get("pid"))
        if pid is None or not _add(
            snap,
            row,
            JOINED,
            pid="pid",
            name="name",
            path="process_path",
            cmdline="cmdline",
            uid="uid",
            start_time="start_time",
        ):
            continue
        if text(row, "path"):
            snap.unix_paths.setdefault(pid, set()).add(text(row, "path"))


def read_unix_socket_events(snap: Reported, rows: Sequence[Row]) -> None:
    """``socket_events`` on unix sockets (audit, with ``--audit_allow_unix``): a bind is a
    path the process holds, a connect the path of the server its socket reaches, which
    no stock table shows for the client end. ``fd`` is the audit record's ``a0``, in
    hexadecimal; later events win."""

    def when(row: Row) -> int:
        return to_int(row.get("time")) or 0

    for row in sorted(rows, key=when):
        pid, path = to_int(row.get("pid")), text(row, "path")
        if pid is None or not path or text(row, "status") not in ("", "succeeded", "in_progress"):
            continue
        if not _add(
            snap,
            row,
            JOINED,
            pid="pid",
            name="name",
            path="process_path",
            cmdline="cmdline",
            parent="parent",
            start_time="start_time",
        ):
            continue
        if text(row, "action") == "bind":
            snap.unix_paths.setdefault(pid, set()).add(path)
        elif text(row, "action") == "connect":
            try:
                fd = int(text(row, "fd"), 16)
            except ValueError:
                fd = -1
            snap.unix_connects.setdefault(pid, {})[fd] = path


def read_listeners(snap: Reported, rows: Sequence[Row]) -> None:
    """``unix_listeners`` and any ``listening_ports``-shaped rows (TCP/UDP ports too)."""
    for row in rows:
        pid = to_int(row.get("pid"))
        if pid is None or pid <= 0:
            continue
        _add(
            snap,
            row,
            JOINED,
            pid="pid",
            name="name",
            path="process_path",
            cmdline="cmdline",
            uid="uid",
        )
        port = to_int(row.get("port"))
        snap.listeners.setdefault(pid, []).append(
            Listener(
                pid=pid,
                path=text(row, "path"),
                port=port if port else None,
                address=text(row, "address"),
                protocol=to_int(row.get("protocol")),
            )
        )


def read_sessions(snap: Reported, rows: Sequence[Row]) -> None:
    for row in rows:
        if not text(row, "user"):
            continue
        snap.sessions.append(
            Session(
                user=text(row, "user"),
                tty=text(row, "tty"),
                host=text(row, "host"),
                pid=to_int(row.get("pid")),
                type=text(row, "type"),
            )
        )


def read_named_pipes(snap: Reported, rows: Sequence[Row]) -> None:
    """Windows ``pipes`` rows: bare pipe name and server pid (-1 or empty if unknown)."""
    for row in rows:
        pid = to_int(row.get("pid"))
        server = pid if pid is not None and pid > 0 else None
        if server is not None:
            _add(
                snap,
                row,
                JOINED,
                pid="pid",
                name="process_name",
                path="process_path",
                cmdline="process_cmdline",
                parent="parent",
            )
        snap.named_pipes.append(NamedPipe(name=text(row, "name"), pid=server))


READERS: dict[str, Reader] = {
    "pipe_partners": read_pipe_partners,
    "unix_sockets": read_unix_sockets,
    "unix_listeners": read_listeners,
    "unix_socket_events": read_unix_socket_events,
    "listening_ports": read_listeners,
    "named_fifos": read_named_fifos,
    "stdio_channels": read_stdio_channels,
    "process_stdio": read_process_stdio,
    "unix_socket_peers": read_unix_peers,
    "logged_in_users": read_sessions,
    "named_pipes": read_named_pipes,
    "named_pipes_snapshot": read_named_pipes,
    "known_tool_pipes": read_named_pipes,
}


def looks_like_processes(rows: Sequence[Row]) -> bool:
    """Rows of an unknown query that carry a pid, a parent and a name, path or cmdline."""
    if not rows:
        return False
    first: Mapping[str, object] = rows[0]
    return (
        "pid" in first
        and any(c in first for c in _PARENT_COLUMNS)
        and any(c in first for c in ("name", "path", "cmdline"))
    )


def is_process_query(name: str, rows: Sequence[Row]) -> bool:
    return name in PROCESS_QUERIES or (name not in READERS and looks_like_processes(rows))


def reader_for(name: str, rows: Sequence[Row]) -> Reader | None:
    if is_process_query(name, rows):
        return read_processes
    return READERS.get(name)
