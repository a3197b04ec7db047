"""The simulated Linux hosts of ``fleet_sim.py``: a process tree with its IPC channels, the
rows the shipped ``ipc-telemetry`` pack's queries return from it, and osqueryd's result
log lines for them.

A host is about 400 processes, a plausible server: systemd and its services (journald,
udevd, logind, dbus, cron, sshd, containerd, ...), worker pools (nginx, php-fpm,
PostgreSQL backends, gunicorn), containers under their shims, SSH sessions with shells
on ptys and a pipeline, a user manager with its session bus. Every process has its stdio
(``/dev/null``, the journal's unix socket, a pty, pipes to its partners), listeners and
unix sockets as ``process_open_pipes``, ``process_open_files``, ``process_open_sockets``
and ``listening_ports`` show them. Each host draws pool sizes, pids, names and start
times from its own seed, so no row repeats across hosts.

``churn`` is one 60 s interval of change: about 3% of the processes exit and are
replaced (pool workers recycled, backends reconnecting, cron jobs, shell commands),
some reusing a freed pid with a new start time; their channel rows change with them.
``add_canary`` starts what the detector must find: a ``sh`` whose stdin is a named FIFO
in /tmp written by another process (``ipc-abuse.md`` scenarios 1 and 7).

Rows are kept serialised per process and re-serialised only for processes a change
touched (itself, its children and grandchildren, its channel partners), so a host
costs the simulator little: a snapshot line is a join of cached bytes.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fleetctl.agent.config import (
    Discovery,
    HostFacts,
    ScheduledQuery,
    machine_shard,
    parse_config,
    scheduled_queries,
)
from fleetctl.agent.differ import is_event_query
from fleetctl.agent.logformat import Header
from fleetctl.agent.schedule import splay_value

PID_MAX = 4_194_304
CHURN = 0.03  # share of processes replaced per 60 s interval
JOURNAL = "/run/systemd/journal/stdout"

# Column lists of the shipped pack's queries, in their SQL's order (tests check them
# against the SQL through the server's own schema).
COLUMNS: dict[str, tuple[str, ...]] = {
    "process_lineage": [
        "pid",
        "parent",
        "start_time",
        "name",
        "path",
        "cmdline",
        "uid",
        "euid",
        "cwd",
        "pgroup",
        "cgroup_path",
        "parent_start_time",
        "parent_name",
        "parent_path",
        "parent_cmdline",
        "grandparent_pid",
        "grandparent_name",
        "grandparent_path",
        "grandparent_cmdline",
    ],
    "stdio_channels": [
        "pid",
        "start_time",
        "name",
        "path",
        "parent",
        "fd",
        "kind",
        "target",
        "inode",
        "mode",
        "partner_pid",
        "partner_fd",
        "partner_name",
        "partner_path",
    ],
    "pipe_partners": [
        "pid",
        "name",
        "path",
        "start_time",
        "fd",
        "mode",
        "inode",
        "type",
        "partner_pid",
        "partner_name",
        "partner_path",
        "partner_start_time",
        "partner_fd",
        "partner_mode",
    ],
    "unix_sockets": [
        "pid",
        "name",
        "process_path",
        "cmdline",
        "uid",
        "start_time",
        "path",
        "state",
    ],
    "unix_listeners": ["pid", "name", "process_path", "cmdline", "uid", "path", "fd", "socket"],
    "named_fifos": [
        "pid",
        "name",
        "process_path",
        "cmdline",
        "uid",
        "path",
        "fd",
        "mode",
        "inode",
        "partner_pid",
        "partner_name",
    ],
    "logged_in_users": ["type", "user", "tty", "host", "time", "pid", "name", "path", "cmdline"],
    "process_exec_events": [
        "pid",
        "parent",
        "path",
        "cmdline",
        "cwd",
        "uid",
        "euid",
        "auid",
        "time",
        "syscall",
        "parent_name",
        "parent_path",
        "parent_cmdline",
    ],
}


@dataclass
class Proc:
    pid: int
    parent: int
    start_time: int
    name: str
    path: str
    cmdline: str
    uid: int
    cwd: str = "/"
    cgroup: str = "/system.slice"
    role: str = ""  # the pool a churned process is replaced from ("" = stays)
    # fds 0-2: ("file", path) | ("unix", path, inode) | ("pipe", inode) | ("fifo", inode)
    stdio: list[tuple[Any, ...]] = field(default_factory=list)
    sockets: list[tuple[int, str, int]] = field(default_factory=list)  # fd, path, inode
    listens: list[tuple[int, str, int]] = field(default_factory=list)  # fd, path, inode


@dataclass
class Pipe:
    inode: int
    path: str | None  # a named FIFO's path; None for an anonymous pipe
    ends: list[tuple[int, int, str]] = field(default_factory=list)  # pid, fd, mode


@dataclass
class Canary:
    """A FIFO-fed shell: ``pid``/``start_time`` are the shell's."""

    host: str
    pid: int
    start_time: int
    born: float
    writer: int
    fifo: int
    posted: dict[str, float] = field(default_factory=dict)  # query -> time of its post


