"""``processes``: one row per process, with osquery's Linux semantics.

Values follow ``osquery/tables/system/linux/processes.cpp``: times in milliseconds from
clock ticks, ``start_time`` as boot time + start ticks, memory as kB x 1000, ``on_disk``
as the 1/0/-1 tristate and the `` (deleted)`` suffix stripped from ``path`` when the
binary is gone. A process that exits mid-read simply yields no row.
"""

from __future__ import annotations

import os
import re
from typing import Any

from fleetctl.tables import _proc
from fleetctl.tables.scan import Constraints, Scan

_DELETED = " (deleted)"


def _on_disk(pid: int, path: str, proc_root: str) -> tuple[int, str]:
    """osquery's getOnDisk(): (tristate, path with a false " (deleted)" suffix removed)."""
    if not path:
        return -1, path
    if not path.endswith(_DELETED):
        return (1 if os.path.exists(path) else 0), path
    if not os.path.exists(path):
        return 0, path[: -len(_DELETED)]
    # A file really named "... (deleted)" exists: it is the binary only if its inode is
    # the one mapped in /proc/<pid>/maps (osquery #1607).
    maps = _proc.read_text(f"{proc_root}/{pid}/maps")
    if maps is None:
        return -1, path
    match = re.search(r"([0-9]+)\s+" + re.escape(path), maps)
    if match is None:
        return -1, path
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return -1, path
    if str(inode) == match.group(1):
        return 1, path
    return 0, path[: -len(_DELETED)]


def process_row(pid: int, proc_root: str, boot_time: int | None) -> dict[str, Any] | None:
    """The processes row of one pid, or None if the process is gone."""
    base = f"{proc_root}/{pid}/"
    stat_text = _proc.read_text(base + "stat", to_eof=False)
    status_text = _proc.read_text(base + "status", to_eof=False)
    if stat_text is None or status_text is None:
        return None
    st = _proc.parse_stat(stat_text)
    if st is None:
        return None
    status = _proc.parse_status(status_text)
    path = _proc.read_link(base + "exe") or ""
    on_disk, path = _on_disk(pid, path, proc_root)
    cmdline = _proc.read_bytes(base + "cmdline", to_eof=False)
    cgroup = _proc.read_text(base + "cgroup", to_eof=False)
    io_text = _proc.read_text(base + "io", to_eof=False)
    ms_per_tick = 1000 // _proc.CLK_TCK
    row: dict[str, Any] = {
        "pid": pid,
        "name": status.name,
        "path": path,
        "cmdline": _proc.cmdline_text(cmdline) if cmdline is not None else "",
        "state": st.state,
        "cwd": _proc.read_link(base + "cwd") or "",
        "root": _proc.read_link(base + "root") or "",
        "uid": status.uid,
        "gid": status.gid,
        "euid": status.euid,
        "egid": status.egid,
        "suid": status.suid,
        "sgid": status.sgid,
        "on_disk": on_disk,
        "wired_size": 0,
        "resident_size": status.resident_size,
        "total_size": status.total_size,
        "user_time": st.utime * ms_per_tick,
        "system_time": st.stime * ms_per_tick,
        "disk_bytes_read": None,
        "disk_bytes_written": None,
        "start_time": (boot_time + st.starttime // _proc.CLK_TCK) if boot_time else -1,
        "parent": st.ppid,
        "pgroup": st.pgrp,
        "threads": st.threads,
        "nice": st.nice,
        "cgroup_path": _proc.parse_cgroup(cgroup) if cgroup is not None else "",
    }
    if io_text is not None:
        io = _proc.parse_io(io_text)
        row["disk_bytes_read"] = io.read_bytes
        row["disk_bytes_written"] = (io.write_bytes or 0) - (io.cancelled_write_bytes or 0)
    return row


def generate(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    boot = _proc.boot_time(scan.proc_root)
    rows = []
    for pid in scan.pids_for(constraints):
        row = process_row(pid, scan.proc_root, boot)
        if row is not None:
            rows.append(row)
    return rows
