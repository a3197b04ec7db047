"""``fleetctl packs validate`` and ``fleetctl packs convert``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fleetctl.cli import main
from fleetctl.packs.loader import load_file, pack_files, shipped_packs_dir

FIXTURES = Path(__file__).parent / "fixtures"


def test_validate_shipped_packs_by_default() -> None:
    packs = [p for f in pack_files([shipped_packs_dir()]) for p in load_file(f)]
    queries = sum(len(p.queries) for p in packs)
    result = CliRunner().invoke(main, ["packs", "validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{len(packs)} packs, {queries} queries: OK\n"


def test_validate_reports_errors_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "queries": {
                    "lineage": {"query": "SELECT parnet FROM processes", "blacklist": True},
                }
            }
        )
    )
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"queries": {"ok": {"query": "SELECT pid FROM processes"}}}))
    result = CliRunner().invoke(
        main, ["packs", "validate", str(good), str(bad), "--format", "json"]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {
            "file": str(bad),
            "pack": "bad",
            "query": "lineage",
            "identifier": "blacklist",
            "message": "'blacklist' was removed in osquery 5.0; use 'denylist'",
        },
        {
            "file": str(bad),
            "pack": "bad",
            "query": "lineage",
            "identifier": "parnet",
            "message": "no such column: parnet (did you mean parent?)",
        },
    ]


def test_validate_table_output_names_everything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"queries": {"q": {"query": "SELECT * FROM proceses"}}}')
    result = CliRunner().invoke(main, ["packs", "validate", str(bad)])
    assert result.exit_code == 1
    for text in (str(bad), "proceses", "no such table: proceses (did you mean processes?)"):
        assert text in result.stdout


def test_validate_ok_in_json_prints_an_empty_array(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"queries": {"ok": {"query": "SELECT pid FROM processes"}}}))
    result = CliRunner().invoke(main, ["packs", "validate", str(good), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "[]\n"
    assert result.stderr == "1 packs, 1 queries: OK\n"


def test_convert_to_stdout_and_to_a_file(tmp_path: Path) -> None:
    source = FIXTURES / "incident-response.conf"
    result = CliRunner().invoke(main, ["packs", "convert", str(source)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["queries"]["crontab"]["interval"] == 3600

    out = tmp_path / "incident-response.json"
    result = CliRunner().invoke(main, ["packs", "convert", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"1 packs, 4 queries written to {out}\n"
    assert out.read_text() == CliRunner().invoke(main, ["packs", "convert", str(source)]).stdout
    validated = CliRunner().invoke(main, ["packs", "validate", str(out)])
    assert validated.stdout == "1 packs, 4 queries: OK\n"


def test_convert_fleet_yaml_prints_warnings(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    result = CliRunner().invoke(
        main, ["packs", "convert", str(FIXTURES / "fleet.yml"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: pack 'ipc_monitoring': Fleet targets have no osquery equivalent; dropped\n"
        "warning: query 'ad_hoc_processes' is in no pack and has no interval; skipped\n"
        f"2 packs, 4 queries written to {out}\n"
    )
    assert sorted(json.loads(out.read_text())["packs"]) == ["fleet", "ipc_monitoring"]


def test_convert_refuses_to_write_an_invalid_pack(tmp_path: Path) -> None:
    source = tmp_path / "old.conf"
    source.write_text(
        '# old pack\n{"queries": {"q": {"query": "SELECT * FROM alf", "interval": "60"}}}'
    )
    out = tmp_path / "old.json"
    result = CliRunner().invoke(
        main, ["packs", "convert", str(source), "--out", str(out), "--format", "json"]
    )
    assert result.exit_code == 1
    assert not out.exists()
    assert json.loads(result.stderr) == [
        {
            "file": str(source),
            "pack": "old",
            "query": "q",
            "identifier": "alf",
            "message": "no such table: alf",
        }
    ]


def test_convert_reports_unreadable_input(tmp_path: Path) -> None:
    source = tmp_path / "broken.conf"
    source.write_text("{\n  nope\n}")
    result = CliRunner().invoke(main, ["packs", "convert", str(source)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {source}: invalid JSON at line 2 column 3: Expecting property name enclosed "
        "in double quotes\n"
    )
