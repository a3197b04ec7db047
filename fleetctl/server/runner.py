"""Run the app under uvicorn with TLS, on a listener slow clients cannot hold open, in the
foreground or in a background thread.

uvicorn (0.55, httptools) bounds none of a slow client's time itself: it arms no timer
before a connection's first request, cancels its keep-alive timer on any byte (so a byte
every few seconds holds a connection forever), never times out a request body, and
creates its server without ``ssl_handshake_timeout`` (asyncio's and uvloop's default is
60 s). ``GuardedProtocol`` is uvicorn's httptools protocol with three deadlines and a cap
on connections per client address; ``Server`` runs uvicorn on an event loop whose TLS
servers get the handshake timeout from the settings.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr

from fleetctl.server.app import build_app
from fleetctl.server.bootstrap import Prepared
from fleetctl.server.state import ServerState
from fleetctl.settings import Settings

log = logging.getLogger("fleetctl.server")


@dataclass(frozen=True)
class ListenerLimits:
    header_timeout: float
    body_timeout: float
    max_per_address: int


class AddressSlots:
    """Open connections per client address. Only the event loop's thread touches it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self._refusing: set[str] = set()

    def take(self, address: str) -> bool:
        """Count a new connection from ``address``, or refuse it when over the limit
        (logged once per burst, not once per refused connection)."""
        count = self._open.get(address, 0)
        if count >= self.limit:
            if address not in self._refusing:
                self._refusing.add(address)
                log.warning("%s holds %d connections: closing its new ones", address, count)
            return False
        self._open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self._open.pop(address, 1) - 1
        if count > 0:
            self._open[address] = count
        self._refusing.discard(address)

    def open(self, address: str) -> int:
        return self._open.get(address, 0)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines a slow client cannot stretch.

    - Headers: a request's headers must be complete ``header_timeout`` seconds after its
      first byte (after the handshake, for a connection's first request, so a connection
      that never sends a byte is closed too). More bytes do not extend it.
    - Body: a request body may go ``body_timeout`` seconds without a byte, unless the
      server is the one not reading (flow control, ``Expect: 100-continue``).
    - Idle: between requests uvicorn's keep-alive timeout applies; bytes that arrive then
      (even bare CRLFs, which start no request) start the header deadline.
    - Per address: at most ``max_per_address`` connections at once; more are aborted as
      soon as they are made.

    ``protocol_class`` binds ``limits`` and ``slots`` for one server.
    """

    limits: ClassVar[ListenerLimits]
    slots: ClassVar[AddressSlots]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_byte_at = 0.0
        self._reading_body = False

    # Connection lifetime

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = get_remote_addr(transport)
        address = peer[0] if peer else "unknown"
        if not self.slots.take(address):
            transport.abort()
            return
        self._address = address
        super().connection_made(transport)
        self._start_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clocks()
        if self._address is None:
            return  # refused in connection_made: uvicorn never knew it
        self.slots.release(self._address)
        self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._reading_body:
            self._body_byte_at = self.loop.time()
        elif self._header_timer is None and self._between_requests():
            self._start_header_clock()

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._start_header_clock()

    def on_headers_complete(self) -> None:
        self._cancel_header_clock()
        super().on_headers_complete()
        self._reading_body = True
        self._body_byte_at = self.loop.time()
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_check)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse: JSON like every other error, then close."""
        self._answer_and_close(400, msg)

    # Deadlines

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _start_header_clock(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_late)

    def _cancel_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _stop_clocks(self) -> None:
        self._cancel_header_clock()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        message = f"request headers not complete within {self.limits.header_timeout:g} s"
        log.info("%s: %s; closing", self._address, message)
        if self._between_requests():
            self._answer_and_close(408, message)
        else:  # a pipelined request behind one still being answered: no room to say so
            self.transport.close()

    def _body_check(self) -> None:
        """Runs ``body_timeout`` after the last body byte it knows of; re-arms itself for
        the rest of the window when bytes came since."""
        self._body_timer = None
        if self.transport.is_closing() or not self._reading_body:
            return
        now = self.loop.time()
        server_waits = self.flow.read_paused or (
            self.cycle is not None and self.cycle.waiting_for_100_continue
        )
        if server_waits:
            self._body_byte_at = now
        quiet = now - self._body_byte_at
        if quiet < self.limits.body_timeout:
            self._body_timer = self.loop.call_later(
                self.limits.body_timeout - quiet, self._body_check
            )
            return
        log.info(
            "%s: no request body byte for %g s; closing", self._address, self.limits.body_timeout
        )
        self.transport.abort()  # the app's pending read sees a disconnect

    def _answer_and_close(self, status: int, message: str) -> None:
        body = orjson.dumps({"error": message})
        reason = {400: b"Bad Request", 408: b"Request Timeout"}[status]
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        self.transport.write(
            head
            + b"content-type: application/json\r\n"
            + b"content-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()


def protocol_class(limits: ListenerLimits) -> type[GuardedProtocol]:
    """A protocol class for one server: uvicorn makes one instance per connection with
    arguments of its own, so the limits and the address table ride on the class."""

    class ServerProtocol(GuardedProtocol):
        pass

    ServerProtocol.limits = limits
    ServerProtocol.slots = AddressSlots(limits.max_per_address)
    return ServerProtocol


def _base_loop_class() -> type[asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings uvloop everywhere but Windows
        return asyncio.SelectorEventLoop
    return uvloop.Loop


def handshake_bounded_loop(timeout: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop uvicorn would pick, whose TLS servers time out handshakes after
    ``timeout`` seconds (uvicorn passes no ``ssl_handshake_timeout`` of its own)."""
    base = _base_loop_class()

    async def create_server(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", timeout)
        return await base.create_server(self, *args, **kwargs)

    loop_class: Callable[[], asyncio.AbstractEventLoop] = type(
        "HandshakeBoundedLoop", (base,), {"create_server": create_server}
    )
    return loop_class


class Server(uvicorn.Server):
    """uvicorn's server, run on a ``handshake_bounded_loop``."""

    def __init__(self, config: uvicorn.Config, handshake_timeout: float) -> None:
        super().__init__(config)
        self.handshake_timeout = handshake_timeout

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, then abort what is still open: a TLS connection whose peer
        never answers close_notify outlives the graceful timeout, and an event loop closed
        with its transport open fails (EBUSY) and leaks the socket."""
        await super().shutdown(sockets=sockets)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:  # open, or closing and waiting on the peer
                transport.abort()
        await asyncio.sleep(0)  # let the aborted transports' close callbacks run

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        loop_factory = handshake_bounded_loop(self.handshake_timeout)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(self.serve(sockets=sockets))


def make_server(settings: Settings, prepared: Prepared, state: ServerState) -> Server:
    host, port = settings.host_port
    limits = ListenerLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_per_address=settings.max_connections_per_address,
    )
    config = uvicorn.Config(
        build_app(state),
        host=host,
        port=port,
        http=protocol_class(limits),
        ssl_certfile=str(prepared.tls.cert),
        ssl_keyfile=str(prepared.tls.key),
        log_level="warning",
        access_log=False,
        timeout_keep_alive=settings.keep_alive_timeout,
        # The peer's own address, always: uvicorn would otherwise take X-Forwarded-For
        # from local clients, and the enroll throttle counts failures per address.
        proxy_headers=False,
        # TLS keep-alive connections of idle osqueryd clients would otherwise hold
        # shutdown open until the peer answers close_notify.
        timeout_graceful_shutdown=2,
        server_header=False,
    )
    return Server(config, settings.handshake_timeout)


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
