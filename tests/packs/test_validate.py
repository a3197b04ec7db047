"""Each validation rule, with the exact error it reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetctl.packs.validate import ValidationError, validate_file, validate_paths, validate_text

FILE = "packs/bad.json"


def check(pack: dict[str, Any] | str, name: str = "bad") -> list[ValidationError]:
    text = pack if isinstance(pack, str) else json.dumps(pack)
    return validate_text(text, FILE, name=name)


def error(query: str | None, message: str, identifier: str | None) -> ValidationError:
    return ValidationError(FILE, "bad", query, message, identifier)


def one(sql: str, **extra: Any) -> dict[str, Any]:
    """A pack with a single query ``q``."""
    pack_keys = {k[5:]: extra.pop(k) for k in list(extra) if k.startswith("pack_")}
    return {**pack_keys, "queries": {"q": {"query": sql, "interval": 60, **extra}}}


def test_a_valid_pack_has_no_errors() -> None:
    assert check(one("SELECT pid, parent FROM processes", snapshot=True)) == []


def test_invalid_json_reports_line_and_column() -> None:
    text = '{\n  "queries": {\n    "q": {"query": "SELECT 1",}\n  }\n}\n'
    assert validate_text(text, FILE) == [
        ValidationError(
            FILE,
            None,
            None,
            "invalid JSON at line 3 column 31: Expecting property name enclosed in double quotes",
            None,
        )
    ]


def test_comment_lines_are_stripped_and_line_numbers_kept() -> None:
    head = "# osquery strips this\n  // and this\n"
    text = head + '{"queries": {"q": {"query": "SELECT 1",}}}\n'
    assert validate_text(text, FILE) == [
        ValidationError(
            FILE,
            None,
            None,
            "invalid JSON at line 3 column 40: Expecting property name enclosed in double quotes",
            None,
        )
    ]
    assert validate_text(head + '{"queries": {"q": {"query": "SELECT 1"}}}\n', FILE) == []


def test_top_level_must_be_an_object() -> None:
    assert check("[1, 2]") == [
        ValidationError(FILE, None, None, "a pack must be a JSON object, not [1, 2]", None)
    ]


def test_unknown_pack_key_with_suggestion() -> None:
    assert check({"platfrom": "linux", "queries": {}}) == [
        error(None, "unknown key 'platfrom' (did you mean platform?)", "platfrom")
    ]


def test_unknown_query_key_with_suggestion() -> None:
    assert check(one("SELECT 1", intreval=60)) == [
        error("q", "unknown key 'intreval' (did you mean interval?)", "intreval")
    ]


def test_blacklist_is_rejected_with_a_hint() -> None:
    assert check(one("SELECT 1", blacklist=False)) == [
        error("q", "'blacklist' was removed in osquery 5.0; use 'denylist'", "blacklist")
    ]


def test_missing_queries_object() -> None:
    assert check({"platform": "linux"}) == [error(None, "pack has no 'queries' object", "queries")]


def test_missing_query_sql() -> None:
    assert check({"queries": {"q": {"interval": 60}}}) == [
        error("q", "query has no 'query' SQL", "query")
    ]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("snapshot", "yes", "'snapshot' must be true or false, not \"yes\""),
        ("removed", 1, "'removed' must be true or false, not 1"),
        ("denylist", None, "'denylist' must be true or false, not null"),
        ("interval", 3.5, "'interval' must be an integer or a numeric string, not 3.5"),
        ("interval", "hourly", "'interval' must be an integer or a numeric string, not \"hourly\""),
        ("interval", True, "'interval' must be an integer or a numeric string, not true"),
        ("shard", "10", "'shard' must be an integer, not \"10\""),
        ("platform", ["linux"], "'platform' must be a string, not [\"linux\"]"),
        (
            "version",
            "latest",
            '\'version\' must be an osquery version such as "5.0.1", not "latest"',
        ),
        ("description", 5, "'description' must be a string, not 5"),
        ("query", 5, "'query' must be a string, not 5"),
    ],
)
def test_query_value_types(key: str, value: Any, message: str) -> None:
    pack = {"queries": {"q": {"query": "SELECT 1", key: value}}}
    assert check(pack) == [error("q", message, key)]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("queries", [], "'queries' must be an object, not []"),
        ("discovery", "SELECT 1", "'discovery' must be a list of SQL strings, not \"SELECT 1\""),
        ("discovery", [1], "'discovery' must be a list of SQL strings, not [1]"),
        ("shard", 0, "'shard' must be between 1 and 100, not 0"),
        ("oncall", False, "'oncall' must be a string, not false"),
    ],
)
def test_pack_value_types(key: str, value: Any, message: str) -> None:
    pack = {"queries": {}, key: value}
    assert check(pack) == [error(None, message, key)]


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        (0, "'interval' must be between 1 and 604800, not 0"),
        ("0", "'interval' must be between 1 and 604800, not \"0\""),
        (604801, "'interval' must be between 1 and 604800, not 604801"),
        (-5, "'interval' must be between 1 and 604800, not -5"),
    ],
)
def test_interval_range(interval: Any, message: str) -> None:
    assert check(one("SELECT 1", interval=interval)) == [error("q", message, "interval")]


@pytest.mark.parametrize("interval", [1, "60", " 3600 ", 604800])
def test_interval_accepts_ints_and_numeric_strings(interval: Any) -> None:
    assert check(one("SELECT 1", interval=interval)) == []


@pytest.mark.parametrize(
    ("name", "messages"),
    [
        ("query.x", ["query name 'query.x' must not start with 'query.'"]),
        ("cache.x", ["query name 'cache.x' must not start with 'cache.'"]),
        ("config_views.x", ["query name 'config_views.x' must not start with 'config_views.'"]),
        ("run_counter", ["query name 'run_counter' must not end with 'counter'"]),
        ("last_epoch", ["query name 'last_epoch' must not end with 'epoch'"]),
        (
            "cache.epoch",
            [
                "query name 'cache.epoch' must not start with 'cache.'",
                "query name 'cache.epoch' must not end with 'epoch'",
            ],
        ),
    ],
)
def test_reserved_query_names(name: str, messages: list[str]) -> None:
    pack = {"queries": {name: {"query": "SELECT 1"}}}
    assert check(pack) == [error(name, m, name) for m in messages]


def test_duplicate_query_names_and_keys() -> None:
    text = (
        '{"queries": {"q": {"query": "SELECT 1"},'
        ' "q": {"query": "SELECT 2", "interval": 1, "interval": 2}}}'
    )
    assert check(text) == [
        error("q", "duplicate query name 'q'", "q"),
        error("q", "duplicate key 'interval'", "interval"),
    ]


def test_every_error_is_reported_not_just_the_first() -> None:
    pack = {
        "blacklist": True,
        "queries": {
            "a": {"query": "SELECT * FROM proceses", "snapshot": "no"},
            "b": {"query": "SELECT parnet FROM processes", "interval": 0},
        },
    }
    assert check(pack) == [
        error(None, "'blacklist' was removed in osquery 5.0; use 'denylist'", "blacklist"),
        error("a", "'snapshot' must be true or false, not \"no\"", "snapshot"),
        error("a", "no such table: proceses (did you mean processes?)", "proceses"),
        error("b", "'interval' must be between 1 and 604800, not 0", "interval"),
        error("b", "no such column: parnet (did you mean parent?)", "parnet"),
    ]


@pytest.mark.parametrize(
    ("sql", "message", "identifier"),
    [
        ("SELEC pid FROM processes", 'SQL error: near "SELEC": syntax error', "SELEC"),
        ("SELECT * FROM proceses", "no such table: proceses (did you mean processes?)", "proceses"),
        ("SELECT parnet FROM processes", "no such column: parnet (did you mean parent?)", "parnet"),
        (
            "SELECT p.parnet FROM processes p",
            "no such column: parnet (did you mean parent?)",
            "parnet",
        ),
        ("SELECT zzz FROM processes", "no such column: zzz", "zzz"),
        ("SELECT pid FROM processes a JOIN processes b", "ambiguous column name: pid", "pid"),
        ("SELECT 1; SELECT 2", "query must be one SQL statement, found 2", None),
        ("   ", "query is empty", None),
        (
            "SELECT pid FROM processes WHERE pid = ?",
            "SQL error: query has parameters (?), which osqueryd never binds",
            None,
        ),
    ],
)
def test_sql_errors(sql: str, message: str, identifier: str | None) -> None:
    assert check(one(sql)) == [error("q", message, identifier)]


def test_hidden_columns_can_be_named_but_are_not_in_select_star() -> None:
    named = "SELECT xpath, time_range FROM windows_eventlog WHERE channel = 'System'"
    assert check(one(named)) == []
    via_star = "SELECT time_range FROM (SELECT * FROM windows_eventlog WHERE channel = 'System')"
    assert check(one(via_star)) == [
        error(
            "q",
            "no such column: time_range (windows_eventlog.time_range is hidden: "
            "SELECT * leaves it out, name it explicitly)",
            "time_range",
        )
    ]


def test_column_aliases_and_table_aliases_compile() -> None:
    assert check(one("SELECT environment FROM process_events")) == []
    assert check(one("SELECT address, hostnames FROM hosts")) == []


def test_osquery_sql_functions_compile() -> None:
    sql = "SELECT regex_match(cmdline, 'x', 0), split(path, '/', 1) FROM processes"
    assert check(one(sql)) == []


def test_table_missing_on_the_query_platform() -> None:
    assert check(one("SELECT name FROM pipes", platform="linux")) == [
        error("q", "table pipes does not exist on linux (only on windows)", "pipes")
    ]


def test_table_missing_on_one_of_several_platforms() -> None:
    assert check(one("SELECT pid FROM process_open_pipes", platform="posix")) == [
        error(
            "q",
            "table process_open_pipes does not exist on darwin (only on linux)",
            "process_open_pipes",
        )
    ]


def test_platform_column_on_another_platform() -> None:
    assert check(one("SELECT pid, cgroup_path FROM processes", platform="darwin")) == [
        error(
            "q",
            "column processes.cgroup_path does not exist on darwin (only on linux)",
            "cgroup_path",
        )
    ]


def test_unspecified_platform_means_every_platform_of_the_tables() -> None:
    assert check(one("SELECT pid, cgroup_path FROM processes")) == [
        error(
            "q",
            "column processes.cgroup_path does not exist on darwin, windows (only on linux)",
            "cgroup_path",
        )
    ]
    assert check(one("SELECT pid, cgroup_path FROM processes", platform="linux")) == []
    assert check(one("SELECT pid, cgroup_path FROM processes", pack_platform="linux")) == []


def test_pack_platform_narrows_the_query_platform() -> None:
    sql = "SELECT pid FROM process_open_pipes"
    assert check(one(sql, platform="posix", pack_platform="linux")) == []


def test_tables_sharing_no_platform() -> None:
    sql = "SELECT p.pid FROM process_open_pipes p JOIN pipes w ON w.pid = p.pid"
    assert check(one(sql)) == [
        error("q", "tables share no platform: pipes (windows), process_open_pipes (linux)", "pipes")
    ]


def test_query_and_pack_platforms_sharing_nothing() -> None:
    assert check(one("SELECT pid FROM processes", platform="windows", pack_platform="linux")) == [
        error("q", "query platform 'windows' shares no platform with the pack's (linux)", "windows")
    ]


def test_pack_platform_sharing_nothing_with_its_queries_tables() -> None:
    pack = {
        "platform": "windows",
        "queries": {
            "a": {"query": "SELECT pid FROM process_open_pipes"},
            "b": {"query": "SELECT path FROM launchd"},
        },
    }
    assert check(pack) == [
        error(
            "a",
            "table process_open_pipes does not exist on windows (only on linux)",
            "process_open_pipes",
        ),
        error("b", "table launchd does not exist on windows (only on darwin)", "launchd"),
        error(
            None,
            "pack platform 'windows' shares no platform with its queries' tables (linux, darwin)",
            "windows",
        ),
    ]


def test_unknown_platform_words() -> None:
    pack = one("SELECT 1", platform="linux,windwos", pack_platform="macos")
    assert check(pack) == [
        error(None, "unknown platform 'macos'", "macos"),
        error("q", "unknown platform 'windwos' (did you mean windows?)", "windwos"),
    ]


@pytest.mark.parametrize(
    ("sql", "table", "columns"),
    [
        ("SELECT * FROM process_open_handles", "process_open_handles", "pid"),
        ("SELECT name FROM docker_container_processes", "docker_container_processes", "id"),
        (
            "SELECT data FROM windows_eventlog WHERE eventid = 4688",
            "windows_eventlog",
            "channel or xpath",
        ),
        ("SELECT md5 FROM hash WHERE md5 = 'x'", "hash", "path or directory"),
    ],
)
def test_required_columns_must_be_constrained(sql: str, table: str, columns: str) -> None:
    assert check(one(sql)) == [
        error(
            "q",
            f"table {table} needs a constraint on {columns} in WHERE or JOIN ... ON "
            "(osqueryd refuses to scan it otherwise)",
            table,
        )
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM process_open_handles WHERE pid = 4",
        "SELECT h.* FROM processes p JOIN process_open_handles h ON h.pid = p.pid",
        "SELECT * FROM process_open_handles WHERE pid IN (SELECT pid FROM processes)",
        "SELECT * FROM docker_container_processes WHERE id = 'abc'",
        "SELECT data FROM windows_eventlog WHERE channel = 'Security'",
        "SELECT md5 FROM hash WHERE directory = '/bin'",
    ],
)
def test_constrained_required_columns_pass(sql: str) -> None:
    assert check(one(sql)) == []


def test_discovery_queries_are_validated() -> None:
    pack = {"discovery": ["SELECT 1 FROM osquery_registri"], "queries": {}}
    assert check(pack) == [
        error(
            "discovery[0]",
            "no such table: osquery_registri (did you mean osquery_registry?)",
            "osquery_registri",
        )
    ]
    registered = "SELECT 1 FROM osquery_registry WHERE registry = 'table' AND name = 'x'"
    assert check({"discovery": [registered], "queries": {}}) == []


def test_extension_tables_need_a_discovery_query() -> None:
    sql = "SELECT pid, kind FROM process_stdio"
    assert check(one(sql)) == [
        error(
            "q",
            "table process_stdio is served by the fleetctl extension; the pack needs a "
            "'discovery' query that checks the extension is loaded",
            "process_stdio",
        )
    ]
    guarded = one(sql, pack_discovery=["SELECT COUNT(*) FROM process_stdio WHERE pid = 1"])
    assert check(guarded) == []


def test_config_shape_validates_each_pack() -> None:
    config = {
        "options": {"host_identifier": "uuid"},
        "schedule": {"ok": {"query": "SELECT pid FROM processes"}},
        "packs": {
            "one": {"queries": {"q": {"query": "SELECT * FROM nope"}}},
            "two": "/etc/osquery/packs/two.conf",
        },
    }
    assert validate_text(json.dumps(config), FILE) == [
        ValidationError(FILE, "one", "q", "no such table: nope", "nope"),
        ValidationError(
            FILE,
            "two",
            None,
            "pack 'two' refers to '/etc/osquery/packs/two.conf'; validate that file",
            "two",
        ),
    ]


def test_validate_paths_counts_and_reads_directories(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(one("SELECT 1")))
    (tmp_path / "b.conf").write_text(
        json.dumps({"queries": {"x": {"query": "SELECT 2"}, "y": {"query": "SELECT 3"}}})
    )
    (tmp_path / "notes.txt").write_text("not a pack")
    report = validate_paths([tmp_path])
    assert (report.files, report.packs, report.queries, report.errors) == (2, 2, 3, [])


def test_validate_file_names_the_pack_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ipc.json"
    path.write_text(json.dumps(one("SELECT nmae FROM processes")))
    assert validate_file(path) == [
        ValidationError(str(path), "ipc", "q", "no such column: nmae (did you mean name?)", "nmae")
    ]
