"""Fixtures for detection tests: the engine, the shipped baseline, and process cleanup."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl.detection import Baseline
from fleetctl.engine import Engine
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
