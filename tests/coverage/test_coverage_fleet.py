"""``fleetctl coverage`` over a fixture fleet of Linux, macOS and Windows hosts fed
through the real server, on SQLite and PostgreSQL: each host's cells, the platform
roll-up, exit status, every output format, and purple-team evidence."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fleetctl.cli import main
from fleetctl.cli.client import AdminClient, Connection
from fleetctl.cli.validate import record
from fleetctl.packs.loader import load_file, shipped_packs_dir
from fleetctl.schema import default_schema
from fleetctl.validate import SCENARIOS, Outcome
from tests.conftest import RunningServer
from tests.coverage.fleet import FLEET, PlatformNode, feed, lines_for

ITEMS = (
    "process_events",
    "lineage",
    "command_lines",
    "ipc",
    "context",
    "freshness",
    "schedule",
    "retention",
)
# host -> the status of each item, in ITEMS order.
EXPECTED = {
    "lnx-full": "ok ok ok ok ok ok ok ok",
    "lnx-stock": "missing ok partial partial ok ok ok ok",
    "lnx-none": "ok ok ok missing ok ok missing ok",
    "lnx-gap": "ok ok ok ok ok ok ok partial",
    "mac-full": "ok ok ok ok ok ok ok ok",
    "mac-stock": "missing ok partial partial ok ok ok ok",
    "mac-none": "ok ok ok missing ok ok partial ok",
    "win-full": "ok ok ok ok ok ok ok ok",
    "win-partial": "missing ok partial partial partial ok ok ok",
    "win-none": "ok ok ok missing ok ok ok ok",
}


def invoke(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def fleet(server: RunningServer) -> RunningServer:
    feed(server)
    return server


def report(*args: str, code: int = 1) -> dict[str, Any]:
    [doc] = json.loads(invoke("coverage", "--format", "json", *args, code=code).stdout)
    return doc


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {h["host"]: " ".join(h["cells"][i]["status"] for i in ITEMS) for h in doc["hosts"]}


def reason(doc: dict[str, Any], host: str, item: str) -> str:
    return next(h["cells"][item]["reason"] for h in doc["hosts"] if h["host"] == host)


def test_fixture_fleet_is_judged_host_by_host(fleet: RunningServer) -> None:
    doc = report()
    assert statuses(doc) == EXPECTED
    assert [p["platform"] for p in doc["platforms"]] == ["linux", "darwin", "windows"]
    assert doc["ok"] is False


def test_reasons_say_what_is_missing_and_why(fleet: RunningServer) -> None:
    doc = report()
    # events disabled by flag
    assert reason(doc, "lnx-stock", "process_events") == (
        "process_events disabled by flag --disable_audit=true (osqueryd's default); it needs "
        "--disable_events=false, --disable_audit=false, --audit_allow_process_events=true"
    )
    assert "--disable_endpointsecurity=true" in reason(doc, "mac-stock", "process_events")
    assert "--enable_process_etw_events=false" in reason(doc, "win-partial", "process_events")
    # what stock osqueryd lacks on Linux: unix socket peers
    assert "no unix socket peers: stock osqueryd has none" in reason(doc, "lnx-stock", "ipc")
    assert "pipes with their partner processes (1)" in reason(doc, "lnx-stock", "ipc")
    assert "no XPC attribution" in reason(doc, "mac-stock", "ipc")
    assert reason(doc, "win-partial", "ipc").startswith("4 named pipes, 25% with their server")
    assert "osquery reports a pipe's server, never its clients" in reason(doc, "win-full", "ipc")
    # a denylisted query
    assert reason(doc, "lnx-none", "schedule") == (
        "denylisted by the watchdog: ipc-telemetry/pipe_partners"
    )
    assert reason(doc, "mac-none", "schedule") == (
        "ipc-telemetry/launchd_mach_services never ran in 5 d (every 60 s)"
    )
    # retention shortened by a recorded gap
    gap = reason(doc, "lnx-gap", "retention")
    assert gap.startswith(
        "history reaches back 3 d (ipc-telemetry/unix_sockets): data loss (counter gap)"
    )
    assert "40 d with the gap; below the 30 d asked" in gap
    assert reason(doc, "lnx-full", "retention").startswith("history reaches back 40 d")
    assert reason(doc, "win-full", "context").startswith("user and session from process_etw_events")
    assert reason(doc, "win-partial", "context").startswith("no user or session, host win-partial")


def test_platform_roll_up_is_the_worst_host(fleet: RunningServer) -> None:
    linux = report()["platforms"][0]
    assert linux["hosts"] == 4
    assert linux["cells"]["process_events"] == {
        "status": "missing",
        "reason": "ok on 3 of 4 hosts; missing on lnx-stock",
    }
    assert linux["cells"]["lineage"] == {"status": "ok", "reason": "ok on 4 of 4 hosts"}


def test_exit_status_and_targets(fleet: RunningServer) -> None:
    ok = report("--targets", "host:lnx-full,host:mac-full,host:win-full", code=0)
    assert ok["ok"] is True and ok["failing"] == []
    short = report("--targets", "host:lnx-full", "--retention", "60d")
    assert short["failing"] == [
        {
            "host": "lnx-full",
            "platform": "linux",
            "item": "retention",
            "status": "partial",
            "reason": "history reaches back 40 d (ipc-telemetry/process_lineage); "
            "below the 60 d asked (it grows as collection goes on)",
        }
    ]
    windows = report("--targets", "platform:windows")
    assert [h["host"] for h in windows["hosts"]] == ["win-full", "win-partial", "win-none"]
    said = invoke("coverage", "--targets", "platform:darwin", code=1).stderr
    assert (
        "coverage fails on 2 of 3 hosts: mac-stock (process creation events); "
        "mac-none (IPC channels)" in said
    )
    assert "no label" in invoke("coverage", "--targets", "label:nope", code=1).output
    assert "not a duration" in invoke("coverage", "--retention", "soon", code=2).output


def test_every_format(fleet: RunningServer) -> None:
    table = invoke("coverage", code=1).stdout
    assert "coverage by platform (retention asked: 30d)" in table and "why (every cell" in table
    rows = list(csv.DictReader(io.StringIO(invoke("coverage", "--format", "csv", code=1).stdout)))
    assert rows[0] == {
        "scope": "platform",
        "name": "linux",
        "platform": "linux",
        "item": "process_events",
        "status": "missing",
        "reason": "ok on 3 of 4 hosts; missing on lnx-stock",
    }
    assert len(rows) == 3 * 8 + len(FLEET) * 9
    md = invoke("coverage", "--format", "markdown", code=1).stdout
    assert md.startswith("# DET0493 telemetry coverage\n")
    order = [
        "## Summary",
        "## Hosts that fail, and why",
        "### lnx-stock",
        "## Purple-team validation",
        "## Every host",
    ]
    assert [md.index(h) for h in order] == sorted(md.index(h) for h in order)
    assert (
        "- Linux (4 hosts): missing: process creation events, IPC channels, schedule health; " in md
    )
    page = invoke("coverage", "--format", "html", code=1).stdout
    assert page.startswith("<!DOCTYPE html>") and '<td class="missing">missing</td>' in page


def test_hostile_host_values_are_escaped(fleet: RunningServer) -> None:
    evil = "<script>alert(1)</script>|*x*"
    node = PlatformNode(fleet, evil, "linux")
    node.enroll()
    page = invoke("coverage", "--format", "html", code=1).stdout
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;|*x*" in page
    md = invoke("coverage", "--format", "markdown", code=1).stdout
    assert "<script>" not in md and r"\<script\>alert(1)\</script\>\|\*x\*" in md


def test_validations_are_stored_and_shown(
    fleet: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    attack = next(s for s in SCENARIOS if s.attack)
    benign = next(s for s in SCENARIOS if not s.attack)
    outcomes = [
        Outcome(attack, "detected", "f1", 4.2, "socat -> sh", 4242, 1),
        Outcome(benign, "quiet", seconds=8.0, cycles=2),
    ]
    client = AdminClient(Connection())
    mine = {"uuid": "uuid-lnx-full", "host_identifier": "lnx-full", "hostname": "lnx-full"}
    record(client, mine, outcomes, 1_700_000_000, "extension")
    record(
        client, mine, [Outcome(attack, "missed", seconds=30.0, cycles=3)], 1_700_000_100, "stock"
    )
    stranger = {"uuid": "uuid-laptop", "host_identifier": "laptop", "hostname": "laptop"}
    record(client, stranger, outcomes[:1], 1_700_000_000, "extension")
    client.close()
    assert "(recorded 2 outcomes for lnx-full (uuid uuid-lnx-full)" in capsys.readouterr().err
    doc = report()
    full = next(h for h in doc["hosts"] if h["host"] == "lnx-full")
    assert [(v["scenario"], v["result"], v["agent"]) for v in full["validations"]] == [
        (attack.number, "missed", "stock"),
        (benign.number, "quiet", "extension"),
    ]
    assert full["validation"]["status"] == "partial"
    assert f"failed: {attack.number} {attack.name}" in full["validation"]["reason"]
    never = next(h for h in doc["hosts"] if h["host"] == "mac-full")["validation"]
    assert never == {
        "status": "missing",
        "reason": "never validated: run `fleetctl validate` on this host",
    }
    assert [(v["host"], v["result"]) for v in doc["validated_elsewhere"]] == [
        ("laptop", "detected")
    ]
    history = fleet.admin().get("/api/v1/admin/validations", params={"host": "lnx-full"}).json()
    assert [v["result"] for v in history["validations"]] == ["missed", "quiet", "detected"]
    # Deleting the host with its history deletes its validations; a stranger's stay.
    assert invoke("hosts", "delete", "lnx-full").exit_code == 0
    validations = fleet.admin().get("/api/v1/admin/validations").json()["validations"]
    assert {v["host"] for v in validations} == {"laptop"}


def test_validations_refuse_what_the_store_cannot_hold(fleet: RunningServer) -> None:
    admin = fleet.admin()
    host = {"uuid": "u", "host_identifier": "h"}
    run = {"scenario": "1", "name": "x", "kind": "attack", "result": "detected", "agent": "stock"}
    for body, said in [
        ({"host": host, "runs": []}, "'runs' must be a list of 1 to 1000"),
        ({"host": "h", "runs": [run]}, "'host' must be an object"),
        ({"host": host, "runs": [run | {"result": "won"}]}, "'result' must be one of"),
        ({"host": host, "runs": [run | {"scenario": "9" * 17}]}, "'scenario' is longer than 16"),
        ({"host": host, "runs": [run | {"seconds": "fast"}]}, "'seconds' must be a number"),
        ({"host": host, "runs": [{**run, "agent": None}]}, "'agent' is required"),
        ({"host": host, "runs": [run | {"ran_at": "10000-01-01"}]}, "'ran_at'"),
    ]:
        answer = admin.post("/api/v1/admin/validations", json=body)
        assert answer.status_code == 400 and said in answer.json()["error"], answer.json()


def test_validate_without_a_fleet_says_so(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEETCTL_HOME", str(tmp_path))
    for name in ("FLEETCTL_SERVER", "FLEETCTL_TOKEN", "FLEETCTL_DB"):
        monkeypatch.delenv(name, raising=False)
    client = AdminClient(Connection())
    record(
        client,
        {"uuid": "u", "host_identifier": "h", "hostname": "h"},
        [Outcome(SCENARIOS[0], "detected")],
        1,
        "stock",
    )
    assert capsys.readouterr().err.startswith(
        "(outcomes not recorded in a fleet: no server to talk to"
    )


def test_fixture_rows_have_the_pack_queries_columns() -> None:
    """Every fixture row carries exactly the columns its shipped pack query returns on
    the host's platform, as osquery's schema compiles the query."""
    packs = {p.name: p for f in sorted(shipped_packs_dir().glob("*.json")) for p in load_file(f)}
    schema = default_schema()
    checked = 0
    for spec in FLEET:
        for line in lines_for(spec, 1_700_000_000).lines:
            pack, query = line["name"].removeprefix("pack_").split("_", 1)
            sql = next(q.query for q in packs[pack].queries if q.name == query)
            columns = schema.columns(sql, spec.platform)
            for row in line.get("snapshot") or [line["columns"]]:
                assert sorted(row) == sorted(columns or ()), (spec.host, line["name"])
                checked += 1
    assert checked > 100
