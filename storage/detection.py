"""Detection state, hosts' learning and the admin baseline (session passed in).

The detector (``fleetctl.detection``) works on an in-memory ``DetectionState``. For one
host's run this module loads only what that run can consult: every host's enrolment
time (for prevalence), the host's own path keys and parent history, the fleet-wide
sightings of keys the host has not seen before, the parent history of the parents in
play, and the host's earlier findings. So a run costs what one host holds, not what the
fleet has seen over time. Findings and their occurrences are ``storage.findings``.
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleetctl.detection import Baseline, DetectionState, LearningState, learning_state
from fleetctl.detection.state import FindingRecord, FleetKey, HostState, Sighting
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
    names: dict[int, str] = {}
    taken: set[str] = set()
    for hid, ident in rows:
        name = ident if ident not in taken else f"{ident}#{hid}"
        taken.add(name)
        names[hid] = name
    return names


def load_state(
    session: Session, host_id: int, keys: set[str], parents: set[str]
) -> tuple[DetectionState, dict[str, tuple[int, int]], set[tuple[str, str]]]:
    """State for one host's run, plus what was loaded (to write back only changes)."""
    state = DetectionState()
    names = detection_names(session)
    hosts = session.execute(select(Host.id, Host.enrolled_at)).all()
    state.started_at = float(min((t for _, t in hosts), default=0))
    for hid, enrolled in hosts:
        state.hosts[names[hid]] = HostState(first_seen=float(enrolled))
    baselined = set(
        session.scalars(
            select(DetectionHost.host_id).where(DetectionHost.baselined_at.is_not(None))
        )
    )
    state.fleet_baselined = bool(baselined)
    me = state.hosts[names[host_id]]
    me.baselined = host_id in baselined
    loaded: dict[str, tuple[int, int]] = {}
    for key, first, last in session.execute(
        select(PathSighting.path_key, PathSighting.first_seen, PathSighting.last_seen).where(
            PathSighting.host_id == host_id
        )
    ):
        me.keys[key] = Sighting(float(first), float(last))
        loaded[key] = (first, last)
    pairs = set()
    for parent, child in session.execute(
        select(ParentChild.parent, ParentChild.child).where(ParentChild.host_id == host_id)
    ):
        me.parents.setdefault(parent, set()).add(child)
        pairs.add((parent, child))
    for f in session.scalars(select(FindingRecordRow).where(FindingRecordRow.host_id == host_id)):
        state.findings[f.id] = FindingRecord(
            f.id,
            names[host_id],
            f.path_key,
            float(f.first_seen),
            float(f.last_seen),
            f.severity,
            f.score,
        )
        keys.add(f.path_key)
    for chunk in in_chunks(sorted(keys - set(me.keys))):
        for key, hid, first, last in session.execute(
            select(
                PathSighting.path_key,
                PathSighting.host_id,
                PathSighting.first_seen,
                PathSighting.last_seen,
            ).where(PathSighting.path_key.in_(chunk))
        ):
            entry = state.fleet.setdefault(key, FleetKey(float(first), float(last)))
            entry.first_seen = min(entry.first_seen, float(first))
            entry.last_seen = max(entry.last_seen, float(last))
            entry.hosts.add(names.get(hid, str(hid)))
    for key, seen in me.keys.items():  # the host's own keys are on the fleet too
        entry = state.fleet.setdefault(key, FleetKey(seen.first_seen, seen.last_seen))
        entry.hosts.add(names[host_id])
    for chunk in in_chunks(sorted(parents)):
        for parent, child in session.execute(
            select(ParentChild.parent, ParentChild.child)
            .where(ParentChild.parent.in_(chunk))
            .distinct()
        ):
            state.parents.setdefault(parent, set()).add(child)
    return state, loaded, pairs


def save_state(
    session: Session,
    host_id: int,
    host_name: str,
    state: DetectionState,
    loaded: dict[str, tuple[int, int]],
    pairs: set[tuple[str, str]],
) -> int:
    """Write the host's new keys, moved last-seen times and new parent/child pairs
    (``host_name`` is the host's name in ``state``, as ``detection_names`` gives it)."""
    me = state.hosts[host_name]
    new_rows = []
    for key, seen in me.keys.items():
        first, last = int(seen.first_seen), int(seen.last_seen)
        before = loaded.get(key)
        if before is None:
            new_rows.append(
                PathSighting(host_id=host_id, path_key=key, first_seen=first, last_seen=last)
            )
        elif last - before[1] >= LAST_SEEN_PRECISION:
            row = session.get(PathSighting, (host_id, key))
            if row is not None:
                row.last_seen = last
    session.add_all(new_rows)
    now = int(max((s.last_seen for s in me.keys.values()), default=0))
    session.add_all(
        ParentChild(host_id=host_id, parent=parent, child=child, first_seen=now)
        for parent, children in me.parents.items()
        for child in children
        if (parent, child) not in pairs
    )
    return len(new_rows)


def mark_baselined(session: Session, host_id: int, now: int) -> None:
    row = session.get(DetectionHost, host_id)
    if row is None:
        session.add(DetectionHost(host_id=host_id, baselined_at=now))
    else:
        row.baselined_at = now


def learning_states(
    session: Session, window: float, now: float, baseline: Baseline
) -> dict[int, LearningState]:
    """host id -> learning until when, judging, or on an explicit baseline: as the
    detector decides it (learned keys for a host in the baseline file count as one)."""
    names = detection_names(session)
    baselined = dict(
        session.execute(
            select(DetectionHost.host_id, DetectionHost.baselined_at).where(
                DetectionHost.baselined_at.is_not(None)
            )
        ).all()
    )
    return {
        hid: learning_state(
            float(enrolled),
            window,
            now,
            baselined=names[hid] in baseline.learned.hosts,
            baselined_at=baselined.get(hid),
        )
        for hid, enrolled in session.execute(select(Host.id, Host.enrolled_at))
    }


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
) -> int:
    """Make path keys baseline entries: ``(host name, key)`` under ``learned.hosts``, or
    ``(None, key)`` under ``learned.fleet``. Returns the new baseline version."""
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
    Baseline.loads(new_text)
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
    "add_learned_keys",
    "baseline_text",
    "current_baseline",
    "detection_names",
    "fleet_prevalence",
    "learning_states",
    "load_state",
    "mark_baselined",
    "save_baseline",
    "save_state",
]
