"""uvicorn's HTTP/1.1 protocol (h11) with the two things it lacks for a public server.

* A header timeout: uvicorn never times out a connection that is still sending a request's headers, so
  a client can hold connections open forever by sending half a request. Here a connection that has not
  finished the headers of its next request ``header_timeout`` seconds after it opened (or after its last
  response) is closed.
* Its own answer to a malformed request, a plain-text 400, is written in the OpenAI error shape.

``chunkwise serve`` passes :func:`h11_protocol` as uvicorn's ``http`` class; the h11 implementation is
chosen explicitly so that the timeout holds whether or not httptools happens to be installed.

This leans on uvicorn's internals (the hooks and state of ``H11Protocol``): pyproject.toml bounds uvicorn's
version and tests/test_workarounds.py fails when they change.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import msgspec
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..types import ErrorDetail, ErrorResponse

__all__ = ["h11_protocol"]


class _HardenedH11Protocol(H11Protocol):
    header_timeout: float = 30.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
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


def h11_protocol(*, header_timeout: float) -> type[Any]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``."""
    return type("ChunkwiseH11Protocol", (_HardenedH11Protocol,), {"header_timeout": header_timeout})
