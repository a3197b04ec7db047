"""Admin API for detection: findings with their occurrences and history, the baseline,
traces and on-demand detection (judge, learn; replays are jobs: ``admin_detection_jobs``).

This is the one JSON surface of findings for the CLI and a web console alike.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.detection import (
    Baseline,
    BaselineError,
    Finding,
    HostSnapshot,
    LearningState,
    build_trace,
)
from fleetctl.detection.scoring import SEVERITIES, severity_rank
from fleetctl.detection.triage import DEFAULT_LIMIT, DEFAULT_WINDOW, MAX_LIMIT, MAX_WINDOW
from fleetctl.errors import BadRequest, Forbidden, NotFound
from fleetctl.roles import Role
from fleetctl.server.access import caller_of, requires
from fleetctl.server.admin_api import (
    admin_endpoint,
    admin_read_body_endpoint,
    admin_write_endpoint,
    find_host_or_404,
    learning_states,
)
from fleetctl.server.admin_params import (
    choice_param,
    column_length,
    column_range,
    flag_param,
    int_field,
    int_param,
    text_param,
    time_param,
)
from fleetctl.server.state import server_state
from fleetctl.server.triage import occurrence_triage
from fleetctl.timeutil import format_duration, iso, parse_duration
from storage import detection as detection_store
from storage import findings as findings_store
from storage import hosts as host_store
from storage import triage as triage_store
from storage.findings import FindingChange, FindingOccurrence, FindingRecordRow, Listed
from storage.hosts import Host

PREFIX = "/api/v1/admin"
OCCURRENCE_PAGE = 10_000
FINDINGS_PAGE = 1_000  # findings a listing gives unless asked for a page of another size
MAX_FINDINGS_PAGE = 10_000


def _lineage_path(doc: dict[str, Any], index: int) -> str | None:
    """Executable path of lineage entry ``index`` (0 = child, 1 = parent)."""
    lineage = doc.get("evidence", {}).get("lineage") or []
    return lineage[index].get("path") if len(lineage) > index else None


def _reasons(doc: dict[str, Any]) -> list[str]:
    return [r["text"] for r in doc.get("reasons", [])]


def finding_summary(listed: Listed) -> dict[str, Any]:
    """A finding in short: severity, score and reasons are those of its leading
    occurrence (the most severe open one, else the newest); ``pid`` and
    ``last_occurrence`` are the newest occurrence's."""
    row = listed.row
    doc = listed.lead.document if listed.lead is not None else {}
    prevalence = doc.get("prevalence", {})
    summary = {
        "id": row.id,
        "host": listed.host,
        "severity": row.severity,
        "score": row.score,
        "status": row.status,
        "pid": row.pid,
        "parent": row.parent,
        "child": row.child,
        "parent_path": _lineage_path(doc, 1),
        "child_path": _lineage_path(doc, 0),
        "new_on_host": row.new_on_host,
        "new_on_fleet": row.new_on_fleet,
        "seen_during_learning": row.seen_during_learning,
        "prevalence": f"{prevalence.get('hosts_with_key')}/{prevalence.get('hosts_total')}",
        "occurrences": listed.occurrences,
        "last_occurrence": iso(listed.last_occurrence),
        "first_seen": iso(row.first_seen),
        "last_seen": iso(row.last_seen),
        "acked_by": row.acked_by,
        "acked_at": iso(row.acked_at),
        "reasons": _reasons(doc),
        "key": row.path_key,
    }
    if listed.since:
        summary["occurrences_since"] = [_occurrence_brief(o) for o in listed.since]
    return summary


def _occurrence_brief(occurrence: FindingOccurrence) -> dict[str, Any]:
    return {
        "id": occurrence.id,
        "pid": occurrence.pid,
        "start_time": occurrence.start_time,
        "severity": occurrence.severity,
        "score": occurrence.score,
        "first_seen": iso(occurrence.first_seen),
        "last_seen": iso(occurrence.last_seen),
        "status": "open" if occurrence.acked_at is None else "acked",
        "acked_at": iso(occurrence.acked_at),
        "seen_during_learning": occurrence.seen_during_learning,
    }


