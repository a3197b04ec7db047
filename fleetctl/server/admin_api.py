"""The admin JSON API: hosts, results as of a time, status logs, data loss.

Callers prove themselves with a bearer token or the console's cookie
(``access.identify``).

Reads, and deleting a host. Every response is a JSON object so a browser console can consume
the same surface as the CLI. Each host says where it stands with detection: learning
until a time, judging, or on an explicit baseline.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fleetctl.detection import LearningState
from fleetctl.errors import BadRequest, Forbidden, NotFound, Unavailable
from fleetctl.roles import Role
from fleetctl.schema import default_schema
from fleetctl.server import access, audit_trail
from fleetctl.server.access import requires
from fleetctl.server.admin_params import (
    check_body,
    check_request_text,
    column_length,
    flag_param,
    host_ref,
    int_field,
    int_param,
    required_text,
    time_param,
)
from fleetctl.server.body import read_json_object
from fleetctl.server.responses import json_response
from fleetctl.server.state import in_session, server_state
from fleetctl.timeutil import iso, shown
from storage import carves as carve_store
from storage import coordination, views
from storage import hosts as host_store
from storage import logs as log_store
from storage import packs as pack_store
from storage import rejected as rejected_store
from storage import results as result_store
from storage.encoding import unescape, unescape_row
from storage.hosts import Host, host_family
from storage.results import DataLoss
from storage.runs import QueryName, UnknownQueryName, resolve_query_name

PREFIX = "/api/v1/admin"
STATUS_LOG_PAGE = 100_000
ONLINE_WINDOW = 90  # a host that checked in this many seconds ago counts as online

Handler = Callable[[Request], Awaitable[Response]]


class Invalid(ValueError):
    """A write was refused; ``details`` (e.g. validation errors) go back to the client."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = details


def admin_endpoint(func: Callable[[Request, Any], Any]) -> Handler:
    """Check the bearer token, run ``func(request, session)`` read-only in a thread."""
    return _endpoint(func, write=False)


def admin_write_endpoint(func: Callable[[Request, Any, dict[str, Any]], Any]) -> Handler:
    """Like ``admin_endpoint`` but in one write transaction, with the JSON body parsed:
    ``func(request, session, body)``. Any error rolls everything back."""
    return _endpoint(func, write=True)


def admin_read_body_endpoint(func: Callable[[Request, Any, dict[str, Any]], Any]) -> Handler:
    """A read-only call that takes a JSON body: ``func(request, session, body)``."""
    return _endpoint(func, write=False, with_body=True)


def admin_async_endpoint(func: Callable[[Request, dict[str, Any]], Awaitable[Any]]) -> Handler:
    """A call that schedules its own work (no session of the admin pools), with the JSON
    body checked: ``await func(request, body)``."""
    return _endpoint(func, write=False, with_body=True, own_work=True)


