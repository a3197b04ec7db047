"""The admin API client used by every client command.

Where to connect is resolved once: ``--server/--token/--ca`` flags, then the
``FLEETCTL_SERVER/TOKEN/CA`` environment, then ``$FLEETCTL_HOME/context.json`` written
by ``fleetctl serve`` on first start.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import httpx

from fleetctl.settings import default_home

F = TypeVar("F", bound=Callable[..., Any])


def ssl_context(ca: str | None) -> ssl.SSLContext:
    """Verify the server against ``ca`` (the server's own CA file) or the system store."""
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


class ClientError(click.ClickException):
    """A failed admin API call, shown to the user as one line (plus ``details`` rows)."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []

    def format_message(self) -> str:
        """The message, then each detail's own message (a validation error names the
        table or column at fault, with a suggestion) on a line of its own."""
        said = [str(d["message"]) for d in self.details if isinstance(d, dict) and d.get("message")]
        return "\n".join([self.message, *(f"  {line}" for line in said)])


@dataclass(frozen=True)
class Context:
    server: str
    token: str
    ca: str | None


def client_options(func: F) -> F:
    """``--server``, ``--token``, ``--ca`` with their environment variables."""
    func = click.option("--ca", envvar="FLEETCTL_CA", help="CA bundle to verify the server.")(func)
    func = click.option("--token", envvar="FLEETCTL_TOKEN", help="Admin API token.")(func)
    func = click.option(
        "--server", envvar="FLEETCTL_SERVER", help="Server URL, e.g. https://127.0.0.1:8443."
    )(func)
    return func


def resolve_context(server: str | None, token: str | None, ca: str | None) -> Context:
    stored: dict[str, str] = {}
    path = default_home() / "context.json"
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except ValueError as exc:
            raise ClientError(f"{path} is not valid JSON: {exc}") from exc
    server = server or stored.get("server")
    token = token or stored.get("token")
    ca = ca or stored.get("ca")
    if not server or not token:
        raise ClientError(
            f"no server to talk to: start one with `fleetctl serve` (it writes {path}), "
            "or pass --server and --token"
        )
    return Context(server.rstrip("/"), token, ca)


class AdminClient:
    def __init__(self, context: Context, timeout: float = 30.0) -> None:
        self.context = context
        self._http = httpx.Client(
            base_url=context.server,
            verify=ssl_context(context.ca),
            headers={"Authorization": f"Bearer {context.token}"},
            timeout=timeout,
        )

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path, json={})

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the admin API; a refusal raises ``ClientError`` carrying any ``errors`` list."""
        try:
            response = self._http.request(method, f"/api/v1/admin{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.context.server}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError as exc:
            raise ClientError(f"server answered HTTP {response.status_code} without JSON") from exc
        if response.status_code >= 400:
            raise ClientError(str(payload.get("error", payload)), payload.get("errors"))
        return payload

    def close(self) -> None:
        self._http.close()


def open_client(
    ctx: click.Context, server: str | None, token: str | None, ca: str | None
) -> AdminClient:
    """An AdminClient closed when the command finishes."""
    client = AdminClient(resolve_context(server, token, ca))
    ctx.call_on_close(client.close)
    return client