def occurrence_json(occurrence: FindingOccurrence) -> dict[str, Any]:
    """One occurrence with its reasons and its evidence as first stored."""
    doc = occurrence.document
    return _occurrence_brief(occurrence) | {
        "reasons": _reasons(doc),
        "evidence": doc.get("evidence", {}),
    }


def change_json(change: FindingChange) -> dict[str, Any]:
    return {
        "at": iso(change.at),
        "field": change.field,
        "from": change.old,
        "to": change.new,
        "by": change.actor,
        "note": change.note,
    }


def learning_summary(states: dict[int, LearningState]) -> dict[str, Any]:
    """How many hosts only learn new paths yet, and when the last of them stops."""
    until = [s.until for s in states.values() if s.learning and s.until is not None]
    return {"hosts": len(until), "until": iso(int(max(until))) if until else None}


@requires(Role.OBSERVER)
@admin_endpoint
def list_findings(request: Request, session: Session) -> dict[str, Any]:
    """Findings, most severe first, filtered; ``limit`` of them from ``offset`` (pages).
    ``since`` and ``until`` keep those seen between the two times."""
    params = request.query_params
    since = time_param(params, "since")
    until = time_param(params, "until")
    if since is not None and until is not None and until < since:
        raise BadRequest("'until' is before 'since'")
    occurred_since = time_param(params, "occurred_since")
    min_severity = choice_param(params, "min_severity", SEVERITIES, default="low")
    status = choice_param(params, "status", findings_store.STATUSES)
    host_id = find_host_or_404(session, params["host"]).id if params.get("host") else None
    limit = int_param(params, "limit", (1, MAX_FINDINGS_PAGE), default=FINDINGS_PAGE)
    offset = int_param(params, "offset", (0, 10**9), default=0)
    rows = findings_store.list_findings(
        session,
        host_id=host_id,
        status=status,
        since=since,
        until=until,
        occurred_since=occurred_since,
        severities=SEVERITIES[severity_rank(min_severity) :],
        limit=limit,
        offset=offset,
    )
    return {
        "findings": [finding_summary(r) for r in rows],
        "limit": limit,
        "offset": offset,
        "learning": learning_summary(learning_states(request, session)),
    }


def _finding(session: Session, finding_id: str) -> tuple[FindingRecordRow, str]:
    found = findings_store.get_finding(session, finding_id)
    if found is None:
        raise NotFound(f"no single finding matches {finding_id!r}")
    return found


@requires(Role.OBSERVER)
@admin_endpoint
def show_finding(request: Request, session: Session) -> dict[str, Any]:
    """The finding, its occurrences newest first (``limit``, default 100), its history,
    and the triage answers for its leading occurrence (or ``occurrence``, an id) over
    ``window`` after the child started (default 10m), each evidence list cut at
    ``evidence_limit`` rows. ``document`` is the newest occurrence's stored document."""
    params = request.query_params
    limit = int_param(params, "limit", (1, OCCURRENCE_PAGE), default=100)
    window = _window(params.get("window"))
    evidence_limit = int_param(params, "evidence_limit", (1, MAX_LIMIT), default=DEFAULT_LIMIT)
    chosen = int_param(params, "occurrence", column_range("FindingOccurrence.id", low=1))
    row, host = _finding(session, request.path_params["id"])
    shown = findings_store.occurrences(session, row.id, limit)
    described = findings_store.describe(session, row, host)
    subject = described.lead
    if chosen is not None:
        subject = triage_store.occurrence(session, row.id, chosen)
        if subject is None:
            raise NotFound(f"finding {row.id} has no occurrence {chosen}")
    service = server_state(request).detection
    assert service is not None
    answers = None
    if subject is not None:
        answers = occurrence_triage(
            session,
            service,
            row,
            host,
            subject,
            window=window,
            limit=evidence_limit,
            now=int(time.time()),
        ).to_dict() | {"occurrence": subject.id}
    return {
        "finding": finding_summary(described) | {"note": row.note},
        "document": shown[0].document if shown else {},
        "occurrences": [occurrence_json(o) for o in shown],
        "history": [change_json(c) for c in findings_store.history(session, row.id)],
        "triage": answers,
    }


def _window(value: str | None) -> int:
    """How long after the child's start "what it did next" looks (a duration)."""
    if value is None:
        return DEFAULT_WINDOW
    seconds = parse_duration(value)
    if not 1 <= seconds <= MAX_WINDOW:
        raise BadRequest(f"'window' must be from 1s to {format_duration(MAX_WINDOW)}")
    return seconds


