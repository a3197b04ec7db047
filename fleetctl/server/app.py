"""Build the ASGI app: osquery's API, the admin API, the web console, and the periodic
housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fleetctl.server import (
    admin_api,
    admin_audit,
    admin_coverage,
    admin_detection,
    admin_detection_jobs,
    admin_detection_status,
    admin_hunts,
    admin_login,
    admin_packs,
    admin_queries,
    admin_saved_sql,
    admin_secrets,
    admin_tokens,
    admin_users,
    console,
    console_session,
    osquery_api,
)
from fleetctl.server.responses import exception_handlers, json_response
from fleetctl.server.state import ServerState

CHECKIN_FLUSH_SECONDS = 1.0
log = logging.getLogger("fleetctl.server")


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


def build_app(state: ServerState) -> Starlette:
    """The app for ``state``; the caller owns the state's lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def housekeeping() -> None:
            while True:
                await asyncio.sleep(CHECKIN_FLUSH_SECONDS)
                try:
                    await run_in_threadpool(state.housekeep)
                except Exception:
                    # A database restart must not end check-in flushes and reloads for
                    # the life of the process: log, and try again next round.
                    log.exception("housekeeping failed; retrying in %s s", CHECKIN_FLUSH_SECONDS)

        await run_in_threadpool(console_session.signing_key, state)
        await run_in_threadpool(state.reload_node_keys)
        await run_in_threadpool(state.reload_labels)
        await run_in_threadpool(state.reload_packs)
        await run_in_threadpool(state.reload_campaigns)
        await run_in_threadpool(state.start_hunts)
        if state.detection is not None:
            state.detection.start()
        task = asyncio.create_task(housekeeping())
        try:
            yield
        finally:
            task.cancel()  # the caller's ServerState.close() writes what is still buffered

    app = Starlette(
        routes=[
            Route("/healthz", health, methods=["GET", "POST"]),
            *osquery_api.routes,
            *admin_api.routes,
            *admin_packs.routes,
            *admin_detection.routes,
            *admin_detection_jobs.routes,
            *admin_detection_status.routes,
            *admin_queries.routes,
            *admin_hunts.routes,
            *admin_coverage.routes,
            *admin_audit.routes,
            *admin_login.routes,
            *admin_tokens.routes,
            *admin_users.routes,
            *admin_secrets.routes,
            *admin_saved_sql.routes,
            *console.routes,
        ],
        middleware=[Middleware(console.SecurityHeaders)],
        lifespan=lifespan,
        exception_handlers=exception_handlers(osquery_api.PREFIX),
    )
    app.state.fleet = state
    return app