def _guid(rng: random.Random) -> str:
    return "-".join(f"{rng.randrange(16**n):0{n}x}" for n in (8, 4, 4, 4, 12))


def _row(values: dict[str, Any]) -> bytes:
    """One row as osqueryd logs it: every value a string, keys sorted (``std::map``)."""
    return orjson.dumps(
        {k: "" if v is None else str(v) for k, v in values.items()},
        option=orjson.OPT_SORT_KEYS,
    )


class Host:
    """One simulated host: its processes and channels, and the rows queries see."""

    def __init__(self, index: int, seed: int, now: float) -> None:
        self.index = index
        self.rng = random.Random(seed * 1_000_003 + index)
        rng = self.rng
        self.identifier = f"sim-{index:05d}-{rng.choice(WORDS)}-{rng.randrange(16**6):06x}"
        self.uuid = _guid(rng).upper()
        self.procs: dict[int, Proc] = {}
        self.pipes: dict[int, Pipe] = {}
        self.children: dict[int, set[int]] = {}
        self.sessions: list[tuple[str, str, str, int, int]] = []  # user tty host time pid
        self.execs: list[bytes] = []  # exec events since the last run
        self.freed: list[int] = []
        self.canaries: list[Canary] = []
        self._next_pid = rng.randrange(300, 20_000)
        self._next_inode = rng.randrange(10_000, 90_000_000)
        self.boot = int(now) - rng.randrange(86_400, 60 * 86_400)
        self._cache: dict[str, dict[int, list[bytes]]] = {q: {} for q in GENERATORS}
        self._build(now)

    # -- identities ------------------------------------------------------------------

    def pid(self, reuse: bool = False) -> int:
        if reuse and self.freed:
            return self.freed.pop(self.rng.randrange(len(self.freed)))
        self._next_pid += self.rng.randrange(1, 9)
        if self._next_pid >= PID_MAX:
            self._next_pid = 300
        while self._next_pid in self.procs:
            self._next_pid += 1
        return self._next_pid

    def inode(self) -> int:
        self._next_inode += self.rng.randrange(1, 40)
        return self._next_inode

    # -- building --------------------------------------------------------------------

    def spawn(
        self,
        parent: int,
        name: str,
        path: str,
        cmdline: str,
        *,
        uid: int = 0,
        started: int,
        stdio: str = "journal",
        role: str = "",
        cgroup: str | None = None,
        pid: int | None = None,
        exec_event: bool = False,
    ) -> Proc:
        """A process with its stdio: ``journal`` (services), ``null``, a pty path, or
        ``inherit`` (the parent's fds, pipes gaining an end)."""
        p = Proc(
            pid=pid if pid is not None else self.pid(),
            parent=parent,
            start_time=started,
            name=name,
            path=path,
            cmdline=cmdline,
            uid=uid,
            role=role,
            cgroup=cgroup or (self.procs[parent].cgroup if parent in self.procs else "/"),
        )
        if stdio == "journal":
            journal = ("unix", "", self.inode())  # the client end of a socket has no path
            p.stdio = [("file", "/dev/null"), journal, journal]
        elif stdio == "null":
            p.stdio = [("file", "/dev/null")] * 3
        elif stdio == "inherit" and parent in self.procs:
            p.stdio = list(self.procs[parent].stdio)
            for fd, chan in enumerate(p.stdio):
                if chan[0] in ("pipe", "fifo"):
                    ends = self.pipes[chan[1]].ends
                    mode = next(m for q, f, m in ends if q == parent and f == fd)
                    self.pipes[chan[1]].ends.append((p.pid, fd, mode))
        else:
            p.stdio = [("file", stdio)] * 3
        self.procs[p.pid] = p
        self.children.setdefault(parent, set()).add(p.pid)
        if exec_event:
            self._exec(p)
        self.touch([p.pid])
        return p

    def pipe(self, writer: Proc, wfd: int, reader: Proc, rfd: int, path: str | None = None) -> int:
        """A pipe from ``writer``'s fd ``wfd`` to ``reader``'s fd ``rfd`` (fds 0-2 become
        their stdio)."""
        inode = self.inode()
        kind = "fifo" if path else "pipe"
        self.pipes[inode] = Pipe(inode, path, [(writer.pid, wfd, "w"), (reader.pid, rfd, "r")])
        for proc, fd in ((writer, wfd), (reader, rfd)):
            if fd <= 2:
                proc.stdio[fd] = (kind, inode)
        self.touch([writer.pid, reader.pid])
        return inode

    def _exec(self, p: Proc) -> None:
        pp = self.procs.get(p.parent)
        self.execs.append(
            _row(
                {
                    "pid": p.pid,
                    "parent": p.parent,
                    "path": p.path,
                    "cmdline": p.cmdline,
                    "cwd": p.cwd,
                    "uid": p.uid,
                    "euid": p.uid,
                    "auid": p.uid if p.uid else 4294967295,
                    "time": p.start_time,
                    "syscall": "execve",
                    "parent_name": pp.name if pp else None,
                    "parent_path": pp.path if pp else None,
                    "parent_cmdline": pp.cmdline if pp else None,
                }
            )
        )

    def _build(self, now: float) -> None:
        rng, boot = self.rng, self.boot
        self.spawn(
            0,
            "systemd",
            "/usr/lib/systemd/systemd",
            "/sbin/init",
            started=boot,
            stdio="null",
            cgroup="/init.scope",
            pid=1,
        )

        def svc(name: str, path: str, cmdline: str, uid: int = 0, **kw: Any) -> Proc:
            unit = kw.pop("unit", name)
            return self.spawn(
                1,
                name,
                path,
                cmdline,
                uid=uid,
                started=boot + rng.randrange(2, 40),
                cgroup=f"/system.slice/{unit}.service",
                **kw,
            )

        journald = svc(
            "systemd-journal",
            "/usr/lib/systemd/systemd-journald",
            "/usr/lib/systemd/systemd-journald",
            stdio="null",
            unit="systemd-journald",
        )
        for fd, path in ((3, JOURNAL), (4, "/run/systemd/journal/socket"), (5, "/dev/log")):
            journald.listens.append((fd, path, self.inode()))
        for name, path, cmd, uid in SERVICES:
            proc = svc(name, path, cmd, uid)
            for fd, lpath in LISTENERS.get(name, ()):
                proc.listens.append((fd, lpath, self.inode()))
            for fd, spath in CLIENT_SOCKETS.get(name, ()):
                proc.sockets.append((fd, spath, self.inode()))
        for tty in range(1, 1 + rng.randrange(1, 3)):
            svc(
                "agetty",
                "/usr/sbin/agetty",
                f"/sbin/agetty -o -p -- \\u --noclear tty{tty} linux",
                stdio=f"/dev/tty{tty}",
                unit=f"getty@tty{tty}",
            )
        self.pools: dict[str, Callable[[int, bool], Proc]] = {}
        for pool in POOLS:
            pool(self, now)
        self._sessions(now)
        self._cron(now)
        self.execs.clear()  # what ran before osqueryd started is not an event

    def _sessions(self, now: float) -> None:
        rng = self.rng
        sshd = next(p for p in self.procs.values() if p.name == "sshd")
        for s in range(rng.randrange(1, 4)):
            user = rng.choice(USERS)
            uid = 1000 + USERS.index(user)
            started = int(now) - rng.randrange(60, 20_000)
            tty = f"/dev/pts/{s}"
            priv = self.spawn(
                sshd.pid,
                "sshd",
                "/usr/sbin/sshd",
                f"sshd: {user} [priv]",
                started=started,
                stdio="null",
                cgroup=f"/user.slice/user-{uid}.slice/session-{s + 3}.scope",
            )
            sess = self.spawn(
                priv.pid,
                "sshd",
                "/usr/sbin/sshd",
                f"sshd: {user}@pts/{s}",
                uid=uid,
                started=started + 1,
                stdio="null",
            )
            shell = self.spawn(
                sess.pid, "bash", "/usr/bin/bash", "-bash", uid=uid, started=started + 1, stdio=tty
            )
            shell.cwd = f"/home/{user}"
            self.sessions.append(
                (
                    user,
                    f"pts/{s}",
                    f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    started,
                    priv.pid,
                )
            )
            self._shell_command(shell, int(now) - rng.randrange(5, 600))
        user_mgr = self.spawn(
            1,
            "systemd",
            "/usr/lib/systemd/systemd",
            "/lib/systemd/systemd --user",
            uid=1000,
            started=self.boot + 300,
            stdio="null",
            cgroup="/user.slice/user-1000.slice/user@1000.service/init.scope",
        )
        self.spawn(
            user_mgr.pid,
            "(sd-pam)",
            "/usr/lib/systemd/systemd",
            "(sd-pam)",
            uid=1000,
            started=self.boot + 300,
            stdio="null",
        )
        bus = self.spawn(
            user_mgr.pid,
            "dbus-daemon",
            "/usr/bin/dbus-daemon",
            "/usr/bin/dbus-daemon --session --address=systemd: --nofork --nopidfile"
            " --systemd-activation --syslog-only",
            uid=1000,
            started=self.boot + 310,
        )
        bus.listens.append((3, "/run/user/1000/bus", self.inode()))
        self.spawn(
            user_mgr.pid,
            "gpg-agent",
            "/usr/bin/gpg-agent",
            "/usr/bin/gpg-agent --supervised",
            uid=1000,
            started=self.boot + 320,
        ).listens.append((3, "/run/user/1000/gnupg/S.gpg-agent", self.inode()))

    def _shell_command(self, shell: Proc, started: int) -> None:
        """What an interactive shell runs: one tool, or a two-process pipeline."""
        rng = self.rng
        if rng.random() < 0.5:
            name, path, cmd = rng.choice(TOOLS)
            self.spawn(
                shell.pid,
                name,
                path,
                cmd,
                uid=shell.uid,
                started=started,
                stdio="inherit",
                role="command",
                exec_event=True,
            )
            return
        left = self.spawn(
            shell.pid,
            "ps",
            "/usr/bin/ps",
            "ps aux",
            uid=shell.uid,
            started=started,
            stdio="inherit",
            role="command",
            exec_event=True,
        )
        right = self.spawn(
            shell.pid,
            "grep",
            "/usr/bin/grep",
            f"grep --color=auto {rng.choice(WORDS)}",
            uid=shell.uid,
            started=started,
            stdio="inherit",
            role="command",
            exec_event=True,
        )
        self.pipe(left, 1, right, 0)

    def _cron(self, now: float) -> None:
        cron = next(p for p in self.procs.values() if p.name == "cron")
        started = int(now) - self.rng.randrange(1, 59)
        job = self.spawn(
            cron.pid,
            "cron",
            "/usr/sbin/cron",
            "/usr/sbin/CRON -f -P",
            started=started,
            stdio="null",
            role="cron",
            exec_event=True,
        )
        sh = self.spawn(
            job.pid,
            "sh",
            "/usr/bin/dash",
            f"/bin/sh -c {self.rng.choice(CRON_JOBS)}",
            started=started,
            stdio="null",
            role="cron",
            exec_event=True,
        )
        self.pipe(sh, 1, job, 3)
        sh.stdio[2] = sh.stdio[1]
        self.pipes[sh.stdio[1][1]].ends.append((sh.pid, 2, "w"))

    # -- change ----------------------------------------------------------------------

    def touch(self, pids: Iterable[int]) -> None:
        """Forget the cached rows of ``pids`` and of every process whose rows name them
        (children and grandchildren by lineage, partners by their channels)."""
        affected: set[int] = set()
        for pid in pids:
            affected.add(pid)
            for child in self.children.get(pid, ()):
                affected.add(child)
                affected.update(self.children.get(child, ()))
            p = self.procs.get(pid)
            if p is None:
                continue
            for chan in p.stdio:
                if chan[0] in ("pipe", "fifo") and chan[1] in self.pipes:
                    affected.update(q for q, _, _ in self.pipes[chan[1]].ends)
        for cache in self._cache.values():
            for pid in affected:
                cache.pop(pid, None)

    def exit(self, pid: int) -> None:
        """``pid`` exits; its children are reparented to systemd, its pipe ends close."""
        p = self.procs.get(pid)
        if p is None:
            return
        self.touch([pid])
        for child in list(self.children.pop(pid, ())):
            self.procs[child].parent = 1
            self.children[1].add(child)
            self.touch([child])
        self.children.get(p.parent, set()).discard(pid)
        for inode, pipe in list(self.pipes.items()):
            if any(q == pid for q, _, _ in pipe.ends):
                pipe.ends = [e for e in pipe.ends if e[0] != pid]
                self.touch([q for q, _, _ in pipe.ends])
                if not pipe.ends:
                    del self.pipes[inode]
        del self.procs[pid]
        self.freed.append(pid)
        del self.freed[:-64]

    def churn(self, now: float) -> list[int]:
        """One interval's change: about 3% of the processes replaced; the pids exited."""
        rng = self.rng
        movable = [p for p in self.procs.values() if p.role and p.role != "canary"]
        count = min(len(movable), max(1, round(CHURN * len(self.procs))))
        gone = []
        for p in rng.sample(movable, count):
            if p.pid not in self.procs:
                continue  # went with its parent already
            gone.append(p.pid)
            self.exit(p.pid)
            started = int(now) - rng.randrange(0, 50)
            if p.role == "command":
                shell = self.procs.get(p.parent)
                if shell is not None and shell.name == "bash":
                    for other in list(self.children.get(shell.pid, ())):
                        if self.procs[other].role == "command":  # the pipeline's other half
                            gone.append(other)
                            self.exit(other)
                    self._shell_command(shell, started)
            elif p.role == "cron":  # the whole job goes: CRON and its sh
                for other in [q.pid for q in self.procs.values() if q.role == "cron"]:
                    gone.append(other)
                    self.exit(other)
                self._cron(now)
            else:
                self.pools[p.role](started, rng.random() < 0.2)
        return gone

    def expire_canaries(self, now: float, life: float) -> None:
        """Canaries older than ``life`` seconds exit (their pids are never reused)."""
        for canary in [c for c in self.canaries if now - c.born > life]:
            for pid in (canary.pid, canary.writer):
                if pid in self.procs:
                    self.exit(pid)
                    self.freed.remove(pid)
            self.canaries.remove(canary)

    def add_canary(self, now: float) -> Canary:
        """A ``sh`` under a login shell whose stdin is a FIFO in /tmp written by
        ``python3`` (its sibling), so its stdin is fed from outside its lineage."""
        shells = [p for p in self.procs.values() if p.name == "bash" and p.cmdline == "-bash"]
        shell = self.rng.choice(shells)
        started = int(now)
        writer = self.spawn(
            shell.pid,
            "python3",
            "/usr/bin/python3.12",
            "python3 relay.py",
            uid=shell.uid,
            started=started,
            stdio=shell.stdio[0][1],
            role="canary",
            exec_event=True,
        )
        sh = self.spawn(
            shell.pid,
            "sh",
            "/usr/bin/dash",
            "sh -i",
            uid=shell.uid,
            started=started,
            stdio=shell.stdio[0][1],
            role="canary",
            exec_event=True,
        )
        fifo = self.pipe(writer, 3, sh, 0, path=f"/tmp/.{self.rng.randrange(16**8):08x}")
        canary = Canary(self.identifier, sh.pid, started, now, writer.pid, fifo)
        self.canaries.append(canary)
        return canary

    # -- rows ------------------------------------------------------------------------

    def rows(self, query: str) -> list[bytes]:
        """The rows of one of the pack's queries (cached per process)."""
        if query == "process_exec_events":
            out, self.execs = self.execs, []
            return out
        if query == "logged_in_users":
            return [_logged_in(self, s) for s in self.sessions]
        cache = self._cache[query]
        make = GENERATORS[query]
        out = []
        for pid, p in self.procs.items():
            cached = cache.get(pid)
            if cached is None:
                cached = cache[pid] = make(self, p)
            out.extend(cached)
        return out

    def partners(self, inode: int, pid: int, fd: int) -> list[tuple[int, int, str]]:
        """The other ends of a pipe as ``process_open_pipes`` pairs them: modes differ,
        or either is ``rw``."""
        pipe = self.pipes[inode]
        mine = next((m for q, f, m in pipe.ends if q == pid and f == fd), "r")
        return [
            (q, f, m)
            for q, f, m in pipe.ends
            if (q, f) != (pid, fd) and (m != mine or "rw" in (m, mine))
        ]

    def pipe_ends(self, p: Proc) -> list[tuple[int, int, str]]:
        """Every pipe end ``p`` holds: inode, fd, mode."""
        return [
            (inode, f, m)
            for inode, pipe in self.pipes.items()
            for q, f, m in pipe.ends
            if q == p.pid
        ]


