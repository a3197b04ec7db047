"""Reading pack files the way osqueryd does, and the frozen model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import fleetctl.packs
from fleetctl.packs.convert import ConvertError, from_fleet_yaml, from_osquery
from fleetctl.packs.loader import (
    PackFormatError,
    decode,
    dumps,
    interval_seconds,
    load_file,
    loads,
    pack_files,
    shipped_packs_dir,
    strip_comments,
)
from fleetctl.packs.model import Pack, ScheduledQuery, UnknownPlatformError, parse_platforms
from fleetctl.packs.validate import validate_text


def test_public_names() -> None:
    assert sorted(fleetctl.packs.__all__) == [
        "Conversion",
        "ConvertError",
        "Pack",
        "PackFormatError",
        "Report",
        "ScheduledQuery",
        "UnknownPlatformError",
        "ValidationError",
        "convert_file",
        "dumps",
        "load_file",
        "loads",
        "pack_files",
        "parse_platforms",
        "shipped_packs_dir",
        "validate_file",
        "validate_paths",
        "validate_text",
    ]
    for name in fleetctl.packs.__all__:
        assert getattr(fleetctl.packs, name) is not None


def test_strip_comments_blanks_whole_comment_lines_only() -> None:
    text = '# a\n  // b\n{"query": "SELECT 1 -- # not a comment line"}\n\t# c'
    assert strip_comments(text) == '\n\n{"query": "SELECT 1 -- # not a comment line"}\n'


def test_decode_remembers_duplicate_keys() -> None:
    doc = decode('{"queries": {"a": {"query": "x"}, "a": {"query": "y"}}}')
    assert doc["queries"] == {"a": {"query": "y"}}
    assert doc["queries"].duplicates == ("a",)
    assert doc.duplicates == ()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(60, 60), ("60", 60), (" 3600 ", 3600), ("-1", -1), (True, None), (1.5, None), ("1h", None)],
)
def test_interval_seconds(value: object, seconds: int | None) -> None:
    assert interval_seconds(value) == seconds


def test_loads_applies_osquery_defaults_and_coerces_intervals() -> None:
    text = """
    // osquery-style comment
    {
      "platform": "linux",
      "discovery": ["SELECT 1"],
      "queries": {
        "a": {"query": "SELECT pid FROM processes", "interval": "300", "snapshot": true},
        "b": {"query": "SELECT 1", "removed": false, "denylist": false, "shard": 5}
      }
    }
    """
    assert loads(text, "ipc", "ipc.json") == [
        Pack(
            name="ipc",
            queries=(
                ScheduledQuery("a", "SELECT pid FROM processes", interval=300, snapshot=True),
                ScheduledQuery("b", "SELECT 1", removed=False, denylist=False, shard=5),
            ),
            discovery=("SELECT 1",),
            platform="linux",
        )
    ]


def test_loads_config_shape_packs_and_schedule() -> None:
    text = json.dumps(
        {
            "options": {"logger_plugin": "tls"},
            "schedule": {"s": {"query": "SELECT 1", "interval": 10}},
            "packs": {"p": {"queries": {"q": {"query": "SELECT 2"}}}},
        }
    )
    assert [(p.name, [q.name for q in p.queries]) for p in loads(text, "x")] == [
        ("p", ["q"]),
        ("main", ["s"]),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "invalid JSON at line 1 column 2"),
        ('{"queries": []}', "pack 'x': 'queries' must be an object, not []"),
        (
            '{"queries": {"q": {"interval": 5}}}',
            "pack 'x', query 'q': query has no 'query' SQL",
        ),
        (
            '{"queries": {"q": {"query": "x", "interval": "soon"}}}',
            "pack 'x', query 'q': 'interval' must be an integer or a numeric string, not \"soon\"",
        ),
        (
            '{"queries": {"q": {"query": "x", "snapshot": "yes"}}}',
            "pack 'x', query 'q': 'snapshot' must be true or false, not \"yes\"",
        ),
        ('{"packs": {"p": "/etc/p.conf"}}', "pack 'p' refers to '/etc/p.conf'; load that file"),
    ],
)
def test_loads_rejects_what_cannot_become_a_pack(text: str, message: str) -> None:
    with pytest.raises(PackFormatError) as excinfo:
        loads(text, "x")
    assert str(excinfo.value) == message


def test_model_is_frozen_and_serialises_only_non_defaults() -> None:
    query = ScheduledQuery("q", "SELECT 1", interval=60, platform="linux", description="d")
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.interval = 5  # type: ignore[misc]
    assert query.to_osquery() == {
        "query": "SELECT 1",
        "interval": 60,
        "platform": "linux",
        "description": "d",
    }
    pack = Pack("p", (query,), discovery=("SELECT 1",), platform="linux", shard=50, oncall="ir")
    assert pack.to_osquery() == {
        "platform": "linux",
        "shard": 50,
        "oncall": "ir",
        "discovery": ["SELECT 1"],
        "queries": {"q": query.to_osquery()},
    }
    assert pack.query("q") is query
    with pytest.raises(KeyError):
        pack.query("nope")


def test_dumps_round_trips_one_pack_and_several() -> None:
    a = Pack("a", (ScheduledQuery("q", "SELECT 1", snapshot=True),))
    b = Pack("b", (ScheduledQuery("r", "SELECT 2", removed=False),), platform="windows")
    assert loads(dumps([a]), "a") == [a]
    assert loads(dumps([a, b]), "ignored") == [a, b]
    assert json.loads(dumps([a, b])) == {"packs": {"a": a.to_osquery(), "b": b.to_osquery()}}


@pytest.mark.parametrize(
    ("spec", "platforms"),
    [
        (None, None),
        ("", None),
        ("any", {"linux", "darwin", "windows"}),
        ("all", {"linux", "darwin", "windows"}),
        ("posix", {"linux", "darwin"}),
        ("ubuntu", {"linux"}),
        ("centos, windows", {"linux", "windows"}),
        ("Darwin", {"darwin"}),
    ],
)
def test_parse_platforms(spec: str | None, platforms: set[str] | None) -> None:
    assert parse_platforms(spec) == (None if platforms is None else frozenset(platforms))


def test_parse_platforms_rejects_unknown_words() -> None:
    with pytest.raises(UnknownPlatformError) as excinfo:
        parse_platforms("linux,macos")
    assert excinfo.value.word == "macos"


def test_load_file_and_pack_files(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text('{"queries": {"q": {"query": "SELECT 1"}}}')
    (tmp_path / "a.conf").write_text('# c\n{"queries": {}}')
    (tmp_path / "readme.md").write_text("no")
    files = pack_files([tmp_path])
    assert files == [tmp_path / "a.conf", tmp_path / "b.json"]
    assert load_file(tmp_path / "b.json") == [
        Pack("b", (ScheduledQuery("q", "SELECT 1"),), source=str(tmp_path / "b.json"))
    ]
    assert load_file(tmp_path / "b.json")[0].source == str(tmp_path / "b.json")


def test_shipped_packs_dir_is_the_repository_packs_directory() -> None:
    assert shipped_packs_dir() == Path(__file__).resolve().parents[2] / "packs"


def test_a_bad_interval_reads_the_same_in_the_loader_the_converter_and_the_validator() -> None:
    problem = "'interval' must be an integer or a numeric string, not \"soon\""
    text = '{"queries": {"q": {"query": "SELECT 1", "interval": "soon"}}}'
    with pytest.raises(PackFormatError) as loading:
        loads(text, "p")
    with pytest.raises(PackFormatError) as converting:
        from_osquery(text, "p")
    with pytest.raises(ConvertError) as converting_yaml:
        from_fleet_yaml(
            "kind: pack\nspec: {name: p, queries: [{query: q}]}\n---\n"
            "kind: query\nspec: {name: q, query: SELECT 1, interval: soon}\n",
            "x",
        )
    assert str(loading.value) == f"pack 'p', query 'q': {problem}"
    assert str(converting.value) == str(loading.value) == str(converting_yaml.value)
    assert [(e.pack, e.query, e.message) for e in validate_text(text, "p.json")] == [
        ("p", "q", problem)
    ]
