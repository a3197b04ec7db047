"""A simulated osqueryd that reports a process tree as the shipped packs' snapshots, and
the processes that tests put in it (FIFO-fed shells, in osquery's strings)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tests.conftest import RunningServer
from tests.detection.rows import BASE, BASE_STDIO, Row, proc, stdio

LINEAGE = "pack_ipc-telemetry_process_lineage"
STDIO = "pack_ipc-telemetry-extension_process_stdio"
T = TypeVar("T")


class ReportingHost:
    """An enrolled host whose every ``report`` is one collection of lineage and stdio."""

    def __init__(self, server: RunningServer, identifier: str = "jumpvm") -> None:
        self.node = server.node(identifier, f"uuid-{identifier}")
        self.node.enroll()
        self.identifier = identifier
        self.counter = 0
        self.last = 0

    def report(self, processes: Sequence[Row] = (), channels: Sequence[Row] = ()) -> None:
        """The base tree (systemd, sshd, a bash on a pty, a python app) plus these.

        Each report has a second of its own, as osqueryd's runs do: the store takes
        snapshot lines of one second for parts of one run, which close nothing."""
        while int(time.time()) <= self.last:
            time.sleep(0.05)
        now = self.last = int(time.time())
        self.node.log(
            "result",
            [
                self._snapshot(LINEAGE, [*BASE, *processes], now),
                self._snapshot(STDIO, [*BASE_STDIO, *channels], now),
            ],
        )
        self.counter += 1

    def _snapshot(self, name: str, rows: list[Row], now: int) -> dict[str, Any]:
        return {
            "name": name,
            "hostIdentifier": self.identifier,
            "unixTime": now,
            "epoch": 0,
            "counter": self.counter,
            "numerics": False,
            "action": "snapshot",
            "snapshot": rows,
        }


def fifo_shell(
    pid: int, start: int, fifo: str, *, interactive: bool = False
) -> tuple[list[Row], list[Row]]:
    """A shell under the python app whose stdin is the named FIFO ``fifo`` (the same
    path key whatever the FIFO, the pid or the flags): ``sh`` reading a FIFO outside
    /tmp scores medium, in /dev/shm high, and ``sh -i`` there critical."""
    cmdline = "sh -i" if interactive else "sh"
    processes = [proc(pid, 700, "/usr/bin/dash", cmdline, uid=33, start=start)]
    channels = [
        stdio(pid, 0, "fifo", fifo, mode="r", start=start),
        *(stdio(pid, fd, "file", "/srv/q/out", mode="w", start=start) for fd in (1, 2)),
    ]
    return processes, channels


def wait_for(read: Callable[[], T], test: Callable[[T], bool], timeout: float = 15) -> T:
    """``read()`` until ``test`` holds of its value (detection runs just after a report)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if test(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value: {value!r}")
        time.sleep(0.1)
