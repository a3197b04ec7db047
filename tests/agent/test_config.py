"""Config parsing, osquery's pack and query filters, flags from options, splay and ticks."""

from __future__ import annotations

import random
from pathlib import Path

from fleetctl.agent.config import (
    Discovery,
    HostFacts,
    machine_shard,
    parse_config,
    platform_matches,
    scheduled_queries,
    version_at_least,
)
from fleetctl.agent.flags import Flags
from fleetctl.agent.schedule import is_due, splay_value, splayed_interval
from fleetctl.agent.state import StateDB
from fleetctl.agent.transport import parse_answer

FACTS = HostFacts(osquery_version="5.23.0", shard=40)


def names(
    doc: dict[str, object], rows: dict[str, int] | None = None, delimiter: str = "_"
) -> list[str]:
    answers = rows or {}

    def run(sql: str) -> int:
        if sql not in answers:
            raise ValueError("no such table")
        return answers[sql]

    config = parse_config(doc)
    return [q.name for q in scheduled_queries(config, FACTS, Discovery(run), delimiter=delimiter)]


def test_schedule_and_pack_names_and_defaults() -> None:
    doc = {
        "schedule": {"a": {"query": "SELECT 1"}},
        "packs": {
            "p": {
                "queries": {
                    "b": {
                        "query": "SELECT 2",
                        "interval": "60",
                        "snapshot": "true",
                        "removed": False,
                    }
                }
            }
        },
    }
    config = parse_config(doc)
    queries = scheduled_queries(config, FACTS, Discovery(lambda sql: 1))
    assert [(q.name, q.interval, q.snapshot, q.removed, q.pack) for q in queries] == [
        ("a", 3600, False, True, None),
        ("pack_p_b", 60, True, False, "p"),
    ]
    assert names(doc, delimiter="/") == ["a", "pack/p/b"]


def test_invalid_queries_are_skipped_with_a_warning() -> None:
    config = parse_config(
        {
            "schedule": {
                "no_sql": {"interval": 10},
                "zero": {"query": "SELECT 1", "interval": 0},
                "week_plus": {"query": "SELECT 1", "interval": 604801},
                "x_counter": {"query": "SELECT 1"},
                "ok": {"query": "SELECT 1", "interval": 5},
            },
            "packs": {"remote": "/etc/osquery/packs/x.conf"},
        }
    )
    assert [q.name for q in config.packs[0].queries] == ["ok"]
    assert len(config.warnings) == 5


def test_platform_version_shard_and_discovery_filters() -> None:
    doc = {
        "packs": {
            "linux": {"platform": "linux", "queries": {"q": {"query": "SELECT 1"}}},
            "posix": {"platform": "posix", "queries": {"q": {"query": "SELECT 1"}}},
            "ubuntu": {"platform": "ubuntu", "queries": {"q": {"query": "SELECT 1"}}},
            "darwin": {"platform": "darwin", "queries": {"q": {"query": "SELECT 1"}}},
            "windows": {"platform": "windows,darwin", "queries": {"q": {"query": "SELECT 1"}}},
            "new": {"version": "9.0.0", "queries": {"q": {"query": "SELECT 1"}}},
            "old": {"version": "4.9", "queries": {"q": {"query": "SELECT 1"}}},
            "few": {"shard": 10, "queries": {"q": {"query": "SELECT 1"}}},
            "many": {"shard": 90, "queries": {"q": {"query": "SELECT 1"}}},
            "found": {"discovery": ["yes", "yes too"], "queries": {"q": {"query": "SELECT 1"}}},
            "absent": {"discovery": ["yes", "no"], "queries": {"q": {"query": "SELECT 1"}}},
            "broken": {"discovery": ["broken"], "queries": {"q": {"query": "SELECT 1"}}},
            "mixed": {
                "queries": {
                    "mac": {"query": "SELECT 1", "platform": "darwin"},
                    "any": {"query": "SELECT 1", "platform": "any"},
                    "v": {"query": "SELECT 1", "version": "6.0"},
                }
            },
        }
    }
    assert names(doc, {"yes": 1, "yes too": 3, "no": 0}) == [
        "pack_linux_q",
        "pack_posix_q",
        "pack_ubuntu_q",
        "pack_old_q",
        "pack_many_q",
        "pack_found_q",
        "pack_mixed_any",
    ]


