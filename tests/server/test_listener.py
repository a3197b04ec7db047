"""The listener against slow and greedy clients, over raw TLS sockets on loopback: header,
body, idle and handshake deadlines, and the cap on connections per client address."""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from fleetctl.cli import main
from fleetctl.settings import Settings, declaration
from tests.conftest import RunningServer

FAST = {
    "handshake_timeout": 1.0,
    "header_timeout": 1.0,
    "body_timeout": 1.0,
    "keep_alive_timeout": 1,
}
SLACK = 1.0  # the event loop's timer resolution plus a loaded machine's scheduling


@pytest.fixture
def start(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., RunningServer]]:
    """Start a server with the given settings (the listener does not depend on the store:
    SQLite only)."""
    servers: list[RunningServer] = []

    def started(**settings: Any) -> RunningServer:
        home = tmp_path / f"home{len(servers)}"
        monkeypatch.setenv("FLEETCTL_HOME", str(home))
        db = tmp_path / f"fleet{len(servers)}.db"
        shutil.copy(sqlite_template, db)
        servers.append(RunningServer(home, f"sqlite:///{db}", **{**FAST, **settings}))
        return servers[-1]

    yield started
    for server in servers:
        server.stop()


def port(server: RunningServer) -> int:
    return server.settings.host_port[1]


