"""A finding's triage: read the facts one occurrence needs from the store, then judge.

The host's snapshot at the moment detection first saw the occurrence (the one trace
reads) gives the process at the other end of the child's channels; which rows to read
next depends on it: the channel rows of those processes and paths (did the IPC come
first?), the child's children and sockets over the window, the parent's earlier starts
and pair sightings, the window's data-loss markers. Every read is bounded by ``limit``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fleetctl.detection.normalize import to_int
from fleetctl.detection.snapshot import HostSnapshot
from fleetctl.detection.triage import (
    CHANNEL_ROWS,
    GAP_GRACE,
    PROCESS_ROWS,
    Chain,
    Facts,
    Rows,
    Subject,
    Triage,
    children_in_window,
    initiator_chain,
    judge,
    of_processes,
    parent_app,
)
from fleetctl.server.detection_service import DetectionService
from storage import triage as triage_store
from storage.findings import FindingOccurrence, FindingRecordRow

DESCENDANT_DEPTH = 3  # generations of the child's descendants read for "what next"
STARTS_READ = 1000  # earlier starts of the pair read to count them
READ_ROWS = 200  # rows read per slice for an answer, whatever the evidence shown
CHANNEL_LOOKBACK = 86_400  # how far back the channel's rows are read before the child


def _runs(session: Session, host_id: int) -> dict[str, Any]:
    """``Facts.last_runs`` and ``schedule_at``: per query the later of its last result
    and the last execution the host's schedule report gives."""
    runs = triage_store.last_runs(session, host_id)
    report = triage_store.schedule_report(session, host_id)
    if report is None:
        return {"last_runs": runs, "schedule_at": None}
    for query, executed in report.last_executed.items():
        runs[query] = max(runs.get(query, 0), executed)
    return {"last_runs": runs, "schedule_at": report.at}


def _rows(found: triage_store.Slice) -> Rows:
    return Rows(tuple(found.rows), found.cut)


def _channel_rows(
    session: Session, host_id: int, chain: Chain, snapshot: HostSnapshot, at: int, limit: int
) -> triage_store.Slice:
    """Rows of the process at the other end of the child's channels and of the FIFO and
    socket paths on the way, from ``CHANNEL_LOOKBACK`` before ``at`` (or that process's
    start) to ``at``, oldest first: when the earliest was first seen says whether the
    channel predates the child. Not only the rows present at ``at``: a channel row
    changes when the child opens its end (its partner column), so the row that shows the
    channel before the child is an earlier one."""
    near: dict[int, int | None] = {}
    for hop in chain.hops:
        if hop.depth == 1:
            proc = snapshot.processes.get(hop.pid)
            near[hop.pid] = proc.start_time if proc is not None else None
    since = at - CHANNEL_LOOKBACK
    known = [t for t in near.values() if t is not None]
    pid_since = min(known) if known and len(known) == len(near) else since
    by_pid = triage_store.rows_where(
        session, host_id, CHANNEL_ROWS, "pid", [str(p) for p in near], pid_since, at, limit
    )
    rows = of_processes(by_pid.rows, near)
    cut = by_pid.cut
    by_path = triage_store.rows_where(
        session, host_id, CHANNEL_ROWS, ("path", "target"), list(chain.paths), since, at, limit
    )
    return triage_store.Slice(rows + by_path.rows, cut or by_path.cut)


def _descendants(
    session: Session, host_id: int, pid: int, start: int, end: int, limit: int
) -> tuple[Rows, dict[int, int | None]]:
    """The child's children (and theirs, ``DESCENDANT_DEPTH`` generations) that started
    in the window, and every process of the family by pid -> start time."""
    family: dict[int, int | None] = {pid: start}
    parents = dict(family)
    found: list[triage_store.StoredRow] = []
    cut = False
    for _ in range(DESCENDANT_DEPTH):
        read = triage_store.rows_where(
            session, host_id, PROCESS_ROWS, "parent", [str(p) for p in parents], start, end, limit
        )
        cut = cut or read.cut
        kids = children_in_window(read.rows, parents, start, end)
        parents = {}
        for row in kids:
            kid = to_int(row.columns.get("pid"))  # what a host sends may be junk
            if kid is None or kid in family:
                continue
            family[kid] = to_int(row.columns.get("start_time")) or to_int(row.columns.get("time"))
            parents[kid] = family[kid]
            found.append(row)
        if not parents or len(found) >= limit:
            cut = cut or len(found) > limit
            break
    return Rows(tuple(found[:limit]), cut), family


def occurrence_triage(
    session: Session,
    service: DetectionService,
    row: FindingRecordRow,
    host: str,
    occurrence: FindingOccurrence,
    *,
    window: int,
    limit: int,
    now: int,
) -> Triage:
    """The triage answers for ``occurrence`` of the finding ``row`` on ``host``."""
    doc: dict[str, Any] = occurrence.document or {}
    evidence = doc.get("evidence") or {}
    at = occurrence.first_seen
    subject = Subject(
        host, occurrence.pid, occurrence.start_time, at, row.parent, row.child, evidence
    )
    snapshot = service.snapshot(session, row.host_id, at)
    present = occurrence.pid in snapshot.processes
    chain = initiator_chain(snapshot, occurrence.pid, limit) if present else Chain()
    start = occurrence.start_time if occurrence.start_time is not None else at
    end = start + window
    read = max(limit, READ_ROWS)  # answers count over more rows than they show
    children, family = _descendants(session, row.host_id, occurrence.pid, start, end, read)
    activity = triage_store.rows_where(
        session, row.host_id, CHANNEL_ROWS, "pid", [str(p) for p in family], start, end, read
    )
    app = parent_app(evidence, snapshot.platform or "linux")
    lineage = evidence.get("lineage") or []
    parent_base = lineage[1].get("basename", "") if len(lineage) > 1 else ""
    starts = (
        triage_store.starts_of(
            session, row.host_id, PROCESS_ROWS, parent_base, row.child, at, STARTS_READ
        )
        if parent_base
        else triage_store.Slice([], False)
    )
    pairs, pairs_cut = (
        triage_store.pair_sightings(session, [app], row.child, STARTS_READ) if app else ([], False)
    )
    others, _ = (
        triage_store.pair_sightings(session, [app], None, limit, host_id=row.host_id)
        if app
        else ([], False)
    )
    facts = Facts(
        subject=subject,
        snapshot=snapshot if present else None,
        chain=chain,
        window=window,
        now=now,
        limit=limit,
        channel_rows=_rows(_channel_rows(session, row.host_id, chain, snapshot, at, read)),
        children=children,
        activity=Rows(tuple(of_processes(activity.rows, family)), activity.cut),
        starts=_rows(starts),
        history_start=triage_store.history_start(session, row.host_id, PROCESS_ROWS),
        pairs=tuple(pairs),
        pairs_cut=pairs_cut,
        parent_children=tuple(others),
        hosts_total=triage_store.host_count(session),
        gaps=tuple(triage_store.gaps_between(session, row.host_id, start, end + GAP_GRACE, limit)),
        rejected=triage_store.rejected_between(session, row.host_id, start, end + GAP_GRACE),
        **_runs(session, row.host_id),
    )
    return judge(facts)