def test_filter_helpers() -> None:
    assert platform_matches("") and platform_matches("all") and platform_matches("centos")
    assert not platform_matches("darwin")
    assert version_at_least("5.2", "5.23.0") and not version_at_least("5.24", "5.23.0")
    assert version_at_least("", "0")
    assert 0 <= machine_shard("host") <= 100


def test_discovery_is_cached_for_the_refresh_interval() -> None:
    calls: list[str] = []

    def run(sql: str) -> int:
        calls.append(sql)
        return 1

    config = parse_config(
        {"packs": {"p": {"discovery": ["d"], "queries": {"q": {"query": "SELECT 1"}}}}}
    )
    discovery = Discovery(run)
    for _ in range(3):
        scheduled_queries(config, FACTS, discovery, refresh=3600)
    assert calls == ["d"]
    scheduled_queries(config, FACTS, discovery, refresh=0)
    assert calls == ["d", "d"]


def test_options_set_flags_except_command_line_ones() -> None:
    flags = Flags({"logger_tls_period": 4})
    warnings = flags.apply_options(
        {
            "logger_tls_period": "1",
            "schedule_epoch": 3,
            "logger_event_type": "false",
            "config_refresh": 5,
            "enroll_secret_path": "/x",
            "custom_thing": 1,
            "made_up": 1,
        }
    )
    assert flags.get_int("logger_tls_period") == 1 and flags.get_int("schedule_epoch") == 3
    assert flags.get_bool("logger_event_type") is False
    assert flags.get_int("config_refresh") == 0
    assert len(warnings) == 3


def test_splay_stays_within_bounds_and_is_kept_per_name(tmp_path: Path) -> None:
    rng = random.Random(1)
    values = {splay_value(100, 10, rng) for _ in range(200)}
    assert min(values) >= 90 and max(values) <= 110 and len(values) > 5
    assert splay_value(1, 10) == 1 and splay_value(5, 0) == 5  # 0 -> 10%: 0.5 s rounds to 0
    assert {splay_value(100, 1, rng) for _ in range(50)} - set(range(90, 111)) == set()
    state = StateDB(tmp_path)
    first = splayed_interval(state, "q", 3600, 10)
    assert all(splayed_interval(state, "q", 3600, 10) == first for _ in range(5))
    assert 3240 <= first <= 3960


def test_ticks_land_on_multiples_and_catch_up() -> None:
    assert [i for i in range(100, 130) if is_due(i, i - 1, 10)] == [100, 110, 120]
    assert is_due(125, 118, 10)  # 120 was skipped by a slow tick: run now
    assert not is_due(125, 121, 10)


def test_answers_follow_osqueryd_rules() -> None:
    import pytest

    from fleetctl.agent.errors import NodeInvalid, RequestFailed

    assert parse_answer(b"") == {}
    assert parse_answer(b'{"node_invalid": false, "x": 1}')["x"] == 1
    with pytest.raises(NodeInvalid):
        parse_answer(b'{"node_invalid": true}')
    for bad in (b"<html>", b"[]", b'{"error": "nope"}'):
        with pytest.raises(RequestFailed):
            parse_answer(bad)
    assert (
        parse_answer(b'{"node_invalid": true, "node_key": "k"}', check_node_invalid=False)[
            "node_key"
        ]
        == "k"
    )


def test_interval_override_and_the_osquery_tables_of_the_agent(tmp_path: Path) -> None:
    from fleetctl.agent import Agent, AgentOptions

    agent = Agent(
        AgentOptions(
            server="https://127.0.0.1:9",
            enroll_secret_path=tmp_path / "s",
            state_dir=tmp_path / "state",
            interval=5,
        )
    )
    try:
        agent.apply_config(
            {
                "schedule": {"a": {"query": "SELECT 1 AS one", "interval": 3600}},
                "options": {"schedule_epoch": 4},
            }
        )
        ((query, splayed),) = agent.schedule()
        assert (query.name, splayed) == ("a", 5)  # 10% of 5 s rounds to no splay
        agent.launch(query)
        engine = agent.engine
        assert engine.query("SELECT name, executions FROM osquery_schedule").rows == [
            {"name": "a", "executions": 1}
        ]
        assert engine.query("SELECT config_hash FROM osquery_info").rows == [
            {"config_hash": agent.config.hash}
        ]
        assert engine.query(
            "SELECT value FROM osquery_flags WHERE name = 'schedule_epoch'"
        ).rows == [{"value": "4"}]
        assert agent.buffer.count("result") == 1  # the counter-0 baseline line
    finally:
        agent.stop()
