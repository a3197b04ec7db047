"""``GET /api/v1/admin/detection/status`` and ``fleetctl detect --status`` against a real
server (SQLite and PostgreSQL): a host's reports are judged, the first from the store,
the next from its changes, and the lag of each judgement is counted."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from fleetctl.cli import main
from tests.conftest import RunningServer
from tests.detection.reporting import ReportingHost, fifo_shell, wait_for


def test_status_counts_judgements_and_their_lag(server: RunningServer) -> None:
    admin = server.admin()

    def status() -> Any:
        response = admin.get("/api/v1/admin/detection/status")
        assert response.status_code == 200
        return response.json()

    before = status()
    assert before["running"] is True and before["hosts_judged"] == 0
    assert before["lag_seconds"]["samples"] == 0
    host = ReportingHost(server)
    host.report()
    first = wait_for(status, lambda s: s["hosts_judged"] >= 1)
    assert first["full_rebuilds"] == 1  # a host the worker did not know: from the store
    assert first["rebuilds"] == {"unknown": 1}
    host.report(*fifo_shell(2000, 100, "/dev/shm/.c"))
    second = wait_for(status, lambda s: s["hosts_judged"] >= 2)
    assert second["incremental_runs"] >= 1 and second["pending_hosts"] == 0
    lag = second["lag_seconds"]
    assert lag["samples"] == second["hosts_judged"]
    assert 0 < lag["p50"] <= lag["p95"] <= lag["p99"]
    assert (
        admin.get("/api/v1/admin/detection/status", headers={"Authorization": "x"}).status_code
        == 401
    )

    shown = CliRunner().invoke(main, ["detect", "--status"])
    assert shown.exit_code == 0, shown.output
    assert "incremental_runs" in shown.stdout and "lag_p99" in shown.stdout
    row = json.loads(CliRunner().invoke(main, ["detect", "--status", "--format", "json"]).stdout)
    assert row[0]["running"] is True and row[0]["hosts_judged"] >= 2
    assert row[0]["rebuilds"] == "unknown=1"
