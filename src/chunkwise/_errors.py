"""The one error hierarchy of chunkwise.

::

    ChunkwiseError
    ├── SSEError                  malformed or oversized server-sent-event input
    │   └── EventTooLargeError    an event grew past ``max_event_size``
    ├── APIError                  anything that came from (or failed to reach) a server
    │   ├── APIConnectionError
    │   │   └── APITimeoutError
    │   ├── APIStatusError        non-2xx answer; one subclass per common status
    │   ├── StreamError           an in-band error frame inside a 200 stream
    │   └── IncompleteStreamError the stream ended before it finished properly
    └── EngineError               the model engine failed

Client-specific subclasses live next to the client; every one of them derives from ``ChunkwiseError``.
"""

from __future__ import annotations

__all__ = ["ChunkwiseError", "EngineError", "EventTooLargeError", "SSEError"]


class ChunkwiseError(Exception):
    """Root of every error chunkwise raises on purpose."""


class SSEError(ChunkwiseError):
    """The byte stream is not a valid server-sent-event stream."""


class EventTooLargeError(SSEError):
    """An event exceeded the decoder's ``max_event_size``; raised instead of buffering without bound."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"server-sent event of at least {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class EngineError(ChunkwiseError):
    """The model engine could not produce a completion."""
