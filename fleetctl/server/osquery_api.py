"""osquery's TLS remote API: enroll, config, log, distributed read/write, carve.

Paths follow FleetDM's (``/api/v1/osquery/...``) so existing osqueryd flag files keep
working. Each handler parses, authenticates, calls one function of ``node_service``,
``distributed_answers`` or ``carves`` in a worker thread inside one transaction, and
serialises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from fleetctl.errors import BadRequest, NodeInvalid
from fleetctl.ingest import lenient_loads
from fleetctl.server import carves, distributed_answers, node_service
from fleetctl.server.auth import CachedNode, digest, find_match, fingerprint, new_secret
from fleetctl.server.body import read_json_object
from fleetctl.server.campaign_queue import campaign_query_id, parse_campaign_query_id
from fleetctl.server.detection_service import DETECTION_QUERIES
from fleetctl.server.osquery_config import config_for
from fleetctl.server.responses import node_error, node_invalid, node_ok
from fleetctl.server.state import in_session, server_state
from fleetctl.targeting import host_family
from storage import coordination
from storage import hosts as host_store
from storage.rejected import is_data_error, refusal
from storage.results import ApplyStats

log = logging.getLogger("fleetctl.server")

PREFIX = "/api/v1/osquery"

Handler = Callable[[Request], Awaitable[Response]]


def osquery_endpoint(func: Handler) -> Handler:
    """Turn every failure into the JSON osqueryd understands; never a bare 500 page."""

    async def wrapper(request: Request) -> Response:
        try:
            return await func(request)
        except NodeInvalid as exc:
            return node_invalid(str(exc))
        except BadRequest as exc:
            status = 413 if type(exc).__name__ == "PayloadTooLarge" else 400
            return node_error(str(exc), status)
        except (SQLAlchemyError, ClientDisconnect):
            raise  # answered by the app's exception handlers, the same for every route
        except Exception:
            log.exception("%s failed", request.url.path)
            return node_error("internal server error; the request was not stored", 500)

    wrapper.__name__ = func.__name__
    return wrapper


def _node_key(request: Request, body: dict[str, Any]) -> str:
    key = body.get("node_key")
    if key is None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("nodekey "):
            key = header[8:].strip()
    if not isinstance(key, str) or not key:
        raise NodeInvalid("missing node_key")
    return key


async def authenticate(request: Request, body: dict[str, Any]) -> CachedNode:
    """Node key -> host, from memory when recently verified (no database round trip)."""
    state = server_state(request)
    key_digest = digest(_node_key(request, body))
    cached = state.node_keys.get(key_digest)
    if cached is None:
        read_at = state.node_keys.forgets

        def lookup(session: Session) -> tuple[int, str, str] | None:
            host = host_store.host_by_node_key(session, key_digest)
            if host is None:
                return None
            return host.id, host.host_identifier, host_family(host.platform, host.platform_type)

        found = await in_session(state.readonly_sessions, lookup)
        if found is None:
            log.info("unknown node key %s", key_digest[:8])
            raise NodeInvalid("unknown node key; enroll again")
        cached = state.node_keys.put(key_digest, *found, read_at=read_at)
    state.checkins.seen(cached.host_id, int(time.time()))
    return cached


@osquery_endpoint
async def enroll(request: Request) -> Response:
    state = server_state(request)
    body = await read_json_object(request, state.settings.max_body)
    address = request.client.host if request.client else "?"
    secret = body.get("enroll_secret")
    identifier = body.get("host_identifier")
    details = body.get("host_details", {})
    platform_type = body.get("platform_type", "")
    accepted = find_match(secret, state.enroll_secrets()) if isinstance(secret, str) else None
    if accepted is None:
        state.throttle.record(address)
        delay = state.throttle.delay(address)
        if delay:
            await asyncio.sleep(delay)
        log.warning(
            "enroll refused from %s (secret %s)",
            address,
            fingerprint(secret) if isinstance(secret, str) else "missing",
        )
        return node_error("invalid enroll secret", 401)
    if not isinstance(identifier, str) or not identifier:
        raise BadRequest("'host_identifier' must be a non-empty string")
    if not isinstance(details, dict):
        raise BadRequest("'host_details' must be an object")
    if not isinstance(platform_type, str):
        platform_type = str(platform_type)
    node_key = new_secret()

    enrolled = await in_session(
        state.sessions,
        lambda session: node_service.enroll(
            session,
            identity=state.settings.host_identity,
            host_identifier=identifier,
            platform_type=platform_type,
            host_details=details,
            node_key_hash=digest(node_key),
            now=int(time.time()),
            label_id=accepted.label_id,
        ),
    )
    state.campaigns.add(enrolled.joined)
    state.node_keys.forget_host(enrolled.host_id)
    state.node_keys.put(digest(node_key), enrolled.host_id, identifier, enrolled.family)
    log.info(
        "%s host %s (%s) with enroll secret %s",
        "enrolled" if enrolled.created else "re-enrolled",
        identifier,
        enrolled.host_id,
        accepted.name,
    )
    if enrolled.clone_of:
        log.warning(
            "host %s (%s) presents the uuid of %s: a cloned machine? kept as a host of its own",
            identifier,
            enrolled.host_id,
            ", ".join(enrolled.clone_of),
        )
    return node_ok({"node_key": node_key})


@osquery_endpoint
async def config(request: Request) -> Response:
    state = server_state(request)
    body = await read_json_object(request, state.settings.max_body)
    node = await authenticate(request, body)

    return node_ok(
        await in_session(
            state.readonly_sessions,
            lambda session: config_for(session, node.host_id, node.family, state.settings),
        )
    )


@osquery_endpoint
async def log_(request: Request) -> Response:
    state = server_state(request)
    body = await read_json_object(request, state.settings.max_body, lenient_loads)
    node = await authenticate(request, body)
    now = int(time.time())

    detection = state.detection
    collect = DETECTION_QUERIES.__contains__ if detection is not None else None
    # Another process judges the host: it moves the host forward from the changes kept.
    keep = detection is not None and not detection.owns(node.host_id)

    def ingest(one_by_one: bool) -> Callable[[Session], tuple[ApplyStats, int | None]]:
        def work(session: Session) -> tuple[ApplyStats, int | None]:
            stats = node_service.ingest_log(
                session,
                node.host_id,
                body.get("log_type"),
                body.get("data"),
                now,
                state.packs,
                one_by_one=one_by_one,
                collect=collect,
            )
            if not stats.applied:
                return stats, None
            # Committed with the rows: whichever process judges the host finds it pending.
            rebuild = bool(stats.markers)
            version = coordination.mark_host(session, node.host_id, now, rebuild=rebuild)
            if keep and not rebuild:
                coordination.keep_changes(session, node.host_id, version, stats.applied, now)
            return stats, version

        return work

    async def store() -> tuple[ApplyStats, int | None]:
        try:
            return await in_session(state.sessions, ingest(False))
        except Exception as exc:
            if not is_data_error(exc):
                raise  # the database failed, not the data: osqueryd resends the batch
            log.warning("host %s: %s; applying the batch run by run", node.host_id, refusal(exc))
            return await in_session(state.sessions, ingest(True))

    if detection is None:
        stats, _ = await store()
    else:
        # Stored and marked in turn, so detection gets the host's changes in store order.
        async with detection.ingest_turn(node.host_id):
            detection.storing(node.host_id, True)
            try:
                stats, version = await store()
                if stats.applied and detection.owns(node.host_id):
                    rebuild = bool(stats.markers)
                    detection.mark(node.host_id, stats.applied, rebuild=rebuild, version=version)
            finally:
                detection.storing(node.host_id, False)
    if stats.rejected:
        log.warning(
            "host %s: %d %s log line(s) quarantined (fleetctl data-loss)",
            node.host_id,
            stats.rejected,
            body.get("log_type"),
        )
    return node_ok()


@osquery_endpoint
async def distributed_read(request: Request) -> Response:
    state = server_state(request)
    body = await read_json_object(request, state.settings.max_body)
    node = await authenticate(request, body)
    now = int(time.time())
    queries = state.labels.due(node.host_id, node.family, now)
    campaigns = state.campaigns.take(node.host_id, now)
    if campaigns:
        queries.update({campaign_query_id(cid): sql for cid, sql in campaigns.items()})
    return node_ok({"queries": queries})


@osquery_endpoint
async def distributed_write(request: Request) -> Response:
    state = server_state(request)
    body = await read_json_object(request, state.settings.max_body)
    node = await authenticate(request, body)
    now = int(time.time())
    answers = distributed_answers.parse_answers(body)
    campaign_ids = {parse_campaign_query_id(a.query_id) for a in answers}
    # Before the transaction reads the store: see CampaignQueue.handed_out.
    handed = state.campaigns.handed_out(node.host_id, {c for c in campaign_ids if c is not None})

    outcome = await in_session(
        state.sessions,
        lambda session: distributed_answers.store_answers(
            session, node.host_id, node.family, answers, handed, state.labels, now
        ),
    )
    for label_id in outcome.labels:
        state.labels.answered(node.host_id, label_id, now)
    return node_ok()


@osquery_endpoint
async def carve_begin(request: Request) -> Response:
    state = server_state(request)
    body = await read_json_object(request, state.settings.max_body)
    node = await authenticate(request, body)

    session_id = await in_session(
        state.sessions,
        lambda session: carves.begin(session, node.host_id, body, int(time.time()), state.settings),
    )
    return node_ok({"session_id": session_id})


@osquery_endpoint
async def carve_block(request: Request) -> Response:
    state = server_state(request)
    body = await read_json_object(request, state.settings.max_body)

    await in_session(
        state.sessions, lambda session: carves.add_block(session, body, int(time.time()))
    )
    return node_ok()


routes = [
    Route(f"{PREFIX}/enroll", enroll, methods=["POST"]),
    Route(f"{PREFIX}/config", config, methods=["POST"]),
    Route(f"{PREFIX}/log", log_, methods=["POST"]),
    Route(f"{PREFIX}/distributed/read", distributed_read, methods=["POST"]),
    Route(f"{PREFIX}/distributed/write", distributed_write, methods=["POST"]),
    Route(f"{PREFIX}/carve/begin", carve_begin, methods=["POST"]),
    Route(f"{PREFIX}/carve/block", carve_block, methods=["POST"]),
]
