"""Device kinds of a stdio target path, shared by the ``process_stdio`` table (which
classifies a process's fd 0-2) and detection (which classifies the same paths when a
host only has stock osquery's ``process_open_files``): both must name them alike."""

from __future__ import annotations


def device_kind(target: str) -> str | None:
    """``null``, ``pty`` or ``tty`` for those device paths; None for anything else."""
    if target == "/dev/null":
        return "null"
    if target.startswith("/dev/pts/") or target == "/dev/ptmx":
        return "pty"
    if target == "/dev/console" or target.startswith("/dev/tty"):
        return "tty"
    return None
