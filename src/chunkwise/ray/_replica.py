"""The body of one Ray Serve replica: one engine, streaming msgpack messages back to the ingress.

Ray Serve runs an async-generator method as a streaming call: every ``yield`` reaches the ingress as soon as
it is made, so the replica never buffers an answer. When the ingress cancels the call (its client went
away), Ray Serve cancels the task running :meth:`EngineReplica.generate`; the engine stream is then closed,
which stops the model within one token, exactly as in the single-process server.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from .._errors import EngineError
from ..engine import Engine, Generation, TextGeneration
from ..types import ChatCompletionChunk, ChatCompletionRequest, CompletionRequest
from ._messages import ChatPiece, ReplicaHeader, ReplicaRequest, TextPiece, encode_message

__all__ = ["EngineReplica"]


def _replica_name() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside a Serve replica (unit use): the process is the identity
        return f"pid-{os.getpid()}"


class EngineReplica:
    """One engine per replica. ``engine_options`` go to :class:`~chunkwise.engine.LlamaCppEngine`."""

    def __init__(
        self, engine_options: dict[str, Any], *, stall_timeout: float = 60.0, engine: Engine | None = None
    ) -> None:
        if engine is None:
            from ..engine import LlamaCppEngine

            engine = LlamaCppEngine(**engine_options)
        self._engine = engine
        self._name = _replica_name()
        self._node = socket.gethostname()
        self._ongoing = 0
        self._served = 0
        self._cancelled = 0
        self._generated_tokens = 0
        self._stall_timeout = stall_timeout
        self._last_progress = time.monotonic()

    def _header(self) -> ReplicaHeader:
        return ReplicaHeader(
            replica=self._name,
            pid=os.getpid(),
            node=self._node,
            ongoing=self._ongoing,
            served=self._served,
            cancelled=self._cancelled,
            generated_tokens=self._generated_tokens,
        )

    async def generate(self, request: ReplicaRequest) -> AsyncGenerator[bytes, None]:
        """Stream the header, then one message per chunk, as bytes."""
        generation: Generation[ChatCompletionChunk] | TextGeneration
        if request.endpoint == "chat":
            chat = msgspec.json.decode(request.body, type=ChatCompletionRequest)
            generation = self._engine.prepare_chat(chat, request_id=request.request_id, created=request.created)
        else:
            text = msgspec.json.decode(request.body, type=CompletionRequest)
            generation = self._engine.prepare_completion(text, request_id=request.request_id, created=request.created)
        if self._ongoing == 0:
            self._last_progress = time.monotonic()
        self._ongoing += 1
        self._served += 1
        finished = False
        chunks = generation.stream()
        try:
            yield encode_message(self._header())
            async for chunk in chunks:
                self._last_progress = time.monotonic()
                tokens = generation.completion_tokens
                piece = ChatPiece(chunk, tokens) if isinstance(chunk, ChatCompletionChunk) else TextPiece(chunk, tokens)
                yield encode_message(piece)
            finished = True
        finally:
            # Closing the generation is what stops the model; it runs on cancellation too.
            await generation.aclose()
            self._ongoing -= 1
            self._generated_tokens += generation.completion_tokens
            if not finished:
                self._cancelled += 1

    def check_health(self) -> None:
        """Ray Serve calls this periodically; raising marks the replica unhealthy, and Ray replaces it.

        Sick means wedged: requests are running but none has produced a chunk for ``stall_timeout`` seconds.
        """
        stalled_for = time.monotonic() - self._last_progress
        if self._ongoing and stalled_for > self._stall_timeout:
            raise EngineError(f"{self._ongoing} generations made no progress for {stalled_for:.0f} s")