# -- row generators, one per modelled query -------------------------------------------


def _lineage(h: Host, p: Proc) -> list[bytes]:
    pp = h.procs.get(p.parent)
    gp = h.procs.get(pp.parent) if pp else None
    return [
        _row(
            {
                "pid": p.pid,
                "parent": p.parent,
                "start_time": p.start_time,
                "name": p.name,
                "path": p.path,
                "cmdline": p.cmdline,
                "uid": p.uid,
                "euid": p.uid,
                "cwd": p.cwd,
                "pgroup": p.pid,
                "cgroup_path": p.cgroup,
                "parent_start_time": pp.start_time if pp else None,
                "parent_name": pp.name if pp else None,
                "parent_path": pp.path if pp else None,
                "parent_cmdline": pp.cmdline if pp else None,
                "grandparent_pid": pp.parent if pp else None,
                "grandparent_name": gp.name if gp else None,
                "grandparent_path": gp.path if gp else None,
                "grandparent_cmdline": gp.cmdline if gp else None,
            }
        )
    ]


def _stdio(h: Host, p: Proc) -> list[bytes]:
    base = {
        "pid": p.pid,
        "start_time": p.start_time,
        "name": p.name,
        "path": p.path,
        "parent": p.parent,
    }
    out = []
    for fd, chan in enumerate(p.stdio):
        kind = chan[0]
        empty = {"inode": None, "mode": "", "partner_pid": None, "partner_fd": None}
        if kind == "file":
            out.append(base | empty | {"fd": fd, "kind": "path", "target": chan[1]} | _who(h, None))
        elif kind == "unix":
            unix = {"fd": fd, "kind": "unix", "target": chan[1], "inode": chan[2]}
            out.append(base | empty | unix | _who(h, None))
        else:
            pipe = h.pipes[chan[1]]
            mode = next(m for q, f, m in pipe.ends if q == p.pid and f == fd)
            common = {"fd": fd, "kind": kind, "target": "", "inode": pipe.inode, "mode": mode}
            partners = h.partners(pipe.inode, p.pid, fd)
            for q, f, _ in partners or [(None, None, "")]:
                out.append(base | common | {"partner_pid": q, "partner_fd": f} | _who(h, q))
            if pipe.path and fd <= 1:  # process_open_files shows the FIFO's path too
                out.append(
                    base | empty | {"fd": fd, "kind": "path", "target": pipe.path} | _who(h, None)
                )
    return [_row(r) for r in out]


