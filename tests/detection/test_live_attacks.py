"""Attack scenarios of ipc-abuse.md section 4, run for real on loopback, scored from the
rows the shipped Linux packs return on this machine.

Each test runs the pack SQL twice: with the extension tables (``process_stdio``,
``unix_socket_peers``) and with stock osquery tables only, because a fleet may have
either; both must reach medium or worse, with the channel and its other end in evidence.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from fleetctl.detection import Baseline, ExecutionPath, Score, score_path
from fleetctl.detection.scoring import severity_rank
from fleetctl.engine import Engine
from fleetctl.tables import STOCK_TABLES
from tests.detection import live, scenarios
from tests.detection.live import Procs

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
    engine: Engine, baseline: Baseline, procs: Procs, tmp_dir: Path, extension: bool
) -> None:
    scene = scenarios.fifo_reverse_shell(procs, tmp_dir)
    path, score = scored(engine, baseline, scene.target, extension=extension)
    assert_alerts(score, "high")
    assert {"child_shell", "relay_fifo", "temp_location", "interactive_no_tty"} <= codes(score)
    relay = next(f for f in path.feeds if f.kind == "fifo" and f.direction == "in")
    assert relay.partner is not None and relay.partner.pid == scene.extra["cat"]
    assert relay.partner.relation == "sibling"
    assert scene.paths["fifo"] in relay.paths
    assert path.parent is not None and path.parent.pid == scene.parent


def test_dev_tcp_shell(engine: Engine, baseline: Baseline, procs: Procs) -> None:
    scene = scenarios.dev_tcp_shell(procs)
    path, score = scored(engine, baseline, scene.target)
    assert_alerts(score, "high")
    assert {"child_shell", "feed_tcp", "interactive_no_tty"} <= codes(score)
    assert path.stdio_kinds() == ("tcp",)
    feed = next(f for f in path.feeds if f.kind == "tcp")
    assert any(p.endswith(f"->127.0.0.1:{scene.paths['port']}") for p in feed.paths)
    # The listener holds the other end on its stdin: matched through loopback addresses.
    assert feed.partner is not None and feed.partner.pid == scene.extra["listener"]


@BOTH
def test_socat_unix_exec_shell(
    engine: Engine, baseline: Baseline, procs: Procs, tmp_dir: Path, extension: bool
) -> None:
    scene = scenarios.socat_unix_exec(procs, tmp_dir)
    path, score = scored(engine, baseline, scene.target, extension=extension)
    assert_alerts(score, "high")
    assert {"child_shell", "parent_relay_tool", "parent_ipc_server"} <= codes(score)
    assert f"unix:{scene.paths['socket']}" in path.parent_listeners
    assert path.parent is not None and path.parent.basename == "socat"
    assert "unix" in path.stdio_kinds()
    if extension:  # the socketpair's other end is the parent socat
        unix = next(c for c in path.channels if c.kind == "unix")
        assert [p.pid for p in unix.partners] == [scene.parent]


def test_socat_tcp_pty_shell(engine: Engine, baseline: Baseline, procs: Procs) -> None:
    scene = scenarios.socat_tcp_pty(procs)
    path, score = scored(engine, baseline, scene.target)
    assert_alerts(score)
    assert {"child_shell", "parent_relay_tool"} <= codes(score)
    assert path.tty.startswith("pts/")


@BOTH
@pytest.mark.parametrize("where", ["shm", "tmp"])
def test_fifo_command_channel(
    engine: Engine,
    baseline: Baseline,
    procs: Procs,
    request: pytest.FixtureRequest,
    where: str,
    extension: bool,
) -> None:
    directory = request.getfixturevalue(f"{where}_dir")
    scene = scenarios.fifo_command_channel(procs, directory)
    path, score = scored(engine, baseline, scene.target, extension=extension)
    assert_alerts(score, "high")
    assert {"child_shell", "feed_fifo", "temp_location"} <= codes(score)
    stdin = next(c for c in path.channels if c.fd == 0)
    assert (stdin.kind, stdin.target, stdin.mode) == ("fifo", scene.paths["fifo"], "rw")
    # The command it ran is a child whose parent is fed by the FIFO.
    _, child_score = scored(engine, baseline, scene.extra["sleep"], extension=extension)
    assert all(r.code != "allowed" for r in child_score.reasons)


@pytest.mark.parametrize("scenario", ["dev_tcp_shell", "cgi_web_server"])
def test_stock_tables_list_a_shared_socket_once_and_the_rest_is_inferred(
    engine: Engine, baseline: Baseline, procs: Procs, tmp_dir: Path, scenario: str
) -> None:
    """osquery's process_open_sockets keeps one (pid, fd) per socket inode: bash also holds
    its /dev/tcp socket on fd 255 and the web server still holds the CGI's connection, so
    the stock rows show the socket on one of fds 0-2 at best (which one, if any, depends
    on descriptor and pid order). The extension's process_stdio sees every fd; from the
    stock rows detection infers the others (``stock_stdio``), and still sees the feed."""
    if scenario == "cgi_web_server" and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    start = getattr(scenarios, scenario)
    scene = start(procs) if scenario == "dev_tcp_shell" else start(procs, tmp_dir)
    if scenario == "dev_tcp_shell":  # until its startup files have run (pyenv hooks ...)
        idle_since = [time.monotonic()]

        def idle() -> bool:
            if live.descendants(scene.target):
                idle_since[0] = time.monotonic()
            return time.monotonic() - idle_since[0] > 1.0

        live.wait_until(idle, what="bash idle for a second")
    stock_engine = Engine(STOCK_TABLES)
    rows = live.collect(stock_engine, extension=False)["stdio_channels"]
    listed = [r for r in rows if r["pid"] == str(scene.target) and r["kind"] == "tcp"]
    assert sum(r["fd"] in ("0", "1", "2") for r in listed) <= 1
    stock, stock_score = scored(stock_engine, baseline, scene.target, extension=False)
    full, _ = scored(engine, baseline, scene.target, extension=True)
    on_tcp = {c.fd for c in full.channels if c.kind == "tcp"}
    assert len(on_tcp) >= 2
    sockets = {c.fd: c for c in stock.channels if c.kind in ("tcp", "socket")}
    assert on_tcp <= set(sockets)
    assert sum(not sockets[fd].inferred for fd in on_tcp) <= 1
    assert {f.fd for f in stock.feeds if f.kind in ("tcp", "socket")} >= {0, 1}
    assert_alerts(stock_score)


def test_python_pty_over_unix_socket(
    engine: Engine, baseline: Baseline, procs: Procs, tmp_dir: Path
) -> None:
    scene = scenarios.python_pty_over_unix(procs, tmp_dir)
    snap = live.snapshot(engine)
    python, shell = live.path_for(snap, scene.target), live.path_for(snap, scene.extra["shell"])
    python_score = score_path(python, baseline)
    assert_alerts(python_score)
    assert {"child_interpreter", "feed_unix"} <= codes(python_score)
    assert python.stdio_kinds() == ("unix",)
    shell_score = score_path(shell, baseline)
    assert_alerts(shell_score)
    assert {"child_shell", "parent_fed_by_ipc"} <= codes(shell_score)
    # The peer of the socket is the socat server, which is not an ancestor.
    feed = next(f for f in python.feeds if f.kind == "unix")
    assert feed.partner is not None and feed.partner.pid == scene.extra["server"]
    assert feed.partner.relation not in ("parent", "ancestor")
    assert scene.paths["socket"] in feed.paths
    assert "temp_location" in codes(python_score)


def test_cgi_shell_under_python_web_server(
    engine: Engine, baseline: Baseline, procs: Procs, tmp_dir: Path
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    scene = scenarios.cgi_web_server(procs, tmp_dir)
    path, score = scored(engine, baseline, scene.target)
    assert_alerts(score, "high")
    assert {"child_shell", "feed_tcp"} <= codes(score)
    assert path.parent is not None and path.parent.pid == scene.parent


def test_ncat_exec_shell(engine: Engine, baseline: Baseline, procs: Procs) -> None:
    """Scenario 6 needs ncat itself; it is skipped where ncat is missing, not faked."""
    if shutil.which("ncat") is None:
        pytest.skip("ncat is not installed")
    scene = scenarios.ncat_exec(procs)
    path, score = scored(engine, baseline, scene.target)
    assert_alerts(score)
    assert {"child_shell", "parent_relay_tool"} <= codes(score)
    assert path.parent is not None and path.parent.basename == "ncat"
