"""Random hosts whose IPC telemetry evolves batch by batch, for equivalence tests.

``IpcHost(seed)`` is a process tree with stdio on ttys, anonymous pipes, FIFOs, unix
sockets (bound, listening, connected) and loopback TCP, plus logins and exec events.
``step()`` changes it the way a host does between two collection intervals: processes
spawn and exit (children go to pid 1), pids are reused with a new start time, fds are
replaced, sockets are bound and unbound, a row of one query is stale against another
(queries run at different moments). ``rows()`` gives what the shipped
``ipc-telemetry`` pack's queries return for the current state, with the same columns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

NAMES = (
    ("sh", "/usr/bin/dash"),
    ("bash", "/usr/bin/bash"),
    ("python3", "/usr/bin/python3.11"),
    ("curl", "/usr/bin/curl"),
    ("nc", "/usr/bin/nc.openbsd"),
    ("socat", "/usr/bin/socat"),
    ("sleep", "/usr/bin/sleep"),
    ("cat", "/usr/bin/cat"),
    ("sshd", "/usr/sbin/sshd"),
    ("nginx", "/usr/sbin/nginx"),
    ("cron", "/usr/sbin/cron"),
    ("dbus-daemon", "/usr/bin/dbus-daemon"),
)
QUERIES = (
    "process_lineage",
    "stdio_channels",
    "pipe_partners",
    "unix_sockets",
    "unix_listeners",
    "logged_in_users",
    "process_exec_events",
)
EVENT_QUERIES = frozenset({"process_exec_events"})
Row = dict[str, str]


@dataclass
class Proc:
    pid: int
    parent: int
    start_time: int
    name: str
    path: str
    cmdline: str
    uid: int


@dataclass
class Channel:
    """What an fd is: ``kind`` tty/pipe/fifo/unix/tcp/null, an inode (shared ends) and a
    target (tty or FIFO path, socket path, ``local->remote``)."""

    kind: str
    inode: int = 0
    target: str = ""
    mode: str = ""


@dataclass
class IpcHost:
    seed: int
    procs: dict[int, Proc] = field(default_factory=dict)
    fds: dict[int, dict[int, Channel]] = field(default_factory=dict)
    bound: dict[int, set[str]] = field(default_factory=dict)
    listening: dict[int, set[str]] = field(default_factory=dict)
    sessions: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    stale: set[tuple[int, int]] = field(default_factory=set)  # (pid, fd) rows from before
    now: int = 1_800_000_000

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._inode = 1000
        self._port = 40000
        self.procs[1] = Proc(
            1, 0, self.now - 10_000, "systemd", "/usr/lib/systemd/systemd", "/sbin/init", 0
        )
        self.fds[1] = {
            0: Channel("null", target="/dev/null"),
            1: Channel("null", target="/dev/null"),
        }
        for _ in range(self.rng.randint(15, 45)):
            self.spawn()

    # -- changes ----------------------------------------------------------------------------

    def inode(self) -> int:
        self._inode += 1
        return self._inode

    def free_pid(self) -> int:
        dead = [p for p in range(2, 120) if p not in self.procs]
        return self.rng.choice(dead)  # a small pid space: pids are reused often

    def spawn(self, parent: int | None = None) -> int:
        rng = self.rng
        pid = self.free_pid()
        parent = parent if parent is not None else rng.choice(sorted(self.procs))
        name, path = rng.choice(NAMES)
        args = rng.choice(("", " -c id", " -i", " /tmp/x", " -l 4444"))
        self.now += 1
        self.procs[pid] = Proc(
            pid, parent, self.now, name, path, name + args, rng.choice((0, 0, 1000, 33))
        )
        inherited = {fd: ch for fd, ch in self.fds.get(parent, {}).items() if rng.random() < 0.7}
        self.fds[pid] = inherited
        for fd in (0, 1, 2):
            if fd not in inherited or rng.random() < 0.3:
                self.set_fd(pid, fd)
        self.events.append(
            {
                "pid": str(pid),
                "parent": str(parent),
                "path": path,
                "cmdline": name + args,
                "cwd": "/",
                "uid": str(self.procs[pid].uid),
                "euid": str(self.procs[pid].uid),
                "auid": "1000",
                "time": str(self.now),
                "syscall": "execve",
                "parent_name": self.procs[parent].name,
                "parent_path": self.procs[parent].path,
                "parent_cmdline": self.procs[parent].cmdline,
            }
        )
        return pid

    def exit(self, pid: int) -> None:
        for child in self.procs.values():
            if child.parent == pid:
                child.parent = 1
        del self.procs[pid]
        self.fds.pop(pid, None)
        self.bound.pop(pid, None)
        self.listening.pop(pid, None)
        self.sessions = [s for s in self.sessions if s["pid"] != str(pid)]
        self.stale = {(p, fd) for p, fd in self.stale if p != pid}

    def set_fd(self, pid: int, fd: int) -> None:
        rng = self.rng
        others = [p for p in self.procs if p not in (pid, 1)]
        kind = rng.choice(("tty", "pipe", "pipe", "fifo", "unix", "tcp", "null"))
        if kind == "tty":
            ch = Channel("tty", target=f"/dev/pts/{rng.randint(0, 3)}")
        elif kind == "null":
            ch = Channel("null", target="/dev/null")
        elif kind in ("pipe", "fifo") and others:
            other = rng.choice(others)
            path = f"/tmp/f{rng.randint(0, 5)}" if kind == "fifo" else ""
            inode = self.inode()
            mine = "r" if fd == 0 else "w"
            ch = Channel(kind, inode, path, mine)
            ofd = rng.choice((0, 1, 3, 5))
            self.fds.setdefault(other, {})[ofd] = Channel(
                kind, inode, path, "w" if mine == "r" else "r"
            )
        elif kind == "unix":
            servers = [(p, s) for p, paths in self.bound.items() for s in paths if p in self.procs]
            path = rng.choice(servers)[1] if servers and rng.random() < 0.6 else ""
            ch = Channel("unix", self.inode(), path)
        elif kind == "tcp" and others:
            self._port += 1
            local, remote = f"127.0.0.1:{self._port}", f"127.0.0.1:{rng.choice((22, 4444, 8080))}"
            inode = self.inode()
            ch = Channel("tcp", inode, f"{local}->{remote}")
            if rng.random() < 0.5:  # the loopback twin held by another process
                self.fds.setdefault(rng.choice(others), {})[7] = Channel(
                    "tcp", self.inode(), f"{remote}->{local}"
                )
        else:
            ch = Channel("null", target="/dev/null")
        self.fds.setdefault(pid, {})[fd] = ch

    def step(self) -> None:
        """One interval's worth of change (a few percent of the host)."""
        rng = self.rng
        self.now += rng.randint(20, 120)
        for _ in range(rng.randint(1, 6)):
            live = [p for p in self.procs if p != 1]
            op = rng.random()
            if op < 0.25 or len(live) < 5:
                self.spawn()
            elif op < 0.45 and live:
                self.exit(rng.choice(live))
            elif op < 0.55 and live:
                victim = rng.choice(live)  # exits and its pid is taken at once
                parent = self.procs[victim].parent
                self.exit(victim)
                self.spawn(parent if parent in self.procs else 1)
            elif op < 0.7 and live:
                self.set_fd(rng.choice(live), rng.choice((0, 1, 2)))
            elif op < 0.8 and live:
                pid = rng.choice(live)
                self.bound.setdefault(pid, set()).add(f"/run/s{rng.randint(0, 4)}.sock")
                if rng.random() < 0.5:
                    self.listening.setdefault(pid, set()).add(f"/run/s{rng.randint(0, 4)}.sock")
            elif op < 0.85 and self.bound:
                pid = rng.choice(sorted(self.bound))
                self.bound.pop(pid)
                self.listening.pop(pid, None)
            elif op < 0.9 and live:
                pid = rng.choice(live)
                tty = f"pts/{rng.randint(0, 3)}"
                self.sessions.append(
                    {
                        "type": "user",
                        "user": "alice",
                        "tty": tty,
                        "host": "10.0.0.9",
                        "time": str(self.now),
                        "pid": str(pid),
                    }
                )
            elif op < 0.93 and self.sessions:
                self.sessions.pop(rng.randrange(len(self.sessions)))
            elif live:
                pid = rng.choice(live)
                fds = [fd for fd, ch in self.fds.get(pid, {}).items() if ch.kind == "pipe"]
                if fds:
                    self.stale.add((pid, rng.choice(fds)))  # a pipe_partners row from before

    # -- rows -------------------------------------------------------------------------------

    def _holders(self, inode: int) -> list[tuple[int, int, Channel]]:
        return [
            (pid, fd, ch)
            for pid in sorted(self.fds)
            for fd, ch in sorted(self.fds[pid].items())
            if ch.inode == inode and pid in self.procs
        ]

    def rows(self) -> dict[str, list[Row]]:
        procs = self.procs
        out: dict[str, list[Row]] = {q: [] for q in QUERIES}
        for p in procs.values():
            pp = procs.get(p.parent)
            out["process_lineage"].append(
                {
                    "pid": str(p.pid),
                    "parent": str(p.parent),
                    "start_time": str(p.start_time),
                    "name": p.name,
                    "path": p.path,
                    "cmdline": p.cmdline,
                    "uid": str(p.uid),
                    "euid": str(p.uid),
                    "parent_start_time": str(pp.start_time) if pp else "",
                    "parent_name": pp.name if pp else "",
                    "parent_path": pp.path if pp else "",
                    "parent_cmdline": pp.cmdline if pp else "",
                    "grandparent_pid": str(pp.parent) if pp else "",
                }
            )
        for pid, fds in sorted(self.fds.items()):
            if pid not in procs:
                continue
            p = procs[pid]
            base = {
                "pid": str(pid),
                "start_time": str(p.start_time),
                "name": p.name,
                "path": p.path,
                "parent": str(p.parent),
            }
            for fd, ch in sorted(fds.items()):
                if ch.kind in ("pipe", "fifo"):
                    for opid, ofd, _ in self._holders(ch.inode):
                        if opid == pid:
                            continue
                        o = procs[opid]
                        partner = {
                            "partner_pid": str(opid),
                            "partner_fd": str(ofd),
                            "partner_name": o.name,
                            "partner_path": o.path,
                        }
                        if fd <= 2:
                            out["stdio_channels"].append(
                                base
                                | {
                                    "fd": str(fd),
                                    "kind": ch.kind,
                                    "target": "",
                                    "inode": str(ch.inode),
                                    "mode": ch.mode,
                                }
                                | partner
                            )
                        started = o.start_time - 100 if (pid, fd) in self.stale else o.start_time
                        out["pipe_partners"].append(
                            {
                                "pid": str(pid),
                                "name": p.name,
                                "path": p.path,
                                "start_time": str(p.start_time),
                                "fd": str(fd),
                                "mode": ch.mode,
                                "inode": str(ch.inode),
                                "type": "named" if ch.kind == "fifo" else "anonymous",
                            }
                            | {
                                "partner_pid": str(opid),
                                "partner_name": o.name,
                                "partner_path": o.path,
                                "partner_start_time": str(started),
                                "partner_fd": str(ofd),
                                "partner_mode": "r",
                            }
                        )
                    if ch.kind == "fifo" and fd <= 2:
                        out["stdio_channels"].append(
                            base
                            | {
                                "fd": str(fd),
                                "kind": "path",
                                "target": ch.target,
                                "inode": "",
                                "mode": "",
                                "partner_pid": "",
                                "partner_fd": "",
                                "partner_name": "",
                                "partner_path": "",
                            }
                        )
                elif fd <= 2 or ch.kind in ("unix", "tcp"):
                    kind = {"tty": "path", "null": "path"}.get(ch.kind, ch.kind)
                    out["stdio_channels"].append(
                        base
                        | {
                            "fd": str(fd),
                            "kind": kind,
                            "target": ch.target,
                            "inode": str(ch.inode or ""),
                            "mode": "",
                            "partner_pid": "",
                            "partner_fd": "",
                            "partner_name": "",
                            "partner_path": "",
                        }
                    )
        for pid, paths in sorted(self.bound.items()):
            p = procs[pid]
            for path in sorted(paths):
                out["unix_sockets"].append(
                    {
                        "pid": str(pid),
                        "name": p.name,
                        "process_path": p.path,
                        "cmdline": p.cmdline,
                        "uid": str(p.uid),
                        "start_time": str(p.start_time),
                        "path": path,
                        "state": "",
                    }
                )
        for pid, paths in sorted(self.listening.items()):
            p = procs[pid]
            for path in sorted(paths):
                out["unix_listeners"].append(
                    {
                        "pid": str(pid),
                        "name": p.name,
                        "process_path": p.path,
                        "cmdline": p.cmdline,
                        "uid": str(p.uid),
                        "path": path,
                        "fd": "6",
                        "socket": "0",
                    }
                )
        out["logged_in_users"] = [dict(s) for s in self.sessions]
        out["process_exec_events"] = list(self.events)
        return out

    def take_events(self) -> list[Row]:
        """Exec events since the last call (an evented query logs each once)."""
        taken, self.events = self.events, []
        return taken