def _who(h: Host, pid: int | None) -> dict[str, Any]:
    q = h.procs.get(pid) if pid is not None else None
    return {"partner_name": q.name if q else None, "partner_path": q.path if q else None}


def _pipe_partners(h: Host, p: Proc) -> list[bytes]:
    out = []
    for inode, fd, mode in h.pipe_ends(p):
        pipe = h.pipes[inode]
        for q, f, m in h.partners(inode, p.pid, fd) or [(None, None, None)]:
            if q == p.pid:
                continue
            partner = h.procs.get(q) if q is not None else None
            out.append(
                {
                    "pid": p.pid,
                    "name": p.name,
                    "path": p.path,
                    "start_time": p.start_time,
                    "fd": fd,
                    "mode": mode,
                    "inode": inode,
                    "type": "named" if pipe.path else "anonymous",
                    "partner_pid": q,
                    "partner_name": partner.name if partner else None,
                    "partner_path": partner.path if partner else None,
                    "partner_start_time": partner.start_time if partner else None,
                    "partner_fd": f,
                    "partner_mode": m,
                }
            )
    return [_row(r) for r in out]


def _unix_sockets(h: Host, p: Proc) -> list[bytes]:
    paths = {c[1] for c in p.stdio if c[0] == "unix"}
    paths.update(path for _, path, _ in p.sockets)
    paths.update(path for _, path, _ in p.listens)
    who = {
        "pid": p.pid,
        "name": p.name,
        "process_path": p.path,
        "cmdline": p.cmdline,
        "uid": p.uid,
        "start_time": p.start_time,
    }
    return [_row(who | {"path": path, "state": ""}) for path in sorted(paths)]


