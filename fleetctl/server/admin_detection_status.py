"""Admin API: how far behind detection is (``GET /api/v1/admin/detection/status``).

One object for the fleet simulator, a web console and ``fleetctl detect --status``:
hosts waiting to be judged and the oldest wait, judgements done (full rebuilds and
incremental runs), and the mark-to-judged lag percentiles over the recent judgements.
``running`` is false where no detection worker runs (a client over the store).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from fleetctl.server.admin_api import admin_endpoint
from fleetctl.server.state import server_state

PREFIX = "/api/v1/admin"


@admin_endpoint
def detection_status(request: Request, session: Any) -> dict[str, Any]:
    detection = server_state(request).detection
    if detection is None:
        return {"running": False}
    return {"running": detection.running, **detection.status().to_dict()}


routes = [Route(f"{PREFIX}/detection/status", detection_status, methods=["GET"])]
