"""Server-sent-event answers: their headers, keep-alives, the end frame, and noticing a client that left.

An event stream's response learns of a disconnect only from ``receive``: a send to a closed connection may
succeed for a while (uvicorn drops it), and a request still waiting for the engine sends nothing at all.
So each streaming response runs :func:`wait_for_disconnect` beside its work and cancels the work when it
returns.
"""

from __future__ import annotations

from starlette.types import Receive

from .. import sse

__all__ = ["DONE", "KEEPALIVE", "SSE_HEADERS", "wait_for_disconnect"]

#: The headers of a 200 event stream. Each response sends them in a start message of its own: middleware
#: edits a start message in place (Starlette's ``MutableHeaders`` replaces its header list with a copy).
SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    # nginx buffers proxied responses unless told not to, which would hold back every token.
    (b"x-accel-buffering", b"no"),
]
#: A comment that keeps proxies and clients from timing out while nothing else is sent.
KEEPALIVE = sse.encode_comment("keep-alive")
#: The last event of an OpenAI stream.
DONE = sse.DONE


async def wait_for_disconnect(receive: Receive) -> None:
    """Returns once the client has gone away (``http.disconnect``); the rest of the body is discarded."""
    while (await receive())["type"] != "http.disconnect":
        pass