def _unix_listeners(h: Host, p: Proc) -> list[bytes]:
    who = {"pid": p.pid, "name": p.name, "process_path": p.path, "cmdline": p.cmdline, "uid": p.uid}
    return [_row(who | {"path": path, "fd": fd, "socket": inode}) for fd, path, inode in p.listens]


def _named_fifos(h: Host, p: Proc) -> list[bytes]:
    who = {"pid": p.pid, "name": p.name, "process_path": p.path, "cmdline": p.cmdline, "uid": p.uid}
    out = []
    for inode, fd, mode in h.pipe_ends(p):
        pipe = h.pipes[inode]
        if not pipe.path:
            continue
        for q, _, _ in h.partners(inode, p.pid, fd) or [(None, None, "")]:
            partner = h.procs.get(q) if q is not None else None
            out.append(
                who
                | {
                    "path": pipe.path,
                    "fd": fd,
                    "mode": mode,
                    "inode": inode,
                    "partner_pid": q,
                    "partner_name": partner.name if partner else None,
                }
            )
    return [_row(r) for r in out]


def _logged_in(h: Host, session: tuple[str, str, str, int, int]) -> bytes:
    user, tty, remote, started, pid = session
    p = h.procs.get(pid)
    return _row(
        {
            "type": "user",
            "user": user,
            "tty": tty,
            "host": remote,
            "time": started,
            "pid": pid,
            "name": p.name if p else None,
            "path": p.path if p else None,
            "cmdline": p.cmdline if p else None,
        }
    )