@requires(Role.HUNTER)
@admin_write_endpoint
def ack_finding(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """The finding's incidents so far are handled; a later occurrence reopens it."""
    note = text_param(body, "note", default="")
    row, host = _finding(session, request.path_params["id"])
    findings_store.ack(session, row, caller_of(request).user, note, int(time.time()))
    return {"finding": finding_summary(findings_store.describe(session, row, host))}


@requires(Role.HUNTER)
@admin_write_endpoint
def suppress_finding(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Turn a finding into a baseline entry (its path key, on its host or the fleet)."""
    scope = choice_param(body, "scope", ("host", "fleet"), default="host")
    note = text_param(body, "note", default="")
    row, host = _finding(session, request.path_params["id"])
    name = detection_store.detection_names(session)[row.host_id] if scope == "host" else None
    now = int(time.time())
    version = detection_store.add_learned_keys(
        session, [(name, row.path_key)], f"suppress {row.id} ({scope})", now, Baseline.loads
    )
    findings_store.suppress(session, row, caller_of(request).user, note, now)
    return {
        "finding": finding_summary(findings_store.describe(session, row, host)),
        "baseline_version": version,
    }


@requires(Role.OBSERVER)
@admin_endpoint
def get_baseline(request: Request, session: Session) -> dict[str, Any]:
    version, text = detection_store.baseline_text(session)
    effective = Baseline.loads(text)
    return {"version": version, "yaml": text, "entries": baseline_entries(effective)}


def baseline_entries(baseline: Baseline) -> list[dict[str, Any]]:
    """One row per rule of the effective baseline, for ``baseline list``."""
    doc = baseline.to_dict()
    rows: list[dict[str, Any]] = []
    for section in ("socket_paths", "fifo_access", "parent_child"):
        for i, entry in enumerate(doc[section]):
            rows.append({"section": section, "index": i, "entry": entry})
    for kind in ("suspicious", "allowed"):
        for i, entry in enumerate(doc["pipe_names"][kind]):
            rows.append({"section": f"pipe_names.{kind}", "index": i, "entry": entry})
    for i, key in enumerate(doc["learned"]["fleet"]):
        rows.append({"section": "learned.fleet", "index": i, "entry": key})
    for host, keys in doc["learned"]["hosts"].items():
        for i, key in enumerate(keys):
            rows.append({"section": f"learned.hosts.{host}", "index": i, "entry": key})
    return rows


@requires(Role.ADMIN)
@admin_write_endpoint
def put_baseline(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    text = body.get("yaml")
    if not isinstance(text, str):
        raise ValueError("'yaml' must be the baseline file's text")
    note = text_param(body, "note", default="")
    expected = int_field(body, "expected_version", column_range("BaselineVersion.version", low=0))
    try:
        Baseline.loads(text)
    except BaselineError as exc:
        raise ValueError(f"baseline refused: {exc}") from exc
    version = detection_store.save_baseline(session, text, note, int(time.time()), expected)
    return {"version": version}


def _snapshot(request: Request, session: Session) -> tuple[Host, int, HostSnapshot]:
    """The ``host`` parameter's host, the ``at`` parameter (default now), and the host's
    processes and channels then, as detection reads them."""
    params = request.query_params
    at = time_param(params, "at", default=int(time.time()))
    host = find_host_or_404(session, params.get("host", ""))
    service = server_state(request).detection
    assert service is not None
    return host, at, service.snapshot(session, host.id, at)


@requires(Role.OBSERVER)
@admin_endpoint
def processes(request: Request, session: Session) -> dict[str, Any]:
    """Every process of a host at a time (default now), from the snapshot ``trace``
    reads: the console draws a host's process tree from it for every role, where the
    hunting views are for hunters only."""
    host, at, snapshot = _snapshot(request, session)
    return {
        "host": host.host_identifier,
        "at": iso(at),
        "processes": [
            {
                "pid": p.pid,
                "parent": p.parent,
                "name": p.basename,
                "path": p.path,
                "cmdline": p.cmdline,
                "user": p.username,
                "uid": p.uid,
            }
            for p in sorted(snapshot.processes.values(), key=lambda p: p.pid)
        ],
    }


@requires(Role.OBSERVER)
@admin_endpoint
def trace(request: Request, session: Session) -> dict[str, Any]:
    pid = int_param(
        request.query_params, "pid", column_range("FindingRecordRow.pid", low=0), default=0
    )
    host, at, snapshot = _snapshot(request, session)
    if pid not in snapshot.processes:
        raise NotFound(f"no process {pid} on {host.host_identifier} at {iso(at)}")
    result = build_trace(snapshot, pid)
    return {
        "host": host.host_identifier,
        "pid": pid,
        "at": iso(at),
        "text": result.to_text(),
        "dot": result.to_dot(),
        "trace": result.to_dict(),
    }


@requires(Role.HUNTER)
@admin_read_body_endpoint
def detect(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Judge hosts now, or learn the current paths (a replay of history since a time is
    a job: ``admin_detection_jobs``).

    Learning reports the keys it learned and those it refused (each now a finding, with
    the reasons); a refused key listed in ``accept`` is learned: it becomes a baseline
    entry for its host."""
    service = server_state(request).detection
    assert service is not None
    ref = text_param(body, "host")
    learn = flag_param(body, "learn")
    if time_param(body, "since") is not None:
        raise BadRequest(
            "a replay of history runs as a job: POST /api/v1/admin/detect/jobs with 'since'"
        )
    accept = _keys(body, "accept")
    if accept and not learn:
        raise BadRequest("'accept' goes with 'learn'")
    if learn and caller_of(request).role < Role.ADMIN:
        # Learning writes every current path into the baseline, so none of them is ever
        # flagged: a baseline edit. A hunter triages one finding at a time (suppress).
        raise Forbidden("admin role required: learning writes the baseline")
    hosts = [find_host_or_404(session, ref)] if ref else host_store.list_hosts(session)
    actor = caller_of(request).user
    now = int(time.time())
    created: list[str] = []
    learned: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    accepted: list[dict[str, Any]] = []
    for host in hosts:
        run = service.run_host(host.id, now, learn=learn, accept=accept, actor=actor)
        created += run.created
        name = host.host_identifier
        learned += [{"host": name, "key": k, "new": k in run.new_keys} for k in run.learned]
        refused += [_refusal(name, f) for f in run.refused]
        accepted += [{"host": name, "key": k} for k in run.accepted]
    answer: dict[str, Any] = {"hosts": len(hosts), "learned": learn, "new_findings": created}
    if learn:
        named = {a["key"] for a in accepted} | {r["key"] for r in learned}
        answer |= {
            "learned_keys": learned,
            "refused": refused,
            "accepted": accepted,
            "not_seen": [k for k in accept if k not in named],
        }
    return answer


def _refusal(host: str, finding: Finding) -> dict[str, Any]:
    return {
        "host": host,
        "key": finding.key,
        "finding": finding.id,
        "severity": finding.severity,
        "score": finding.score,
        "pids": list(finding.pids),
        "reasons": [r.text for r in finding.reasons],
    }


def _keys(body: dict[str, Any], name: str) -> list[str]:
    """A list of path keys (each at most the path key column's length)."""
    value = body.get(name)
    if value is None:
        return []
    longest = column_length("FindingRecordRow.path_key")
    if not isinstance(value, list) or not all(
        isinstance(k, str) and 0 < len(k) <= longest for k in value
    ):
        raise BadRequest(f"'{name}' must be a list of path keys")
    return list(dict.fromkeys(value))


routes = [
    Route(f"{PREFIX}/findings", list_findings, methods=["GET"]),
    Route(f"{PREFIX}/findings/{{id}}", show_finding, methods=["GET"]),
    Route(f"{PREFIX}/findings/{{id}}/ack", ack_finding, methods=["POST"]),
    Route(f"{PREFIX}/findings/{{id}}/suppress", suppress_finding, methods=["POST"]),
    Route(f"{PREFIX}/baseline", get_baseline, methods=["GET"]),
    Route(f"{PREFIX}/baseline", put_baseline, methods=["PUT"]),
    Route(f"{PREFIX}/trace", trace, methods=["GET"]),
    Route(f"{PREFIX}/processes", processes, methods=["GET"]),
    Route(f"{PREFIX}/detect", detect, methods=["POST"]),
]
