"""Triage questions 4 to 6: whether the parent started such children before (on the
host and the fleet), what the child did next, and whether the host's telemetry was
complete over that time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fleetctl.detection.detector import app_name
from fleetctl.detection.normalize import basename, text, to_int
from fleetctl.detection.records import START_TIME_SLACK, same_start
from fleetctl.detection.triage.facts import (
    ANSWERED,
    CHANNEL_ROWS,
    EXEC_EVENTS,
    GAP_GRACE,
    LINEAGE,
    PARTIAL,
    PROCESS_ROWS,
    UNKNOWN,
    Answer,
    Facts,
    cut_rows,
    row_evidence,
)
from fleetctl.timeutil import format_duration, iso
from storage.triage import StoredRow

# -- 4. has the parent started such children before -----------------------------------


def parent_app(evidence: Mapping[str, Any], platform: str) -> str | None:
    """The parent as the detector remembers its children (``python3 http.server``)."""
    lineage = evidence.get("lineage") or []
    if len(lineage) < 2:
        return None
    p = lineage[1]
    return app_name(
        p.get("basename", ""), tuple(p.get("names") or ()), p.get("cmdline", ""), platform
    )


def _earlier_starts(facts: Facts, app: str, platform: str) -> list[StoredRow]:
    """Distinct processes (pid, start time) of the starts rows, started before the
    child, under a parent that is the same app."""
    s = facts.subject
    found: dict[tuple[int | None, int | None], StoredRow] = {}
    for row in facts.starts.rows:
        c = row.columns
        start = to_int(c.get("start_time")) or to_int(c.get("time"))
        if s.start_time is not None and start is not None and start >= s.start_time:
            continue
        pid = to_int(c.get("pid"))
        if pid == s.pid and same_start(start, s.start_time):
            continue
        parent_base = basename(text(c, "parent_path")) or text(c, "parent_name")
        parent_line = text(c, "parent_cmdline")
        if parent_line and app_name(parent_base, (parent_base,), parent_line, platform) != app:
            continue
        found.setdefault((pid, start), row)
    return list(found.values())


def prevalence(facts: Facts) -> Answer:
    """Earlier starts of this parent/child pair on the host, and the hosts where the
    detector saw the pair before: a parent that never starts such children is what
    the seed calls an unusual execution path."""
    s = facts.subject
    platform = facts.snapshot.platform if facts.snapshot is not None else "linux"
    app = parent_app(s.evidence, platform or "linux")
    if app is None:
        return Answer(
            "prevalence", UNKNOWN, "no parent known", "the child's lineage stops at itself"
        )
    # A pair recorded once the child had started may be this very process's.
    before = [p for p in facts.pairs if p.first_seen < facts.start]
    here = [p for p in before if p.host == s.host]
    other_hosts = sorted({p.host for p in before if p.host != s.host})
    starts = _earlier_starts(facts, app, platform or "linux")
    reach = (
        f"process history since {iso(facts.history_start)}"
        if facts.history_start is not None
        else "no process history"
    )
    n = f"{len(starts)}{'+' if facts.starts.cut else ''}"
    rows: list[dict[str, Any]] = [
        {
            "role": "pair" if p.first_seen < facts.start else "pair, since this child",
            "host": p.host,
            "parent": p.parent,
            "child": p.child,
            "first_seen": iso(p.first_seen),
        }
        for p in facts.pairs
    ]
    rows += [row_evidence(r, "earlier start") for r in starts]
    rows += [
        {"role": "other child here", "host": p.host, "parent": p.parent, "child": p.child}
        | {"first_seen": iso(p.first_seen)}
        for p in facts.parent_children
        if p.child != s.child
    ]
    evidence, cut = cut_rows(rows, facts.limit, facts.pairs_cut or facts.starts.cut)
    fleet = f"on {len(other_hosts)} other of {facts.hosts_total} host(s)"
    if other_hosts:
        fleet += f" ({', '.join(other_hosts[:5])}{', ...' if len(other_hosts) > 5 else ''})"
    if here or starts:
        since = f" since {iso(here[0].first_seen)}" if here else ""
        head = f"yes: {app} started {s.child} on {s.host}{since}"
    else:
        head = f"no: {app} never started {s.child} on {s.host} before"
    return Answer(
        "prevalence",
        ANSWERED,
        f"{head} ({n} earlier start(s) in its {reach}); {fleet} before this finding",
        "",
        evidence,
        cut,
    )


# -- 5. what the child did next ----------------------------------------------------------


def children_in_window(
    rows: Iterable[StoredRow], parents: Mapping[int, int | None], start: int, end: int
) -> list[StoredRow]:
    """Process rows whose parent is one of ``parents`` (pid -> start time) and that
    started from ``start`` to ``end`` (after their parent, when its start is known)."""
    found: dict[tuple[int | None, int | None], StoredRow] = {}
    for row in rows:
        c = row.columns
        parent = to_int(text(c, "parent", "ppid", "parent_pid"))
        if parent is None or parent not in parents:
            continue
        born = to_int(c.get("start_time")) or to_int(c.get("time"))
        parent_born = to_int(c.get("parent_start_time"))
        if parent_born is not None and not same_start(parent_born, parents[parent]):
            continue  # the pid's earlier or later owner
        # Start times are boot time plus ticks, and boot time is read anew each run.
        if born is not None and not start - START_TIME_SLACK <= born <= end:
            continue
        found.setdefault((to_int(c.get("pid")), born), row)
    return list(found.values())


def of_processes(rows: Iterable[StoredRow], starts: Mapping[int, int | None]) -> list[StoredRow]:
    """Rows of the processes ``starts`` names (pid -> start time), not of an earlier or
    later process that had the same pid."""
    found = []
    for row in rows:
        pid = to_int(row.columns.get("pid"))
        started = to_int(row.columns.get("start_time"))
        if pid is not None and pid in starts and same_start(started, starts[pid]):
            found.append(row)
    return found


def next_steps(facts: Facts) -> Answer:
    """The child's descendants and their sockets, FIFOs and files within the window:
    what the execution led to, and what the snapshots between could not see."""
    kids = list(facts.children.rows)
    kid_rows = [
        {
            "role": "child process",
            "pid": to_int(r.columns.get("pid")),
            "parent": to_int(text(r.columns, "parent", "ppid", "parent_pid")),
            "name": basename(text(r.columns, "path")) or text(r.columns, "name"),
            "start_time": iso(to_int(r.columns.get("start_time")) or to_int(r.columns.get("time"))),
            "cmdline": text(r.columns, "cmdline"),
            "query": r.query,
        }
        for r in kids
    ]
    io: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in facts.activity.rows:
        if _is_activity(r):
            row = row_evidence(r, "socket" if r.query.startswith("unix") else "fd")
            io.setdefault((row["pid"], row["fd"], row["object"], row["kind"]), row)
    evidence, cut = cut_rows(
        kid_rows + list(io.values()), facts.limit, facts.children.cut or facts.activity.cut
    )
    names = sorted({str(r["name"]) for r in kid_rows if r["name"]})
    objects = sorted(
        {
            str(r["object"])
            for r in io.values()
            if r["object"] and not str(r["object"]).startswith("inode ")
        }
    )
    said = [
        f"{len(kid_rows)} child process(es)" + (f" ({', '.join(names[:6])})" if names else ""),
        f"{len(objects)} socket(s), FIFO(s) or file(s)"
        + (f" ({', '.join(objects[:4])}{', ...' if len(objects) > 4 else ''})" if objects else ""),
    ]
    window = (
        f"within {format_duration(facts.window)} of its start "
        f"({iso(facts.start)} to {iso(facts.end)})"
    )
    answer = f"{'; '.join(said)} {window}"
    lineage_runs = max((facts.last_runs.get(q, 0) for q in LINEAGE), default=0)
    gaps = []
    if lineage_runs < facts.end:
        gaps.append(
            f"processes were last collected at {iso(lineage_runs) if lineage_runs else 'never'}"
            + (", and the window is not over yet" if facts.now < facts.end else "")
        )
    if not any(q in facts.last_runs for q in EXEC_EVENTS):
        gaps.append(
            "no exec events are collected (process_events), so children that came and went "
            "between two process snapshots are not in the store"
        )
    if gaps:
        return Answer("next", PARTIAL, answer, "; ".join(gaps), evidence, cut)
    return Answer("next", ANSWERED, answer, "", evidence, cut)


def _is_activity(row: StoredRow) -> bool:
    """A row of the child's IPC or files worth showing (not its tty or /dev/null)."""
    kind = text(row.columns, "kind")
    return kind not in ("tty", "pty", "null", "closed")


