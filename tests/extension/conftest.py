"""Fixtures for table accuracy tests: one set of real IPC processes per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tables.ipc_world import IpcWorld, start_world


@pytest.fixture(scope="session")
def world() -> Iterator[IpcWorld]:
    running, tmp = start_world()
    try:
        yield running
    finally:
        running.stop()
        tmp.cleanup()
