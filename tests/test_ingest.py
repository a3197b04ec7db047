"""Normalising every osquery result shape into runs, line by line (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from fleetctl.errors import BadRequest
from fleetctl.ingest import (
    Run,
    lenient_loads,
    line_digests,
    parse_result_lines,
    parse_status_lines,
    row_hash,
    split_query_name,
)
from fleetctl.server.body import parse_json_object

HEAD = {
    "name": "pack_ipc_pipes",
    "hostIdentifier": "h",
    "calendarTime": "x",
    "unixTime": 100,
    "epoch": 0,
    "counter": 3,
    "numerics": False,
}


def runs_of(lines: list[Any]) -> list[Run]:
    """The runs of lines that must all be valid."""
    batch = parse_result_lines(lines)
    assert batch.rejected == []
    return batch.runs


def test_event_lines_group_into_one_run_removed_then_added() -> None:
    lines = [
        {**HEAD, "columns": {"pid": "1"}, "action": "removed"},
        {**HEAD, "columns": {"pid": "2"}, "action": "added"},
        {**HEAD, "name": "other", "columns": {"pid": "3"}, "action": "added"},
    ]
    runs = runs_of(lines)
    assert [(r.name, r.removed, r.added) for r in runs] == [
        ("pack_ipc_pipes", [{"pid": "1"}], [{"pid": "2"}]),
        ("other", [], [{"pid": "3"}]),
    ]


def test_batch_format_diff_results() -> None:
    runs = runs_of([{**HEAD, "diffResults": {"added": [{"pid": "2"}], "removed": [{"pid": "1"}]}}])
    assert runs[0].added == [{"pid": "2"}] and runs[0].removed == [{"pid": "1"}]
    assert not runs[0].snapshot and not runs[0].looks_like_baseline


def test_batch_format_counter_zero_baseline() -> None:
    runs = runs_of(
        [{**HEAD, "counter": 0, "diffResults": {"added": [{"pid": "2"}], "removed": []}}]
    )
    assert runs[0].looks_like_baseline


def test_snapshot_and_snapshot_as_events() -> None:
    whole = runs_of([{**HEAD, "snapshot": [{"pid": "1"}, {"pid": "2"}], "action": "snapshot"}])
    per_row = runs_of(
        [
            {**HEAD, "columns": {"pid": "1"}, "action": "snapshot"},
            {**HEAD, "columns": {"pid": "2"}, "action": "snapshot"},
        ]
    )
    for runs in (whole, per_row):
        assert len(runs) == 1 and runs[0].snapshot
        assert runs[0].added == [{"pid": "1"}, {"pid": "2"}]


def test_numerics_true_gives_the_same_strings_as_osquery() -> None:
    typed = runs_of(
        [
            {
                **HEAD,
                "numerics": True,
                "action": "added",
                "columns": {"pid": 1, "load": 0.5, "name": "sh"},
            }
        ]
    )
    plain = runs_of(
        [{**HEAD, "action": "added", "columns": {"pid": "1", "load": "0.5", "name": "sh"}}]
    )
    assert typed[0].added == plain[0].added
    assert row_hash(typed[0].added[0]) == row_hash(plain[0].added[0])


def test_decorations_nested_and_top_level() -> None:
    nested = runs_of(
        [{**HEAD, "decorations": {"host_uuid": "u"}, "columns": {}, "action": "added"}]
    )
    top = runs_of([{**HEAD, "host_uuid": "u", "columns": {}, "action": "added"}])
    assert nested[0].decorations == top[0].decorations == {"host_uuid": "u"}


def test_missing_host_identifier_is_fine() -> None:
    line = {k: v for k, v in HEAD.items() if k != "hostIdentifier"}
    runs = runs_of([{**line, "columns": {"pid": "1"}, "action": "added"}])
    assert runs[0].host_identifiers == set()


def test_osquery_2_numeric_strings_are_accepted_but_other_strings_are_not() -> None:
    ok = runs_of(
        [
            {
                **HEAD,
                "unixTime": "1514472008",
                "counter": "1",
                "epoch": "0",
                "columns": {},
                "action": "removed",
            }
        ]
    )
    assert (ok[0].unix_time, ok[0].counter) == (1514472008, 1)
    batch = parse_result_lines([{**HEAD, "counter": "1e3", "columns": {}, "action": "added"}])
    assert batch.runs == []
    [rejected] = batch.rejected
    assert rejected.reason == "'counter' must be an integer, got str '1e3'"


def test_unknown_shape_is_rejected_and_the_rest_kept() -> None:
    batch = parse_result_lines([{**HEAD, "columns": {}, "action": "added"}, dict(HEAD)])
    assert [(r.index, r.name) for r in batch.rejected] == [(1, "pack_ipc_pipes")]
    assert batch.rejected[0].reason.startswith("not a result line")
    assert [r.lines for r in batch.runs] == [[0]]


def test_status_lines() -> None:
    [line], rejected = parse_status_lines(
        [
            {
                "hostIdentifier": "h",
                "calendarTime": "x",
                "unixTime": 5,
                "severity": 2,
                "filename": "f.cpp",
                "line": 9,
                "message": "m",
                "version": "5.8.2",
            }
        ]
    )
    assert (line.unix_time, line.severity, line.filename, line.line) == (5, 2, "f.cpp", 9)
    assert rejected == []


@pytest.mark.parametrize(
    ("name", "pack", "query"),
    [
        ("pack_incident-response_open_sockets", "incident-response", "open_sockets"),
        ("pack/ipc-telemetry/process_lineage", "ipc-telemetry", "process_lineage"),
        ("fim", None, "fim"),
        ("pack_", None, "pack_"),
    ],
)
def test_split_query_name(name: str, pack: str | None, query: str) -> None:
    split = split_query_name(name)
    assert (split.pack, split.query) == (pack, query)


def test_split_query_name_prefers_known_pack_with_underscores() -> None:
    split = split_query_name("pack_t1559_hunts_fifo_shells", known_packs=["t1559_hunts"])
    assert (split.pack, split.query) == ("t1559_hunts", "fifo_shells")


# -- one line at a time: what is quarantined, and why ----------------------------------


def event(**over: Any) -> dict[str, Any]:
    return {**HEAD, "columns": {"pid": "1"}, "action": "added", **over}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (event(counter=2**63), "'counter' is out of range"),
        (event(counter=float(2**64)), "'counter' is out of range"),  # how orjson reads 2^64
        (event(unixTime="9" * 30), "'unixTime' is out of range"),
        (event(epoch=-1), "'epoch' is out of range"),
        (event(counter=True), "'counter' must be an integer, got bool True"),
        (event(name="pack_p_" + "q" * 300), "pack or query name of 300 characters"),
        (event(name="\0" * 300), "query name of 300 characters is over the store's 512"),
        (event(columns={"pid": 1.0e308 * 10}), "column 'pid': the number is beyond a double"),
        (event(columns={"\u2400" * 200: "v"}), "column name of 200 characters"),
        (event(name="q", decorations={"k": ["v"]}), "decoration 'k' must be a scalar, got list"),
        (event(name="q", k=5.0e400), "decoration 'k': the number is beyond a double"),
        (event(name="q", decorations={"k" * 256: "v"}), "decoration key of 256 characters"),
        ({**HEAD, "snapshot": {"pid": "1"}}, "'snapshot' must be a list"),
        ({**HEAD, "diffResults": []}, "'diffResults' must be an object"),
        (event(numerics="yes"), "'numerics' must be a boolean"),
        (event(name=""), "'name' must be a non-empty string"),
    ],
)
def test_a_line_the_store_cannot_hold_is_rejected_alone(line: Any, reason: str) -> None:
    batch = parse_result_lines([event(columns={"pid": "0"}), line, event(columns={"pid": "2"})])
    [rejected] = batch.rejected
    assert rejected.index == 1 and reason in rejected.reason
    [run] = batch.runs
    assert run.added == [{"pid": "0"}, {"pid": "2"}] and run.lines == [0, 2]


def test_only_the_decorations_of_a_run_s_first_line_are_read() -> None:
    """The store keeps a run's first decorations, so later lines' are not judged."""
    first, later = event(decorations={"k": "v"}), event(decorations={"k": ["ignored"]})
    [run] = runs_of([first, later])
    assert run.decorations == {"k": "v"} and run.lines == [0, 1]


def test_lines_naming_other_hosts_are_rejected() -> None:
    batch = parse_result_lines([event(), event(hostIdentifier="other"), event()], foreign={"other"})
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (1, "names host 'other', another enrolled host")
    ]
    assert [run.lines for run in batch.runs] == [[0, 2]]


def test_names_within_the_limits_are_accepted() -> None:
    longest = "pack_" + "p" * 250 + "_" + "q" * 255  # 511 characters, parts of 250 and 255
    runs = runs_of([event(name=longest, columns={"c" * 255: "v", "pid": 2**64 - 1})])
    assert runs[0].name == longest
    assert runs[0].added == [{"c" * 255: "v", "pid": "18446744073709551615"}]


def test_known_pack_decides_the_parts_that_must_fit() -> None:
    name = "pack_" + "a_" * 100 + "q" * 100  # query part 300 by default, 100 with the pack
    assert "pack or query name" in parse_result_lines([event(name=name)]).rejected[0].reason
    batch = parse_result_lines([event(name=name)], known_packs=["a_" * 99 + "a"])
    assert batch.rejected == [] and len(batch.runs) == 1


def test_lines_orjson_cannot_encode_get_a_digest_and_a_reason() -> None:
    lines = [
        event(),
        event(columns={"pid": "\udc80"}),
        event(extra=2**64),
        event(extra=_nested(300)),
        "not even an object",
    ]
    digests, problems = line_digests(lines)
    assert len(digests) == 5 and len(set(digests)) == 5
    assert digests == line_digests(lines)[0]  # the same line, the same digest
    assert sorted(problems) == [1, 2, 3]
    assert "columns.pid: not valid Unicode" in problems[1]
    assert "an integer beyond 64 bits" in problems[2]
    assert "nested deeper than 254 levels" in problems[3]
    batch = parse_result_lines(lines)
    assert [r.index for r in batch.rejected] == [1, 2, 3, 4]


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def test_body_with_a_lone_surrogate_or_bad_bytes_is_read_by_the_standard_library() -> None:
    body = parse_log_body(b'{"data": ["\\ud800", "ok", 18446744073709551616, 5]}')
    assert body["data"] == ["\ud800", "ok", float(2**64), 5]  # integers as orjson reads them
    assert parse_log_body(b'{"data": ["\xff"]}')["data"] == ["\udcff"]
    with pytest.raises(BadRequest, match="malformed JSON"):
        parse_log_body(b'{"data": [NaN, "\\ud800"]}')
    with pytest.raises(BadRequest, match="malformed JSON"):
        parse_log_body(b'{"data": [' + b"[" * 5000 + b"]" * 5000 + b"]}")
    with pytest.raises(BadRequest, match="expected a JSON object, got list"):
        parse_log_body(b'["\\ud800"]')


def test_status_lines_out_of_range_or_too_long_are_rejected_alone() -> None:
    ok = {"unixTime": 5, "severity": 1, "message": "m"}
    lines = [
        ok,
        {**ok, "severity": 2**31},
        {**ok, "line": -(2**31) - 1},
        {**ok, "filename": "f" * 256},
        {**ok, "version": "v" * 65},
        {**ok, "unixTime": -5},
        {**ok, "decorations": {"k": {"x": 1}}},
        ok,
    ]
    good, rejected = parse_status_lines(lines, start=10)
    assert [s.index for s in good] == [10, 17]
    assert [r.index for r in rejected] == [11, 12, 13, 14, 15, 16]
    assert "'version' of 65 characters is over the store's 64" in rejected[3].reason


def parse_log_body(raw: bytes) -> dict[str, Any]:
    """A ``/log`` body as the server reads it."""
    return parse_json_object(raw, lenient_loads)
