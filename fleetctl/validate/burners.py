"""CPU burners: processes that each keep one core busy, to validate detection on a busy
machine (``fleetctl validate --burners N``, the e2e tests, ``bench/bench_scenarios.py``)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager


def _spin() -> None:
    while True:
        pass


@contextmanager
def cpu_burners(count: int) -> Iterator[None]:
    """``count`` spinning processes for the duration of the block."""
    context = multiprocessing.get_context("spawn")  # no copy of the caller's threads
    procs = [context.Process(target=_spin, daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.join()
