"""``serve --workers N``: one supervisor process and N worker processes on one listener.

The supervisor does what must happen once (the caller's bootstrap: schema, TLS, secrets,
token, context), binds the listening socket once, then forks N workers that all accept
on that socket, each a whole server of its own (``ServerState``: engines, caches, its
detection slot, the same ``GuardedProtocol``, TLS and limits as one process has). Forking
before the supervisor opens any database connection or starts any thread means no worker
inherits a connection or a lock another one also holds.

A worker that dies is started again with the same index (so it takes its detection slot
back); a worker dying within ``QUICK_DEATH`` seconds of its start waits twice as long as
the last one before the next try, up to ``MAX_PAUSE``. SIGTERM or SIGINT to the
supervisor stops every worker through uvicorn's graceful shutdown (SIGTERM), waits
``STOP_GRACE`` seconds, then kills what is left. A worker dies with its supervisor
(Linux ``PR_SET_PDEATHSIG``). Each worker's log lines say ``worker <index>``.

With ``--detection-processes M``, M judge processes follow the N workers (indexes N to
N+M-1), started, restarted and stopped the same way: they hold the detection slots and
judge every host, and the workers serve hosts only (``WorkerRole``). ``ps`` and ``top``
name each process by its role: ``fleetctl-work<i>`` and ``fleetctl-judge<i>``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from fleetctl.server.bootstrap import Prepared
from fleetctl.server.runner import make_server
from fleetctl.server.state import ServerState, WorkerRole, detection_service
from fleetctl.settings import Settings
from storage.engine import make_engine, make_sessionmaker

log = logging.getLogger("fleetctl.server")

STOP_GRACE = 20.0  # uvicorn's 2 s graceful timeout, then detection and buffers flushed
QUICK_DEATH = 10.0  # a worker dying sooner than this after its start is backed off
FIRST_PAUSE = 0.5
MAX_PAUSE = 30.0
BACKLOG = 2048
PR_SET_PDEATHSIG = 1
# How long a thread may hold the GIL while another waits (Python's default: 5 ms). A
# worker's judges and request handlers mostly wait on the database: after each round
# trip a thread waited up to the whole interval for a busy one to let go, many times a
# judgement. At 1 ms the detection lag at 300 simulated hosts fell (README, "Fleet
# simulator").
SWITCH_INTERVAL = 0.001
# Allocations between young collections of the cyclic garbage collector (Python's
# default: 700). A judgement makes tens of thousands of short-lived objects (parsed
# rows, snapshots, paths); at 700 many outlive two young collections and are promoted
# to the oldest generation before they die, and that promotion count is what triggers a
# full collection, a walk over every object of every host's state kept in memory. At
# 50,000 they die young: in ``bench/bench_judge.py`` (30 hosts, scheduled posts) full
# collections went from 23 (12 s of a 114 s run) to none, a judgement's CPU from 80 to
# 61 ms per host-minute and the ingest's from 28 to 16. Garbage with cycles still goes
# within 50,000 allocations.
GC_YOUNG = 50_000


def log_format(worker: int | None = None) -> str:
    """The server's log line format; a worker's lines say which worker wrote them."""
    who = "" if worker is None else f"worker {worker} "
    return f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s"


def exit_on_sigterm() -> None:
    """SIGTERM ends the process through ``SystemExit``, so ``finally`` blocks run (uvicorn
    raises the signal again once its graceful shutdown is over)."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)


def tune_interpreter() -> None:
    """The GIL switch interval and garbage collector of a server process (workers and
    judge processes): see ``SWITCH_INTERVAL`` and ``GC_YOUNG``."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, middle, oldest)


def serve_on(settings: Settings, prepared: Prepared, sock: socket.socket, role: WorkerRole) -> None:
    """One server on an already bound socket, until it is told to stop."""
    tune_interpreter()
    state = ServerState.create(settings, role)
    try:
        make_server(settings, prepared, state).run(sockets=[sock])
    finally:
        state.close()


def judge_on(settings: Settings, role: WorkerRole) -> None:
    """A judge process: detection of its slot's hosts, until SIGTERM (``SystemExit``)."""
    tune_interpreter()
    engine = make_engine(settings.db_url)
    detection = detection_service(settings, engine, make_sessionmaker(engine), role)
    detection.start()
    try:
        while detection.running:
            time.sleep(1.0)
        raise RuntimeError("the judges stopped")
    finally:
        detection.stop()
        engine.dispose()


