"""Which packs and queries a host receives: platform and label targeting, pure functions.

A pack targets a host when the pack's ``platform`` covers the host's platform and, if
the pack names labels, the host is in at least one of them. Inside a targeted pack only
the queries whose own ``platform`` covers the host are served, so each host's config
holds exactly what it will run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from fleetctl.packs.loader import pack_from_document
from fleetctl.packs.model import Pack, ScheduledQuery, parse_platforms
from storage.hosts import host_family as host_family
from storage.packs import StoredPack


def _covers(spec: str | None, family: str) -> bool:
    platforms = parse_platforms(spec)
    return platforms is None or family in platforms


@dataclass(frozen=True)
class TargetedPack:
    """A stored pack with the labels it is restricted to (empty = every host)."""

    pack: Pack
    labels: tuple[str, ...] = ()
    version: int = 0


def targeted(stored: StoredPack) -> TargetedPack:
    """A stored pack version as the pack it holds and the labels it is restricted to."""
    assert stored.body is not None
    return TargetedPack(pack_from_document(stored.name, stored.body), stored.labels, stored.version)


def pack_targets(target: TargetedPack, family: str, host_labels: Iterable[str]) -> bool:
    if not _covers(target.pack.platform, family):
        return False
    return not target.labels or bool(set(target.labels) & set(host_labels))


def queries_for(pack: Pack, family: str) -> tuple[ScheduledQuery, ...]:
    return tuple(q for q in pack.queries if _covers(q.platform, family))


def packs_for_host(
    targets: Sequence[TargetedPack], family: str, host_labels: Iterable[str]
) -> list[Pack]:
    """The packs, trimmed to the host's queries, that a host with these labels receives."""
    labels = set(host_labels)
    chosen = []
    for target in targets:
        if not pack_targets(target, family, labels):
            continue
        queries = queries_for(target.pack, family)
        if queries:
            chosen.append(replace(target.pack, queries=queries))
    return chosen


def query_hosts(
    target: TargetedPack | None,
    hosts: Sequence[tuple[int, str, frozenset[str]]],
) -> dict[str, set[int]]:
    """query name -> ids of the hosts that receive it, for (id, family, labels) hosts."""
    out: dict[str, set[int]] = {}
    if target is None:
        return out
    for host_id, family, labels in hosts:
        if not pack_targets(target, family, labels):
            continue
        for query in queries_for(target.pack, family):
            out.setdefault(query.name, set()).add(host_id)
    return out
