"""``fleetctl serve`` as its own process, killable with SIGKILL and restartable in place."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

FLEETCTL = str(Path(sys.executable).with_name("fleetctl"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """One server home and port; ``kill()`` is kill -9, ``start()`` brings it back on the
    same port, database and home, as a supervisor would. One server process unless
    ``extra`` says ``--workers``: kill -9 must hit the process that serves."""

    def __init__(self, db_url: str, *extra: str) -> None:
        self.db_url = db_url
        self.extra = extra if "--workers" in extra else ("--workers", "1", *extra)
        self.home = Path(tempfile.mkdtemp(prefix="fleetctl-fault-"))
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.env = {**os.environ, "FLEETCTL_HOME": str(self.home)}
        subprocess.run(
            [FLEETCTL, "db", "upgrade", "--db", db_url],
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()
        self.ca = str(self.home / "tls" / "ca.pem")
        self.ssl = ssl.create_default_context(cafile=self.ca)
        self.secret = (self.home / "enroll_secret").read_text().strip()
        self.token = json.loads((self.home / "context.json").read_text())["token"]

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until ``/healthz`` answers; return the seconds it took."""
        started = time.monotonic()
        log = open(self.home / "serve.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [
                FLEETCTL,
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--db",
                self.db_url,
                *self.extra,
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        while True:
            try:
                ctx = ssl.create_default_context(cafile=str(self.home / "tls" / "ca.pem"))
                httpx.get(f"{self.url}/healthz", verify=ctx, timeout=1)
                return time.monotonic() - started
            except (httpx.HTTPError, FileNotFoundError, ssl.SSLError) as exc:
                if time.monotonic() - started > timeout or self.proc.poll() is not None:
                    raise RuntimeError(f"server did not start; see {self.home}/serve.log") from exc
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def rss_peak_kib(self) -> int:
        """The server process's peak resident memory (VmHWM), from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc status")

    def admin(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=self.ssl,
            timeout=timeout,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def log_text(self) -> str:
        return (self.home / "serve.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.home, ignore_errors=True)
