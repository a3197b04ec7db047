"""The fleet simulator's HTTP client: HTTP/1.1 POSTs over pooled TLS streams, no more.

At thousands of simulated hosts a general client (httpx: request and response objects,
header models, a pool manager per request) spends more CPU than the simulation, on the
cores the server needs. osqueryd's requests are all alike: a POST of a JSON body
(gzip-compressed for logs) to a fixed path, answered with a small JSON document. So a
request here is one ``bytes`` written to a kept-alive asyncio TLS stream (the fixed
headers of a host serialised once), and a response is read as a status line, headers
up to the blank line, and ``Content-Length`` (or chunked) bytes.

A connection idle longer than ``IDLE`` is not reused (the server closes idle keep-alive
connections after 30 s), and a reused connection that fails before any byte of the
answer is replaced once, as any keep-alive client does when the server closed it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from urllib.parse import urlsplit

IDLE = 10.0  # seconds a pooled connection may wait before it is dropped
MAX_HEAD = 64 * 1024

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpError(Exception):
    """A request that failed below HTTP (connection, malformed answer)."""


def request_headers(fields: dict[str, str]) -> bytes:
    """Header lines for ``fields`` (serialised once per host, not per request)."""
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in fields.items())


class Pool:
    """Kept-alive TLS connections to one server, shared by the hosts of one process."""

    def __init__(self, url: str, context: ssl.SSLContext) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self.context = context
        self.prefix = (parts.path or "").rstrip("/").encode()
        self.authority = f"Host: {self.host}:{self.port}\r\n".encode()
        self.idle: list[tuple[float, Stream]] = []

    async def _connect(self) -> Stream:
        return await asyncio.open_connection(
            self.host, self.port, ssl=self.context, server_hostname=self.host
        )

    def _take(self) -> Stream | None:
        now = time.monotonic()
        while self.idle:
            since, stream = self.idle.pop()
            if now - since < IDLE:
                return stream
            stream[1].close()
        return None

    async def post(self, path: str, body: bytes, headers: bytes) -> tuple[int, bytes]:
        """POST ``body`` to ``path``: the status and the answer's bytes."""
        request = b"".join(
            (
                b"POST ",
                self.prefix,
                path.encode(),
                b" HTTP/1.1\r\n",
                self.authority,
                headers,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        stream = self._take()
        if stream is not None:
            try:
                return await self._exchange(stream, request)
            except (OSError, asyncio.IncompleteReadError):
                pass  # closed by the server while it waited: once more on a new one
        try:
            return await self._exchange(await self._connect(), request)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, stream: Stream, request: bytes) -> tuple[int, bytes]:
        reader, writer = stream
        try:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status, length, chunked, close = _parse_head(head)
            if chunked:
                body = await _read_chunked(reader)
            else:
                body = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self.idle.append((time.monotonic(), stream))
        return status, body

    async def aclose(self) -> None:
        """Close the kept-alive connections and wait until they are closed."""
        writers = [writer for _, (_, writer) in self.idle]
        self.idle.clear()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError, ssl.SSLError):  # the server went first
                await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, int, bool, bool]:
    """Status, content length, whether chunked, whether the server closes."""
    if len(head) > MAX_HEAD:
        raise HttpError("response head too large")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError) as exc:
        raise HttpError(f"bad status line {lines[0][:80]!r}") from exc
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    return status, length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
