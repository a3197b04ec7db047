"""Admin API: how far behind detection is (``GET /api/v1/admin/detection/status``).

One object for the fleet simulator, a web console and ``fleetctl detect --status``:
hosts waiting to be judged and the oldest wait, judgements done (full rebuilds and
incremental runs, and why hosts were rebuilt), and the mark-to-judged lag percentiles
over the recent judgements.
``running`` is false where no detection worker runs (a client over the store).

A request lands on any of the server's processes (``serve --workers``, replicas), so the
answer is the fleet's: hosts pending and the oldest wait come from the store's marks
(plus any wait a worker holds in memory), counts are summed over the workers that
reported in the last ``FRESH`` seconds (this process's own, live), and each lag and
judge-time percentile is the worst worker's. ``workers`` lists each worker's own status.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.roles import Role
from fleetctl.server.access import requires
from fleetctl.server.admin_api import admin_endpoint
from fleetctl.server.state import server_state
from storage import coordination

PREFIX = "/api/v1/admin"
FRESH = 10  # seconds: a worker silent for longer is left out (stopped, or died)
SUMMED = (
    "hosts_judged",
    "full_rebuilds",
    "incremental_runs",
    "hosts_in_memory",
    "rows_parsed",
    "paths_judged",
)


@requires(Role.OBSERVER)
@admin_endpoint
def detection_status(request: Request, session: Session) -> dict[str, Any]:
    detection = server_state(request).detection
    if detection is None:
        return {"running": False}
    own = {"running": detection.running, **detection.status().to_dict()}
    if not detection.running and not detection.judged_elsewhere:
        return own
    now = int(time.time())
    workers = []
    if detection.running:  # a worker whose judge processes judge for it has no status
        workers.append({"worker": detection.worker_name, "slot": _own_slot(request), **own})
    for name, slot, status in coordination.worker_statuses(session, now - FRESH):
        if name != detection.worker_name:
            workers.append({"worker": name, "slot": slot, **status})
    if not workers:
        return own
    pending, oldest = coordination.pending_summary(session)
    return fleet_status(workers, pending, None if oldest is None else now - oldest)


def _own_slot(request: Request) -> int | None:
    detection = server_state(request).detection
    slot = detection.slot if detection is not None else None
    return slot.index if slot is not None and slot.held else None


def fleet_status(
    workers: list[dict[str, Any]], pending: int, oldest_stored: float | None
) -> dict[str, Any]:
    """The fleet's status from each worker's and the store's pending marks."""
    lags = [w.get("lag_seconds", {}) for w in workers]
    oldest = max([float(w.get("oldest_pending_seconds", 0)) for w in workers] + [0.0])
    if oldest_stored is not None:
        oldest = max(oldest, float(oldest_stored))
    return {
        "running": any(w.get("running") for w in workers),
        "pending_hosts": max(pending, max(int(w.get("pending_hosts", 0)) for w in workers)),
        "oldest_pending_seconds": round(oldest, 3),
        **{key: sum(int(w.get(key, 0)) for w in workers) for key in SUMMED},
        "rebuilds": summed_counts(w.get("rebuilds", {}) for w in workers),
        "lag_seconds": {
            "samples": sum(int(lag.get("samples", 0)) for lag in lags),
            **{p: max(float(lag.get(p, 0.0)) for lag in lags) for p in ("p50", "p95", "p99")},
        },
        "judges": sum(int(w.get("judges", 0)) for w in workers),
        "judge_seconds": {
            p: max(float(w.get("judge_seconds", {}).get(p, 0.0)) for w in workers)
            for p in ("p50", "p99", "max")
        },
        "workers": workers,
    }


def summed_counts(counts: Iterable[Any]) -> dict[str, int]:
    """Counts by name summed over the workers (what one worker sent is not trusted to be
    a mapping of numbers: a stored status may come from another version)."""
    total: dict[str, int] = {}
    for each in counts:
        if isinstance(each, dict):
            for name, count in each.items():
                if isinstance(count, int):
                    total[str(name)] = total.get(str(name), 0) + count
    return dict(sorted(total.items()))


routes = [Route(f"{PREFIX}/detection/status", detection_status, methods=["GET"])]
