"""Detection state, hosts' learning and the admin baseline (session passed in).

The detector (``fleetctl.detection``) works on an in-memory state its caller builds from
what this module loads as plain values. For one host's run it loads only what that run
can consult: the host's own path keys, parent history and explicit baseline, the
fleet-wide sightings of keys the host has not seen before, the parent history of the
parents in play, and the host's earlier findings. Every host's name and enrolment time
(for prevalence) is the ``FleetDirectory``, which a caller judging many hosts reads once
and reuses. So a run costs what one host holds, not what the fleet has seen over time
nor how many hosts it has. Findings and their occurrences are ``storage.findings``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import yaml
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.base import in_chunks
from storage.models import (
    BaselineVersion,
    DetectionHost,
    FindingRecordRow,
    Host,
    ParentChild,
    PathSighting,
)

# A sighting's last_seen is rewritten at most this often: enough for "seen this week".
LAST_SEEN_PRECISION = 3600
BASELINE_TEMPLATE = "version: 1\nextends: default\n"


def detection_names(session: Session) -> dict[int, str]:
    """host id -> the name the detector and baseline files use: the host identifier,
    made unique with ``#<id>`` when two hosts share one."""
    rows = session.execute(select(Host.id, Host.host_identifier).order_by(Host.id)).all()
    return _unique_names(rows)


def _unique_names(rows: Iterable[tuple[int, str]]) -> dict[int, str]:
    """(host id, host identifier) in id order -> host id -> its detection name."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for hid, ident in rows:
        name = ident if ident not in taken else f"{ident}#{hid}"
        taken.add(name)
        names[hid] = name
    return names


@dataclass(frozen=True)
class FleetDirectory:
    """Every host's detection name and enrolment time, and the hosts with an explicit
    baseline: what a run needs of the whole fleet (its size, when it started)."""

    names: dict[int, str]
    enrolled: dict[int, int]
    baselined: frozenset[int]


def fleet_directory(session: Session) -> FleetDirectory:
    rows = session.execute(
        select(Host.id, Host.host_identifier, Host.enrolled_at).order_by(Host.id)
    ).all()
    return FleetDirectory(
        names=_unique_names((hid, ident) for hid, ident, _ in rows),
        enrolled={hid: at for hid, _, at in rows},
        baselined=frozenset(
            session.scalars(
                select(DetectionHost.host_id).where(DetectionHost.baselined_at.is_not(None))
            )
        ),
    )


def is_baselined(session: Session, host_id: int) -> bool:
    """Whether the host has an explicit baseline (``detect --learn``) now."""
    found = session.scalar(
        select(DetectionHost.baselined_at).where(DetectionHost.host_id == host_id)
    )
    return found is not None


@dataclass
class StoredHistory:
    """What one host's run can consult, as stored: the fleet's directory (every host's
    name and enrolment time, as read by the caller or now), whether the host has an
    explicit baseline now, and for the path keys and parent apps in play: the host's own
    sightings, parent/child pairs and findings, the fleet's sightings of the keys the host
    has not seen, and the children seen under those parents anywhere."""

    directory: FleetDirectory
    baselined: bool = False
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)
    pairs: set[tuple[str, str]] = field(default_factory=set)
    # (id, path key, first seen, last seen, severity, score)
    findings: list[tuple[str, str, int, int, str, int]] = field(default_factory=list)
    # (path key, first seen, last seen, hosts) of keys in play the host has not seen itself
    fleet: list[tuple[str, int, int, int]] = field(default_factory=list)
    parents: list[tuple[str, str]] = field(default_factory=list)


def load_history(
    session: Session,
    host_id: int,
    keys: set[str],
    parents: set[str],
    directory: FleetDirectory | None = None,
) -> StoredHistory:
    """What a run on ``host_id`` judging path ``keys`` under parent apps ``parents``
    consults (``fleetctl.detection.consulted``), with the fleet's ``directory`` (read now
    when not given). Only what is in play is read, and the fleet's sightings as one row
    per key: a judgement costs what it judges, not what the host or the fleet has seen."""
    out = StoredHistory(
        directory=directory or fleet_directory(session), baselined=is_baselined(session, host_id)
    )
    for chunk in in_chunks(sorted(keys)):
        for key, first, last in session.execute(
            select(PathSighting.path_key, PathSighting.first_seen, PathSighting.last_seen).where(
                PathSighting.host_id == host_id, PathSighting.path_key.in_(chunk)
            )
        ):
            out.keys[key] = (first, last)
        out.findings += [
            (fid, key, first, last, severity, score)
            for fid, key, first, last, severity, score in session.execute(
                select(
                    FindingRecordRow.id,
                    FindingRecordRow.path_key,
                    FindingRecordRow.first_seen,
                    FindingRecordRow.last_seen,
                    FindingRecordRow.severity,
                    FindingRecordRow.score,
                ).where(FindingRecordRow.host_id == host_id, FindingRecordRow.path_key.in_(chunk))
            )
        ]
    for chunk in in_chunks(sorted(keys - out.keys.keys())):
        out.fleet += [
            (key, first, last, hosts)
            for key, first, last, hosts in session.execute(
                select(
                    PathSighting.path_key,
                    func.min(PathSighting.first_seen),
                    func.max(PathSighting.last_seen),
                    func.count(),
                )
                .where(PathSighting.path_key.in_(chunk))
                .group_by(PathSighting.path_key)
            )
        ]
    for chunk in in_chunks(sorted(parents)):
        out.pairs |= {
            (parent, child)
            for parent, child in session.execute(
                select(ParentChild.parent, ParentChild.child).where(
                    ParentChild.host_id == host_id, ParentChild.parent.in_(chunk)
                )
            )
        }
        out.parents += [
            (parent, child)
            for parent, child in session.execute(
                select(ParentChild.parent, ParentChild.child)
                .where(ParentChild.parent.in_(chunk))
                .distinct()
            )
        ]
    return out


def host_keys(session: Session, host_id: int) -> dict[str, tuple[int, int]]:
    """Every path key the host was seen with: (first seen, last seen)."""
    return {
        key: (first, last)
        for key, first, last in session.execute(
            select(PathSighting.path_key, PathSighting.first_seen, PathSighting.last_seen).where(
                PathSighting.host_id == host_id
            )
        )
    }


def save_history(
    session: Session,
    host_id: int,
    keys: Mapping[str, tuple[float, float]],
    parents: Mapping[str, Iterable[str]],
    loaded: StoredHistory,
) -> int:
    """Write the host's new path ``keys`` (first and last seen), moved last-seen times and
    new parent/child pairs, against what ``load_history`` gave."""
    new_rows, moved = [], []
    for key, (first_seen, last_seen) in keys.items():
        first, last = int(first_seen), int(last_seen)
        before = loaded.keys.get(key)
        if before is None:
            new_rows.append(
                PathSighting(host_id=host_id, path_key=key, first_seen=first, last_seen=last)
            )
        elif last - before[1] >= LAST_SEEN_PRECISION:
            moved.append({"host_id": host_id, "path_key": key, "last_seen": last})
    session.add_all(new_rows)
    if moved:  # one statement for all of them, by primary key
        session.execute(update(PathSighting), moved)
    now = int(max((last for _, last in keys.values()), default=0))
    session.add_all(
        ParentChild(host_id=host_id, parent=parent, child=child, first_seen=now)
        for parent, children in parents.items()
        for child in children
        if (parent, child) not in loaded.pairs
    )
    return len(new_rows)


def mark_baselined(session: Session, host_id: int, now: int) -> None:
    row = session.get(DetectionHost, host_id)
    if row is None:
        session.add(DetectionHost(host_id=host_id, baselined_at=now))
    else:
        row.baselined_at = now


def learning_hosts(session: Session) -> list[tuple[int, str, int, int | None]]:
    """(host id, detection name, enrolled at, explicit baseline at) of every host. The
    hosts are read once (``fleet_directory``): read twice, a host enrolled between the two
    reads was in one and not the other."""
    directory = fleet_directory(session)
    baselined = {
        hid: at
        for hid, at in session.execute(
            select(DetectionHost.host_id, DetectionHost.baselined_at).where(
                DetectionHost.baselined_at.is_not(None)
            )
        )
    }
    return [
        (hid, name, directory.enrolled[hid], baselined.get(hid))
        for hid, name in directory.names.items()
    ]


def baseline_version(session: Session) -> int | None:
    """The admin's baseline version (None: the shipped default rules), without its text:
    what a judgement checks before it reads the text again."""
    return session.scalar(select(func.max(BaselineVersion.version)))


def current_baseline(session: Session) -> tuple[int, str] | None:
    """(version, YAML text) of the admin's baseline, or None (the shipped default rules)."""
    row = session.scalars(
        select(BaselineVersion).order_by(BaselineVersion.version.desc()).limit(1)
    ).first()
    return None if row is None else (row.version, str(row.body.get("yaml", "")))


