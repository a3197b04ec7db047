"""``fleetctl packs apply|list|show|diff|delete`` and ``labels`` against a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from fleetctl.cli import main
from fleetctl.packs.loader import pack_files, shipped_packs_dir
from tests.conftest import RunningServer


def run(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_apply_the_shipped_packs_then_list_show_and_delete(server: RunningServer) -> None:
    applied = json.loads(run("packs", "apply", "--format", "json"))
    shipped = sorted(p.stem for p in pack_files([shipped_packs_dir()]))
    assert sorted(a["pack"] for a in applied) == shipped
    assert {a["action"] for a in applied} == {"created"}
    again = json.loads(run("packs", "apply", "--format", "json"))
    assert {a["action"] for a in again} == {"unchanged"}
    listed = json.loads(run("packs", "list", "--format", "json"))
    assert [p["name"] for p in listed] == shipped
    shown = json.loads(run("packs", "show", "ipc-telemetry", "--format", "json"))[0]
    assert shown["pack"]["version"] == 1 and "queries" in shown["body"]
    assert "pack telemetry-health: deleted (version 2)" in run(
        "packs", "delete", "telemetry-health"
    )
    assert "telemetry-health" not in [
        p["name"] for p in json.loads(run("packs", "list", "--format", "json"))
    ]


def test_apply_refuses_an_invalid_file_and_names_the_place(
    server: RunningServer, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"queries": {"q": {"query": "SELECT * FROM nope;", "interval": 10, "blacklist": True}}}
        )
    )
    result = CliRunner().invoke(main, ["packs", "apply", str(bad), "--format", "json"])
    assert result.exit_code == 1
    assert "blacklist" in result.output and "nope" in result.output
    assert json.loads(run("packs", "list", "--format", "json")) == []


def test_labels_and_diff(server: RunningServer, tmp_path: Path) -> None:
    node = server.node()
    node.enroll()
    assert run("labels", "apply", "mine", "--hosts", "jumpvm") == "label mine: created\n"
    labels = json.loads(run("labels", "list", "--format", "json"))
    assert [(label["name"], label["kind"], label["members"]) for label in labels] == [
        ("mine", "manual", 1)
    ]
    members = json.loads(run("labels", "show", "mine", "--format", "json"))[0]["members"]
    assert [m["host_identifier"] for m in members] == ["jumpvm"]
    pack = tmp_path / "small.json"
    pack.write_text(
        json.dumps({"queries": {"procs": {"query": "SELECT pid FROM processes;", "interval": 60}}})
    )
    diff = json.loads(run("packs", "diff", str(pack), "--label", "mine", "--format", "json"))
    assert [(d["pack"], d["query"], d["change"], d["hosts_gain"]) for d in diff] == [
        ("small", "procs", "added", 1)
    ]
    unknown = CliRunner().invoke(main, ["packs", "apply", str(pack), "--label", "nolabel"])
    assert unknown.exit_code == 1
    assert "unknown label 'nolabel'" in unknown.output
    bad_label = CliRunner().invoke(main, ["labels", "apply", "x", "--sql", "SELECT * FROM nope"])
    assert bad_label.exit_code == 1 and "does not validate" in bad_label.output
