"""Hand-made pack rows for unit tests: a process tree with stdio, in osquery's strings."""

from __future__ import annotations

from collections.abc import Sequence

from fleetctl.detection import HostSnapshot

Row = dict[str, str]


def proc(
    pid: int,
    parent: int,
    path: str,
    cmdline: str,
    *,
    uid: int = 1000,
    start: int = 1000,
    cgroup: str = "/",
) -> dict[str, str]:
    """A ``process_lineage`` row (joined parent columns left empty)."""
    name = path.rsplit("/", 1)[-1][:15]
    return {
        "pid": str(pid),
        "parent": str(parent),
        "start_time": str(start),
        "name": name,
        "path": path,
        "cmdline": cmdline,
        "uid": str(uid),
        "euid": str(uid),
        "cwd": "/",
        "pgroup": str(pid),
        "cgroup_path": cgroup,
        "parent_start_time": "",
        "parent_name": "",
        "parent_path": "",
        "parent_cmdline": "",
        "grandparent_pid": "",
        "grandparent_name": "",
        "grandparent_path": "",
        "grandparent_cmdline": "",
    }


def stdio(
    pid: int,
    fd: int,
    kind: str,
    target: str = "",
    *,
    mode: str = "",
    partner: int = -1,
    start: int = 1000,
    inode: int | None = None,
) -> dict[str, str]:
    """A ``process_stdio`` row of the extension pack (inode unique per pid and fd unless
    given: pass the parent's to model an inherited descriptor)."""
    if inode is None:
        inode = pid * 10 + fd if kind in ("pipe", "fifo", "unix", "tcp") else 0
    return {
        "pid": str(pid),
        "start_time": str(start),
        "name": "",
        "path": "",
        "cmdline": "",
        "parent": "",
        "uid": "",
        "euid": "",
        "fd": str(fd),
        "kind": kind,
        "target": target,
        "inode": str(inode),
        "mode": mode or ("r" if fd == 0 else "w"),
        "partner_pid": str(partner),
        "partner_fd": "-1" if partner < 0 else "1",
        "partner_name": "",
        "partner_path": "",
        "partner_start_time": "",
    }


def snapshot(
    processes: Sequence[Row], channels: Sequence[Row] = (), host: str = "h1", **more: Sequence[Row]
) -> HostSnapshot:
    return HostSnapshot.from_results(
        host, {"process_lineage": processes, "process_stdio": channels, **more}, platform="linux"
    )


# A small Linux host: systemd -> sshd -> bash (pty); a web app; and a FIFO shell.
BASE = [
    proc(1, 0, "/usr/lib/systemd/systemd", "/sbin/init", uid=0),
    proc(500, 1, "/usr/sbin/sshd", "sshd: /usr/sbin/sshd -D", uid=0),
    proc(600, 500, "/usr/sbin/sshd", "sshd: alice@pts/0", uid=1000),
    proc(601, 600, "/usr/bin/bash", "-bash"),
    proc(700, 1, "/usr/bin/python3.11", "python3 app.py", uid=33),
]
BASE_STDIO = [stdio(601, fd, "pty", "/dev/pts/0", mode="rw") for fd in (0, 1, 2)]
