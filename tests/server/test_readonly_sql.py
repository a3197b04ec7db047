"""``fleetctl sql``: read queries over the hunting views run; everything else is refused;
values come back as JSON and the caps hold; on both stores, through the admin API."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fleetctl.cli import main
from storage.analyst_sql import Refused, check_sql
from tests.conftest import RunningServer

MiB = 1024 * 1024
TEN_ROWS = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 10)"
ONLY_READS = "only read queries (SELECT, WITH ... SELECT, VALUES) are allowed"


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


def sql(admin: Any, query: str, **body: Any) -> Any:
    return admin.post("/api/v1/admin/sql", json={"sql": query, **body})


def hosts(admin: Any) -> Any:
    return sql(admin, "SELECT count(*) AS n FROM hunt_hosts").json()["rows"]


def pg(db_url: str) -> bool:
    return db_url.startswith("postgresql")


def test_select_over_the_views(admin: Any) -> None:
    answer = sql(admin, "SELECT host, hostname FROM hunt_hosts ORDER BY host_id;")
    assert answer.status_code == 200
    assert answer.json() == {
        "columns": ["host", "hostname"],
        "rows": [{"host": "jumpvm", "hostname": "jumpvm"}],
        "truncated": False,
        "reason": None,
    }


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("DELETE FROM hosts", ONLY_READS),
        ("UPDATE hosts SET hostname = 'x'", ONLY_READS),
        ("DROP TABLE hosts", ONLY_READS),
        ("INSERT INTO hosts (uuid) VALUES ('x')", ONLY_READS),
        ("  -- sneaky\n  DELETE FROM hosts", ONLY_READS),
        ("PRAGMA query_only = OFF", ONLY_READS),
        ("ATTACH DATABASE '/tmp/x.db' AS x", ONLY_READS),
        ("SELECT 1; DELETE FROM hosts", "only one statement is allowed"),
        ("SELECT 1; SELECT 2", "only one statement is allowed"),
        ("SELECT 1;;SELECT 2", "only one statement is allowed"),
    ],
)
def test_writes_and_chains_are_refused(admin: Any, query: str, error: str) -> None:
    answer = sql(admin, query)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)
    assert hosts(admin) == [{"n": 1}]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT host_identifier FROM hosts",
        "SELECT token_hash FROM api_tokens",
        "SELECT value FROM store_secrets",
        # A CTE reports its own name where SQLite names the view a read is for.
        "WITH hunt_hosts AS (SELECT token_hash FROM api_tokens) SELECT * FROM hunt_hosts",
        "SELECT * FROM hunt_hosts WHERE host IN (SELECT node_key_hash FROM hosts)",
    ],
)
def test_only_the_hunting_views_can_be_read(admin: Any, query: str) -> None:
    answer = sql(admin, query)
    assert answer.status_code == 400
    assert answer.json()["error"].endswith("analyst SQL reads the hunting views (hunt_*) only")


def test_a_refusal_names_what_was_refused(admin: Any, db_url: str) -> None:
    table = sql(admin, "SELECT token_hash FROM api_tokens").json()["error"]
    assert "api_tokens" in table
    if db_url.startswith("sqlite"):  # SQLite itself says only "not authorized"
        function = sql(admin, "SELECT load_extension('x')").json()["error"]
        assert function == "the function load_extension() is not available to analyst SQL"


def test_a_write_hidden_in_a_cte_is_refused_by_the_database(admin: Any, db_url: str) -> None:
    if pg(db_url):
        query = "WITH gone AS (DELETE FROM hosts RETURNING id) SELECT count(*) FROM gone"
    else:
        query = (
            "WITH x AS (SELECT 1) INSERT INTO enroll_secrets (secret_hash, created_at) "
            "SELECT 'h', 1 FROM x"
        )
    answer = sql(admin, query)
    assert answer.status_code == 400 and answer.json()["error"]
    assert hosts(admin) == [{"n": 1}]


def test_bad_sql_is_a_clear_error(admin: Any) -> None:
    answer = sql(admin, "SELECT nope FROM hunt_hosts")
    assert answer.status_code == 400 and "nope" in answer.json()["error"]


def test_a_typo_gets_the_database_syntax_error(admin: Any) -> None:
    answer = sql(admin, "SELEC 1")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "syntax error" in error and "SELEC" in error and "only read" not in error


def test_database_errors_are_one_short_line(admin: Any, db_url: str) -> None:
    """A message that quotes a value the query built is cut short."""
    query = "SELECT CAST(repeat('x', 900000) AS int)" if pg(db_url) else "SELECT nope\nFROM x"
    answer = sql(admin, query)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "\n" not in error and len(error) <= 503


def test_bind_parameter_syntax_is_not_rewritten(admin: Any, db_url: str) -> None:
    """``:name`` reaches the database as written (no SQLAlchemy ``text()`` in between)."""
    answer = sql(admin, "SELECT ':name' AS literal, host FROM hunt_hosts")
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [{"literal": ":name", "host": "jumpvm"}]


def test_duplicate_column_names_keep_every_value(admin: Any) -> None:
    answer = sql(admin, "SELECT 1 AS a, 2 AS a")
    assert answer.json()["columns"] == ["a", "a_2"]
    assert answer.json()["rows"] == [{"a": 1, "a_2": 2}]


def test_cli_formats(admin: Any) -> None:
    result = CliRunner().invoke(
        main, ["sql", "SELECT host_id, host FROM hunt_hosts", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"host_id": 1, "host": "jumpvm"}]
    refused = CliRunner().invoke(main, ["sql", "DELETE FROM hosts"])
    assert refused.exit_code == 1 and "only read queries" in refused.output


def test_cli_lists_the_views_and_their_columns(admin: Any) -> None:
    result = CliRunner().invoke(main, ["sql", "--schema", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    kind = next(r for r in rows if (r["view"], r["column"]) == ("hunt_stdio", "kind"))
    assert kind["type"] == "text" and "fifo" in kind["values"].split(", ")
    assert {"view": "hunt_hosts", "column": "last_seen_iso", "type": "text", "values": ""} in rows
    missing = CliRunner().invoke(main, ["sql"])
    assert missing.exit_code == 2 and "--schema" in missing.output


def test_cli_says_why_an_answer_was_truncated(admin: Any) -> None:
    result = CliRunner().invoke(
        main, ["sql", f"{TEN_ROWS} SELECT i FROM s", "--limit", "3", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "i\n1\n2\n3\n"
    assert "truncated: stopped at 3 rows (the limit)" in result.stderr


def test_check_sql_is_only_a_friendly_first_answer() -> None:
    assert check_sql("SELECT ';' AS semi; ") == "SELECT ';' AS semi"
    assert check_sql("/* a; b */ SELECT 1") == "/* a; b */ SELECT 1"
    assert check_sql("(SELECT 1)") == "(SELECT 1)"
    # No client-side counting of statements: the database parses (PostgreSQL's $$...$$
    # would fool SQLite's tokenizer, E'...' fooled it the other way).
    assert check_sql("SELECT $$;$$") == "SELECT $$;$$"
    assert check_sql("SELECT 1;;SELECT 2") == "SELECT 1;;SELECT 2"
    for bad in ("", " ; ", "DELETE FROM hosts", "SELECT '" + "x" * 100_000 + "'"):
        with pytest.raises(Refused):
            check_sql(bad)


def test_values_come_back_as_json(admin: Any, db_url: str) -> None:
    if pg(db_url):
        query = """SELECT 1::numeric / 4 AS quarter, sum(x) AS total, 1e30::numeric AS huge,
            '2024-02-29'::date AS day, '2024-02-29 10:00:00+00'::timestamptz AS at,
            interval '1 day 2 hours' AS span, '6ecd8c99-4036-403d-bf84-cf8400f67836'::uuid AS id,
            ARRAY[1, 2] AS list, '{"a": [1, {"b": null}]}'::jsonb AS doc,
            '\\xdeadbeef'::bytea AS raw, 'NaN'::float8 AS nan, NULL AS absent
            FROM (VALUES (2::bigint), (3::bigint)) AS v(x)"""
        expected = {
            "quarter": 0.25,
            "total": 5,
            "huge": "1000000000000000000000000000000",
            "day": "2024-02-29",
            "at": "2024-02-29 10:00:00+00",
            "span": "1 day 02:00:00",
            "id": "6ecd8c99-4036-403d-bf84-cf8400f67836",
            "list": [1, 2],
            "doc": {"a": [1, {"b": None}]},
            "raw": "deadbeef",
            "nan": "nan",
            "absent": None,
        }
    else:
        query = """SELECT x'deadbeef' AS raw, 0.25 AS quarter, 9e999 AS inf, 5 AS total,
            '{"a": 1}' ->> 'a' AS a, NULL AS absent, CAST(x'ff' AS TEXT) AS odd"""
        expected = {
            "odd": "\ufffd",
            "raw": "deadbeef",
            "quarter": 0.25,
            "inf": "inf",
            "total": 5,
            "a": 1,
            "absent": None,
        }
    answer = sql(admin, query)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [expected]


def test_a_value_over_the_cap_is_refused_before_it_reaches_the_server(
    admin: Any, db_url: str
) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if pg(db_url):
        answer = sql(admin, "SELECT 1 AS small, repeat('x', 100000000) AS big")
        assert answer.status_code == 400
        assert answer.json()["error"] == (
            "column 'big' of row 1 holds more than 1048576 bytes; select a substr() of it"
        )
    else:
        answer = sql(admin, "SELECT 1 AS small, randomblob(100000000) AS big")
        assert answer.status_code == 400
        assert answer.json()["error"] == (
            "a value of row 1 (or one the query builds) holds more than 1048576 bytes;"
            " select a substr() of it"
        )
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (peak_after - peak_before) * 1024 < 50 * MiB  # the value never came here
    substr = "substr(repeat('x', 2000000), 1, 10)" if pg(db_url) else "hex(zeroblob(5))"
    assert sql(admin, f"SELECT {substr} AS head").json()["rows"] == [
        {"head": "xxxxxxxxxx" if pg(db_url) else "0000000000"}
    ]


def test_the_row_limit_truncates_with_a_reason(admin: Any) -> None:
    answer = sql(admin, f"{TEN_ROWS} SELECT i FROM s", limit=4).json()
    assert answer["rows"] == [{"i": 1}, {"i": 2}, {"i": 3}, {"i": 4}]
    assert answer["truncated"] is True
    assert answer["reason"] == "stopped at 4 rows (the limit)"
    exact = sql(admin, f"{TEN_ROWS} SELECT i FROM s", limit=10).json()
    assert len(exact["rows"]) == 10 and exact["truncated"] is False


def test_the_byte_cap_truncates_with_a_reason(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    srv = RunningServer(home, db_url, analyst_max_bytes=2 * MiB)
    try:
        big = "repeat('0', 500000)" if pg(db_url) else "hex(zeroblob(250000))"
        answer = sql(srv.admin(), f"{TEN_ROWS} SELECT i, {big} AS v FROM s")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [r["i"] for r in body["rows"]] == [1, 2, 3, 4]
        assert body["truncated"] is True
        assert body["reason"] == "stopped at 4 rows: the answer would exceed 2097152 bytes"
    finally:
        srv.stop()
