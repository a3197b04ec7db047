"""Admin API for packs and labels: apply with versions, diff before applying, delete.

Applying validates every pack against osquery's schema first and stores all of them in
one transaction, or none: the fleet keeps the previous versions when anything is wrong.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.errors import NotFound
from fleetctl.packs.loader import pack_from_document
from fleetctl.packs.model import parse_platforms
from fleetctl.packs.validate import validate_text
from fleetctl.roles import Role
from fleetctl.server.access import requires
from fleetctl.server.admin_api import Invalid, admin_endpoint, admin_write_endpoint, host_json
from fleetctl.server.admin_params import (
    column_length,
    column_range,
    host_ref,
    int_param,
    required_text,
    text_param,
)
from fleetctl.server.admin_queries import check_targets_have_tables
from fleetctl.server.state import server_state
from fleetctl.targeting import TargetedPack, host_family, query_hosts, targeted
from fleetctl.timeutil import iso, shown
from storage import campaigns as campaign_store
from storage import hosts as host_store
from storage import labels as label_store
from storage import packs as pack_store

PREFIX = "/api/v1/admin"
PACK_NAME_LENGTH = column_length("PackRecord.name")
Fleet = list[tuple[int, str, frozenset[str]]]  # (host id, platform family, its labels)


def _incoming(
    session: Session, body: dict[str, Any]
) -> list[tuple[str, dict[str, Any], tuple[str, ...]]]:
    """Validate ``{"packs": [{"name", "pack", "labels"}]}``; raise ``Invalid`` with every error."""
    items = body.get("packs")
    if not isinstance(items, list) or not items:
        raise ValueError("'packs' must be a non-empty list of {name, pack, labels}")
    known_labels = {label.name for label, _ in label_store.list_labels(session)}
    errors: list[dict[str, Any]] = []
    out = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"packs[{i}] must be an object {{name, pack, labels}}")
        name, pack, labels = item.get("name"), item.get("pack"), item.get("labels") or []
        if not isinstance(name, str) or not name or not isinstance(pack, dict):
            raise ValueError(f"packs[{i}] needs a 'name' string and a 'pack' object")
        if len(name) > PACK_NAME_LENGTH:
            raise ValueError(f"packs[{i}].name is longer than {PACK_NAME_LENGTH} characters")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError(f"packs[{i}].labels must be a list of label names")
        if name in seen:
            raise ValueError(f"pack {name!r} appears twice")
        seen.add(name)
        source = text_param(item, "source") or f"<{name}>"
        for error in validate_text(json.dumps(pack), source, name):
            errors.append(error.as_row())
        for label in labels:
            if label not in known_labels:
                errors.append(
                    {
                        "file": source,
                        "pack": name,
                        "query": None,
                        "identifier": label,
                        "message": f"unknown label {label!r}: create it with "
                        "`fleetctl labels apply`",
                    }
                )
        out.append((name, pack, tuple(sorted(set(labels)))))
    if errors:
        raise Invalid(f"{len(errors)} problem(s) in the packs; nothing was applied", errors)
    return out


@requires(Role.ADMIN)
@admin_write_endpoint
def apply_packs(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    results = []
    for name, pack, labels in _incoming(session, body):
        action, version = pack_store.apply_pack(session, name, pack, labels, now)
        results.append(
            {
                "pack": name,
                "action": action,
                "version": version,
                "queries": len(pack.get("queries", {})),
                "labels": list(labels),
            }
        )
    return {"applied": results}


def _fleet(session: Session) -> Fleet:
    memberships = label_store.all_memberships(session)
    return [
        (h.id, host_family(h.platform, h.platform_type), frozenset(memberships.get(h.id, ())))
        for h in host_store.list_hosts(session)
    ]


def _query_changes(old: TargetedPack | None, new: TargetedPack | None) -> dict[str, str]:
    """query name -> what changed (added, removed, or the changed fields)."""
    before = {q.name: q for q in old.pack.queries} if old else {}
    after = {q.name: q for q in new.pack.queries} if new else {}
    changes: dict[str, str] = {}
    for name in sorted(before.keys() | after.keys()):
        if name not in before:
            changes[name] = "added"
        elif name not in after:
            changes[name] = "removed"
        else:
            a, b = before[name].to_osquery(), after[name].to_osquery()
            fields = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            changes[name] = "changed: " + ", ".join(fields) if fields else "unchanged"
    if old and new and old.labels != new.labels:
        for name in changes:
            if changes[name] == "unchanged":
                changes[name] = "targets changed"
    return changes


@requires(Role.HUNTER)
@admin_write_endpoint
def diff_packs(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """What applying would change, per query, and how many hosts gain or lose it."""
    fleet = _fleet(session)
    rows = []
    for name, pack, labels in _incoming(session, body):
        stored = pack_store.get_pack(session, name)
        old = targeted(stored) if stored and stored.body is not None else None
        new = TargetedPack(pack_from_document(name, pack), labels)
        rows += _diff_rows(name, _query_changes(old, new), (old, fleet), (new, fleet))
    session.rollback()  # a diff never writes
    return {"diff": rows, "hosts": len(fleet)}


def _diff_rows(
    pack: str,
    changes: dict[str, str],
    before: tuple[TargetedPack | None, Fleet],
    after: tuple[TargetedPack | None, Fleet],
) -> list[dict[str, Any]]:
    """One row per query: what changed, and how many hosts gain or lose it between the
    pack over the fleet ``before`` and ``after`` (a pack change keeps the fleet; a label
    change keeps the pack and moves hosts in or out of the label)."""
    old_hosts, new_hosts = query_hosts(*before), query_hosts(*after)
    rows = []
    for query, change in changes.items():
        was, will = old_hosts.get(query, set()), new_hosts.get(query, set())
        rows.append(
            {
                "pack": pack,
                "query": query,
                "change": "targets changed" if change == "unchanged" and was != will else change,
                "hosts_gain": len(will - was),
                "hosts_lose": len(was - will),
                "hosts_after": len(will),
            }
        )
    return rows


def _pack_json(stored: pack_store.StoredPack) -> dict[str, Any]:
    return {
        "name": stored.name,
        "version": stored.version,
        "queries": len((stored.body or {}).get("queries", {})),
        "platform": (stored.body or {}).get("platform") or "all",
        "labels": list(stored.labels),
        "updated": iso(stored.created_at),
    }


@requires(Role.OBSERVER)
@admin_endpoint
def list_packs(request: Request, session: Session) -> dict[str, Any]:
    return {"packs": [_pack_json(p) for p in pack_store.current_packs(session)]}


@requires(Role.OBSERVER)
@admin_endpoint
def show_pack(request: Request, session: Session) -> dict[str, Any]:
    name = request.path_params["name"]
    version = int_param(request.query_params, "version", column_range("PackVersion.version", low=1))
    stored = pack_store.get_pack(session, name, version)
    if stored is None:
        raise NotFound(f"no pack {name!r}" + (f" version {version}" if version else ""))
    history = [
        {
            "version": v.version,
            "created": iso(v.created_at),
            "deleted": v.body is None,
            "labels": list(v.labels),
        }
        for v in pack_store.versions(session, name)
    ]
    return {
        "pack": _pack_json(stored) | {"deleted": stored.body is None},
        "body": stored.body,
        "history": history,
    }


@requires(Role.ADMIN)
@admin_write_endpoint
def delete_pack(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = request.path_params["name"]
    action, version = pack_store.delete_pack(session, name, int(time.time()))
    if action == "absent":
        raise NotFound(f"no pack {name!r}")
    return {"pack": name, "action": action, "version": version}


@dataclass(frozen=True)
class LabelChange:
    """A label as a client asks for it: dynamic (``query``) or manual (``host_ids``)."""

    name: str
    query: str | None
    platform: str | None
    description: str
    host_ids: tuple[int, ...] | None


def _incoming_label(session: Session, body: dict[str, Any]) -> LabelChange:
    """The label ``body`` asks for, checked as applying checks it (a dynamic label's
    query validated, and only sent where its tables are); raise otherwise."""
    name = required_text(body, "name", max_length=column_length("Label.name"))
    query, hosts = body.get("query"), body.get("hosts")
    platform = text_param(body, "platform", max_length=column_length("Label.platform"))
    description = text_param(body, "description", default="")
    if (query is None) == (hosts is None):
        raise ValueError("a label has either a 'query' (dynamic) or a 'hosts' list (manual)")
    host_ids: list[int] | None = None
    if hosts is not None:
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ValueError("'hosts' must be a list of host references")
        host_ids = []
        for ref in hosts:
            host = host_store.find_host(session, host_ref(ref))
            if host is None:
                raise NotFound(f"no host matches {shown(ref)}")
            host_ids.append(host.id)
    if query is not None:
        _check_label_sql(name, query, platform)
        check_targets_have_tables(session, query, _label_hosts(session, platform), body, "label")
    ids = None if host_ids is None else tuple(sorted(set(host_ids)))
    return LabelChange(name, query, platform, description, ids)


@requires(Role.ADMIN)
@admin_write_endpoint
def apply_label(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    change = _incoming_label(session, body)
    action = label_store.upsert_label(
        session,
        change.name,
        query=change.query,
        platform=change.platform,
        description=change.description,
        host_ids=change.host_ids,
        now=int(time.time()),
    )
    return {"label": change.name, "action": action}


@requires(Role.HUNTER)
@admin_write_endpoint
def diff_label(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """What applying the label would change: its fields, its members, and per query of
    each pack that targets it, how many hosts gain or lose the query. A manual label's
    members are those given; a dynamic label that changes at all loses its members until
    the hosts evaluate it again, as applying clears them."""
    change = _incoming_label(session, body)
    stored = label_store.get_label(session, change.name)
    was = set(label_store.member_ids(session, stored.id)) if stored else set()
    asked = (change.query, change.platform, change.description)
    kept = stored is not None and (stored.query, stored.platform, stored.description) == asked
    reevaluated = change.query is not None and not kept  # as ``upsert_label`` clears them
    will = set(change.host_ids or ()) if change.query is None else set() if reevaluated else was
    fields = [
        {"field": field, "from": old, "to": new}
        for field, old, new in (
            ("kind", _kind(stored.query) if stored else None, _kind(change.query)),
            ("query", stored.query if stored else None, change.query),
            ("platform", stored.platform if stored else None, change.platform),
            ("description", stored.description if stored else "", change.description),
        )
        if old != new
    ]
    fleet = _fleet(session)
    moved = [
        (i, family, labels - {change.name} | _named(change.name, i in will))
        for i, family, labels in fleet
    ]
    rows = []
    for pack in pack_store.current_packs(session):
        if change.name in pack.labels and pack.body is not None:
            target = targeted(pack)
            changes = dict.fromkeys((q.name for q in target.pack.queries), "unchanged")
            rows += _diff_rows(pack.name, changes, (target, fleet), (target, moved))
    names = {h.id: h.host_identifier for h in host_store.list_hosts(session)}
    session.rollback()  # a diff never writes
    unchanged = stored is not None and not fields and was == will
    return {
        "label": change.name,
        "action": "created" if stored is None else "unchanged" if unchanged else "updated",
        "fields": fields,
        "members": {
            "before": len(was),
            "after": len(will),
            "gain": sorted(names[i] for i in will - was),
            "lose": sorted(names[i] for i in was - will),
            "evaluated_by_hosts": reevaluated,
        },
        "diff": rows,
        "hosts": len(fleet),
    }


def _kind(query: str | None) -> str:
    return "manual" if query is None else "dynamic"


def _named(name: str, member: bool) -> frozenset[str]:
    return frozenset((name,)) if member else frozenset()


def _label_hosts(session: Session, platform: str | None) -> list[int]:
    """The hosts a dynamic label's query goes to: those of its platform (default: all)."""
    families = parse_platforms(platform) if platform else None
    everyone = campaign_store.resolve_targets(session, "all")
    return [
        host_id
        for host_id, (_, family) in host_store.families(session, everyone).items()
        if families is None or family in families
    ]