def baseline_text(session: Session) -> tuple[int, str]:
    """(version, YAML) of the admin's baseline; version 0 and a template before any."""
    stored = current_baseline(session)
    return stored if stored else (0, BASELINE_TEMPLATE)


def add_learned_keys(
    session: Session,
    keys: Iterable[tuple[str | None, str]],
    note: str,
    now: int,
    check: Callable[[str], object],
) -> int:
    """Make path keys baseline entries: ``(host name, key)`` under ``learned.hosts``, or
    ``(None, key)`` under ``learned.fleet``; ``check`` raises on a baseline the detector
    would refuse. Returns the new baseline version."""
    version, text = baseline_text(session)
    doc = yaml.safe_load(text) or {}
    learned = doc.setdefault("learned", {})
    for host, key in keys:
        listed = (
            learned.setdefault("fleet", [])
            if host is None
            else learned.setdefault("hosts", {}).setdefault(host, [])
        )
        if key not in listed:
            listed.append(key)
    new_text = yaml.safe_dump(doc, sort_keys=False, width=100)
    check(new_text)
    return save_baseline(session, new_text, note, now, version)


def save_baseline(
    session: Session, text: str, note: str, now: int, expected_version: int | None
) -> int:
    latest = session.scalar(select(func.max(BaselineVersion.version))) or 0
    if expected_version is not None and expected_version != latest:
        raise ValueError(
            f"the baseline changed meanwhile (now version {latest}); export it "
            "again and reapply your change"
        )
    session.add(BaselineVersion(version=latest + 1, body={"yaml": text}, note=note, created_at=now))
    return latest + 1


def fleet_prevalence(session: Session, key: str) -> tuple[int, int]:
    with_key = session.scalar(
        select(func.count()).select_from(PathSighting).where(PathSighting.path_key == key)
    )
    total = session.scalar(select(func.count()).select_from(Host))
    return int(with_key or 0), int(total or 0)


__all__ = [
    "BASELINE_TEMPLATE",
    "StoredHistory",
    "add_learned_keys",
    "baseline_text",
    "baseline_version",
    "current_baseline",
    "detection_names",
    "fleet_prevalence",
    "host_keys",
    "learning_hosts",
    "load_history",
    "mark_baselined",
    "save_baseline",
    "save_history",
]