# -- 6. was telemetry complete ----------------------------------------------------------


def telemetry(facts: Facts) -> Answer:
    """Data-loss markers and quarantined lines over the window, and whether the
    process and IPC queries kept running: the other answers are only as good as that.

    Those queries are differential: a host logs them only when something changed, so
    their last result says they ran then, and their silence says nothing. Whether they
    ran after it comes from the host's schedule report (``telemetry-health``'s
    ``schedule_health``: osqueryd's own ``last_executed``, merged into ``last_runs``);
    a query is known to have stopped only when a report came after it was due."""
    s = facts.subject
    rows: list[dict[str, Any]] = [
        {
            "role": "data loss",
            "query": g.name,
            "kind": g.kind,
            "detail": g.detail,
            "at": iso(g.unix_time),
            "resolved_at": iso(g.resolved_at),
        }
        for g in facts.gaps
    ]
    open_gaps = [g for g in facts.gaps if g.resolved_at is None]
    if facts.rejected:
        rows.append({"role": "quarantined lines", "count": facts.rejected})
    read = sorted(q for q in facts.last_runs if q in PROCESS_ROWS | CHANNEL_ROWS)
    rows += [{"role": "last run", "query": q, "at": iso(facts.last_runs[q])} for q in read]
    if facts.schedule_at is not None:
        rows.append({"role": "schedule report", "at": iso(facts.schedule_at)})
    evidence, cut = cut_rows(rows, facts.limit)
    span = f"from {iso(facts.start)} to {iso(facts.end)}"
    # A query runs every few minutes: one that last ran before the window's end (or
    # before a run interval ago, while the window lasts) stopped, if a schedule report
    # came a run interval after that; without one, it may only have had nothing new.
    due = min(facts.end, facts.now - GAP_GRACE)
    behind = [q for q in read if facts.last_runs[q] < due]
    reported = facts.schedule_at is not None and facts.schedule_at >= due + GAP_GRACE
    stale = behind if reported else []
    if open_gaps or facts.rejected:
        parts = []
        if open_gaps:
            parts.append(
                f"{len(open_gaps)} data-loss marker(s) "
                f"({', '.join(sorted({g.kind for g in open_gaps}))}) on "
                f"{', '.join(sorted({g.name for g in open_gaps})[:3])}"
            )
        if facts.rejected:
            parts.append(f"{facts.rejected} quarantined log line(s)")
        return Answer(
            "telemetry",
            ANSWERED,
            f"no: {' and '.join(parts)} {span} (up to {format_duration(GAP_GRACE)} after it)",
            "rows lost there may hide what happened; `fleetctl data-loss --host "
            f"{s.host}` lists them",
            evidence,
            cut,
        )
    if not read:
        return Answer(
            "telemetry",
            UNKNOWN,
            "cannot tell",
            "the host never reported a process or IPC query",
            evidence,
            cut,
        )
    if stale:
        return Answer(
            "telemetry",
            PARTIAL,
            f"no data-loss marker {span}, but {len(stale)} query(ies) last ran before the "
            f"window's end ({', '.join(stale[:3])})",
            "the host's schedule report says they stopped (denylisted by the watchdog, or "
            "removed): what happened after their last run is not in the store",
            evidence,
            cut,
        )
    if behind:
        return Answer(
            "telemetry",
            PARTIAL,
            f"no data-loss marker {span}, but {len(behind)} query(ies) logged nothing "
            f"since before the window's end ({', '.join(behind[:3])})",
            "they log only changes, and no schedule report (telemetry-health/"
            "schedule_health) since says whether they ran: the next one will",
            evidence,
            cut,
        )
    return Answer(
        "telemetry",
        ANSWERED,
        f"yes: no data-loss marker or quarantined line {span}; {len(read)} process and "
        "IPC queries ran through it",
        "",
        evidence,
        cut,
    )
