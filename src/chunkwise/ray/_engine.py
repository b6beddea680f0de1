"""The ingress side: an :class:`~chunkwise.engine.Engine` whose generations run on Ray Serve replicas.

The Starlette app does not know it is talking to a cluster. :meth:`RayEngine.prepare_chat` validates and
tokenizes with a local copy of the model's tokenizer and template (so a bad request is still a 400 before
any response starts), then returns a :class:`RayGeneration` that, when streamed, sends the request through
a Ray Serve ``DeploymentHandle`` with ``stream=True`` and yields each chunk as the replica makes it.

Failures: until the first chunk has been yielded, a replica that dies (or is unreachable) costs nothing
but a retry on another replica; after that, the stream fails with :class:`~chunkwise.EngineError`, which
the server turns into an error frame and ``[DONE]``. Closing the stream (client disconnect) cancels the
Ray call, which cancels the generation on the replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from .._errors import EngineError
from ..engine import Engine, StreamOnce
from ..types import ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest
from ._load import DeploymentLoad
from ._messages import ChatPiece, Endpoint, ReplicaHeader, ReplicaRequest, TextPiece, decode_message

__all__ = ["RayEngine", "RayGeneration"]

logger = logging.getLogger("chunkwise.ray")

ChunkT = TypeVar("ChunkT", ChatCompletionChunk, Completion)

#: Characters of the prompt the prefix-affinity router looks at: enough to tell system prompts apart.
PREFIX_CHARS = 512


def _retryable(exc: BaseException) -> bool:
    """Did the call fail because of the replica (dead, unreachable) rather than the request?"""
    from ray import exceptions

    return isinstance(exc, exceptions.RayActorError | exceptions.ActorUnavailableError)


@dataclass(frozen=True, slots=True)
class _Replicas:
    """Where a :class:`RayEngine` sends its generations, and how a replica that fails before any output is
    retried: up to ``attempts`` calls, ``retry_backoff`` seconds times the attempt apart."""

    handle: Any
    load: DeploymentLoad
    attempts: int
    retry_backoff: float


class RayGeneration(StreamOnce[ChunkT]):
    """One request prepared by the ingress; implements ``Generation`` and ``TextGeneration``."""

    def __init__(self, replicas: _Replicas, request: ReplicaRequest, *, prompt_tokens: int) -> None:
        self._replicas = replicas
        self._request = request
        self._prompt_tokens = prompt_tokens

    @property
    def prompt_tokens(self) -> int:
        return self._prompt_tokens

    async def _stream(self) -> AsyncGenerator[ChunkT, None]:
        # Closed early (aclose), the finally below cancels the replica's call, which stops its model.
        replicas = self._replicas
        delivered = False
        for attempt in range(1, replicas.attempts + 1):
            response = replicas.handle.options(stream=True).generate.remote(self._request)
            header: ReplicaHeader | None = None
            try:
                async for data in response:
                    message = decode_message(data)
                    if isinstance(message, ReplicaHeader):
                        header = message
                        replicas.load.started(header)
                        continue
                    assert isinstance(message, ChatPiece | TextPiece)
                    self._completion_tokens = message.completion_tokens
                    delivered = True
                    yield message.chunk  # type: ignore[misc]
                return
            except Exception as exc:
                if delivered or attempt == replicas.attempts or not _retryable(exc):
                    if delivered:
                        replicas.load.replica_failures += 1
                    where = f"replica {header.replica}" if header is not None else "the replica"
                    raise EngineError(f"{where} failed while generating: {type(exc).__name__}") from exc
                logger.warning("%s: %s failed before any output (%s); retrying", self._request.request_id, header, exc)
                replicas.load.retries += 1
                self._completion_tokens = 0
            finally:
                if not response.cancelled():
                    # Cancels the replica's task; a no-op for a call that has already finished.
                    response.cancel()
                if header is not None:
                    replicas.load.finished(header)
            await asyncio.sleep(replicas.retry_backoff * attempt)


class RayEngine:
    """Serves a deployment of :class:`~chunkwise.ray.EngineReplica` behind ``handle``.

    ``validator`` is a local engine on the same model file, used only to prepare (validate and count)
    requests; it never generates. Example::

        engine = RayEngine(handle, LlamaCppEngine(n_ctx=2048, n_threads=1))
        app = create_app(engine, settings)
    """

    def __init__(
        self,
        handle: Any,
        validator: Engine,
        *,
        load: DeploymentLoad | None = None,
        attempts: int = 3,
        retry_backoff: float = 0.2,
    ) -> None:
        self._validator = validator
        #: The replicas serve the validator's model file, so its id and context are the deployment's.
        self.model_id: str = validator.model_id
        self.context_length: int = validator.context_length
        self.load = load or DeploymentLoad()
        self._replicas = _Replicas(handle, self.load, attempts, retry_backoff)

    def _generation(
        self, endpoint: Endpoint, body: Any, prompt: str, *, request_id: str, created: int, prompt_tokens: int
    ) -> RayGeneration[Any]:
        request = ReplicaRequest(
            endpoint=endpoint,
            body=msgspec.json.encode(body),
            request_id=request_id,
            created=created,
            prompt=prompt[:PREFIX_CHARS],
        )
        return RayGeneration(self._replicas, request, prompt_tokens=prompt_tokens)

    def prepare_chat(
        self, request: ChatCompletionRequest, *, request_id: str, created: int
    ) -> RayGeneration[ChatCompletionChunk]:
        prepared = self._validator.prepare_chat(request, request_id=request_id, created=created)
        prompt = "\n".join(str(message.content) for message in request.messages)
        return self._generation(
            "chat", request, prompt, request_id=request_id, created=created, prompt_tokens=prepared.prompt_tokens
        )

    def prepare_completion(
        self, request: CompletionRequest, *, request_id: str, created: int
    ) -> RayGeneration[Completion]:
        prepared = self._validator.prepare_completion(request, request_id=request_id, created=created)
        prompt = request.prompt if isinstance(request.prompt, str) else str(request.prompt)
        return self._generation(
            "completions", request, prompt, request_id=request_id, created=created, prompt_tokens=prepared.prompt_tokens
        )

    def close(self) -> None:
        self._validator.close()
