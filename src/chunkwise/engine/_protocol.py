"""The contract between the server and a model engine.

An engine only ever yields chunks. The server never sees tokens, threads or llama.cpp: it asks the engine
to *prepare* a request (cheap, synchronous, raises :class:`InvalidRequestError` for anything it cannot
honour, such as a prompt longer than the context), queues the prepared generation until the engine has
room for it, then iterates :meth:`Generation.stream`. A non-streaming response is the reassembly of the same
chunks, so streaming and non-streaming cannot disagree.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from .._errors import APIStatusError
from ..types import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    CompletionUsage,
    DetokenizeRequest,
    DetokenizeResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    TokenizeRequest,
    TokenizeResponse,
)

__all__ = [
    "BatchingEngine",
    "Embedder",
    "EmbeddingJob",
    "Engine",
    "Generation",
    "InvalidRequestError",
    "StreamOnce",
    "TextGeneration",
    "TokenizingEngine",
    "generation_usage",
    "usage_chunk",
]


class InvalidRequestError(APIStatusError):
    """The request is well-formed JSON but cannot be served; the server answers ``status`` in the error shape."""

    status = 400
    type = "invalid_request_error"


ChunkT = TypeVar("ChunkT", ChatCompletionChunk, Completion)
ChunkT_co = TypeVar("ChunkT_co", ChatCompletionChunk, Completion, covariant=True)


@runtime_checkable
class Generation(Protocol[ChunkT_co]):
    """One prepared request: chat (``Generation[ChatCompletionChunk]``) or legacy text (:class:`TextGeneration`).

    ``stream`` may be iterated once. :meth:`aclose` stops the model within one token and frees what the
    generation holds; callers await it in every case (the server does, under a cancel shield, when the
    client disconnects), and it is safe before, during or after streaming, and more than once.
    ``completion_tokens`` then counts only the tokens actually made; :func:`usage_chunk` reports them.
    """

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...

    def stream(self) -> AsyncIterator[ChunkT_co]: ...

    async def aclose(self) -> None: ...


class StreamOnce(Generic[ChunkT]):
    """What every :class:`Generation` does alike: ``stream`` once, ``aclose`` at any time, count what it made.

    A subclass writes ``_stream``, an async generator whose ``finally`` stops the model: :meth:`aclose` closes
    it, as a caller that stops iterating early must (an ``async for`` that breaks off leaves it open).
    """

    _started = False
    _chunks: AsyncGenerator[ChunkT, None] | None = None
    #: What :attr:`completion_tokens` reports; ``_stream`` brings it up to date as it delivers.
    _completion_tokens = 0

    @property
    def completion_tokens(self) -> int:
        """Generated tokens delivered so far (all of them once the stream has ended)."""
        return self._completion_tokens

    def stream(self) -> AsyncIterator[ChunkT]:
        if self._started:
            raise RuntimeError("A generation's stream can be iterated only once")
        self._started = True
        self._chunks = self._stream()
        return self._chunks

    async def aclose(self) -> None:
        self._started = True  # a closed generation cannot be streamed any more
        if self._chunks is not None:
            await self._chunks.aclose()

    def _stream(self) -> AsyncGenerator[ChunkT, None]:
        raise NotImplementedError


@runtime_checkable
class TextGeneration(Generation[Completion], Protocol):
    """One prepared legacy-completions request: a :class:`Generation` of :class:`~chunkwise.types.Completion`."""


def generation_usage(generation: Generation[Any]) -> CompletionUsage:
    """The tokens ``generation`` read and made so far (all of them once its stream has ended)."""
    prompt, completion = generation.prompt_tokens, generation.completion_tokens
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def usage_chunk(kind: type[ChunkT], generation: Generation[ChunkT], *, id: str, created: int, model: str) -> ChunkT:
    """The chunk that ends a stream asked for with ``stream_options.include_usage``: no choices, only usage."""
    return kind(id=id, created=created, model=model, choices=[], usage=generation_usage(generation))


@runtime_checkable
class Engine(Protocol):
    """A model that turns requests into chunk streams.

    An engine that runs several generations at once also implements :class:`BatchingEngine`; otherwise the
    server runs one at a time.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def context_length(self) -> int: ...

    def prepare_chat(
        self, request: ChatCompletionRequest, *, request_id: str, created: int
    ) -> Generation[ChatCompletionChunk]:
        """Validate and tokenize; raise :class:`InvalidRequestError` for what cannot be honoured."""
        ...

    def prepare_completion(self, request: CompletionRequest, *, request_id: str, created: int) -> TextGeneration: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchingEngine(Protocol):
    """An engine that decodes up to ``max_running`` sequences at once (a request with ``n=4`` is 4)."""

    @property
    def max_running(self) -> int: ...


@runtime_checkable
class TokenizingEngine(Protocol):
    """An engine that also answers ``/tokenize`` and ``/detokenize`` with its model's vocabulary."""

    def tokenize_request(self, request: TokenizeRequest) -> TokenizeResponse:
        """Raise :class:`InvalidRequestError` for what cannot be tokenized."""
        ...

    def detokenize_request(self, request: DetokenizeRequest) -> DetokenizeResponse: ...


class EmbeddingJob(Protocol):
    """One checked embedding request, ready to run: its inputs' token count is known."""

    @property
    def prompt_tokens(self) -> int: ...


@runtime_checkable
class Embedder(Protocol):
    """A model that turns texts into vectors, apart from the chat engine (its own context and thread)."""

    @property
    def model_id(self) -> str: ...

    def prepare(self, request: EmbeddingRequest) -> EmbeddingJob:
        """Check and tokenize; raise :class:`InvalidRequestError` for what cannot be served."""
        ...

    async def embed(self, job: Any) -> EmbeddingResponse:
        """The answer for a job :meth:`prepare` made."""
        ...

    def close(self) -> None: ...
