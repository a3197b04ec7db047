"""A fleet of one for the browser tests: a real server on SQLite, the shipped packs, a
real embedded agent on this host whose identifier and hostname are hostile HTML, a
FIFO-fed shell (named with HTML, running a command line with script) and a shell that
socat serves on a unix socket named with HTML, which detection turns into findings."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.agent import Agent, AgentOptions
from fleetctl.agent.engines import EmbeddedEngine
from fleetctl.cli.local import shipped_pack_payload
from fleetctl.validate.scenarios import wait_unix_listening
from tests.conftest import RunningServer
from tests.detection import live

# Each would set window.pwned if a page parsed it as HTML instead of showing it as text.
HOSTILE_HOST = "<img src=x onerror=window.pwned=1>host"
HOSTILE_FIFO = "<img src=x onerror=window.pwned=2>"
HOSTILE_ARG = "<script>window.pwned=3</script>"
HOSTILE_HOSTNAME = "<svg onload=window.pwned=4>"  # at most 64 bytes, as the kernel keeps
HOSTILE_SOCKET = "<img src=x onerror=window.pwned=5>.sock"

CLONE_NEWUTS = 0x04000000


def named_hostile() -> None:
    """Give the calling thread a UTS namespace of its own named ``HOSTILE_HOSTNAME``: the
    agent's ``system_info`` reads the kernel's host name, so an agent run in this thread
    reports what a host of that name would, and the rest of the machine keeps its own."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUTS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
    socket.sethostname(HOSTILE_HOSTNAME)


@dataclass
class Fleet:
    server: RunningServer
    agent: Agent
    admin: Any
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def collect(self) -> None:
        """One collection cycle, in a thread of its own: Playwright's sync API keeps an
        event loop running in the test's thread, and the agent's engine runs its own. The
        thread is named ``HOSTILE_HOSTNAME`` (``named_hostile``), so the host enrolls so."""
        with ThreadPoolExecutor(1, initializer=named_hostile) as pool:
            assert pool.submit(self.agent.run_once, timeout=60).result()
        time.sleep(0.6)  # the detection worker settles 0.3 s after the batch

    def start_fifo_shell(self) -> int:
        """``sh <>FIFO``, fed a command whose child's command line holds a script tag;
        returned once that child runs, so the next collection sees it."""
        fifo = self.workdir / HOSTILE_FIFO
        os.mkfifo(fifo)
        shell = self.spawn(["sh", "-c", 'exec sh <>"$1" >/dev/null 2>&1', "sh", str(fifo)])
        with open(fifo, "w") as channel:
            # It lives until ``stop``: under xdist a module's tests run between other
            # modules' tests, so the module's fleet may last longer than any set sleep.
            channel.write(f"sh -c 'sleep 86400' '{HOSTILE_ARG}'\n")
        live.find(shell.pid, "sh", HOSTILE_ARG)
        return shell.pid

    def start_socket_shell(self) -> int:
        """socat serving a shell on a unix socket whose path holds HTML, and a client
        that has it run a command: the served shell's pid, once its command runs."""
        path = self.workdir / HOSTILE_SOCKET
        server = self.spawn(["socat", f"UNIX-LISTEN:{path},fork", "EXEC:sh"])
        wait_unix_listening(path)
        client = self.spawn(["socat", "-", f"UNIX-CONNECT:{path}"], stdin=subprocess.PIPE)
        assert client.stdin is not None
        client.stdin.write(b"sleep 86400\n")
        client.stdin.flush()  # kept open until ``stop``: the connection lives as long
        live.find(server.pid, "sleep", "86400")
        return live.find(server.pid, "sh")

    def spawn(self, argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
        """A process in a session of its own, killed with its children by ``stop``."""
        proc = subprocess.Popen(argv, start_new_session=True, **options)
        self.procs.append(proc)
        return proc

    def findings_of(self, pid: int) -> list[dict[str, Any]]:
        listed = self.admin.get("/api/v1/admin/findings", params={"min_severity": "medium"})
        return [f for f in listed.json()["findings"] if f["pid"] == pid]

    def stop(self) -> None:
        self.agent.stop()
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            if proc.stdin is not None:
                proc.stdin.close()
        self.server.stop()


def start_fleet(home: Path, template: Path) -> Fleet:
    """Server, packs, agent enrolled and collected once, and a learned baseline."""
    db = home.parent / "fleet.db"
    shutil.copy(template, db)
    server = RunningServer(home, f"sqlite:///{db}")
    admin = server.admin()
    assert admin.post("/api/v1/admin/packs/apply", json=shipped_pack_payload()).status_code == 200
    agent = Agent(
        AgentOptions(
            server=server.url,
            enroll_secret_path=server.settings.home / "enroll_secret",
            state_dir=home.parent / "agent",
            ca=server.ca,
            flags={
                "host_identifier": "specified",
                "specified_identifier": HOSTILE_HOST,
                "logger_tls_period": 1,
            },
        ),
        EmbeddedEngine(),
    )
    fleet = Fleet(server, agent, admin, home.parent / "work")
    fleet.workdir.mkdir()
    fleet.collect()
    learned = admin.post("/api/v1/admin/detect", json={"learn": True})
    assert learned.status_code == 200, learned.text
    return fleet
