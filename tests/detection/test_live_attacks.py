"""Attack scenarios of ipc-abuse.md section 4, run for real on loopback, scored from the
rows the shipped Linux packs return on this machine. The scenarios are the ones
``fleetctl validate`` ships (``fleetctl.validate.scenarios``), found by number.

Each test runs the pack SQL twice: with the extension tables (``process_stdio``,
``unix_socket_peers``) and with stock osquery tables only, because a fleet may have
either; both must reach medium or worse, with the channel and its other end in evidence.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from fleetctl.detection import Baseline, ExecutionPath, Score, score_path
from fleetctl.detection.scoring import severity_rank
from fleetctl.engine import Engine
from fleetctl.tables import STOCK_TABLES
from fleetctl.validate.scenarios import SH, Running
from tests.detection import live
from tests.detection.live import fd_target, find, wait_until

Launch = Callable[..., Running]
SHELL = os.path.basename(SH)  # the comm of the shells the scenarios start

pytestmark = pytest.mark.slow
MEDIUM = severity_rank("medium")
BOTH = pytest.mark.parametrize("extension", [True, False], ids=["extension", "stock"])


def scored(
    engine: Engine, baseline: Baseline, pid: int, *, extension: bool = True
) -> tuple[ExecutionPath, Score]:
    path = live.path_for(live.snapshot(engine, extension=extension), pid)
    return path, score_path(path, baseline)


def codes(score: Score) -> set[str]:
    return {r.code for r in score.reasons}


def assert_alerts(score: Score, floor: str = "medium") -> None:
    reasons = "\n".join(f"  {r.points:3} {r.text}" for r in score.reasons)
    assert severity_rank(score.severity) >= severity_rank(floor), (
        f"{score.severity} ({score.score}):\n{reasons}"
    )


@BOTH
def test_fifo_reverse_shell(
    engine: Engine, baseline: Baseline, launch: Launch, extension: bool
) -> None:
    run = launch("1")
    outer = run.procs[1].pid  # sh -c 'cat FIFO | sh -i 2>&1 | nc ... > FIFO'
    shell, cat, fifo = find(outer, SHELL, "-i"), find(outer, "cat"), str(run.workdir / "f")
    wait_until(lambda: fd_target(cat, 3) == fifo, what="cat reading the FIFO")
    path, score = scored(engine, baseline, shell, extension=extension)
    assert_alerts(score, "high")
    assert {"child_shell", "relay_fifo", "temp_location", "interactive_no_tty"} <= codes(score)
    relay = next(f for f in path.feeds if f.kind == "fifo" and f.direction == "in")
    assert relay.partner is not None and relay.partner.pid == cat
    assert relay.partner.relation == "sibling"
    assert fifo in relay.paths
    assert path.parent is not None and path.parent.pid == outer


def dev_tcp_shell(launch: Launch) -> tuple[int, int, str]:
    """Scenario 2 wired up: the interactive bash, the nc listener and its port."""
    run = launch("2")
    listener, outer = run.procs[0].pid, run.procs[1].pid
    shell = find(outer, "bash", "-i")
    wait_until(lambda: fd_target(shell, 0).startswith("socket:"), what="bash on the socket")
    return shell, listener, live.cmdline(listener).split()[-1]


def test_dev_tcp_shell(engine: Engine, baseline: Baseline, launch: Launch) -> None:
    shell, listener, port = dev_tcp_shell(launch)
    path, score = scored(engine, baseline, shell)
    assert_alerts(score, "high")
    assert {"child_shell", "feed_tcp", "interactive_no_tty"} <= codes(score)
    assert path.stdio_kinds() == ("tcp",)
    feed = next(f for f in path.feeds if f.kind == "tcp")
    assert any(p.endswith(f"->127.0.0.1:{port}") for p in feed.paths)
    # nc holds the other end off its stdio, so no partner is claimed for it (a listener
    # relaying on its stdio is matched by the reversed addresses: test_paths).
    assert feed.partner is None or feed.partner.pid == listener


@BOTH
def test_socat_unix_exec_shell(
    engine: Engine, baseline: Baseline, launch: Launch, extension: bool
) -> None:
    run = launch("3")
    shell = find(run.procs[0].pid, SHELL)
    handler = live.parent_of(shell)  # the socat the listener forked for the connection
    path, score = scored(engine, baseline, shell, extension=extension)
    assert_alerts(score, "high")
    assert {"child_shell", "parent_relay_tool", "parent_ipc_server"} <= codes(score)
    assert f"unix:{run.workdir / 'ipc.sock'}" in path.parent_listeners
    assert path.parent is not None and path.parent.basename == "socat"
    assert "unix" in path.stdio_kinds()
    if extension:  # the socketpair's other end is the parent socat
        unix = next(c for c in path.channels if c.kind == "unix")
        assert [p.pid for p in unix.partners] == [handler]


def test_socat_tcp_pty_shell(engine: Engine, baseline: Baseline, launch: Launch) -> None:
    run = launch("5")
    shell = find(run.procs[0].pid, "bash", "-li")
    wait_until(lambda: fd_target(shell, 0).startswith("/dev/pts/"), what="bash on a pty")
    path, score = scored(engine, baseline, shell)
    assert_alerts(score)
    assert {"child_shell", "parent_relay_tool"} <= codes(score)
    assert path.tty.startswith("pts/")


@BOTH
@pytest.mark.parametrize("where", ["shm", "tmp"])
def test_fifo_command_channel(
    engine: Engine,
    baseline: Baseline,
    launch: Launch,
    request: pytest.FixtureRequest,
    where: str,
    extension: bool,
) -> None:
    run = launch("7", base=request.getfixturevalue(f"{where}_dir"))
    shell, fifo = run.procs[0].pid, str(run.paths[0])  # sh <>FIFO
    sleeper = find(shell, "sleep")
    path, score = scored(engine, baseline, shell, extension=extension)
    assert_alerts(score, "high")
    assert {"child_shell", "feed_fifo", "temp_location"} <= codes(score)
    stdin = next(c for c in path.channels if c.fd == 0)
    assert (stdin.kind, stdin.target, stdin.mode) == ("fifo", fifo, "rw")
    # The command it ran is a child whose parent is fed by the FIFO.
    _, child_score = scored(engine, baseline, sleeper, extension=extension)
    assert all(r.code != "allowed" for r in child_score.reasons)


def cgi_shell(launch: Launch) -> tuple[int, int]:
    """Scenario 10 wired up: the CGI script's shell and the web server running it, with
    the client still reading (by default it leaves once it has the headers)."""
    server = launch("10", keep_reading=True).procs[0].pid
    return find(server, "t.sh"), server


@pytest.mark.parametrize("scenario", ["dev_tcp_shell", "cgi_shell"])
def test_stock_tables_list_a_shared_socket_once_and_the_rest_is_inferred(
    engine: Engine, baseline: Baseline, launch: Launch, scenario: str
) -> None:
    """osquery's process_open_sockets keeps one (pid, fd) per socket inode: bash also holds
    its /dev/tcp socket on fd 255 and the web server still holds the CGI's connection, so
    the stock rows show the socket on one of fds 0-2 at best (which one, if any, depends
    on descriptor and pid order). The extension's process_stdio sees every fd; from the
    stock rows detection infers the others (``stock_stdio``), and still sees the feed."""
    target = dev_tcp_shell(launch)[0] if scenario == "dev_tcp_shell" else cgi_shell(launch)[0]
    if scenario == "dev_tcp_shell":  # until its startup files have run (pyenv hooks ...)
        idle_since = [time.monotonic()]

        def idle() -> bool:
            if live.descendants(target):
                idle_since[0] = time.monotonic()
            return time.monotonic() - idle_since[0] > 1.0

        wait_until(idle, what="bash idle for a second")
    stock_engine = Engine(STOCK_TABLES)
    rows = live.collect(stock_engine, extension=False)["stdio_channels"]
    listed = [r for r in rows if r["pid"] == str(target) and r["kind"] == "tcp"]
    assert sum(r["fd"] in ("0", "1", "2") for r in listed) <= 1
    stock, stock_score = scored(stock_engine, baseline, target, extension=False)
    full, _ = scored(engine, baseline, target, extension=True)
    on_tcp = {c.fd for c in full.channels if c.kind == "tcp"}
    assert len(on_tcp) >= 2
    sockets = {c.fd: c for c in stock.channels if c.kind in ("tcp", "socket")}
    assert on_tcp <= set(sockets)
    assert sum(not sockets[fd].inferred for fd in on_tcp) <= 1
    assert {f.fd for f in stock.feeds if f.kind in ("tcp", "socket")} >= {0, 1}
    assert_alerts(stock_score)


def test_python_pty_over_unix_socket(engine: Engine, baseline: Baseline, launch: Launch) -> None:
    run = launch("8")
    server, interpreter = run.procs[0].pid, run.procs[1].pid
    wait_until(lambda: fd_target(interpreter, 0).startswith("socket:"), what="python on socket")
    pty_shell = find(interpreter, SHELL)
    snap = live.snapshot(engine)
    python, shell = live.path_for(snap, interpreter), live.path_for(snap, pty_shell)
    python_score = score_path(python, baseline)
    assert_alerts(python_score)
    assert {"child_interpreter", "feed_unix"} <= codes(python_score)
    assert python.stdio_kinds() == ("unix",)
    shell_score = score_path(shell, baseline)
    assert_alerts(shell_score)
    assert {"child_shell", "parent_fed_by_ipc"} <= codes(shell_score)
    # The peer of the socket is the socat server, which is not an ancestor.
    feed = next(f for f in python.feeds if f.kind == "unix")
    assert feed.partner is not None and feed.partner.pid == server
    assert feed.partner.relation not in ("parent", "ancestor")
    assert str(run.workdir / "p.sock") in feed.paths
    assert "temp_location" in codes(python_score)


def test_cgi_shell_under_python_web_server(
    engine: Engine, baseline: Baseline, launch: Launch
) -> None:
    shell, server = cgi_shell(launch)
    path, score = scored(engine, baseline, shell)
    assert_alerts(score, "high")
    assert {"child_shell", "feed_tcp"} <= codes(score)
    assert path.parent is not None and path.parent.pid == server


def test_ncat_exec_shell(engine: Engine, baseline: Baseline, launch: Launch) -> None:
    """Scenario 6 needs ncat itself; it is skipped where ncat is missing, not faked."""
    shell = find(launch("6").procs[0].pid, SHELL)
    path, score = scored(engine, baseline, shell)
    assert_alerts(score)
    assert {"child_shell", "parent_relay_tool"} <= codes(score)
    assert path.parent is not None and path.parent.basename == "ncat"