def _endpoint(
    func: Callable[..., Any],
    *,
    write: bool,
    with_body: bool | None = None,
    own_work: bool = False,
) -> Handler:
    """Authenticate (``access.identify``: 401), check the role the handler declared
    (``access.requires``: 403), refuse NUL bytes and overlong parameters anywhere in the
    request, then run ``func``; its refusals become 400/403/404/503 answers. Anything
    else (a database error, a bug) goes to the app's exception handlers."""
    with_body = write if with_body is None else with_body

    async def wrapper(request: Request) -> Response:
        state = server_state(request)
        try:
            caller = access.identify(request)
        except access.Unauthenticated as exc:
            await audit_trail.record(state, request, 401, None, None)
            return json_response({"error": str(exc)}, 401)
        except Forbidden as exc:  # a console change without its CSRF nonce, or cross-site
            await audit_trail.record(state, request, 403, None, None)
            return json_response({"error": str(exc)}, 403)
        request.state.caller = caller
        needed = access.required_role(wrapper)
        if needed is None or caller.role < needed:
            refused = f"{needed.label} role required" if needed else "no role may call this"
            await audit_trail.record(state, request, 403, None, caller)
            return json_response({"error": f"{refused}; {caller.user} is {caller.role.label}"}, 403)
        said: dict[str, Any] = {}
        status = 500  # what the trail says of a call that raised
        try:
            response = await answer(request, said)
            status = response.status_code
            return response
        finally:
            if audit_trail.recorded(request, status):
                await audit_trail.record(state, request, status, said.get("body"), caller)

    async def answer(request: Request, said: dict[str, Any]) -> Response:
        state = server_state(request)
        try:
            check_request_text(request)
            body: dict[str, Any] | None = None
            if with_body:  # DELETE carries no body
                body = (
                    {}
                    if request.method == "DELETE"
                    else await read_json_object(request, state.settings.max_body)
                )
                check_body(body)
                said["body"] = body
            if own_work:
                return json_response(await func(request, body))

            def work(session: Any) -> Any:
                return func(request, session, body) if with_body else func(request, session)

            factory = state.sessions if write else state.readonly_sessions
            return json_response(await in_session(factory, work))
        except NotFound as exc:
            return json_response({"error": str(exc)}, 404)
        except Forbidden as exc:
            return json_response({"error": str(exc)}, 403)
        except Invalid as exc:
            return json_response({"error": str(exc), "errors": exc.details}, 400)
        except (ValueError, BadRequest) as exc:
            return json_response({"error": str(exc)}, 400)
        except Unavailable as exc:
            return json_response({"error": str(exc)}, 503)

    wrapper.__name__ = func.__name__
    return wrapper


def learning_states(request: Request, session: Any) -> dict[int, LearningState]:
    """host id -> where the host stands with detection, as this server judges it."""
    state = server_state(request)
    assert state.detection is not None
    return state.detection.learning_states(session, time.time())


def detection_json(learning: LearningState) -> dict[str, Any]:
    """``detection``: ``learning until T``, ``judging`` or ``baseline T`` (explicit)."""
    until = None if learning.until is None else int(learning.until)
    since = None if learning.since is None else int(learning.since)
    text = {
        "learning": f"learning until {iso(until)}",
        "baseline": f"baseline {iso(since)}" if since is not None else "baseline (file)",
    }.get(learning.state, learning.state)
    return {"detection": text, "learning_until": iso(until), "baselined_at": iso(since)}


def host_json(host: Host) -> dict[str, Any]:
    return {
        "id": host.id,
        "host_identifier": host.host_identifier,
        "hostname": host.hostname,
        "uuid": host.uuid,
        "platform": host.platform,
        "os_version": f"{host.os_name} {host.os_version}".strip(),
        "osquery_version": host.osquery_version,
        "enrolled_at": iso(host.enrolled_at),
        "last_seen": iso(host.last_seen),
        "online": host.last_seen is not None and time.time() - host.last_seen <= ONLINE_WINDOW,
        "enroll_count": host.enroll_count,
    }


def find_host_or_404(session: Any, ref: str | None) -> Host:
    if not ref:
        raise ValueError("the 'host' parameter is required")
    host = host_store.find_host(session, host_ref(ref))
    if host is None:
        raise NotFound(f"no host matches {shown(ref)} (id, host identifier, hostname or uuid)")
    return host


def warning_json(peers: list[str] | None) -> dict[str, str]:
    """What an admin should know of the host: other hosts present its uuid (clones)."""
    if not peers:
        return {"warning": ""}
    return {"warning": f"uuid shared with {', '.join(peers)} (cloned machine?)"}


@requires(Role.OBSERVER)
@admin_endpoint
def list_hosts(request: Request, session: Any) -> dict[str, Any]:
    learning = learning_states(request, session)
    peers = host_store.uuid_peers(session)
    return {
        "hosts": [
            host_json(h) | detection_json(learning[h.id]) | warning_json(peers.get(h.id))
            for h in host_store.list_hosts(session)
        ]
    }