def _check_label_sql(name: str, query: Any, platform: Any) -> None:
    if not isinstance(query, str) or not query.strip():
        raise ValueError("'query' must be a non-empty SQL string")
    # As for a live query, the stand-in for a discovery query that an extension table
    # would need is ``check_targets_have_tables``: the label goes only where its tables are.
    doc: dict[str, Any] = {
        "discovery": ["SELECT 1 FROM osquery_registry WHERE registry = 'table'"],
        "queries": {"membership": {"query": query, "interval": 3600}},
    }
    if platform:
        doc["platform"] = platform
    errors = validate_text(json.dumps(doc), f"<label {name}>", f"label-{name}")
    if errors:
        raise Invalid("the label query does not validate", [e.as_row() for e in errors])


@requires(Role.OBSERVER)
@admin_endpoint
def list_labels(request: Request, session: Session) -> dict[str, Any]:
    return {
        "labels": [
            {
                "name": label.name,
                "kind": _kind(label.query),
                "platform": label.platform or "all",
                "members": n,
                "query": label.query or "",
                "description": label.description,
                "updated": iso(label.updated_at),
            }
            for label, n in label_store.list_labels(session)
        ]
    }


@requires(Role.ADMIN)
@admin_write_endpoint
def delete_label(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Delete a label no pack targets; refused, naming the packs, while some do."""
    name = request.path_params["name"]
    if label_store.get_label(session, name) is None:
        raise NotFound(f"no label {name!r}")
    targeting = [p.name for p in pack_store.current_packs(session) if name in p.labels]
    if targeting:
        raise ValueError(
            f"label {name!r} is targeted by pack(s) {', '.join(targeting)}: "
            "apply them without it or delete them first"
        )
    label_store.delete_label(session, name)
    session.commit()  # before reloading: hosts stop getting the label's query
    server_state(request).reload_labels()
    return {"label": name, "action": "deleted"}


@requires(Role.OBSERVER)
@admin_endpoint
def show_label(request: Request, session: Session) -> dict[str, Any]:
    label = label_store.get_label(session, request.path_params["name"])
    if label is None:
        raise NotFound(f"no label {request.path_params['name']!r}")
    return {
        "label": {
            "name": label.name,
            "kind": _kind(label.query),
            "query": label.query,
            "platform": label.platform,
            "description": label.description,
        },
        "members": [
            host_json(h) | {"evaluated": iso(t)} for h, t in label_store.members(session, label.id)
        ],
    }


routes = [
    Route(f"{PREFIX}/packs", list_packs, methods=["GET"]),
    Route(f"{PREFIX}/packs/apply", apply_packs, methods=["POST"]),
    Route(f"{PREFIX}/packs/diff", diff_packs, methods=["POST"]),
    Route(f"{PREFIX}/packs/{{name}}", show_pack, methods=["GET"]),
    Route(f"{PREFIX}/packs/{{name}}", delete_pack, methods=["DELETE"]),
    Route(f"{PREFIX}/labels", list_labels, methods=["GET"]),
    Route(f"{PREFIX}/labels", apply_label, methods=["POST"]),
    Route(f"{PREFIX}/labels/diff", diff_label, methods=["POST"]),
    Route(f"{PREFIX}/labels/{{name}}", show_label, methods=["GET"]),
    Route(f"{PREFIX}/labels/{{name}}", delete_label, methods=["DELETE"]),
]
