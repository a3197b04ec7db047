"""Run the app under uvicorn with TLS, in the foreground or in a background thread."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from fleetctl.server.app import build_app
from fleetctl.server.bootstrap import Prepared
from fleetctl.server.state import ServerState
from fleetctl.settings import Settings


def make_server(settings: Settings, prepared: Prepared, state: ServerState) -> uvicorn.Server:
    host, port = settings.host_port
    config = uvicorn.Config(
        build_app(state),
        host=host,
        port=port,
        ssl_certfile=str(prepared.tls.cert),
        ssl_keyfile=str(prepared.tls.key),
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        # TLS keep-alive connections of idle osqueryd clients would otherwise hold
        # shutdown open until the peer answers close_notify.
        timeout_graceful_shutdown=2,
        server_header=False,
    )
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class ServerThread:
    """A real TLS server on loopback in a thread; used by ``fleetctl up`` and the tests."""

    def __init__(self, settings: Settings, prepared: Prepared, sock: socket.socket) -> None:
        self.state = ServerState.create(settings)
        self.server = make_server(settings, prepared, self.state)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="fleet-server", daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self._sock])

    def start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self.state.close()
