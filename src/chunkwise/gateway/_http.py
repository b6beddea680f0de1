"""The gateway's HTTP protocol for uvicorn: a response's head goes out in one write with its first body bytes.

uvicorn writes a response's status line and headers as soon as the app sends ``http.response.start``, then
each body message separately. For a proxied stream that is two writes back to back, and on a loaded
machine two wake-ups of the client: measured with requests 10 ms apart, the write of the head alone took
0.66 ms at p50 (the client, woken, ran first), back to back 0.03 ms. The gateway always has the first
body bytes in hand when it starts a response, so holding the head until the next write (at most until
the event loop's next turn) costs nothing and saves a wake-up.

This leans on uvicorn's internals (a head is one write of its own): pyproject.toml bounds uvicorn's version
and tests/test_workarounds.py fails when that changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GatewayHttpProtocol"]

_HEAD = b"HTTP/1.1 "


class _HeadWithBodyTransport:
    """Wraps a transport: a response head waits for the next write, or the end of the loop's turn."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            data = self._held + bytes(data)
            self._held = None
        elif bytes(data[: len(_HEAD)]) == _HEAD:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing each response head together with the first body bytes."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped: Any = _HeadWithBodyTransport(transport, asyncio.get_running_loop())
        super().connection_made(wrapped)
