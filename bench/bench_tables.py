"""Time and peak memory of the /proc tables against a bare read of the same data.

    .venv/bin/python bench/bench_tables.py [--extra 2000] [--repeat 5]

For each of processes, process_open_pipes, process_open_sockets and process_stdio
(each alone, with a fresh Scan) and for one collection of all four sharing a Scan (what
a query joining them costs), the median wall time over ``--repeat`` runs is compared
with a *raw scan*: the same kernel reads done as plainly as Python can, with no parsing
and no joins:

* per-process files (processes): read stat, status, cmdline, io, cgroup; readlink exe,
  cwd, root;
* descriptors (all fd tables): list /proc/<pid>/fd and readlink every entry, relative to
  an open directory descriptor;
* sockets: readlink /proc/<pid>/ns/net, and read /proc/<pid>/net/{icmp,tcp,udp,udplite,
  raw}[6], unix and packet once per network namespace;
* unix peers (process_stdio): one sock_diag unix dump received, not decoded.

Peak memory is tracemalloc's peak of Python allocations during a separate run. The
measurement runs at the machine's process count, then again after spawning ``--extra``
sleeping processes in pairs joined by a pipe (fd 1 -> fd 0) and a unix socketpair
(fd 3 each); they are killed by pid at the end, also on Ctrl-C. Target: ratio <= 3.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetctl.tables import TABLES, Scan, _proc

TARGET_RATIO = 3.0
TABLE_NAMES = ("processes", "process_open_pipes", "process_open_sockets", "process_stdio")
PID_FILES = ("stat", "status", "cmdline", "io", "cgroup")
PID_LINKS = ("exe", "cwd", "root")
NET_FILES = (
    *(
        f"{stem}{suffix}"
        for stem in ("icmp", "tcp", "udp", "udplite", "raw")
        for suffix in ("", "6")
    ),
    "unix",
    "packet",
)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


# ----------------------------------------------------------------------------- raw scan


def _read(path: str, to_eof: bool) -> int:
    """Bytes of a file; per-process files are complete after one short read, as the
    tables read them, /proc/net files are read to EOF."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    total = 0
    try:
        while chunk := os.read(fd, 65536):
            total += len(chunk)
            if not to_eof and len(chunk) < 65536:
                break
    except OSError:
        pass
    finally:
        os.close(fd)
    return total


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def raw_pid_files(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        base = f"/proc/{pid}/"
        for name in PID_FILES:
            total += _read(base + name, to_eof=False)
        for name in PID_LINKS:
            total += len(_readlink(base + name))
    return total


def raw_fds(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            dir_fd = os.open(f"/proc/{pid}/fd", DIR_FLAGS)
        except OSError:
            continue
        try:
            for name in os.listdir(dir_fd):
                with contextlib.suppress(OSError):
                    total += len(os.readlink(name, dir_fd=dir_fd))
        except OSError:
            pass
        finally:
            os.close(dir_fd)
    return total


def raw_net(pids: list[int]) -> int:
    seen: set[str] = set()
    total = 0
    for pid in pids:
        ns = _readlink(f"/proc/{pid}/ns/net")
        if ns and ns not in seen:
            seen.add(ns)
            for name in NET_FILES:
                total += _read(f"/proc/{pid}/net/{name}", to_eof=True)
    return total


def raw_unix_diag() -> int:
    """One SOCK_DIAG_BY_FAMILY unix dump (name + peer), bytes received only."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)  # NETLINK_SOCK_DIAG
    try:
        body = struct.pack("=BBHIIIQ", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, 0x1 | 0x4, 0)
        sock.send(struct.pack("=IHHII", 16 + len(body), 20, 0x1 | 0x300, 1, 0) + body)
        total = 0
        while True:
            data = sock.recv(1 << 20)
            total += len(data)
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type = struct.unpack_from("=IH", data, offset)
                if msg_type in (2, 3) or length < 16:  # NLMSG_ERROR, NLMSG_DONE
                    return total
                offset += (length + 3) & ~3
    finally:
        sock.close()


RAW_PARTS: dict[str, tuple[str, ...]] = {
    "processes": ("pid_files",),
    "process_open_pipes": ("fds",),
    "process_open_sockets": ("fds", "net"),
    "process_stdio": ("fds", "net", "diag"),
    "collection": ("pid_files", "fds", "net", "diag"),
}


def raw_scan(parts: tuple[str, ...]) -> int:
    pids = _proc.list_pids()
    total = 0
    for part in parts:
        if part == "pid_files":
            total += raw_pid_files(pids)
        elif part == "fds":
            total += raw_fds(pids)
        elif part == "net":
            total += raw_net(pids)
        elif part == "diag":
            total += raw_unix_diag()
    return total


# ----------------------------------------------------------------------------- tables


def run_table(name: str) -> int:
    return len(TABLES[name].rows({}, Scan()))


def run_collection() -> int:
    scan = Scan()
    return sum(len(TABLES[name].generate({}, scan)) for name in TABLE_NAMES)


# ----------------------------------------------------------------------------- measure


@dataclass
class Line:
    """One table (or the collection) against its raw scan."""

    name: str
    rows: int
    table_seconds: float
    raw_seconds: float
    table_peak: int
    raw_peak: int

    @property
    def ratio(self) -> float:
        return self.table_seconds / self.raw_seconds if self.raw_seconds else float("inf")


def _timed(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _peak(fn: Callable[[], int]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def compare(name: str, table: Callable[[], int], raw: Callable[[], int], repeat: int) -> Line:
    """Median times of ``repeat`` alternating runs (raw, table, raw, table, ...), so drift
    on a busy machine hits both sides alike; then one traced run of each for memory."""
    rows = table()
    raw()
    table_times, raw_times = [], []
    for _ in range(repeat):
        raw_times.append(_timed(raw))
        table_times.append(_timed(table))
    return Line(
        name,
        rows,
        statistics.median(table_times),
        statistics.median(raw_times),
        _peak(table),
        _peak(raw),
    )


def run_round(repeat: int) -> list[Line]:
    lines = []
    for name in (*TABLE_NAMES, "collection"):
        parts = RAW_PARTS[name]
        table = run_collection if name == "collection" else partial(run_table, name)
        lines.append(compare(name, table, partial(raw_scan, parts), repeat))
    return lines


# ----------------------------------------------------------------------------- load


class SleepingPairs:
    """``count`` sleep processes in pairs: pipe A:1 -> B:0 and a socketpair at fd 3."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pids: list[int] = []
        self.sleep = shutil.which("sleep") or "/bin/sleep"

    def _spawn(self, actions: list[tuple[object, ...]]) -> None:
        pid = os.posix_spawn(self.sleep, ["sleep", "600"], os.environ, file_actions=actions)
        self.pids.append(pid)

    def start(self) -> None:
        null = os.O_RDWR
        for _ in range(self.count // 2):
            r, w = os.pipe()
            a, b = socket.socketpair()
            try:
                self._spawn(
                    [
                        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", null, 0),
                        (os.POSIX_SPAWN_DUP2, w, 1),
                        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", null, 0),
                        (os.POSIX_SPAWN_DUP2, a.fileno(), 3),
                    ]
                )
                self._spawn(
                    [
                        (os.POSIX_SPAWN_DUP2, r, 0),
                        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", null, 0),
                        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", null, 0),
                        (os.POSIX_SPAWN_DUP2, b.fileno(), 3),
                    ]
                )
            finally:
                os.close(r)
                os.close(w)
                a.close()
                b.close()

    def stop(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pids.clear()


# ----------------------------------------------------------------------------- report


def report(title: str, process_count: int, lines: list[Line]) -> bool:
    print(f"\n{title}: {process_count} processes")
    header = (
        f"{'':22} {'rows':>7} {'table ms':>9} {'raw ms':>8} {'ratio':>6} "
        f"{'table peak KiB':>15} {'raw peak KiB':>13}  target"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for line in lines:
        passed = line.ratio <= TARGET_RATIO
        ok = ok and passed
        print(
            f"{line.name:22} {line.rows:7d} {line.table_seconds * 1000:9.1f} "
            f"{line.raw_seconds * 1000:8.1f} {line.ratio:6.2f} "
            f"{line.table_peak / 1024:15.0f} {line.raw_peak / 1024:13.0f}  "
            f"{'ok' if passed else 'OVER'} (<= {TARGET_RATIO:g}x)"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--extra", type=int, default=2000, help="sleeping processes to add for the second round"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement")
    args = parser.parse_args()

    base_count = len(_proc.list_pids())
    ok = report("Machine as is", base_count, run_round(args.repeat))

    load = SleepingPairs(args.extra)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        started = time.perf_counter()
        load.start()
        spawn_seconds = time.perf_counter() - started
        print(f"\nspawned {len(load.pids)} sleeping processes in {spawn_seconds:.1f}s")
        ok = (
            report(
                f"With {len(load.pids)} extra processes",
                len(_proc.list_pids()),
                run_round(args.repeat),
            )
            and ok
        )
    finally:
        load.stop()
        signal.signal(signal.SIGTERM, previous)
    print("\nall within target" if ok else "\nsome measurements are over the target")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
