"""The config osqueryd receives, parsed, and osquery's rules for which queries run.

``osquery/config/config.cpp``, ``osquery/config/packs.cpp`` and the parsers: ``options``
first, then ``schedule`` (the pack ``main``, whose query names stay bare), ``packs``
(objects; string resources need the filesystem plugin and are skipped), ``decorators``.
Unknown keys are ignored.

Which queries run is decided against the host (``HostFacts``): a pack's ``platform``,
``version``, ``shard`` and ``discovery`` first, then the query's own ``platform``,
``version`` and ``shard``. Discovery is an AND of queries that each must return a row;
an SQL error makes the pack inactive; the answer is kept ``--pack_refresh_interval``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_INTERVAL = 604800
MAX_CONFIG_BYTES = 4 * 1024 * 1024
RESERVED_PREFIXES = ("query.", "cache.", "config_views.")
RESERVED_SUFFIXES = ("epoch", "counter")
MAIN_PACK = "main"


@dataclass(frozen=True)
class QueryDef:
    """One query object of ``schedule`` or of a pack."""

    name: str
    query: str
    interval: int
    snapshot: bool = False
    removed: bool = True
    denylist: bool = True
    platform: str = ""
    version: str = ""
    shard: int = 0
    startup_priority: int | None = None


@dataclass(frozen=True)
class PackDef:
    name: str
    queries: tuple[QueryDef, ...]
    discovery: tuple[str, ...] = ()
    platform: str = ""
    version: str = ""
    shard: int = 0


@dataclass(frozen=True)
class Decorators:
    load: tuple[str, ...] = ()
    always: tuple[str, ...] = ()
    interval: tuple[tuple[int, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class AgentConfig:
    options: dict[str, Any] = field(default_factory=dict)
    packs: tuple[PackDef, ...] = ()
    decorators: Decorators = field(default_factory=Decorators)
    hash: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduledQuery:
    """A query that runs on this host, under the name it is logged with."""

    name: str
    query: str
    interval: int
    snapshot: bool
    removed: bool
    denylist: bool
    startup_priority: int | None
    pack: str | None


@dataclass(frozen=True)
class HostFacts:
    """What pack filters compare against."""

    osquery_version: str
    shard: int
    platforms: tuple[str, ...] = ("linux", "posix")


class ConfigError(ValueError):
    """The config cannot be used at all (the previous one stays in force)."""


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _query(
    name: str, obj: Any, default_interval: int, warn: Callable[[str], None]
) -> QueryDef | None:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("query"), str):
        warn(f"The query {name} has no 'query' string: skipped")
        return None
    if name.startswith(RESERVED_PREFIXES) or name.endswith(RESERVED_SUFFIXES):
        warn(f"The query name {name} is reserved: skipped")
        return None
    interval = default_interval if obj.get("interval") is None else _int(obj["interval"])
    if interval is None or not 0 < interval <= MAX_INTERVAL:
        warn(f"The query {name} has an invalid interval {obj.get('interval')!r}: skipped")
        return None
    priority = _int(obj.get("startup_priority"))
    return QueryDef(
        name=name,
        query=obj["query"],
        interval=interval,
        snapshot=_bool(obj.get("snapshot"), False),
        removed=_bool(obj.get("removed"), True),
        denylist=_bool(obj.get("denylist"), True),
        platform=str(obj.get("platform") or ""),
        version=str(obj.get("version") or ""),
        shard=_int(obj.get("shard")) or 0,
        startup_priority=priority,
    )


def _pack(
    name: str, obj: Any, default_interval: int, warn: Callable[[str], None]
) -> PackDef | None:
    if not isinstance(obj, Mapping):
        warn(f"The pack {name} is a resource reference, which the TLS config cannot load")
        return None
    queries = obj.get("queries") or {}
    if not isinstance(queries, Mapping):
        warn(f"The pack {name} has no 'queries' object: skipped")
        return None
    discovery = obj.get("discovery") or []
    if isinstance(discovery, str):
        discovery = [discovery]
    parsed = (_query(q, v, default_interval, warn) for q, v in queries.items())
    return PackDef(
        name=name,
        queries=tuple(q for q in parsed if q is not None),
        discovery=tuple(str(d) for d in discovery),
        platform=str(obj.get("platform") or ""),
        version=str(obj.get("version") or ""),
        shard=_int(obj.get("shard")) or 0,
    )


def _sql_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _decorators(obj: Any, warn: Callable[[str], None]) -> Decorators:
    if not isinstance(obj, Mapping):
        return Decorators()
    intervals: list[tuple[int, tuple[str, ...]]] = []
    raw = obj.get("interval") or {}
    for key, queries in raw.items() if isinstance(raw, Mapping) else ():
        seconds = _int(key)
        if seconds is None or seconds <= 0 or seconds % 60:
            warn(f"Decorator interval {key} is not a multiple of 60 seconds: skipped")
            continue
        intervals.append((seconds, _sql_list(queries)))
    return Decorators(
        _sql_list(obj.get("load")), _sql_list(obj.get("always")), tuple(sorted(intervals))
    )


def parse_config(doc: Mapping[str, Any], default_interval: int = 3600) -> AgentConfig:
    """A config document (the body of the config endpoint) as an ``AgentConfig``."""
    encoded = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    if len(encoded) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config of {len(encoded)} bytes exceeds {MAX_CONFIG_BYTES}")
    warnings: list[str] = []
    options = doc.get("options") or {}
    if not isinstance(options, Mapping):
        warnings.append("'options' is not an object: ignored")
        options = {}
    interval = _int(options.get("schedule_default_interval")) or default_interval
    packs: list[PackDef] = []
    schedule = doc.get("schedule") or {}
    if isinstance(schedule, Mapping):
        main = _pack(MAIN_PACK, {"queries": schedule}, interval, warnings.append)
        if main is not None:
            packs.append(main)
    raw_packs = doc.get("packs") or {}
    if isinstance(raw_packs, Mapping):
        for name, obj in raw_packs.items():
            pack = _pack(str(name), obj, interval, warnings.append)
            if pack is not None:
                packs.append(pack)
    return AgentConfig(
        options=dict(options),
        packs=tuple(packs),
        decorators=_decorators(doc.get("decorators"), warnings.append),
        hash=hashlib.sha1(encoded).hexdigest(),
        warnings=tuple(warnings),
    )


def query_name(pack: str, query: str, delimiter: str) -> str:
    """``getQueryName``: schedule queries keep their name; pack queries get a prefix."""
    if pack == MAIN_PACK:
        return query
    return f"pack{delimiter}{pack}{delimiter}{query}"


def platform_matches(platform: str, platforms: tuple[str, ...] = ("linux", "posix")) -> bool:
    """``Pack::checkPlatform``: substring match, ``any``/``all`` match everything."""
    if not platform or platform == "null":
        return True
    if "any" in platform or "all" in platform:
        return True
    if "linux" in platforms and ("ubuntu" in platform or "centos" in platform):
        return True
    return any(p in platform for p in platforms)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.strip().split("."):
        match = re.match(r"\d+", piece)
        parts.append(int(match.group()) if match else 0)
    return tuple(parts)


def version_at_least(required: str, current: str) -> bool:
    """True when ``current`` >= ``required`` (an empty requirement always holds)."""
    if not required.strip():
        return True
    want, have = _version_tuple(required), _version_tuple(current)
    width = max(len(want), len(have))
    return have + (0,) * (width - len(have)) >= want + (0,) * (width - len(want))


def machine_shard(hostname: str) -> int:
    """``getMachineShard``: first byte of SHA-1(hostname), scaled to 0..100."""
    return hashlib.sha1(hostname.encode()).digest()[0] * 100 // 255


def _included(platform: str, version: str, shard: int, facts: HostFacts) -> bool:
    return (
        platform_matches(platform, facts.platforms)
        and version_at_least(version, facts.osquery_version)
        and not (shard > 0 and shard < facts.shard)
    )


class Discovery:
    """Pack discovery answers, kept ``--pack_refresh_interval`` seconds."""

    def __init__(self, run: Callable[[str], int]) -> None:
        """``run(sql)`` returns a row count or raises (an error = pack inactive)."""
        self._run = run
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, bool]] = {}

    def active(self, pack: PackDef, refresh: int) -> bool:
        if not pack.discovery:
            return True
        key = (pack.name, pack.discovery)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < refresh:
            return cached[1]
        answer = True
        for sql in pack.discovery:  # AND, short-circuit on the first failing query
            try:
                if self._run(sql) == 0:
                    answer = False
            except Exception:
                answer = False
            if not answer:
                break
        self._cache[key] = (now, answer)
        return answer


def scheduled_queries(
    config: AgentConfig,
    facts: HostFacts,
    discovery: Discovery,
    *,
    delimiter: str = "_",
    refresh: int = 3600,
) -> list[ScheduledQuery]:
    """The queries that run on this host now, pack filters before query filters."""
    out: list[ScheduledQuery] = []
    for pack in config.packs:
        if not _included(pack.platform, pack.version, pack.shard, facts):
            continue
        if not discovery.active(pack, refresh):
            continue
        for q in pack.queries:
            if not _included(q.platform, q.version, q.shard, facts):
                continue
            out.append(
                ScheduledQuery(
                    name=query_name(pack.name, q.name, delimiter),
                    query=q.query,
                    interval=q.interval,
                    snapshot=q.snapshot,
                    removed=q.removed,
                    denylist=q.denylist,
                    startup_priority=q.startup_priority,
                    pack=None if pack.name == MAIN_PACK else pack.name,
                )
            )
    return out