@requires(Role.OBSERVER)
@admin_endpoint
def show_host(request: Request, session: Any) -> dict[str, Any]:
    host = find_host_or_404(session, request.path_params["ref"])
    learning = learning_states(request, session)[host.id]
    open_counts = result_store.open_row_counts(session, host.id)
    queries = [
        {
            "name": unescape(s.name),
            "pack": None if s.pack is None else unescape(s.pack),
            "query": unescape(s.query),
            "epoch": s.epoch,
            "counter": s.counter,
            "last_result": iso(s.last_unix_time),
            "open_rows": open_counts.get(s.name, 0),
        }
        for s in result_store.query_names(session, host.id)
    ]
    return {
        "host": host_json(host)
        | detection_json(learning)
        | warning_json(host_store.uuid_peers(session, {host.id}).get(host.id))
        | {"decorations": None if host.decorations is None else unescape_row(host.decorations)},
        "queries": queries,
        "host_details": host.host_details,
    }


@requires(Role.ADMIN)
@admin_write_endpoint
def delete_host(request: Request, session: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Delete a host with its history, or (``keep_history``) only revoke its node key so
    that it must enroll again. Either way its node key stops working at once here, and
    in the other server processes when they read the change event (within a second or
    two: ``ServerState.follow_events``)."""
    host = find_host_or_404(session, request.path_params["ref"])
    keep_history = flag_param(request.query_params, "keep_history")
    host_id, identifier = host.id, host.host_identifier
    done = (
        host_store.revoke_node_key(session, host_id)
        if keep_history
        else host_store.delete_host(session, host_id)
    )
    if not done:
        raise NotFound(f"no host matches {shown(request.path_params['ref'])}")
    coordination.publish(session, coordination.NODE_KEY, host_id, int(time.time()))
    session.commit()  # before forgetting the key: a lookup meanwhile must not find it
    state = server_state(request)
    state.node_keys.forget_host(host_id)
    if not keep_history:
        state.campaigns.forget(host_id=host_id)
    return {
        "host": identifier,
        "id": host_id,
        "action": "node key revoked" if keep_history else "deleted",
    }


@requires(Role.OBSERVER)
@admin_endpoint
def results(request: Request, session: Any) -> dict[str, Any]:
    host = find_host_or_404(session, request.query_params.get("host"))
    typed = required_text(request.query_params, "query", max_length=column_length("ResultRow.name"))
    at = time_param(request.query_params, "at", default=int(time.time()))
    known = [
        QueryName(unescape(q.name), unescape(q.pack) if q.pack else None, unescape(q.query))
        for q in result_store.query_names(session, host.id)
    ]
    try:
        name = resolve_query_name(typed, known)
    except UnknownQueryName as exc:
        raise NotFound(str(exc)) from None
    rows = result_store.rows_at(session, host.id, name, at)
    sent = [unescape_row(row.columns) for row in rows]  # as the host sent them
    seen: dict[str, None] = {}
    for values in sent:
        seen.update(dict.fromkeys(values))
    declared = _declared_columns(session, next(q for q in known if q.name == name), host)
    return {
        "host": host.host_identifier,
        "query": name,
        "at": iso(at),
        "columns": [c for c in declared if c in seen] + [c for c in seen if c not in declared],
        "rows": [
            values | {"first_seen": iso(row.first_seen), "removed_at": iso(row.removed_at)}
            for row, values in zip(rows, sent, strict=True)
        ],
    }


def _declared_columns(session: Any, name: QueryName, host: Host) -> tuple[str, ...]:
    """The query's own column order, from its SQL in the stored pack (osqueryd sends a
    row's columns sorted by name, and PostgreSQL's JSON keeps no order); () when the
    query is not in a stored pack."""
    stored = pack_store.get_pack(session, name.pack) if name.pack else None
    spec = ((stored.body if stored else None) or {}).get("queries", {}).get(name.query)
    sql = spec.get("query") if isinstance(spec, dict) else None
    if not isinstance(sql, str):
        return ()
    return default_schema().columns(sql, host_family(host.platform, host.platform_type)) or ()


@requires(Role.OBSERVER)
@admin_endpoint
def status_logs(request: Request, session: Any) -> dict[str, Any]:
    host = find_host_or_404(session, request.query_params.get("host"))
    limit = int_param(request.query_params, "limit", (1, STATUS_LOG_PAGE), default=100)
    logs = log_store.status_logs(session, host.id, limit)
    return {
        "status_logs": [
            {
                "time": iso(s.unix_time),
                "severity": s.severity,
                "location": f"{unescape(s.filename)}:{s.line}",
                "message": unescape(s.message),
                "version": unescape(s.version),
            }
            for s in logs
        ]
    }


@requires(Role.OBSERVER)
@admin_endpoint
def data_loss(request: Request, session: Any) -> dict[str, Any]:
    """What the store lacks: gaps and resets in hosts' streams (``data_loss``), and log
    lines it quarantined instead of storing (``rejected``, each with the line as JSON)."""
    ref = request.query_params.get("host")
    host_id = find_host_or_404(session, ref).id if ref else None
    out = []
    for marker, ident in result_store.data_loss(session, host_id):
        out.append(
            {
                "id": marker.id,
                "host": ident,
                "query": unescape(marker.name),
                "kind": marker.kind,
                "epoch": marker.epoch,
                "missing": _missing(marker),
                "detail": marker.detail,
                "at": iso(marker.unix_time),
                "resolved": iso(marker.resolved_at),
            }
        )
    rejected = [
        {
            "id": line.id,
            "host": ident,
            "log_type": line.log_type,
            "query": unescape(line.name),
            "reason": unescape(line.reason),
            "at": iso(line.received_at),
            "line": line.line,
        }
        for line, ident in rejected_store.rejected_lines(session, host_id)
    ]
    return {"data_loss": out, "rejected": rejected}


def _missing(marker: DataLoss) -> str:
    if marker.first_missing is None:
        return ""
    if marker.first_missing == marker.last_missing:
        return str(marker.first_missing)
    return f"{marker.first_missing}..{marker.last_missing}"


@requires(Role.OBSERVER)
@admin_endpoint
def carves(request: Request, session: Any) -> dict[str, Any]:
    return {
        "carves": [
            {
                "session_id": c.session_id,
                "carve_id": c.carve_id,
                "host": c.host,
                "state": c.state,
                "size": c.carve_size,
                "received": c.bytes_received,
                "blocks": f"{c.blocks_received}/{c.block_count}",
                "compression": c.compression,
                "started": iso(c.created_at),
                "last_block": iso(c.updated_at),
                "completed": iso(c.completed_at),
                "expired": iso(c.expired_at),
            }
            for c in carve_store.list_carves(session)
        ]
    }


@requires(Role.HUNTER)
@admin_async_endpoint
async def sql(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Ad-hoc analyst SQL (``fleetctl sql``): on analyst SQL's own engine, slots and
    threads (``fleetctl.server.analyst``), never on the pool that ingest uses."""
    query = body.get("sql")
    if not isinstance(query, str):
        raise BadRequest("'sql' must be a string")
    limit = int_field(body, "limit", (1, 1_000_000), default=10_000)
    result = await server_state(request).analyst.run(query, limit)
    return {
        "columns": result.columns,
        "rows": result.rows,
        "truncated": result.truncated,
        "reason": result.reason,
    }


@requires(Role.OBSERVER)
@admin_endpoint
def sql_schema(request: Request, session: Any) -> dict[str, Any]:
    """The hunting views analyst SQL may read, their columns and closed value sets."""
    return {"views": views.describe(session)}


routes = [
    Route(f"{PREFIX}/hosts", list_hosts, methods=["GET"]),
    Route(f"{PREFIX}/hosts/{{ref:path}}", show_host, methods=["GET"]),
    Route(f"{PREFIX}/hosts/{{ref:path}}", delete_host, methods=["DELETE"]),
    Route(f"{PREFIX}/results", results, methods=["GET"]),
    Route(f"{PREFIX}/status-logs", status_logs, methods=["GET"]),
    Route(f"{PREFIX}/data-loss", data_loss, methods=["GET"]),
    Route(f"{PREFIX}/carves", carves, methods=["GET"]),
    Route(f"{PREFIX}/sql", sql, methods=["POST"]),
    Route(f"{PREFIX}/sql/schema", sql_schema, methods=["GET"]),
]
