"""Frozen value objects for osquery packs, and osquery's platform vocabulary.

A pack is data that travels between files, the server and osqueryd, so it is immutable:
code that wants a changed pack builds a new one with ``dataclasses.replace``. Defaults
are osquery's own (``osquery/config/packs.cpp``), which lets a serialised pack omit them
and still mean the same thing to osqueryd.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fleetctl.schema import PLATFORMS

#: osquery's ``platform`` words (``Pack::checkPlatform``) and the platforms each one selects.
PLATFORM_WORDS: dict[str, frozenset[str]] = {
    "any": frozenset(PLATFORMS),
    "all": frozenset(PLATFORMS),
    "posix": frozenset({"linux", "darwin"}),
    "linux": frozenset({"linux"}),
    "ubuntu": frozenset({"linux"}),
    "centos": frozenset({"linux"}),
    "darwin": frozenset({"darwin"}),
    "windows": frozenset({"windows"}),
}

DEFAULT_INTERVAL = 3600  # osquery --schedule_default_interval
MAX_INTERVAL = 604800  # one week: osquery refuses longer intervals


class UnknownPlatformError(ValueError):
    """A ``platform`` string names something osquery would never match on our platforms."""

    def __init__(self, word: str) -> None:
        super().__init__(word)
        self.word = word


def parse_platforms(spec: str | None) -> frozenset[str] | None:
    """Expand an osquery ``platform`` value to platform names; ``None`` means unrestricted.

    osquery matches substrings, so ``"linux,darwin"`` works there; here each comma-separated
    word must be one osquery knows, so a typo such as ``"macos"`` is reported instead of
    silently matching nothing.
    """
    if spec is None or spec.strip() in ("", "null"):
        return None
    selected: set[str] = set()
    for word in (w.strip().lower() for w in spec.split(",")):
        if not word:
            continue
        if word not in PLATFORM_WORDS:
            raise UnknownPlatformError(word)
        selected |= PLATFORM_WORDS[word]
    return frozenset(selected)


def format_platforms(platforms: Iterable[str]) -> str:
    """Platforms in the fixed ``PLATFORMS`` order, comma-separated, for messages."""
    chosen = set(platforms)
    return ", ".join(p for p in PLATFORMS if p in chosen)


@dataclass(frozen=True)
class ScheduledQuery:
    """One entry of a pack's ``queries`` object, with osquery's defaults filled in."""

    name: str
    query: str
    interval: int = DEFAULT_INTERVAL
    snapshot: bool = False
    removed: bool = True
    platform: str | None = None
    version: str | None = None
    shard: int | None = None
    denylist: bool = True
    description: str | None = None
    value: str | None = None

    def to_osquery(self) -> dict[str, Any]:
        """The query object as osquery reads it; default-valued flags are left out."""
        out: dict[str, Any] = {"query": self.query, "interval": self.interval}
        if self.snapshot:
            out["snapshot"] = True
        if not self.removed:
            out["removed"] = False
        for key in ("platform", "version", "shard"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if not self.denylist:
            out["denylist"] = False
        for key in ("description", "value"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class Pack:
    """A named set of scheduled queries; the name is the pack's key in osquery's config.

    ``source`` records where the pack was read from so messages can point at the file.
    ``oncall`` is kept because osquery accepts it and dropping settings silently is worse
    than carrying one more field.
    """

    name: str
    queries: tuple[ScheduledQuery, ...] = ()
    discovery: tuple[str, ...] = ()
    platform: str | None = None
    version: str | None = None
    shard: int | None = None
    source: str | None = field(default=None, compare=False)
    oncall: str | None = None

    def query(self, name: str) -> ScheduledQuery:
        """The query called ``name`` (``KeyError`` if the pack has none)."""
        for scheduled in self.queries:
            if scheduled.name == name:
                return scheduled
        raise KeyError(name)

    def to_osquery(self) -> dict[str, Any]:
        """The pack object as osquery reads it (what a ``packs/*.json`` file holds)."""
        out: dict[str, Any] = {}
        for key in ("platform", "version", "shard", "oncall"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.discovery:
            out["discovery"] = list(self.discovery)
        out["queries"] = {q.name: q.to_osquery() for q in self.queries}
        return out


def apply_request(packs: Iterable[Pack], labels: Iterable[str] = ()) -> dict[str, Any]:
    """The admin API body that applies ``packs`` (``POST /api/v1/admin/packs/apply``)."""
    return {
        "packs": [
            {"name": p.name, "pack": p.to_osquery(), "labels": list(labels), "source": p.source}
            for p in packs
        ]
    }