def tls(server: RunningServer) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=server.ca)
    raw = socket.create_connection(("127.0.0.1", port(server)), timeout=5)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def read_answer(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 response with a Content-Length: status, headers, parsed JSON body."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, orjson.loads(body)


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """Read (and drop) whatever comes until the server closes the connection."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pytest.fail(f"the connection is still open after {limit} s")
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        pass
    return time.monotonic() - start


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    return check()


def open_from_loopback(server: RunningServer) -> int:
    """Connections the server counts for 127.0.0.1 (once their handshake is done)."""
    slots = server.thread.server.config.http_protocol_class.slots
    return int(slots.open("127.0.0.1"))


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def still_served(server: RunningServer) -> None:
    with tls(server) as sock:
        sock.sendall(get("/healthz"))
        assert read_answer(sock)[2] == {"status": "ok"}


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_log() -> Iterator[Records]:
    """What uvicorn and the server log meanwhile, down to INFO."""
    records = Records()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "fleetctl.server")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(records)
    loggers[1].setLevel(logging.INFO)
    yield records
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(records)
        logger.setLevel(level)


def test_headers_one_byte_at_a_time_are_cut_at_the_deadline(
    start: Callable[..., RunningServer],
) -> None:
    server = start()
    with tls(server) as slow:
        request = get("/healthz")[:-2] + b"X-Padding: " + b"a" * 200 + b"\r\n\r\n"
        began = time.monotonic()
        answer = b""
        slow.settimeout(0.2)
        for i, byte in enumerate(request):
            if i == 3:
                still_served(server)  # a normal client meanwhile
            try:
                slow.sendall(bytes([byte]))
                answer = slow.recv(65536)
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                break
            if answer:
                break
        elapsed = time.monotonic() - began
        assert 1.0 - 0.1 <= elapsed < 1.0 + SLACK, elapsed
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert answer.endswith(b'{"error":"request headers not complete within 1 s"}')
        assert seconds_until_closed(slow, 2) < SLACK
    still_served(server)


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(
    start: Callable[..., RunningServer],
) -> None:
    server = start(keep_alive_timeout=30)
    began = time.monotonic()
    with tls(server) as idle:
        status, headers, body = read_answer(idle)
    assert (status, body) == (408, {"error": "request headers not complete within 1 s"})
    assert headers["connection"] == "close"
    assert 1.0 <= time.monotonic() - began < 1.0 + SLACK


def test_a_body_that_stops_arriving_is_cut(
    start: Callable[..., RunningServer], server_log: Records
) -> None:
    server = start()
    stalled = tls(server)
    stalled.sendall(
        b"POST /api/v1/osquery/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"enroll_secret": "'
    )
    assert 1.0 - 0.1 <= seconds_until_closed(stalled, 1.0 + SLACK + 1) < 1.0 + SLACK
    stalled.close()
    still_served(server)
    assert eventually(lambda: open_from_loopback(server) == 0)  # every slot released
    # The handler waiting for the body sees a disconnect: no traceback, no 500.
    assert [r.getMessage() for r in server_log.records if r.exc_info] == []
    said = [r.getMessage() for r in server_log.records]
    assert "127.0.0.1: no request body byte for 1 s; closing" in said, said
    assert "POST /api/v1/osquery/enroll: client disconnected mid-request" in said, said


def test_a_slow_but_steady_body_is_served(start: Callable[..., RunningServer]) -> None:
    """A body may take longer than the body timeout in all, as long as bytes keep coming."""
    server = start()
    body = orjson.dumps({"enroll_secret": "wrong", "host_identifier": "h"})
    with tls(server) as steady:
        steady.sendall(
            b"POST /api/v1/osquery/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        began = time.monotonic()
        for i in range(0, len(body), len(body) // 6):
            steady.sendall(body[i : i + len(body) // 6])
            time.sleep(0.4)
        assert time.monotonic() - began > 2.0
        status, _, answer = read_answer(steady)
    assert (status, answer) == (401, {"error": "invalid enroll secret", "node_invalid": False})


def test_idle_keep_alive_connections_close(start: Callable[..., RunningServer]) -> None:
    server = start(header_timeout=5.0)
    with tls(server) as sock:
        sock.sendall(get("/healthz"))
        assert read_answer(sock)[0] == 200
        assert 1.0 - 0.1 <= seconds_until_closed(sock, 3) < 1.0 + SLACK


def test_bytes_between_requests_do_not_hold_a_connection(
    start: Callable[..., RunningServer],
) -> None:
    """Bare CRLFs start no request, and used to cancel uvicorn's keep-alive timer for good."""
    server = start(keep_alive_timeout=1, header_timeout=2.0)
    with tls(server) as sock:
        sock.sendall(get("/healthz"))
        assert read_answer(sock)[0] == 200
        began = time.monotonic()
        sock.settimeout(0.3)
        while time.monotonic() - began < 6:
            try:
                sock.sendall(b"\r\n")
                if not sock.recv(65536):
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                break
        # the header timer starts when the answer is sent, a moment before it is read here
        assert 2.0 - 0.1 <= time.monotonic() - began < 2.0 + SLACK


def test_connections_over_the_per_address_limit_are_closed_at_once(
    start: Callable[..., RunningServer],
) -> None:
    server = start(max_connections_per_address=3, header_timeout=10.0, keep_alive_timeout=30)
    first = [tls(server) for _ in range(3)]
    assert eventually(lambda: open_from_loopback(server) == 3)
    with tls(server) as extra:
        assert seconds_until_closed(extra, 5) < 0.5  # not at the 10 s header deadline
    assert open_from_loopback(server) == 3
    for sock in first:  # the earlier ones still work
        sock.sendall(get("/healthz"))
        assert read_answer(sock)[2] == {"status": "ok"}
    first.pop().close()
    assert eventually(lambda: open_from_loopback(server) == 2)
    still_served(server)  # a freed slot takes a new connection
    for sock in first:
        sock.close()
    assert eventually(lambda: open_from_loopback(server) == 0)


def test_a_stalled_tls_handshake_is_dropped(start: Callable[..., RunningServer]) -> None:
    server = start(handshake_timeout=1.0)
    with socket.create_connection(("127.0.0.1", port(server)), timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and nothing more
        assert 1.0 - 0.1 <= seconds_until_closed(raw, 1.0 + SLACK + 1) < 1.0 + SLACK
    still_served(server)


def long_path(length: int) -> bytes:
    return (
        b"GET /api/v1/admin/hosts/" + b"x" * length + b" HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer {token}\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("request_bytes", "message"),
    [
        (b"GARBAGE\r\n\r\n", "Invalid HTTP request received."),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", None),
        (long_path(60_000), "'ref' is longer than 1024 characters"),
        (long_path(100_000), None),  # past llhttp's own limit: refused by the parser
    ],
    ids=["garbage", "negative-length", "60KB-path", "100KB-path"],
)
def test_requests_the_parser_or_the_edge_refuse_answer_json(
    start: Callable[..., RunningServer], request_bytes: bytes, message: str | None
) -> None:
    server = start()
    with tls(server) as sock:
        sock.sendall(request_bytes.replace(b"{token}", server.token.encode()))
        got, headers, body = read_answer(sock)
    assert got == 400 and headers["content-type"] == "application/json"
    assert body["error"] == message if message else isinstance(body["error"], str)
    still_served(server)


def test_listener_settings_are_declared_once_and_offered_by_serve() -> None:
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    for name in (
        "handshake_timeout",
        "header_timeout",
        "body_timeout",
        "keep_alive_timeout",
        "max_connections_per_address",
    ):
        field, setting = declaration(name)
        assert getattr(Settings(), name) == field.default
        assert setting.option == "--" + name.replace("_", "-")
        assert setting.option in help_text


def test_stop_closes_a_connection_whose_peer_never_answers_close_notify(
    start: Callable[..., RunningServer],
) -> None:
    """A keep-alive TLS client that stops reading never answers the server's close_notify;
    the server still stops within its graceful timeout and drops the connection, instead
    of closing its event loop over an open transport."""
    server = start(keep_alive_timeout=60)
    sock = tls(server)
    sock.sendall(get("/healthz"))
    assert read_answer(sock)[2] == {"status": "ok"}
    assert eventually(lambda: open_from_loopback(server) == 1)
    started = time.monotonic()
    server.thread.stop()
    took = time.monotonic() - started
    assert not server.thread._thread.is_alive()
    assert took < server.thread.server.config.timeout_graceful_shutdown + 3 * SLACK
    assert server.thread.server.server_state.connections == set()
    assert seconds_until_closed(sock, 5) < 5  # the peer sees the connection end
    sock.close()
