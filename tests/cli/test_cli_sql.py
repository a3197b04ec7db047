"""``fleetctl sql`` through CliRunner against a real server: a query run and saved,
listed, run again by name, replaced and deleted, and every misuse refused with a clear
error."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from fleetctl.cli import main
from tests.conftest import RunningServer


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(run(*args, "--format", "json").stdout)


def refused(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code != 0, result.output
    return result.output


def test_a_query_is_saved_once_it_runs_then_run_by_name_and_deleted(
    server: RunningServer,
) -> None:
    saved = run(
        "sql", "SELECT 1 AS n", "--save", "one", "--description", "a constant", "--format", "json"
    )
    assert json.loads(saved.stdout) == [{"n": 1}]  # its rows, as for any query
    assert "saved query one (created)" in saved.stderr
    [kept] = as_json("sql", "--saved")
    assert (kept["name"], kept["sql"], kept["description"], kept["saved_by"]) == (
        "one",
        "SELECT 1 AS n",
        "a constant",
        "admin",
    )
    assert as_json("sql", "--run", "one") == [{"n": 1}]

    assert "(updated)" in run("sql", "SELECT 2 AS n", "--save", "one").stderr
    assert as_json("sql", "--run", "one") == [{"n": 2}]

    broken = refused("sql", "SELECT nope FROM nowhere", "--save", "broken")
    assert "nowhere" in broken
    assert [q["name"] for q in as_json("sql", "--saved")] == ["one"], "a failing query is not kept"

    assert "deleted saved query one" in run("sql", "--delete-saved", "one").stderr
    assert as_json("sql", "--saved") == []
    assert "no saved query 'one'" in refused("sql", "--run", "one")
    assert "no saved query 'one'" in refused("sql", "--delete-saved", "one")


def test_sql_takes_one_thing_to_do(server: RunningServer) -> None:
    one_of = "give one of: a QUERY, --schema, --saved, --run NAME or --delete-saved NAME"
    assert one_of in refused("sql")
    assert one_of in refused("sql", "SELECT 1", "--saved")
    assert one_of in refused("sql", "--run", "a", "--delete-saved", "a")
    assert "--save and --description go with a QUERY" in refused("sql", "--saved", "--save", "x")
