"""The edge checks of admin parameters, and the bounded time and duration parsers."""

from __future__ import annotations

from typing import Any

import pytest

from fleetctl.errors import BadRequest, NotFound
from fleetctl.server.admin_params import (
    INT32,
    INT64,
    check_body,
    check_targets,
    choice_param,
    column_length,
    column_range,
    flag_param,
    host_ref,
    int_field,
    int_param,
    text_param,
    time_param,
)
from fleetctl.timeutil import MAX_TIME, iso, parse_duration, parse_time
from storage.models import Campaign, Host, HuntRun


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("1700000000", 1700000000),
        ("1700000000.9", 1700000000),
        ("2024-01-01", 1704067200),
        ("2024-01-01T00:00:00Z", 1704067200),
        ("0000000000000000000001", 1),
        ("9999-12-31T23:59:59Z", MAX_TIME),
    ],
)
def test_times_in_range(text: str, seconds: int) -> None:
    assert parse_time(text) == seconds
    assert iso(parse_time(text)) is not None  # every accepted time can be shown


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999", "-1", "1e400", "x\x00", "9" * 100_000, "1969-12-31T23:59:59Z"],
)
def test_times_out_of_range_or_malformed(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_time(text)
    assert len(str(caught.value)) < 120  # the input is quoted, cut short


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("now", 1_000_000),
        ("NOW", 1_000_000),
        ("90s", 1_000_000 - 90),
        ("15m", 1_000_000 - 900),
        ("1h30m", 1_000_000 - 5400),
        ("2d ago", 1_000_000 - 172_800),
        ("1w", 1_000_000 - 604_800),
        ("90", 90),  # a bare number stays unix seconds
    ],
)
def test_times_relative_to_now(text: str, seconds: int) -> None:
    assert parse_time(text, now=1_000_000) == seconds


def test_a_time_error_names_every_accepted_form() -> None:
    with pytest.raises(ValueError, match=r"now, a duration ago .*1h30m.*unix seconds or ISO"):
        parse_time("yesterday")


def test_compound_durations() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1d 12h") == 129_600
    for text in ("1h30", "h", "1x"):
        with pytest.raises(ValueError, match="1h30m"):
            parse_duration(text)


def test_durations_are_bounded() -> None:
    assert parse_duration("2w") == 1_209_600
    assert parse_duration(str(MAX_TIME)) == MAX_TIME
    for text in (str(MAX_TIME + 1), "9" * 5000 + "d", "1e9", "-5m"):
        with pytest.raises(ValueError):
            parse_duration(text)


def test_column_ranges_follow_the_schema() -> None:
    assert column_range(Host.id) == INT64
    assert column_range(HuntRun.run) == INT32
    assert column_range(Campaign.id, low=1) == (1, INT64[1])
    assert column_length(Campaign.targets) == 512
    with pytest.raises(TypeError):
        column_range(Host.uuid)


def test_int_param_reads_text_and_path_ints() -> None:
    bounds = (0, 10)
    assert int_param({}, "n", bounds) is None
    assert int_param({"n": ""}, "n", bounds, default=3) == 3
    assert int_param({"n": " 7 "}, "n", bounds) == 7
    assert int_param({"n": 7}, "n", bounds) == 7
    for bad in ("11", "-1", "1.5", "\u0663", "1e3", True, 10**30, "9" * 40):
        with pytest.raises(BadRequest, match=r"'n' must be an integer from 0 to 10"):
            int_param({"n": bad}, "n", bounds)


def test_int_field_wants_a_json_integer() -> None:
    assert int_field({"n": None}, "n", (1, 5), default=2) == 2
    assert int_field({"n": 5}, "n", (1, 5)) == 5
    for bad in ("5", 5.0, True, [5], {"n": 5}, 6):
        with pytest.raises(BadRequest):
            int_field({"n": bad}, "n", (1, 5))


def test_time_param() -> None:
    assert time_param({"at": 1700000000}, "at") == 1700000000
    assert time_param({"at": "2024-01-01"}, "at") == 1704067200
    assert time_param({}, "at", default=5) == 5
    for bad in (1.5, True, {"t": 1}, "99999999999999999999", -1):
        with pytest.raises(BadRequest, match="'at'"):
            time_param({"at": bad}, "at")


def test_text_choice_and_flag() -> None:
    assert text_param({"s": "abc"}, "s", max_length=3) == "abc"
    with pytest.raises(BadRequest, match="longer than 3"):
        text_param({"s": "abcd"}, "s", max_length=3)
    with pytest.raises(BadRequest, match="must be a string"):
        text_param({"s": 5}, "s")
    assert choice_param({}, "c", ("a", "b"), default="a") == "a"
    with pytest.raises(BadRequest, match="one of a, b"):
        choice_param({"c": "z"}, "c", ("a", "b"))
    assert [flag_param({"f": v}, "f") for v in ("1", "true", "False", True, None)] == [
        True,
        True,
        False,
        True,
        False,
    ]
    with pytest.raises(BadRequest):
        flag_param({"f": "yes"}, "f")


@pytest.mark.parametrize("ref", ["9223372036854775808", "\u00b2", "0" * 30 + "9" * 20])
def test_a_numeric_host_reference_past_bigint_matches_nothing(ref: str) -> None:
    with pytest.raises(NotFound):
        host_ref(ref)
    with pytest.raises(NotFound):
        check_targets(f"all,host:{ref}")


def test_host_references_that_can_be_ids_pass() -> None:
    assert host_ref("9223372036854775807") == "9223372036854775807"
    assert host_ref("0" * 30 + "1") == "0" * 30 + "1"
    assert check_targets("label:x,host:web-1") == "label:x,host:web-1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"a": ["ok", {"b\x00": 1}]}, "the body contains a NUL byte"),
        ({"a": [[["x\x00"]]]}, "the body contains a NUL byte"),
    ],
)
def test_bodies_with_nul_are_refused(body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        check_body(body)


def test_body_depth_is_bounded() -> None:
    shallow: Any = "leaf"
    for _ in range(32):
        shallow = [shallow]
    check_body(shallow)  # 32 levels
    with pytest.raises(BadRequest, match="nests deeper than 32 levels"):
        check_body([shallow])
