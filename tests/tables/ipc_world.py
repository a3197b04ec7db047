"""Real processes joined by real IPC, for accuracy tests of the tables.

``IpcWorld.start()`` spawns, and ``stop()`` kills by recorded pid:

* ``sleep 3600 | cat``: an anonymous pipe from sleep's fd 1 to cat's fd 0;
* a named FIFO with a writer (fd 1) and a reader (fd 0), and a second FIFO opened
  read-write by a single process (``sleep <> fifo``);
* a process holding both ends of one pipe (fds 20 and 21);
* a unix socketpair split between two processes (fd 0 of one, fd 1 of the other);
* a unix stream server (listening fd 10, accepted fd 11) and a client whose stdin is the
  connected socket, as in ``socat UNIX-LISTEN`` + a python unix-socket shell;
* a TCP loopback server (listening fd 10, accepted fd 11) and a client whose stdout is
  the connection;
* a process with fd 2 closed.

Children get /dev/null for every stdio descriptor not named above, so each expectation
is exact. Network is 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from fleetctl.validate.scenarios import unix_listening

# The world lives for the whole test session (``stop`` kills it at the end); the sleep is
# only a bound in case the session dies without cleaning up. A worker may reach the table
# tests many minutes after it started the world, so the bound is generous.
SLEEP = "3600"

UNIX_SERVER = """
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(4)
fd = s.detach(); os.dup2(fd, 10); os.close(fd)
listener = socket.socket(fileno=10)
conn, _ = listener.accept()
fd = conn.detach(); os.dup2(fd, 11); os.close(fd)
time.sleep(3600)
"""

UNIX_CLIENT = """
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
fd = s.detach(); os.dup2(fd, 0); os.close(fd)
time.sleep(3600)
"""

TCP_SERVER = """
import os, socket, sys, time
fd = int(sys.argv[1]); os.dup2(fd, 10); os.close(fd)
listener = socket.socket(fileno=10)
conn, _ = listener.accept()
fd = conn.detach(); os.dup2(fd, 11); os.close(fd)
time.sleep(3600)
"""

TCP_CLIENT = """
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
fd = s.detach(); os.dup2(fd, 1); os.close(fd)
time.sleep(3600)
"""

SELF_PIPE = """
import os, time
r, w = os.pipe()
os.dup2(r, 20); os.dup2(w, 21); os.close(r); os.close(w)
time.sleep(3600)
"""


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def fd_target(pid: int, fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def fd_inode(pid: int, fd: int) -> int:
    return os.stat(f"/proc/{pid}/fd/{fd}").st_ino


@dataclass
class IpcWorld:
    tmp: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    fifo: Path = Path()
    fifo_rw: Path = Path()
    unix_path: Path = Path()
    tcp_port: int = 0

    # -- lifecycle

    def spawn(self, name: str, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
        self.procs[name] = proc
        return proc

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def start(self) -> IpcWorld:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        # Anonymous pipe: sleep | cat (the parent keeps no end).
        writer = self.spawn("pipe_writer", ["sleep", SLEEP], stdout=subprocess.PIPE)
        assert writer.stdout is not None
        self.spawn("pipe_reader", ["cat"], stdin=writer.stdout)
        writer.stdout.close()

        # Named FIFO with one writer and one reader; a second one opened read-write.
        self.fifo = self.tmp / "channel.fifo"
        self.fifo_rw = self.tmp / "rw.fifo"
        os.mkfifo(self.fifo)
        os.mkfifo(self.fifo_rw)
        self.spawn("fifo_writer", ["sh", "-c", f'exec sleep {SLEEP} > "{self.fifo}"'])
        self.spawn("fifo_reader", ["sh", "-c", f'exec sleep {SLEEP} < "{self.fifo}"'])
        self.spawn("fifo_rw", ["sh", "-c", f'exec sleep {SLEEP} <> "{self.fifo_rw}"'])

        self.spawn("self_pipe", [sys.executable, "-c", SELF_PIPE])

        # Socketpair split between two processes.
        left, right = socket.socketpair()
        self.spawn("pair_left", ["sleep", SLEEP], stdin=left.fileno())
        self.spawn("pair_right", ["sleep", SLEEP], stdout=right.fileno())
        left.close()
        right.close()

        # Unix stream server and a client whose stdin is the connection.
        self.unix_path = self.tmp / "server.sock"
        self.spawn("unix_server", [sys.executable, "-c", UNIX_SERVER, str(self.unix_path)])
        wait_until(partial(unix_listening, self.unix_path), what="unix server listening")
        self.spawn("unix_client", [sys.executable, "-c", UNIX_CLIENT, str(self.unix_path)])

        # TCP loopback server and a client whose stdout is the connection.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        self.tcp_port = listener.getsockname()[1]
        self.spawn(
            "tcp_server",
            [sys.executable, "-c", TCP_SERVER, str(listener.fileno())],
            pass_fds=(listener.fileno(),),
        )
        listener.close()
        self.spawn("tcp_client", [sys.executable, "-c", TCP_CLIENT, str(self.tcp_port)])

        # stderr closed.
        self.spawn("closed_stderr", ["sh", "-c", f"exec 2>&-; exec sleep {SLEEP}"])

        self._wait_ready()

    def _wait_ready(self) -> None:
        def is_socket(name: str, fd: int) -> bool:
            return (fd_target(self.pid(name), fd) or "").startswith("socket:[")

        def execed_sleep(name: str) -> bool:
            try:
                return Path(f"/proc/{self.pid(name)}/comm").read_text().strip() == "sleep"
            except OSError:
                return False

        checks = {
            "pipe": lambda: (fd_target(self.pid("pipe_reader"), 0) or "").startswith("pipe:"),
            "fifo writer": lambda: fd_target(self.pid("fifo_writer"), 1) == str(self.fifo),
            "fifo reader": lambda: fd_target(self.pid("fifo_reader"), 0) == str(self.fifo),
            "fifo rw": lambda: fd_target(self.pid("fifo_rw"), 0) == str(self.fifo_rw),
            "self pipe": lambda: (
                fd_target(self.pid("self_pipe"), 21) is not None
                and fd_target(self.pid("self_pipe"), 3) is None
            ),
            "unix server": lambda: is_socket("unix_server", 11),
            "unix client": lambda: is_socket("unix_client", 0),
            "tcp server": lambda: is_socket("tcp_server", 11),
            "tcp client": lambda: is_socket("tcp_client", 1),
            "closed stderr": lambda: execed_sleep("closed_stderr"),
            "fifo sleeps": lambda: all(
                execed_sleep(n) for n in ("fifo_writer", "fifo_reader", "fifo_rw")
            ),
        }
        for what, check in checks.items():
            wait_until(check, what=what)
        # Python children: wait until the interpreter closed its startup descriptors and
        # only the arranged ones remain.
        for name in ("self_pipe", "unix_server", "unix_client", "tcp_server", "tcp_client"):
            wait_until(partial(self._settled, name), what=f"{name} settled")

    def _settled(self, name: str) -> bool:
        try:
            fds = {int(fd) for fd in os.listdir(f"/proc/{self.pid(name)}/fd")}
        except OSError:
            return False
        expected = {
            "self_pipe": {0, 1, 2, 20, 21},
            "unix_server": {0, 1, 2, 10, 11},
            "unix_client": {0, 1, 2},
            "tcp_server": {0, 1, 2, 10, 11},
            "tcp_client": {0, 1, 2},
        }[name]
        return fds == expected

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


def start_world() -> tuple[IpcWorld, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory(prefix="fleetctl-ipc-")
    return IpcWorld(Path(tmp.name)).start(), tmp
