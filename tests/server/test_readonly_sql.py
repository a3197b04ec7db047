"""``fleetctl sql``: read queries run, every kind of write is refused, on both stores."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from fleetctl.cli import main
from fleetctl.errors import BadRequest
from fleetctl.readonly_sql import check_sql
from tests.conftest import RunningServer


@pytest.fixture
def admin(server: RunningServer) -> Any:
    node = server.node()
    node.enroll()
    node.log(
        "result",
        [
            {
                "name": "q",
                "unixTime": 100,
                "counter": 0,
                "epoch": 0,
                "columns": {"pid": "42", "name": "sh"},
                "action": "added",
            }
        ],
    )
    return server.admin()


def sql(admin: Any, query: str) -> Any:
    return admin.post("/api/v1/admin/sql", json={"sql": query})


def test_select_over_the_store(admin: Any) -> None:
    answer = sql(admin, "SELECT host_identifier, hostname FROM hosts ORDER BY id;")
    assert answer.status_code == 200
    assert answer.json() == {
        "columns": ["host_identifier", "hostname"],
        "rows": [{"host_identifier": "jumpvm", "hostname": "jumpvm"}],
        "truncated": False,
    }


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM hosts",
        "UPDATE hosts SET hostname = 'x'",
        "SELECT 1; DELETE FROM hosts",
        "SELECT 1; SELECT 2",
        "DROP TABLE hosts",
        "INSERT INTO hosts (uuid) VALUES ('x')",
        "  -- sneaky\n  DELETE FROM hosts",
        "PRAGMA query_only = OFF",
        "ATTACH DATABASE '/tmp/x.db' AS x",
    ],
)
def test_writes_are_refused_before_running(admin: Any, query: str) -> None:
    answer = sql(admin, query)
    assert answer.status_code == 400
    assert answer.json()["error"] in (
        "only one statement is allowed (no ';'-chained statements)",
        "only read queries (SELECT, WITH ... SELECT, VALUES) are allowed",
    )
    assert sql(admin, "SELECT count(*) AS n FROM hosts").json()["rows"] == [{"n": 1}]


def test_a_write_hidden_in_a_cte_is_refused_by_the_database(admin: Any, db_url: str) -> None:
    if db_url.startswith("sqlite"):
        query = (
            "WITH x AS (SELECT 1) INSERT INTO enroll_secrets (secret_hash, created_at) "
            "SELECT 'h', 1 FROM x"
        )
    else:
        query = "WITH gone AS (DELETE FROM hosts RETURNING id) SELECT count(*) FROM gone"
    answer = sql(admin, query)
    assert answer.status_code == 400
    assert "read-only" in answer.json()["error"] or "readonly" in answer.json()["error"]
    assert sql(admin, "SELECT count(*) AS n FROM hosts").json()["rows"] == [{"n": 1}]


def test_bad_sql_is_a_clear_error(admin: Any) -> None:
    answer = sql(admin, "SELECT nope FROM hosts")
    assert answer.status_code == 400 and "nope" in answer.json()["error"]


def test_cli_formats(admin: Any) -> None:
    result = CliRunner().invoke(
        main, ["sql", "SELECT id, host_identifier FROM hosts", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"id": 1, "host_identifier": "jumpvm"}]
    refused = CliRunner().invoke(main, ["sql", "DELETE FROM hosts"])
    assert refused.exit_code == 1 and "only read queries" in refused.output


def test_statement_splitting_respects_quotes_and_comments() -> None:
    assert check_sql("SELECT ';' AS semi; ") == "SELECT ';' AS semi"
    assert check_sql("/* a; b */ SELECT 1") == "/* a; b */ SELECT 1"
    with pytest.raises(BadRequest):
        check_sql("SELECT 1;;SELECT 2")
