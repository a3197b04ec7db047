"""The admin API client used by every client command.

Where to connect is resolved once: ``--server/--token/--ca`` flags, then the
``FLEETCTL_SERVER/TOKEN/CA`` environment, then ``$FLEETCTL_HOME/context.json`` written
by ``fleetctl serve`` on first start.
"""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from fleetctl.settings import default_home


def ssl_context(ca: str | None) -> ssl.SSLContext:
    """Verify the server against ``ca`` (the server's own CA file) or the system store."""
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


#: (option, environment variable, help) of where client commands connect.
CLIENT_OPTIONS = (
    ("--server", "FLEETCTL_SERVER", "Server URL, e.g. https://127.0.0.1:8443."),
    ("--token", "FLEETCTL_TOKEN", "Admin API token."),
    ("--ca", "FLEETCTL_CA", "CA bundle to verify the server."),
)


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


def context_path() -> Path:
    return default_home() / "context.json"


def stored_context() -> dict[str, str]:
    """What ``fleetctl serve``/``up`` last wrote to the context file: its server URL,
    admin token, CA file and store URL ({} when there is no file)."""
    path = context_path()
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
    except ValueError as exc:
        raise ClientError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(stored, dict):
        raise ClientError(f"{path} does not hold a JSON object")
    return {k: v for k, v in stored.items() if isinstance(v, str)}


@dataclass
class Connection:
    """Where a client command connects, as given by ``--server/--token/--ca`` or their
    environment variables; what is missing comes from ``context.json`` in ``resolve``."""

    server: str | None = None
    token: str | None = None
    ca: str | None = None

    def resolve(self) -> Context:
        stored = stored_context()
        path = context_path()
        server = self.server or stored.get("server")
        token = self.token or stored.get("token")
        ca = self.ca or stored.get("ca")
        if not server or not token:
            raise ClientError(
                f"no server to talk to: start one with `fleetctl serve` (it writes {path}), "
                "or pass --server and --token"
            )
        return Context(server.rstrip("/"), token, ca)


class AdminClient:
    """The admin API at ``where``. A ``Connection`` is resolved, and the server reached,
    at the first call: a command checks its own arguments before it looks for a server."""

    def __init__(self, where: Context | Connection, timeout: float = 30.0) -> None:
        self._where = where
        self._timeout = timeout
        self._http: httpx.Client | None = None

    @property
    def context(self) -> Context:
        if isinstance(self._where, Connection):
            self._where = self._where.resolve()
        return self._where

    def _client(self) -> httpx.Client:
        if self._http is None:
            context = self.context
            self._http = httpx.Client(
                base_url=context.server,
                verify=ssl_context(context.ca),
                headers={"Authorization": f"Bearer {context.token}"},
                timeout=self._timeout,
            )
        return self._http

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request(
            "DELETE", path, json={}, params={k: v for k, v in params.items() if v is not None}
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the admin API; a refusal raises ``ClientError`` carrying any ``errors`` list."""
        http = self._client()
        try:
            response = http.request(method, f"/api/v1/admin{path}", **kwargs)
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
        if self._http is not None:
            self._http.close()


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Keep an option's value on the click context's ``Connection``."""
    setattr(ctx.ensure_object(Connection), str(param.name), value)


def client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--server``, ``--token``, ``--ca`` with their environment variables; the command
    receives, as its first argument (after ``ctx`` under ``click.pass_context``), an
    ``AdminClient`` for them, closed when the command finishes."""

    @click.pass_context
    def command(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        client = AdminClient(ctx.ensure_object(Connection))
        ctx.call_on_close(client.close)
        return ctx.invoke(func, client, *args, **kwargs)

    wrapped = functools.update_wrapper(command, func)
    for flag, envvar, text in reversed(CLIENT_OPTIONS):
        wrapped = click.option(
            flag, envvar=envvar, help=text, expose_value=False, callback=_remember
        )(wrapped)
    return wrapped
