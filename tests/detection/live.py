"""Real rows from this machine: the shipped Linux pack SQL run by the embedded engine,
and real processes (loopback only) to run it against.

``collect(engine, extension=True)`` runs every Linux query of ``packs/ipc-telemetry.json``
(and, with ``extension``, ``packs/ipc-telemetry-extension.json``) and returns the rows as
osquery logs them (strings). ``Procs`` starts processes and stops them by recorded pid:
descendants first, each by its own pid, so every parent can reap its children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from fleetctl.detection import ExecutionPath, HostSnapshot, build_paths
from fleetctl.engine import Engine, QueryError, string_rows
from fleetctl.packs.loader import load_file, shipped_packs_dir

STOCK_PACK = "ipc-telemetry.json"
EXTENSION_PACK = "ipc-telemetry-extension.json"


def pack_queries(extension: bool) -> dict[str, str]:
    """Linux query SQL by query name from the shipped packs."""
    names = [STOCK_PACK] + ([EXTENSION_PACK] if extension else [])
    out: dict[str, str] = {}
    for name in names:
        for pack in load_file(shipped_packs_dir() / name):
            for query in pack.queries:
                platform = query.platform or pack.platform or "all"
                if any(p in platform for p in ("linux", "posix", "all")):
                    out[query.name] = query.query
    return out


def collect(engine: Engine, *, extension: bool = True) -> dict[str, list[dict[str, str]]]:
    """Rows of every pack query this engine can answer (event tables it lacks are skipped)."""
    results: dict[str, list[dict[str, str]]] = {}
    for name, sql in pack_queries(extension).items():
        try:
            found = engine.query(sql)
        except QueryError as error:
            if "no such table" in error.message:
                continue
            raise
        results[name] = string_rows(found.rows, found.columns)
    return results


def snapshot(engine: Engine, *, host: str = "testhost", extension: bool = True) -> HostSnapshot:
    return HostSnapshot.from_results(
        host, collect(engine, extension=extension), platform="linux", observed_at=time.time()
    )


def path_for(snap: HostSnapshot, pid: int) -> ExecutionPath:
    """The execution path of ``pid``, or an error that shows what the snapshot knew."""
    for path in build_paths(snap):
        if path.child.pid == pid:
            return path
    raise AssertionError(
        f"no path for pid {pid}: process {snap.processes.get(pid)}, "
        f"stdio {snap.stdio.get(pid)}, stale rows {snap.stale_rows}, "
        f"comm now {comm(pid)!r}"
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc/<pid>/stat."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            found[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return found


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid``, each after its own descendants (deepest first)."""
    table = parents()
    kids: dict[int, list[int]] = {}
    for child, parent in table.items():
        kids.setdefault(parent, []).append(child)
    order: list[int] = []

    def walk(p: int) -> None:
        for child in sorted(kids.get(p, [])):
            walk(child)
            order.append(child)

    walk(pid)
    return order


def started(pid: int) -> int:
    """Start time of a process in clock ticks (-1 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def arguments(pid: int) -> list[str]:
    """The process's arguments after argv[0] (empty once it has gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[1:]
    except OSError:
        return []


def find(root: int, name: str, argument: str = "") -> int:
    """A descendant of ``root`` with comm ``name`` and ``argument`` as one of its arguments;
    the topmost one, not a subshell it forked (``bash -li`` forks while reading its profile).

    The argument is matched whole: a shell forked by ``sh -c 'cat f | sh -i | nc'`` is
    still called ``sh`` with that whole command line until it execs ``nc``, and a
    substring match would take it for the ``sh -i``."""
    found: list[int] = []

    def look() -> bool:
        found[:] = [
            p
            for p in reversed(descendants(root))  # parents before children
            if comm(p) == name and (not argument or argument in arguments(p))
        ]
        return bool(found)

    wait_until(look, what=f"{name} {argument!r} under {root}")
    return found[0]


def parent_of(pid: int) -> int:
    return parents()[pid]


def fd_target(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return ""


class Procs:
    """Processes a test started, stopped by recorded pid (descendants first)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.adopted: list[tuple[int, int]] = []
        self.stop_commands: list[list[str]] = []

    def adopt(self, pids: list[int], stop_command: list[str] | None = None) -> None:
        """Record daemons that left our tree (tmux); ``stop_command`` asks them to exit."""
        self.adopted += [(pid, started(pid)) for pid in pids]
        if stop_command:
            self.stop_commands.append(stop_command)

    def spawn(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for command in self.stop_commands:
            subprocess.run(
                command,
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
            )
        # A daemon pid is only ours while it has the start time we recorded.
        alive = [pid for pid, start in self.adopted if started(pid) == start]
        recorded = [d for pid in alive for d in descendants(pid)] + alive
        recorded += [d for proc in self.started for d in descendants(proc.pid)]
        for pid in recorded:  # deepest first, so each parent can reap its children
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        for proc in self.started:
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
