"""The admin API client used by every client command.

Where to connect is resolved once: ``--server/--token/--ca/--db`` flags, then the
``FLEETCTL_SERVER/TOKEN/CA/DB`` environment, then ``$FLEETCTL_HOME/context.json`` written
by ``fleetctl serve`` on first start.

When no server answers (or none is known) and the store is known, the same requests go
to the same app run in this process over the store (``fleetctl.server.local``), so a
command prints what it would print through a server. What needs hosts online (a live
query, a hunt) says instead how to start a server.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from fleetctl.errors import FleetError
from fleetctl.settings import Settings, default_home


def ssl_context(ca: str | None) -> ssl.SSLContext:
    """Verify the server against ``ca`` (the server's own CA file) or the system store."""
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


#: (option, environment variable, help) of where client commands connect.
CLIENT_OPTIONS = (
    ("--server", "FLEETCTL_SERVER", "Server URL, e.g. https://127.0.0.1:8443."),
    ("--token", "FLEETCTL_TOKEN", "Admin API token."),
    ("--ca", "FLEETCTL_CA", "CA bundle to verify the server."),
    ("--db", "FLEETCTL_DB", "Store URL, read directly when no server answers."),
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
    """A server to call (``server`` and ``token``), the store behind it (``db``), or both."""

    server: str | None
    token: str | None
    ca: str | None
    db: str | None = None
    # The serving server's ``--learning-window`` (seconds), for answers read from its store
    # in this process; None: the default.
    learning_window: int | None = None


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


def store_context(**values: str) -> Path:
    """Write ``values`` over the context file's (0600: it holds a token); its path."""
    path = context_path()
    merged = {**stored_context(), **values}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(merged, indent=2) + "\n")
    return path


@dataclass
class Connection:
    """Where a client command connects, as given by ``--server/--token/--ca/--db`` or
    their environment variables; what is missing comes from ``context.json`` in
    ``resolve``. A store named apart from the context's leaves out the context's server,
    which serves another store."""

    server: str | None = None
    token: str | None = None
    ca: str | None = None
    db: str | None = None

    def resolve(self) -> Context:
        stored = stored_context()
        path = context_path()
        db = self.db or stored.get("db")
        same_store = self.db is None or self.db == stored.get("db")
        server = self.server or (stored.get("server") if same_store else None)
        token = self.token or stored.get("token")
        ca = self.ca or stored.get("ca")
        if (not server or not token) and not db:
            raise ClientError(
                f"no server to talk to: start one with `fleetctl serve` (it writes {path}), "
                "or pass --server and --token, or name the store with --db URL"
            )
        window = stored.get("learning_window", "")
        learning_window = int(window) if same_store and window.isdigit() else None
        if server and token:
            return Context(server.rstrip("/"), token, ca, db, learning_window)
        return Context(None, None, None, db, learning_window)


def serve_command(db: str) -> str:
    """The command that starts a server on the store ``db``."""
    from storage.database import shown  # see _store_client

    default = db == Settings(home=default_home()).db_url
    return "fleetctl serve" if default else f"fleetctl serve --db {shown(db)}"


class AdminClient:
    """The admin API at ``where``. A ``Connection`` is resolved, and the server reached,
    at the first call: a command checks its own arguments before it looks for a server.
    A first call the server refuses to connect goes to the store directly, when known."""

    def __init__(self, where: Context | Connection, timeout: float = 30.0) -> None:
        self._where = where
        self._timeout = timeout
        self._http: httpx.Client | None = None
        self._local = False
        self._answered = False

    @property
    def local(self) -> bool:
        """Whether calls run in this process over the store (no server answered)."""
        return self._local

    @property
    def context(self) -> Context:
        if isinstance(self._where, Connection):
            self._where = self._where.resolve()
        return self._where

    def _client(self) -> httpx.Client:
        if self._http is None:
            context = self.context
            if context.server is None:
                return self._store_client()
            self._http = httpx.Client(
                base_url=context.server,
                verify=ssl_context(context.ca),
                headers={"Authorization": f"Bearer {context.token}"},
                timeout=self._timeout,
            )
        return self._http

    def _store_client(self) -> httpx.Client:
        """Switch to the app over the store, in this process, and say so on stderr."""
        # Imported here: a command that reaches a server loads neither the server nor
        # SQLAlchemy, which would cost every such command its start-up time.
        from fleetctl.server.local import store_client
        from storage.database import shown, sqlite_path

        db = self.context.db
        assert db is not None
        path = sqlite_path(db)
        if path is not None and not path.exists():
            raise ClientError(
                f"no store at {path}: run `fleetctl up` or `fleetctl serve` first, or name "
                "the store with --db URL (or FLEETCTL_DB)"
            )
        where = f"no server at {self.context.server}" if self.context.server else "no server"
        click.echo(f"({where}: reading the store at {shown(db)} directly)", err=True)
        self.close()
        try:
            self._http = store_client(db, self._timeout, self.context.learning_window)
        except FleetError as exc:  # a store whose schema this fleetctl cannot read
            raise ClientError(str(exc)) from None
        self._local = True
        return self._http

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any], *, live: str = "") -> Any:
        return self.request("POST", path, live=live, json=body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request(
            "DELETE", path, json={}, params={k: v for k, v in params.items() if v is not None}
        )

    def request(self, method: str, path: str, *, live: str = "", **kwargs: Any) -> Any:
        """Call the admin API; a refusal raises ``ClientError`` carrying any ``errors`` list.
        ``live`` names what the call starts on hosts online (e.g. "a live query"): with no
        server to run it, the answer is how to start one."""
        if live and (self._local or self.context.server is None):
            raise self._needs_server(live)
        http = self._client()
        try:
            try:
                response = http.request(method, f"/api/v1/admin{path}", **kwargs)
            except httpx.ConnectError:
                if self._answered or self.context.db is None:
                    raise
                if live:
                    raise self._needs_server(live) from None
                response = self._store_client().request(method, f"/api/v1/admin{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.context.server}: {exc}") from exc
        self._answered = True
        try:
            payload = response.json()
        except ValueError as exc:
            raise ClientError(f"server answered HTTP {response.status_code} without JSON") from exc
        if response.status_code >= 400:
            raise ClientError(str(payload.get("error", payload)), payload.get("errors"))
        return payload

    def _needs_server(self, live: str) -> ClientError:
        assert self.context.db is not None
        return ClientError(
            f"{live} needs a running server: start one with `{serve_command(self.context.db)}`"
        )

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Keep an option's value on the click context's ``Connection``."""
    setattr(ctx.ensure_object(Connection), str(param.name), value)


def client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--server``, ``--token``, ``--ca``, ``--db`` with their environment variables; the command
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
