"""uvicorn's HTTP/1.1 protocol (h11) with the two things it lacks for a public server.

* A header timeout: uvicorn never times out a connection that is still sending a request's headers, so
  a client can hold connections open forever by sending half a request. Here a connection that has not
  finished the headers of its next request ``header_timeout`` seconds after it opened (or after its last
  response) is closed.
* Its own answer to a malformed request, a plain-text 400, is written in the OpenAI error shape. A request
  with both ``Content-Length`` and ``Transfer-Encoding`` is one (h11 would let Transfer-Encoding win): two
  parties reading it two ways is how requests are smuggled, so it gets the 400 and the connection is closed
  (RFC 9112 §6.1).
* A connection cap: past ``max_connections`` open connections, the one that has waited longest for a
  request is closed, so idle connections can never crowd out a client with a real request.
* Bounded send buffers, and a measure of what is still unsent. The kernel grows a connection's send buffer
  to megabytes, so a client that stops reading could absorb minutes of output before a write ever waited,
  and the write timeout (:mod:`._generation`) never fired. Each connection's kernel buffer and uvicorn's own
  are bounded here, and each request's scope carries ``extensions["chunkwise.unsent_bytes"]``: a function
  giving the bytes written but not yet taken by the peer (uvicorn's buffer plus the kernel's send queue),
  from which the response sees whether its client still reads.

``chunkwise serve`` passes :func:`h11_protocol` as uvicorn's ``http`` class; the h11 implementation is
chosen explicitly so that the timeout holds whether or not httptools happens to be installed.

This leans on uvicorn's internals (the hooks and state of ``H11Protocol``): pyproject.toml bounds uvicorn's
version and tests/test_workarounds.py fails when they change.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from collections import OrderedDict
from typing import Any, ClassVar

import h11
import msgspec
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..types import ErrorDetail, ErrorResponse

__all__ = ["UNSENT_BYTES", "h11_protocol"]

#: The scope extension holding a connection's "bytes not yet taken by the peer" function.
UNSENT_BYTES = "chunkwise.unsent_bytes"
#: What each connection may hold unsent, in the kernel and again in uvicorn's buffer: enough to keep a
#: reading client's stream flowing, little enough that a client that stops reading blocks writes soon.
SEND_BUFFER_SIZE = 64 * 1024
_QUEUED = struct.Struct("i")


class _StrictConnection(h11.Connection):
    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = {name.lower() for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                raise h11.RemoteProtocolError(_AMBIGUOUS_LENGTH)
        return event


_AMBIGUOUS_LENGTH = "A request must not carry both Content-Length and Transfer-Encoding."


class _HardenedH11Protocol(H11Protocol):
    header_timeout: float = 30.0
    max_connections: int = 1000
    #: This server's connections that wait for a request, longest-waiting first (one dict per server class).
    waiting: ClassVar[OrderedDict[_HardenedH11Protocol, None]]
    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _StrictConnection(h11.SERVER, self.conn._max_incomplete_event_size)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting[self] = None
        if len(self.connections) > self.max_connections:
            longest_waiting = next(iter(self.waiting))
            del self.waiting[longest_waiting]
            longest_waiting.transport.close()
        connection = transport.get_extra_info("socket")
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_SIZE)
        transport.set_write_buffer_limits(high=SEND_BUFFER_SIZE)
        self._arm_header_timer()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self.waiting.pop(self, None)
        # A request read just now has its scope built and its task created, but not yet started.
        if self.scope is not None:
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions.setdefault(UNSENT_BYTES, self.unsent_bytes)

    def unsent_bytes(self) -> int:
        """Bytes written that the peer has not acknowledged yet: uvicorn's buffer plus the kernel's queue."""
        unsent = self.transport.get_write_buffer_size()
        connection = self.transport.get_extra_info("socket")
        if connection is not None and hasattr(termios, "TIOCOUTQ"):
            with contextlib.suppress(OSError):
                queued = fcntl.ioctl(connection.fileno(), termios.TIOCOUTQ, bytes(_QUEUED.size))
                unsent += _QUEUED.unpack(queued)[0]
        return unsent

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self.waiting.pop(self, None)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.waiting[self] = None
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        # IDLE: the next request's headers are not complete (an idle keep-alive connection is also closed).
        waiting_for_headers = self.cycle is None or self.cycle.response_complete
        if waiting_for_headers and self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if self.conn.their_state is h11.SEND_BODY:  # _StrictConnection refused a request h11 had accepted
            msg = _AMBIGUOUS_LENGTH
        body = msgspec.json.encode(
            ErrorResponse(error=ErrorDetail(message=msg, type="invalid_request_error", code="invalid_http_request"))
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body)):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()


def h11_protocol(*, header_timeout: float, max_connections: int = 1000) -> type[Any]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``; one per server."""
    fields = {"header_timeout": header_timeout, "max_connections": max_connections, "waiting": OrderedDict()}
    return type("ChunkwiseH11Protocol", (_HardenedH11Protocol,), fields)
