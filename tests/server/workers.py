"""``fleetctl serve --workers N`` as real processes, and clients pinned to one worker each.

A keep-alive connection stays with the worker that accepted it: which one that is, is
read from ``/proc`` (the worker whose descriptors hold the server end of the client's
TCP connection), so a test can send one request through one worker and the next
through another.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from fleetctl.cli.client import ssl_context
from storage.engine import make_engine
from tests.fault.server import ServeProcess
from tests.osquery_node import OsqueryNode

STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


class WorkerServer(ServeProcess):
    """``fleetctl serve --workers N [--detection-processes M] -v`` in its own process
    group of processes; the judge processes' indexes follow the workers'."""

    def __init__(self, db_url: str, workers: int = 2, judge_processes: int = 0) -> None:
        self.clients: list[httpx.Client] = []
        judging = ("--detection-processes", str(judge_processes))
        super().__init__(db_url, "--workers", str(workers), *judging, "-v")
        self.count = workers
        self.judges = judge_processes
        self.wait_workers()

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        super().stop()

    def workers(self) -> dict[int, int]:
        """worker index -> pid of its live process (the latest start of each index)."""
        latest: dict[int, int] = {}
        for index, pid in STARTED.findall(self.log_text()):
            latest[int(index)] = int(pid)
        return {i: p for i, p in latest.items() if Path(f"/proc/{p}").exists()}

    def wait_workers(self, timeout: float = 30) -> dict[int, int]:
        """Every worker and judge process started, and every detection slot held."""
        deadline = time.monotonic() + timeout
        while True:
            workers = self.workers()
            slots = set(re.findall(r"judging detection slot (\d+) of", self.log_text()))
            if len(workers) == self.count + self.judges and len(slots) == (
                self.judges or self.count
            ):
                return workers
            assert time.monotonic() < deadline, self.log_text()
            time.sleep(0.1)

    def ca_context(self) -> Any:
        return ssl_context(self.ca)

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = make_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params).all())
        finally:
            engine.dispose()

    def pinned_nodes(self, identifier: str, uuid: str) -> dict[int, OsqueryNode]:
        """worker index -> an osquery client whose connection that worker serves."""
        found: dict[int, OsqueryNode] = {}
        spare: list[OsqueryNode] = []
        for _ in range(200):
            node = OsqueryNode(self.url, self.ca, self.secret, identifier, uuid)
            self.clients.append(node.http)
            index = self.serving(node.http)
            if index not in found:
                found[index] = node
            else:
                spare.append(node)  # kept open, so the next connection may go elsewhere
            if len(found) == self.count:
                break
        for node in spare:
            node.http.close()
        assert len(found) == self.count, f"connections reached only workers {sorted(found)}"
        return found

    def pinned_admins(self) -> dict[int, httpx.Client]:
        """worker index -> an admin API client whose connection that worker serves."""
        found: dict[int, httpx.Client] = {}
        spare: list[httpx.Client] = []
        for _ in range(200):
            client = self.admin()
            self.clients.append(client)
            index = self.serving(client)
            if index not in found:
                found[index] = client
            else:
                spare.append(client)
            if len(found) == self.count:
                break
        for client in spare:
            client.close()
        assert len(found) == self.count, f"connections reached only workers {sorted(found)}"
        return found

    def serving(self, client: httpx.Client) -> int:
        """The index of the worker serving ``client``'s (keep-alive) connection."""
        response = client.get("/healthz")
        sock = response.extensions["network_stream"].get_extra_info("socket")
        client_port = sock.getsockname()[1]
        inode = server_end(self.port, client_port)
        for index, pid in self.workers().items():
            if f"socket:[{inode}]" in descriptors(pid):
                return index
        raise AssertionError(f"no worker holds the connection from port {client_port}")


def server_end(server_port: int, client_port: int) -> str:
    """The socket inode of the server end of a loopback TCP connection."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return inode
    raise AssertionError(f"no connection {client_port} -> {server_port} in /proc/net/tcp")


def descriptors(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.add(os.readlink(fd))
        except OSError:
            continue
    return out