@dataclass
class Worker:
    index: int
    pid: int = 0
    started: float = 0.0
    pause: float = 0.0  # before the next start, after a death soon after a start
    due: float = 0.0  # when it is started again (monotonic), while not running


class Supervisor:
    """Starts, restarts and stops the workers of one ``fleetctl serve``."""

    def __init__(
        self, settings: Settings, prepared: Prepared, count: int, sock: socket.socket
    ) -> None:
        """``sock``: the bound listener the ``count`` workers share (``runner.bind``);
        ``settings.judge_process_count`` judge processes come after them."""
        self.settings = settings
        self.prepared = prepared
        self.serving = count
        self.workers = [Worker(i) for i in range(count + settings.judge_process_count)]
        self._stopping = False
        self._sock = sock

    def run(self) -> None:
        self._sock.listen(BACKLOG)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_signal)
        try:
            for worker in self.workers:
                self._start(worker)
            while not self._stopping:
                self._reap()
                self._restart_due()
                time.sleep(0.2)
        finally:
            self._stop_all()
            self._sock.close()

    def _stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _start(self, worker: Worker) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            os._exit(self._worker_main(worker.index, parent))
        worker.pid, worker.started = pid, time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, pid)

    def _worker_main(self, index: int, parent: int) -> int:
        try:
            _die_with(parent)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor says when to stop
            exit_on_sigterm()
            for handler in logging.getLogger().handlers:
                handler.setFormatter(logging.Formatter(log_format(index)))
            judges = self.settings.judge_process_count
            if index < self.serving:
                _name_process(f"fleetctl-work{index}")
                role = WorkerRole.worker(index, self.serving, judges)
                serve_on(self.settings, self.prepared, self._sock, role)
            else:
                _name_process(f"fleetctl-judge{index - self.serving}")
                self._sock.close()  # a judge process serves no host
                role = WorkerRole.judge(index - self.serving, self.serving, judges)
                judge_on(self.settings, role)
            return 0
        except SystemExit:
            return 0
        except BaseException:
            log.exception("worker %d failed", index)
            return 1

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                continue
            worker.pid = 0
            if self._stopping:
                continue
            lived = time.monotonic() - worker.started
            if lived < QUICK_DEATH:
                worker.pause = min(MAX_PAUSE, max(FIRST_PAUSE, worker.pause * 2))
            else:
                worker.pause = FIRST_PAUSE
            worker.due = time.monotonic() + worker.pause
            log.warning(
                "worker %d (pid %d) %s after %.1f s; starting it again in %.1f s",
                worker.index,
                pid,
                _ended(status),
                lived,
                worker.pause,
            )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.pid == 0 and now >= worker.due and not self._stopping:
                self._start(worker)

    def _stop_all(self) -> None:
        self._stopping = True
        running = [w for w in self.workers if w.pid]
        for worker in running:
            _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while any(w.pid for w in self.workers) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for worker in self.workers:
            if worker.pid:
                log.warning("worker %d did not stop in %g s: killing it", worker.index, STOP_GRACE)
                _signal(worker.pid, signal.SIGKILL)
                os.waitpid(worker.pid, 0)
                worker.pid = 0


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with {os.waitstatus_to_exitcode(status)}"


def _name_process(name: str) -> None:
    """Show what this process is in ``ps``, ``top`` and ``/proc/<pid>/comm`` (Linux keeps
    15 bytes): the workers and judge processes share one command line."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])


def _die_with(parent: int) -> None:
    """End this worker when the supervisor dies, whatever kills it (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above took effect
        raise SystemExit(0)
