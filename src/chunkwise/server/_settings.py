"""Server configuration, independent of the engine and of how the server is started."""

from __future__ import annotations

from dataclasses import dataclass

from ..confidential import NodeKey
from ..signing import Signer

__all__ = ["ServerSettings"]


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """How :func:`~chunkwise.server.create_app` behaves; every field has a production default.

    Example::

        create_app(engine, ServerSettings(api_key="secret", queue_size=4))
    """

    #: When set, ``/v1/*`` requires ``Authorization: Bearer <api_key>``.
    api_key: str | None = None
    #: Requests that may wait for room in the engine; one more gets 429.
    queue_size: int = 16
    #: Sequences that run at once (a request with ``n=4`` counts 4). ``None``: the engine's own ``max_running``
    #: for a :class:`~chunkwise.engine.BatchingEngine`, else 1.
    max_running: int | None = None
    #: Seconds between SSE keep-alive comments while a streaming request waits for the engine.
    keepalive_interval: float = 15.0
    #: Seconds a response may wait on a client that reads nothing before it is cancelled (engine freed).
    write_timeout: float = 30.0
    #: Seconds a connection may take to send a request's headers before it is closed.
    header_timeout: float = 30.0
    #: Open connections past which the one that has waited longest for a request is closed.
    max_connections: int = 1000
    #: Largest accepted request body in bytes; larger bodies get 413 before they are read in full.
    max_body_size: int = 4 * 1024 * 1024
    #: The ``Retry-After`` header, in seconds, sent with 429.
    retry_after: int = 1
    #: Origins allowed by CORS; ``("*",)`` lets any browser page call the API.
    cors_origins: tuple[str, ...] = ("*",)
    #: The X25519 key confidential clients encrypt to (``POST /v1/nodes/lock``); ``None``: a new one per app.
    node_key: NodeKey | None = None
    #: The id ``POST /v1/nodes/lock`` answers: the one the node registers with a gateway (``serve --join``).
    node_small_id: int = 0
    #: When set, every chunk and every non-stream answer is signed and chained (``GET /signing-key``).
    signer: Signer | None = None
    #: Where stored Responses (``store``, ``previous_response_id``) live: ``None`` keeps them in memory, a
    #: path keeps them in that SQLite file across restarts.
    response_store: str | None = None
    #: How many stored Responses are kept; the least recently used go first.
    response_store_size: int = 1000

    def __post_init__(self) -> None:
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, not {self.queue_size}")
        if self.max_running is not None and self.max_running < 1:
            raise ValueError(f"max_running must be >= 1, not {self.max_running}")
        if self.keepalive_interval <= 0:
            raise ValueError(f"keepalive_interval must be > 0, not {self.keepalive_interval}")
        if self.write_timeout <= 0:
            raise ValueError(f"write_timeout must be > 0, not {self.write_timeout}")
        if self.header_timeout <= 0:
            raise ValueError(f"header_timeout must be > 0, not {self.header_timeout}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, not {self.max_connections}")
        if self.max_body_size < 1:
            raise ValueError(f"max_body_size must be >= 1, not {self.max_body_size}")
        if self.response_store_size < 1:
            raise ValueError(f"response_store_size must be >= 1, not {self.response_store_size}")
        if self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, not {self.retry_after}")
        if self.api_key == "":
            raise ValueError("api_key must not be empty; pass None to turn authentication off")