GENERATORS: dict[str, Callable[[Host, Proc], list[bytes]]] = {
    "process_lineage": _lineage,
    "stdio_channels": _stdio,
    "pipe_partners": _pipe_partners,
    "unix_sockets": _unix_sockets,
    "unix_listeners": _unix_listeners,
    "named_fifos": _named_fifos,
}
MODELLED = frozenset(COLUMNS)


# -- osqueryd's side of a query run ----------------------------------------------------


@dataclass
class QueryState:
    """What osqueryd keeps per scheduled query: the previous rows (a multiset) and the
    counter."""

    previous: Counter[bytes] | None = None
    counter: int = 0


def _prefix(header: Header) -> bytes:
    """The common keys of a line, serialised once, without the closing brace."""
    return orjson.dumps(header.fields())[:-1] + b","


def run_lines(
    host: Host,
    name: str,
    query: str,
    sql: str,
    snapshot: bool,
    removed: bool,
    state: QueryState,
    unix_time: int,
) -> tuple[list[bytes], int]:
    """osqueryd's lines for one run of a scheduled query (``protocol.md`` section 2) and
    how many rows they carry. Queries the host model does not know return no rows (the
    pack's hunts find nothing on a benign host)."""
    rows = host.rows(query) if query in MODELLED else []
    decorations = {"host_uuid": host.uuid, "hostname": host.identifier}

    def prefix(counter: int) -> bytes:
        return _prefix(Header(name, host.identifier, unix_time, 0, counter, False, decorations))

    if snapshot:
        body = b'"snapshot":[' + b",".join(rows) + b'],"action":"snapshot"}'
        return [prefix(0) + body], len(rows)
    if is_event_query(sql):  # events since the last run, all added; epochs start at 1
        if not rows:
            return [], 0
        state.counter += 1
        head = prefix(state.counter)
        return [head + b'"columns":' + r + b',"action":"added"}' for r in rows], len(rows)
    current = Counter(rows)
    if state.previous is None:  # a new epoch: every row added under counter 0
        added, gone = list(current.elements()), []
        state.counter = 0
    else:
        added = list((current - state.previous).elements())
        gone = list((state.previous - current).elements()) if removed else []
        if not added and not gone:
            state.previous = current
            return [], 0
        state.counter += 1
    state.previous = current
    head = prefix(state.counter)
    lines = [head + b'"columns":' + r + b',"action":"removed"}' for r in gone]
    lines += [head + b'"columns":' + r + b',"action":"added"}' for r in added]
    return lines, len(lines)


