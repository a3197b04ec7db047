"""Detection state, findings and the admin baseline (session passed in).

The detector (``fleetctl.detection``) works on an in-memory ``DetectionState``. For one
host's run this module loads only what that run can consult: every host's enrolment
time (for prevalence), the host's own path keys and parent history, the fleet-wide
sightings of keys the host has not seen before, the parent history of the parents in
play, and the host's earlier findings. So a run costs what one host holds, not what the
fleet has seen over time.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleetctl.detection import DetectionState, Finding
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


def save_findings(session: Session, host_id: int, findings: Iterable[Finding]) -> list[str]:
    """Insert new findings, refresh seen-again ones; ids of the findings that are new."""
    created = []
    for finding in findings:
        doc = finding.to_dict()
        row = session.get(FindingRecordRow, finding.id)
        if row is None:
            session.add(
                FindingRecordRow(
                    id=finding.id,
                    host_id=host_id,
                    path_key=finding.key,
                    pid=finding.pid,
                    parent=finding.parent,
                    child=finding.child,
                    severity=finding.severity,
                    score=finding.score,
                    status="open",
                    new_on_host=finding.new_on_host,
                    new_on_fleet=finding.new_on_fleet,
                    first_seen=int(finding.first_seen),
                    last_seen=int(finding.last_seen),
                    document=doc,
                    note="",
                )
            )
            created.append(finding.id)
        else:
            # Seen again: the latest occurrence is what an analyst can still act on.
            row.last_seen, row.pid, row.document = int(finding.last_seen), finding.pid, doc
            if finding.score > row.score:
                row.score, row.severity = finding.score, finding.severity
    return created


def mark_baselined(session: Session, host_id: int, now: int) -> None:
    row = session.get(DetectionHost, host_id)
    if row is None:
        session.add(DetectionHost(host_id=host_id, baselined_at=now))
    else:
        row.baselined_at = now


def list_findings(
    session: Session,
    *,
    host_id: int | None = None,
    status: str | None = None,
    since: int | None = None,
    min_score: int | None = None,
    limit: int = 1000,
) -> list[tuple[FindingRecordRow, str]]:
    stmt = select(FindingRecordRow, Host.host_identifier).join(
        Host, Host.id == FindingRecordRow.host_id
    )
    if host_id is not None:
        stmt = stmt.where(FindingRecordRow.host_id == host_id)
    if status is not None:
        stmt = stmt.where(FindingRecordRow.status == status)
    if since is not None:
        stmt = stmt.where(FindingRecordRow.last_seen >= since)
    if min_score is not None:
        stmt = stmt.where(FindingRecordRow.score >= min_score)
    stmt = stmt.order_by(FindingRecordRow.score.desc(), FindingRecordRow.first_seen.desc())
    return [(row, ident) for row, ident in session.execute(stmt.limit(limit))]


def get_finding(session: Session, finding_id: str) -> tuple[FindingRecordRow, str] | None:
    found = session.execute(
        select(FindingRecordRow, Host.host_identifier)
        .join(Host, Host.id == FindingRecordRow.host_id)
        .where(FindingRecordRow.id.startswith(finding_id, autoescape=True))
        .limit(2)
    ).all()
    return (found[0][0], found[0][1]) if len(found) == 1 else None


def current_baseline(session: Session) -> tuple[int, str] | None:
    """(version, YAML text) of the admin's baseline, or None (the shipped default rules)."""
    row = session.scalars(
        select(BaselineVersion).order_by(BaselineVersion.version.desc()).limit(1)
    ).first()
    return None if row is None else (row.version, str(row.body.get("yaml", "")))


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


def status_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(FindingRecordRow.status, func.count()).group_by(FindingRecordRow.status)
    )
    return {status: int(n) for status, n in rows}


__all__ = [
    "FindingRecordRow",
    "current_baseline",
    "fleet_prevalence",
    "get_finding",
    "list_findings",
    "load_state",
    "mark_baselined",
    "save_baseline",
    "save_findings",
    "save_state",
    "status_counts",
]
