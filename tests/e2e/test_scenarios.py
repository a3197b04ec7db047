"""Every validation scenario end to end: real server, real agent, real processes.

Attacks must become medium-or-worse findings naming one of their processes; benign
look-alikes must not. One server and agent serve the whole module (learning this host
once, as ``fleetctl validate`` does).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl.local import LocalFleet
from fleetctl.settings import Settings
from fleetctl.validate import SCENARIOS, Scenario, run_scenarios
from fleetctl.validate.scenarios import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    home: Path = tmp_path_factory.mktemp("validate-home")
    local = LocalFleet(Settings(home=home, listen=f"127.0.0.1:{free_port()}"), engine="embedded")
    local.start()
    assert local.client is not None
    local.collect()
    local.collect()
    local.client.post("/detect", {"learn": True})
    yield local
    local.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f"{s.number}" for s in SCENARIOS])
def test_scenario(fleet: LocalFleet, scenario: Scenario) -> None:
    missing = scenario.missing_tools()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"CI installs every scenario tool, but {missing} is missing")
    reason = scenario.unavailable()
    if reason:
        pytest.skip(reason)
    client = fleet.client
    assert client is not None

    def findings(since: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = client.get(
            "/findings", status="open", min_severity="medium", occurred_since=since
        )["findings"]
        return found

    [outcome] = run_scenarios([scenario], fleet.collect, findings, wait=20)
    expected = "detected" if scenario.attack else "quiet"
    assert outcome.verdict == expected, outcome.row()
    if scenario.attack:
        shown = client.get(f"/findings/{outcome.finding}")
        occurrence = next(o for o in shown["occurrences"] if o["pid"] == outcome.pid)
        assert occurrence["evidence"]["lineage"][0]["pid"] == outcome.pid, "with its lineage"
        assert occurrence["reasons"] and shown["finding"]["reasons"], "a finding says why"