def host_details(host: Host, started: int) -> dict[str, Any]:
    """The enroll request's ``host_details``: the first row of each table osqueryd reads
    (``osquery/remote/enroll/enroll.cpp``), every value a string."""
    rng = random.Random(host.uuid)
    cores = str(rng.choice((2, 4, 8, 16)))
    return {
        "os_version": {
            "name": "Ubuntu",
            "version": "24.04.1 LTS (Noble Numbat)",
            "major": "24",
            "minor": "4",
            "patch": "0",
            "build": "",
            "platform": "ubuntu",
            "platform_like": "debian",
            "codename": "noble",
            "arch": "x86_64",
        },
        "osquery_info": {
            "pid": str(rng.randrange(500, 5000)),
            "uuid": host.uuid,
            "instance_id": _guid(rng),
            "version": "5.23.0",
            "config_hash": "",
            "config_valid": "0",
            "extensions": "inactive",
            "build_platform": "ubuntu",
            "build_distro": "centos7",
            "start_time": str(started),
            "watcher": str(rng.randrange(400, 500)),
            "platform_mask": "9",
        },
        "system_info": {
            "hostname": host.identifier,
            "uuid": host.uuid,
            "cpu_type": "x86_64",
            "cpu_subtype": "143",
            "cpu_brand": "Intel(R) Xeon(R) Platinum 8488C",
            "cpu_physical_cores": cores,
            "cpu_logical_cores": cores,
            "cpu_sockets": "1",
            "cpu_microcode": "0x2b000603",
            "physical_memory": str(int(cores) * 4 * 1024**3),
            "hardware_vendor": "Amazon EC2",
            "hardware_model": "m7i.xlarge",
            "hardware_version": "",
            "hardware_serial": f"ec2{rng.randrange(16**13):013x}",
            "board_vendor": "Amazon EC2",
            "board_model": "",
            "board_version": "",
            "board_serial": "",
            "computer_name": host.identifier,
            "local_hostname": host.identifier,
        },
        "platform_info": {
            "vendor": "Amazon EC2",
            "version": "1.0",
            "date": "10/16/2017",
            "revision": "1.0",
            "extra": "",
            "firmware_type": "uefi",
            "address": "0xe8000",
            "size": "65536",
            "volume_size": "0",
        },
    }


# -- what a host runs (bench/fleet_hosts.json: services, pools, containers, tools) ------

CATALOG: dict[str, Any] = json.loads(Path(__file__).with_name("fleet_hosts.json").read_text())
WORDS: list[str] = CATALOG["words"]
USERS: list[str] = CATALOG["users"]
TOOLS: list[list[str]] = CATALOG["tools"]
CRON_JOBS: list[str] = CATALOG["cron_jobs"]
SERVICES: list[list[Any]] = CATALOG["services"]
LISTENERS: dict[str, list[list[Any]]] = CATALOG["listeners"]
CLIENT_SOCKETS: dict[str, list[list[Any]]] = CATALOG["client_sockets"]
CONTAINERS: list[list[Any]] = CATALOG["containers"]


def _pool(
    name: str,
    path: str,
    cmdline: str,
    *,
    master_cmd: str,
    size: tuple[int, int],
    uid: int,
    unit: str,
    listen: str | None = None,
    connect: str | None = None,
) -> Callable[[Host, float], None]:
    """A master under systemd with ``size`` workers that churn replaces one by one."""

    def build(h: Host, now: float) -> None:
        master = h.spawn(
            1,
            name,
            path,
            master_cmd,
            started=h.boot + h.rng.randrange(20, 90),
            cgroup=f"/system.slice/{unit}.service",
        )
        if listen:
            master.listens.append((6, listen, h.inode()))
        counter = iter(range(1, 10**9))

        def worker(started: int, reuse: bool) -> Proc:
            w = h.spawn(
                master.pid,
                name,
                path,
                cmdline.format(n=next(counter), r=h.rng.randrange(1 << 16)),
                uid=uid,
                started=started,
                stdio="inherit",
                role=unit,
                pid=h.pid(reuse),
                exec_event=True,
            )
            if listen:
                w.listens.append((6, listen, master.listens[0][2]))
            if connect:
                w.sockets.append((9, connect, h.inode()))
            return w

        h.pools[unit] = worker
        for _ in range(h.rng.randrange(*size)):
            worker(int(now) - h.rng.randrange(60, 86_400), False)

    return build


def _containers(h: Host, now: float) -> None:
    """Containers: a shim per container, its workload's stdio on pipes to the shim."""
    for c in range(h.rng.randrange(10, 20)):
        cid = f"{h.rng.randrange(16**12):012x}"
        started = int(now) - h.rng.randrange(600, 10**6)
        shim = h.spawn(
            1,
            "containerd-shim",
            "/usr/bin/containerd-shim-runc-v2",
            f"/usr/bin/containerd-shim-runc-v2 -namespace moby -id {cid}{'0' * 52}"
            " -address /run/containerd/containerd.sock",
            started=started,
            stdio="null",
            cgroup="/system.slice/containerd.service",
        )
        shim.sockets.append((10, "/run/containerd/containerd.sock.ttrpc", h.inode()))
        name, path, cmd, extra = CONTAINERS[c % len(CONTAINERS)]
        app = h.spawn(
            shim.pid,
            name,
            path,
            cmd,
            uid=1000,
            started=started + 1,
            stdio="null",
            cgroup=f"/system.slice/docker-{cid}.scope",
        )
        for fd in (1, 2):
            h.pipe(app, fd, shim, 10 + fd)
        for n in range(extra):
            h.spawn(
                app.pid,
                name,
                path,
                f"{cmd} worker {n}",
                uid=1000,
                started=started + 2,
                stdio="inherit",
            )


