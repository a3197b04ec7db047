"""``process_open_files``: descriptors that are not sockets, pipes or anon inodes.

Same filter as osquery's Linux table: a target containing ``socket:``, ``pipe:`` or
``anon_inode:`` is skipped, everything else (regular files, devices, named FIFOs,
deleted files) is listed with its readlink target as ``path``.
"""

from __future__ import annotations

from typing import Any

from fleetctl.tables.scan import Constraints, Scan

_SKIPPED = ("socket:", "pipe:", "anon_inode:")


def generate(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    rows = []
    for pid in scan.pids_for(constraints):
        links = scan.fds(pid)
        if not links:
            continue
        for fd in sorted(links):
            target = links[fd]
            if any(marker in target for marker in _SKIPPED):
                continue
            rows.append({"pid": pid, "fd": fd, "path": target})
    return rows
