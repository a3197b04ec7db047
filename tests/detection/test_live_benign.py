"""Benign look-alikes of ipc-abuse.md section 5, run for real: below medium with the
shipped baseline, and no medium+ finding from the detector after learning this host."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fleetctl.detection import Baseline, Detector, ExecutionPath, build_paths, score_path
from fleetctl.detection.scoring import severity_rank
from fleetctl.engine import Engine
from tests.detection import live, scenarios
from tests.detection.live import Procs, descendants

pytestmark = pytest.mark.slow
MEDIUM = severity_rank("medium")


def path_of(engine: Engine, pid: int) -> ExecutionPath:
    return live.path_for(live.snapshot(engine), pid)


def test_make_runs_recipe_shell(
    engine: Engine, baseline: Baseline, procs: Procs, tmp_dir: Path
) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    scene = scenarios.make_recipe(procs, tmp_dir)
    path = path_of(engine, scene.target)
    score = score_path(path, baseline)
    assert path.parent is not None and path.parent.basename == "make"
    assert score.allowed_by == "build-tools"
    assert score.severity == "info"


def test_cat_local_file_into_shell(
    engine: Engine, baseline: Baseline, procs: Procs, tmp_dir: Path
) -> None:
    scene = scenarios.cat_file_into_shell(procs, tmp_dir)
    path = path_of(engine, scene.target)
    score = score_path(path, baseline)
    stdin = next(c for c in path.channels if c.fd == 0)
    assert stdin.kind == "pipe"
    assert [(p.pid, p.relation) for p in stdin.partners] == [(scene.extra["cat"], "sibling")]
    assert path.feeds == ()  # a sibling cat holding no FIFO or socket is a plain pipeline
    assert severity_rank(score.severity) < MEDIUM, score


def test_interpreter_on_stdio_pipes_like_a_language_server(
    engine: Engine, baseline: Baseline, procs: Procs
) -> None:
    scene = scenarios.language_server(procs)
    path = path_of(engine, scene.target)
    score = score_path(path, baseline)
    assert path.stdio_kinds() == ("pipe",)
    assert all(p.relation == "parent" for c in path.channels for p in c.partners)
    assert path.feeds == ()
    assert severity_rank(score.severity) < MEDIUM, score


def test_tmux_server_shell(engine: Engine, baseline: Baseline, procs: Procs) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    scene = scenarios.tmux_session(procs)
    path = path_of(engine, scene.target)
    score = score_path(path, baseline)
    assert path.tty.startswith("pts/")
    assert any(x.startswith("unix:/tmp/tmux-") for x in path.parent_listeners)
    assert score.allowed_by == "terminal-multiplexers"
    assert score.severity == "info"


def _not_test_processes(path: ExecutionPath) -> bool:
    """Paths outside this test session (other xdist workers run scenarios meanwhile)."""
    session = {os.getpid()}
    if os.environ.get("PYTEST_XDIST_WORKER"):
        session.add(os.getppid())
    return not any(ref.pid in session for ref in path.lineage)


@pytest.mark.parametrize(
    "scenario", ["make_recipe", "cat_file_into_shell", "language_server", "tmux_session"]
)
def test_detector_after_learning_this_host_stays_quiet(
    engine: Engine, procs: Procs, tmp_dir: Path, scenario: str
) -> None:
    needs = {"make_recipe": "make", "tmux_session": "tmux"}.get(scenario)
    if needs and shutil.which(needs) is None:
        pytest.skip(f"{needs} is not installed")
    detector = Detector(learning_window=0)
    detector.learn(
        [p for p in build_paths(live.snapshot(engine)) if _not_test_processes(p)], now=1000.0
    )
    start = getattr(scenarios, scenario)
    scene = (
        start(procs, tmp_dir)
        if scenario in ("make_recipe", "cat_file_into_shell")
        else start(procs)
    )
    # The look-alike is the target's path and what it started; how the test itself
    # launched the scene (pytest's python -> sh -c) is not part of it.
    ours = {scene.target, *descendants(scene.target)}
    paths = [p for p in build_paths(live.snapshot(engine)) if p.child.pid in ours]
    assert paths
    loud = [f for f in detector.detect(paths, now=2000.0) if severity_rank(f.severity) >= MEDIUM]
    assert loud == [], "\n".join(
        [r.text for f in loud for r in f.reasons]
        + [line for f in loud for line in f.evidence.lines()]
    )