POOLS: tuple[Callable[[Host, float], None], ...] = (
    *(_pool(**spec) for spec in CATALOG["pools"]),
    _containers,
)


# -- osqueryd around a host -------------------------------------------------------------


@dataclass
class Line:
    """One buffered result line: its bytes, whether it is a snapshot, its rows, the
    canaries whose rows it carries (by query), and whether it belongs to a differential
    query's baseline (counter 0: every current row added)."""

    data: bytes
    snapshot: bool
    rows: int
    query: str
    canaries: tuple[Canary, ...] = ()
    baseline: bool = False

    @property
    def kind(self) -> str:
        """snapshot, baseline or differential."""
        return "snapshot" if self.snapshot else "baseline" if self.baseline else "differential"


# osqueryd's logger flags as ``fleetctl serve`` prints them: at most this many result
# lines per log request, buffered lines sent every this many seconds.
MAX_LINES = 1024  # --logger_tls_max_lines
LOGGER_PERIOD = 4  # --logger_tls_period

CANARY_QUERIES = ("process_lineage", "stdio_channels")
# Queries whose first run after a canary starts carries its rows: any of them may be the
# post that lets the server find it (the FIFO's writer named by ``pipe_partners`` before
# the shell's stdio row arrives, say).
EVIDENCE_QUERIES = (*CANARY_QUERIES, "pipe_partners", "named_fifos", "process_exec_events")


class Agent:
    """osqueryd's state for one simulated host: node key, schedule (from the server's
    config, as ``fleetctl.agent.config`` filters it for a Linux host without the fleetctl
    extension, so packs with discovery stay inactive), splayed intervals and each
    differential query's previous rows."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.node_key = ""
        self.config_hash = ""
        self.schedule: list[tuple[ScheduledQuery, str, int]] = []  # query, short name, splayed
        self.states: dict[str, QueryState] = {}
        self.started = int(host.boot)

    def enroll_body(self, secret: str, started: int) -> bytes:
        return orjson.dumps(
            {
                "enroll_secret": secret,
                "host_identifier": self.host.identifier,
                "platform_type": "9",
                "host_details": host_details(self.host, started),
            }
        )

    def keyed(self, extra: dict[str, Any] | None = None) -> bytes:
        return orjson.dumps({"node_key": self.node_key, **(extra or {})})

    def configure(self, doc: dict[str, Any]) -> bool:
        """Take a config; False when it is the one in force (osqueryd: a no-op)."""
        config = parse_config(doc)
        if config.hash == self.config_hash:
            return False
        self.config_hash = config.hash
        facts = HostFacts("5.23.0", machine_shard(self.host.identifier))
        delimiter = str(config.options.get("pack_delimiter", "_"))
        queries = scheduled_queries(config, facts, Discovery(lambda sql: 0), delimiter=delimiter)
        old = {q.name: (q.interval, splayed) for q, _, splayed in self.schedule}
        self.schedule = []
        for q in queries:
            short = q.name.removeprefix(f"pack{delimiter}{q.pack}{delimiter}") if q.pack else q.name
            kept = old.get(q.name)
            splayed = (
                kept[1]
                if kept and kept[0] == q.interval
                else splay_value(q.interval, 10, self.host.rng)
            )
            self.schedule.append((q, short, splayed))
        return True

    def due(self, previous: float, now: float) -> list[tuple[ScheduledQuery, str, int]]:
        """The scheduled queries whose splayed interval passed a multiple between
        ``previous`` and ``now`` (osqueryd's scheduler, in whatever clock the caller keeps)."""
        return [
            item
            for item in self.schedule
            if math.floor(now / item[2]) > math.floor(previous / item[2])
        ]

    def run(self, due: Iterable[tuple[ScheduledQuery, str, int]], unix_time: int) -> list[Line]:
        """The lines of the due queries' runs, in schedule order."""
        out = []
        for q, short, _ in due:
            state = self.states.setdefault(q.name, QueryState())
            baseline = not q.snapshot and state.previous is None and not is_event_query(q.query)
            data, rows = run_lines(
                self.host, q.name, short, q.query, q.snapshot, q.removed, state, unix_time
            )
            tagged: tuple[Canary, ...] = ()
            if short in EVIDENCE_QUERIES:
                alive = self.host.procs
                tagged = tuple(
                    c for c in self.host.canaries if short not in c.posted and c.pid in alive
                )
            for i, d in enumerate(data):
                out.append(
                    Line(
                        d,
                        q.snapshot,
                        1 if not q.snapshot else rows,
                        short,
                        tagged if i == 0 else (),
                        baseline,
                    )
                )
        return out

    def log_body(self, lines: Iterable[Line]) -> bytes:
        key = orjson.dumps(self.node_key)
        return (
            b'{"node_key":'
            + key
            + b',"log_type":"result","data":['
            + b",".join(ln.data for ln in lines)
            + b"]}"
        )
