"""Benign look-alikes of ipc-abuse.md section 5, run for real: below medium with the
shipped baseline, and no medium+ finding from the detector after learning this host.
The look-alikes are the ones ``fleetctl validate`` ships, found by number."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest

from fleetctl.detection import Baseline, Detector, ExecutionPath, build_paths, score_path
from fleetctl.detection.scoring import severity_rank
from fleetctl.engine import Engine
from fleetctl.validate.scenarios import SH, Running
from tests.detection import live
from tests.detection.live import descendants, fd_target, find, wait_until

Launch = Callable[..., Running]

pytestmark = pytest.mark.slow
MEDIUM = severity_rank("medium")


def path_of(engine: Engine, pid: int) -> ExecutionPath:
    return live.path_for(live.snapshot(engine), pid)


def make_shell(run: Running) -> int:
    """B3: the shell make runs the recipe with."""
    return find(run.procs[0].pid, "sh")


def piped_shell(run: Running) -> int:
    """B5: the shell a local script is cat'ed into, once it runs the script."""
    shell = find(run.procs[0].pid, os.path.basename(SH))
    find(shell, "sleep")
    return shell


def language_server(run: Running) -> int:
    """B4: the interpreter on stdio pipes to its parent."""
    parent = run.procs[0].pid
    child = find(parent, live.comm(parent))
    wait_until(lambda: fd_target(child, 2).startswith("pipe:"), what="stdio pipes")
    return child


def tmux_pane(run: Running) -> int:
    """B1: the shell in the tmux server's pane."""
    shown = subprocess.run(
        ["tmux", "-S", str(run.workdir / "tmux.sock"), "display", "-p", "#{pane_pid}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(shown)


TARGETS: dict[str, Callable[[Running], int]] = {
    "B1": tmux_pane,
    "B3": make_shell,
    "B4": language_server,
    "B5": piped_shell,
}


def test_make_runs_recipe_shell(engine: Engine, baseline: Baseline, launch: Launch) -> None:
    path = path_of(engine, make_shell(launch("B3")))
    score = score_path(path, baseline)
    assert path.parent is not None and path.parent.basename == "make"
    assert score.allowed_by == "build-tools"
    assert score.severity == "info"


def test_cat_local_file_into_shell(engine: Engine, baseline: Baseline, launch: Launch) -> None:
    run = launch("B5")
    shell, cat = piped_shell(run), find(run.procs[0].pid, "cat")
    path = path_of(engine, shell)
    score = score_path(path, baseline)
    stdin = next(c for c in path.channels if c.fd == 0)
    assert stdin.kind == "pipe"
    assert [(p.pid, p.relation) for p in stdin.partners] == [(cat, "sibling")]
    assert path.feeds == ()  # a sibling cat holding no FIFO or socket is a plain pipeline
    assert severity_rank(score.severity) < MEDIUM, score


def test_interpreter_on_stdio_pipes_like_a_language_server(
    engine: Engine, baseline: Baseline, launch: Launch
) -> None:
    path = path_of(engine, language_server(launch("B4")))
    score = score_path(path, baseline)
    assert path.stdio_kinds() == ("pipe",)
    assert all(p.relation == "parent" for c in path.channels for p in c.partners)
    assert path.feeds == ()
    assert severity_rank(score.severity) < MEDIUM, score


def test_tmux_server_shell(engine: Engine, baseline: Baseline, launch: Launch) -> None:
    run = launch("B1")
    path = path_of(engine, tmux_pane(run))
    score = score_path(path, baseline)
    assert path.tty.startswith("pts/")
    assert f"unix:{run.workdir / 'tmux.sock'}" in path.parent_listeners
    assert score.allowed_by == "terminal-multiplexers"
    assert score.severity == "info"


def _not_test_processes(path: ExecutionPath) -> bool:
    """Paths outside this test session (other xdist workers run scenarios meanwhile)."""
    session = {os.getpid()}
    if os.environ.get("PYTEST_XDIST_WORKER"):
        session.add(os.getppid())
    return not any(ref.pid in session for ref in path.lineage)


@pytest.mark.parametrize("scenario", sorted(TARGETS))
def test_detector_after_learning_this_host_stays_quiet(
    engine: Engine, launch: Launch, scenario: str
) -> None:
    detector = Detector(learning_window=0)
    detector.learn(
        [p for p in build_paths(live.snapshot(engine)) if _not_test_processes(p)], now=1000.0
    )
    target = TARGETS[scenario](launch(scenario))
    # The look-alike is the target's path and what it started; how the test itself
    # launched the scene (pytest's python -> sh -c) is not part of it.
    ours = {target, *descendants(target)}
    paths = [p for p in build_paths(live.snapshot(engine)) if p.child.pid in ours]
    assert paths
    loud = [f for f in detector.detect(paths, now=2000.0) if severity_rank(f.severity) >= MEDIUM]
    assert loud == [], "\n".join(
        [r.text for f in loud for r in f.reasons]
        + [line for f in loud for line in f.evidence.lines()]
    )
