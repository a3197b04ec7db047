"""Admin API for detection: findings, the baseline, traces and on-demand detection."""

from __future__ import annotations

import time
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.detection import Baseline, BaselineError, build_trace
from fleetctl.detection.scoring import SEVERITIES, severity_rank
from fleetctl.errors import NotFound
from fleetctl.server.admin_api import (
    admin_endpoint,
    admin_read_body_endpoint,
    admin_write_endpoint,
    find_host_or_404,
)
from fleetctl.server.admin_params import (
    choice_param,
    column_range,
    flag_param,
    int_field,
    int_param,
    text_param,
    time_param,
)
from fleetctl.server.state import server_state
from fleetctl.timeutil import iso
from storage import detection as detection_store
from storage.models import BaselineVersion, FindingRecordRow, ResultRow

PREFIX = "/api/v1/admin"
BASELINE_TEMPLATE = "version: 1\nextends: default\n"
STATUSES = ("open", "acked", "suppressed")


def _lineage_path(doc: dict[str, Any], index: int) -> str | None:
    """Executable path of lineage entry ``index`` (0 = child, 1 = parent)."""
    lineage = doc.get("evidence", {}).get("lineage") or []
    return lineage[index].get("path") if len(lineage) > index else None


def finding_summary(row: FindingRecordRow, host: str) -> dict[str, Any]:
    doc = row.document
    prevalence = doc.get("prevalence", {})
    return {
        "id": row.id,
        "host": host,
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
        "prevalence": f"{prevalence.get('hosts_with_key')}/{prevalence.get('hosts_total')}",
        "first_seen": iso(row.first_seen),
        "last_seen": iso(row.last_seen),
        "reasons": [r["text"] for r in doc.get("reasons", [])],
        "key": row.path_key,
    }


@admin_endpoint
def list_findings(request: Request, session: Session) -> dict[str, Any]:
    params = request.query_params
    since = time_param(params, "since")
    min_severity = choice_param(params, "min_severity", SEVERITIES, default="low")
    status = choice_param(params, "status", STATUSES)
    host_id = find_host_or_404(session, params["host"]).id if params.get("host") else None
    rows = detection_store.list_findings(session, host_id=host_id, status=status, since=since)
    return {
        "findings": [
            finding_summary(r, h)
            for r, h in rows
            if severity_rank(r.severity) >= severity_rank(min_severity)
        ]
    }


def _finding(session: Session, finding_id: str) -> tuple[FindingRecordRow, str]:
    found = detection_store.get_finding(session, finding_id)
    if found is None:
        raise NotFound(f"no single finding matches {finding_id!r}")
    return found


@admin_endpoint
def show_finding(request: Request, session: Session) -> dict[str, Any]:
    row, host = _finding(session, request.path_params["id"])
    return {"finding": finding_summary(row, host) | {"note": row.note}, "document": row.document}


@admin_write_endpoint
def ack_finding(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    note = text_param(body, "note")
    row, host = _finding(session, request.path_params["id"])
    row.status, row.note = "acked", note or row.note
    return {"finding": finding_summary(row, host)}


def _baseline_text(session: Session) -> tuple[int, str]:
    stored = detection_store.current_baseline(session)
    return stored if stored else (0, BASELINE_TEMPLATE)


@admin_write_endpoint
def suppress_finding(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Turn a finding into a baseline entry (its path key, on its host or the fleet)."""
    scope = choice_param(body, "scope", ("host", "fleet"), default="host")
    note = text_param(body, "note")
    row, host = _finding(session, request.path_params["id"])
    version, text = _baseline_text(session)
    doc = yaml.safe_load(text) or {}
    learned = doc.setdefault("learned", {})
    if scope == "fleet":
        fleet = learned.setdefault("fleet", [])
        if row.path_key not in fleet:
            fleet.append(row.path_key)
    else:
        name = detection_store.detection_names(session)[row.host_id]
        keys = learned.setdefault("hosts", {}).setdefault(name, [])
        if row.path_key not in keys:
            keys.append(row.path_key)
    new_text = yaml.safe_dump(doc, sort_keys=False, width=100)
    Baseline.loads(new_text)
    new_version = detection_store.save_baseline(
        session, new_text, f"suppress {row.id} ({scope})", int(time.time()), version
    )
    row.status, row.note = "suppressed", note or row.note
    return {"finding": finding_summary(row, host), "baseline_version": new_version}


@admin_endpoint
def get_baseline(request: Request, session: Session) -> dict[str, Any]:
    version, text = _baseline_text(session)
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


@admin_write_endpoint
def put_baseline(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    text = body.get("yaml")
    if not isinstance(text, str):
        raise ValueError("'yaml' must be the baseline file's text")
    note = text_param(body, "note", default="")
    expected = int_field(body, "expected_version", column_range(BaselineVersion.version, low=0))
    try:
        Baseline.loads(text)
    except BaselineError as exc:
        raise ValueError(f"baseline refused: {exc}") from exc
    version = detection_store.save_baseline(session, text, note, int(time.time()), expected)
    return {"version": version}


@admin_endpoint
def trace(request: Request, session: Session) -> dict[str, Any]:
    params = request.query_params
    pid = int_param(params, "pid", column_range(FindingRecordRow.pid, low=0), default=0)
    at = time_param(params, "at", default=int(time.time()))
    host = find_host_or_404(session, params.get("host", ""))
    service = server_state(request).detection
    assert service is not None
    snapshot = service.snapshot(session, host.id, at)
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


@admin_read_body_endpoint
def detect(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Judge hosts now, or replay history since a time, or learn the current paths."""
    service = server_state(request).detection
    assert service is not None
    ref = text_param(body, "host")
    learn = flag_param(body, "learn")
    since = time_param(body, "since")
    host_ids = (
        [find_host_or_404(session, ref).id]
        if ref
        else [h for (h,) in session.execute(select(detection_store.Host.id))]
    )
    now = int(time.time())
    created: list[str] = []
    for host_id in host_ids:
        times = _history_times(session, host_id, since, now) if since is not None else [None]
        for at in times:
            created += service.run_host(host_id, now, at=at, learn=learn)
    return {"hosts": len(host_ids), "learned": learn, "new_findings": created}


def _history_times(session: Session, host_id: int, since: int, now: int) -> list[int | None]:
    """Each time the host's collected state changed since ``since`` (then now)."""
    times = session.scalars(
        select(ResultRow.first_seen)
        .where(ResultRow.host_id == host_id, ResultRow.first_seen >= since)
        .distinct()
        .order_by(ResultRow.first_seen)
    )
    return [t for t in times if t is not None and t <= now] + [None]


routes = [
    Route(f"{PREFIX}/findings", list_findings, methods=["GET"]),
    Route(f"{PREFIX}/findings/{{id}}", show_finding, methods=["GET"]),
    Route(f"{PREFIX}/findings/{{id}}/ack", ack_finding, methods=["POST"]),
    Route(f"{PREFIX}/findings/{{id}}/suppress", suppress_finding, methods=["POST"]),
    Route(f"{PREFIX}/baseline", get_baseline, methods=["GET"]),
    Route(f"{PREFIX}/baseline", put_baseline, methods=["PUT"]),
    Route(f"{PREFIX}/trace", trace, methods=["GET"]),
    Route(f"{PREFIX}/detect", detect, methods=["POST"]),
]
