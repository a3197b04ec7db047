"""Every shipped pack query that targets Linux runs on this host through the embedded
engine (``fleetctl packs test``), with no SQL error."""

from __future__ import annotations

import json
import platform

import pytest
from click.testing import CliRunner

from fleetctl.cli import main

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="Linux tables")


def test_every_shipped_linux_pack_query_runs_without_error() -> None:
    result = CliRunner().invoke(main, ["packs", "test", "--engine", "embedded", "--format", "json"])
    rows = json.loads(result.output)
    errors = [(r["pack"], r["query"], r["error"]) for r in rows if r["status"] == "error"]
    assert errors == []
    assert result.exit_code == 0, result.output
    ran = {(r["pack"], r["query"]): r for r in rows if r["status"] == "ok"}
    packs = {pack for pack, _ in ran}
    assert {"ipc-telemetry", "t1559-hunts", "telemetry-health"} <= packs
    # Evented tables exist but have no publisher in the embedded engine.
    assert ran[("ipc-telemetry", "process_exec_events")]["rows"] == 0
    assert ran[("t1559-hunts", "dbus_daemon_exec_events")]["rows"] == 0
    assert ran[("telemetry-health", "extension_tables")]["rows"] >= 1
    assert all(r["status"] == "ok" or r["status"].startswith(("skipped", "inactive")) for r in rows)
