"""The admin API over a store, in the client's own process.

Client commands use it when no server runs: the requests they would send to a server go
to the same app, built here over the store, so answers (and what the commands print) are
the same. Nothing here serves hosts: the app's lifespan, which starts housekeeping, the
hunt scheduler and the detection worker, never runs, and live queries and hunts are
refused (``ServerState.serves_hosts``). Calls carry an admin token made for this process
alone, which only this process's ``ServerState`` accepts, and come from the address
``local``, as the audit trail names them.
"""

from __future__ import annotations

import asyncio
import dataclasses

import httpx

from fleetctl.server.app import build_app
from fleetctl.server.audit_trail import LOCAL_SOURCE
from fleetctl.server.auth import digest, new_secret
from fleetctl.server.bootstrap import ensure_schema
from fleetctl.server.state import ServerState
from fleetctl.settings import Settings


class InProcessTransport(httpx.BaseTransport):
    """Each request to an ASGI app, on an event loop this transport keeps for its life
    (the app's state holds anyio primitives that must stay on one loop)."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._asgi = httpx.ASGITransport(build_app(state), client=(LOCAL_SOURCE, 0))
        self._runner = asyncio.Runner()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._runner.run(self._handle(request))

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        content = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def close(self) -> None:
        self._runner.close()
        self._state.close()


def store_client(db_url: str, timeout: float, learning_window: int | None = None) -> httpx.Client:
    """An admin API client whose calls run in this process, on the store at ``db_url``
    (judging hosts with the serving server's ``learning_window``, when known); closing it
    closes the store."""
    ensure_schema(db_url)  # as serve does: SQLite upgrades itself, PostgreSQL is told to
    token = new_secret()
    settings = Settings(db=db_url)
    if learning_window is not None:
        settings = dataclasses.replace(settings, learning_window=learning_window)
    state = ServerState.create(settings)
    state.serves_hosts = False
    state.own_token_digests = (digest(token),)
    return httpx.Client(
        base_url="http://fleetctl.local",
        transport=InProcessTransport(state),
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )
