"""Normalising every osquery result shape into runs (no database)."""

from __future__ import annotations

import pytest

from fleetctl.errors import BadRequest
from fleetctl.ingest import parse_result_lines, parse_status_lines, row_hash, split_query_name

HEAD = {
    "name": "pack_ipc_pipes",
    "hostIdentifier": "h",
    "calendarTime": "x",
    "unixTime": 100,
    "epoch": 0,
    "counter": 3,
    "numerics": False,
}


def test_event_lines_group_into_one_run_removed_then_added() -> None:
    lines = [
        {**HEAD, "columns": {"pid": "1"}, "action": "removed"},
        {**HEAD, "columns": {"pid": "2"}, "action": "added"},
        {**HEAD, "name": "other", "columns": {"pid": "3"}, "action": "added"},
    ]
    runs = parse_result_lines(lines)
    assert [(r.name, r.removed, r.added) for r in runs] == [
        ("pack_ipc_pipes", [{"pid": "1"}], [{"pid": "2"}]),
        ("other", [], [{"pid": "3"}]),
    ]


def test_batch_format_diff_results() -> None:
    runs = parse_result_lines(
        [{**HEAD, "diffResults": {"added": [{"pid": "2"}], "removed": [{"pid": "1"}]}}]
    )
    assert runs[0].added == [{"pid": "2"}] and runs[0].removed == [{"pid": "1"}]
    assert not runs[0].snapshot and not runs[0].looks_like_baseline


def test_batch_format_counter_zero_baseline() -> None:
    runs = parse_result_lines(
        [{**HEAD, "counter": 0, "diffResults": {"added": [{"pid": "2"}], "removed": []}}]
    )
    assert runs[0].looks_like_baseline


def test_snapshot_and_snapshot_as_events() -> None:
    whole = parse_result_lines(
        [{**HEAD, "snapshot": [{"pid": "1"}, {"pid": "2"}], "action": "snapshot"}]
    )
    per_row = parse_result_lines(
        [
            {**HEAD, "columns": {"pid": "1"}, "action": "snapshot"},
            {**HEAD, "columns": {"pid": "2"}, "action": "snapshot"},
        ]
    )
    for runs in (whole, per_row):
        assert len(runs) == 1 and runs[0].snapshot
        assert runs[0].added == [{"pid": "1"}, {"pid": "2"}]


def test_numerics_true_gives_the_same_strings_as_osquery() -> None:
    typed = parse_result_lines(
        [
            {
                **HEAD,
                "numerics": True,
                "action": "added",
                "columns": {"pid": 1, "load": 0.5, "name": "sh"},
            }
        ]
    )
    plain = parse_result_lines(
        [{**HEAD, "action": "added", "columns": {"pid": "1", "load": "0.5", "name": "sh"}}]
    )
    assert typed[0].added == plain[0].added
    assert row_hash(typed[0].added[0]) == row_hash(plain[0].added[0])


def test_decorations_nested_and_top_level() -> None:
    nested = parse_result_lines(
        [{**HEAD, "decorations": {"host_uuid": "u"}, "columns": {}, "action": "added"}]
    )
    top = parse_result_lines([{**HEAD, "host_uuid": "u", "columns": {}, "action": "added"}])
    assert nested[0].decorations == top[0].decorations == {"host_uuid": "u"}


def test_missing_host_identifier_is_fine() -> None:
    line = {k: v for k, v in HEAD.items() if k != "hostIdentifier"}
    runs = parse_result_lines([{**line, "columns": {"pid": "1"}, "action": "added"}])
    assert runs[0].host_identifiers == set()


def test_osquery_2_numeric_strings_are_accepted_but_other_strings_are_not() -> None:
    ok = parse_result_lines(
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
    with pytest.raises(BadRequest, match="'counter' must be an integer, got str '1e3'"):
        parse_result_lines([{**HEAD, "counter": "1e3", "columns": {}, "action": "added"}])


def test_unknown_shape_names_the_line() -> None:
    with pytest.raises(BadRequest, match=r"data\[1\]: not a result line"):
        parse_result_lines([{**HEAD, "columns": {}, "action": "added"}, dict(HEAD)])


def test_status_lines() -> None:
    [line] = parse_status_lines(
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
