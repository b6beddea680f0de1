"""The HTTP/1.1 client of proxied requests: asyncio protocols over httptools' response parser (llhttp).

A proxied request is the gateway's hot path, and a general client costs it most of its time: profiled
(py-spy, requests 10 ms apart), httpx, httpcore, h11 and anyio took about 1.1 ms of the gateway's 2.8 ms
of CPU per request. This client does what a proxy needs and nothing else: a POST with headers built once
per upstream, on a kept-alive connection; the status and headers; then the body as the parser decodes it
(chunked, sized or until close), read ahead by at most :data:`_READ_AHEAD` bytes. Health checks, off the
hot path, keep using httpx.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from .._errors import ChunkwiseError

__all__ = ["Origin", "UpstreamClient", "UpstreamError", "UpstreamResponse"]

#: Body bytes buffered before the client stops reading from the upstream until they are consumed.
_READ_AHEAD = 1 << 18


class UpstreamError(ChunkwiseError):
    """The upstream could not be reached, or broke off the exchange (closed, timed out, invalid HTTP)."""


class Origin:
    """Where an upstream is, parsed once from its base URL, with the kept-alive connections to it."""

    __slots__ = ("_heads", "base_path", "host", "idle", "port", "ssl", "static_headers")

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if secure else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if secure else None
        self.base_path = parts.path.rstrip("/")
        name = f"[{self.host}]" if ":" in self.host else self.host
        host = name if parts.port is None else f"{name}:{self.port}"
        lines = [f"host: {host}", *(f"{key}: {value}" for key, value in headers.items())]
        self.static_headers = "".join(f"{line}\r\n" for line in lines).encode("latin-1")
        self.idle: deque[_Connection] = deque()
        self._heads: dict[str, bytes] = {}

    def request_head(self, path: str) -> bytes:
        """``POST <path> HTTP/1.1`` and the fixed headers; the body's length follows."""
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = f"POST {self.base_path}{path} HTTP/1.1\r\n".encode() + self.static_headers
        return head


class _Connection(asyncio.Protocol):
    """One connection; the parser calls back into it, and it hands what it parsed to the current response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.closed = False
        self._headers: dict[str, str] = {}

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            self.close()  # nothing was asked: an upstream that talks out of turn is not reused
            return
        response.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response.fail(UpstreamError(f"the upstream sent invalid HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response.complete:
            if response.until_close and response.status_code:
                response.finish()  # a body without a length ends when the connection does
            else:
                reason = f": {exc}" if exc else ""
                response.fail(UpstreamError(f"the upstream closed the connection{reason}"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        headers, self._headers = self._headers, {}
        if self.response is not None:
            self.response.headers_done(self.parser.get_status_code(), headers, self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response.feed(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response.finish()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """An upstream's answer, from the moment its headers are in; ``aclose`` must follow in every case."""

    def __init__(self, connection: _Connection, origin: Origin, read_timeout: float | None) -> None:
        self.status_code = 0
        self.headers: dict[str, str] = {}
        #: Any byte of the answer arrived (a request on a reused connection that got none may be sent again).
        self.received = False
        self.complete = False
        self.until_close = False
        self._connection = connection
        self._origin = origin
        self._read_timeout = read_timeout
        self._keep_alive = False
        self._head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._ready = asyncio.Event()
        self._error: UpstreamError | None = None
        self._released = False

    # fed by the connection

    def headers_done(self, status: int, headers: dict[str, str], keep_alive: bool) -> None:
        self.status_code = status
        self.headers = headers
        self._keep_alive = keep_alive
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.until_close = "content-length" not in headers and not chunked
        if not self._head.done():
            self._head.set_result(None)

    def feed(self, data: bytes) -> None:
        self._pieces.append(data)
        self._buffered += len(data)
        self._ready.set()
        transport = self._connection.transport
        if self._buffered > _READ_AHEAD and not self._paused and transport is not None:
            self._paused = True
            transport.pause_reading()

    def finish(self) -> None:
        self.complete = True
        self._ready.set()

    def fail(self, error: UpstreamError) -> None:
        if self.complete:
            return
        if not self._head.done():
            self._head.set_exception(error)
        self._error = error
        self._ready.set()

    # read by the gateway

    async def wait_for_head(self) -> None:
        try:
            async with asyncio.timeout(self._read_timeout):
                await self._head
        except TimeoutError:
            raise UpstreamError(f"no answer within {self._read_timeout} s") from None

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (transfer encoding removed), whatever piled up since the last piece at once."""
        while True:
            if self._pieces:
                pieces, self._pieces = self._pieces, []
                self._buffered = 0
                if self._paused and not self._connection.closed:
                    self._paused = False
                    assert self._connection.transport is not None
                    self._connection.transport.resume_reading()
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
            elif self.complete:
                return
            elif self._error is not None:
                raise self._error
            else:
                self._ready.clear()
                try:
                    async with asyncio.timeout(self._read_timeout):
                        await self._ready.wait()
                except TimeoutError:
                    raise UpstreamError(f"the upstream sent nothing for {self._read_timeout} s") from None

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_raw()])

    async def aclose(self) -> None:
        """Give the connection back for the next request if the answer was read to its end, else close it."""
        if self._released:
            return
        self._released = True
        connection = self._connection
        connection.response = None
        if self.complete and self._keep_alive and self._error is None and not connection.closed:
            self._origin.idle.append(connection)
        else:
            connection.close()


class UpstreamClient:
    """Sends proxied requests; ``read_timeout`` bounds the wait for the headers and for each body piece."""

    def __init__(self, *, connect_timeout: float | None, read_timeout: float | None) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._origins: list[Origin] = []

    async def post(self, origin: Origin, path: str, body: bytes) -> UpstreamResponse:
        """Send ``body`` to ``path`` and return once the answer's headers are in."""
        request = origin.request_head(path) + b"content-length: %d\r\n\r\n" % len(body) + body
        while True:
            connection, reused = await self._connection(origin)
            response = UpstreamResponse(connection, origin, self._read_timeout)
            connection.response = response
            assert connection.transport is not None
            connection.transport.write(request)
            try:
                await response.wait_for_head()
            except BaseException as exc:
                connection.close()
                if reused and isinstance(exc, UpstreamError) and not response.received:
                    continue  # the upstream had closed this kept-alive connection: it never saw the request
                raise
            return response

    async def _connection(self, origin: Origin) -> tuple[_Connection, bool]:
        idle = origin.idle
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.transport is not None and not connection.transport.is_closing():
                return connection, True
        if origin not in self._origins:
            self._origins.append(origin)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection,
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl is not None else None,
                )
        except TimeoutError:
            raise UpstreamError(f"no connection within {self._connect_timeout} s") from None
        except OSError as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc
        return connection, False

    async def aclose(self) -> None:
        for origin in self._origins:
            while origin.idle:
                origin.idle.pop().close()
