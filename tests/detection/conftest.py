"""Fixtures for detection tests: the engine, the shipped baseline, the scenarios
``fleetctl validate`` ships, and process cleanup."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl.detection import Baseline
from fleetctl.engine import Engine
from fleetctl.validate import SCENARIOS
from fleetctl.validate.scenarios import Running
from tests.detection.live import Procs


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="session")
def baseline() -> Baseline:
    return Baseline.default()


@pytest.fixture
def procs() -> Iterator[Procs]:
    running = Procs()
    try:
        yield running
    finally:
        running.stop()


def _scratch(base: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fleetctl-det-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    """A fresh directory directly under /tmp (the location signal looks for /tmp/)."""
    yield from _scratch("/tmp")


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A fresh directory under /dev/shm."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    yield from _scratch("/dev/shm")


@pytest.fixture
def launch(tmp_dir: Path) -> Iterator[Callable[..., Running]]:
    """Start a scenario of the catalogue ``fleetctl validate`` ships, by number, in
    ``tmp_dir`` (keyword arguments go to its start function); skipped where it cannot
    run here, cleaned up after the test."""
    started: list[Running] = []

    def start(number: str, **options: Any) -> Running:
        scenario = next(s for s in SCENARIOS if s.number == number)
        reason = scenario.unavailable()
        if reason:
            pytest.skip(f"scenario {number}: {reason}")
        running = Running(tmp_dir)
        started.append(running)
        scenario.start(running, **options)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.cleanup()
