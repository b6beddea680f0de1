"""The contract between the server and a model engine.

An engine only ever yields chunks. The server never sees tokens, threads or llama.cpp: it asks the engine
to *prepare* a request (cheap, synchronous, raises :class:`InvalidRequestError` for anything it cannot
honour, such as a prompt longer than the context), queues the prepared generation until the engine has
room for it, then iterates :meth:`Generation.stream`. A non-streaming response is the reassembly of the same
chunks, so streaming and non-streaming cannot disagree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from .._errors import APIStatusError
from ..types import ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest

__all__ = ["BatchingEngine", "Engine", "Generation", "InvalidRequestError", "TextGeneration"]


class InvalidRequestError(APIStatusError):
    """The request is well-formed JSON but cannot be served; the server answers ``status`` in the error shape."""

    status = 400
    type = "invalid_request_error"


@runtime_checkable
class Generation(Protocol):
    """One prepared chat request. ``stream`` may be iterated once.

    Closing the iterator early (``aclose``, which the server does when the client disconnects) stops the
    model within one token. ``completion_tokens`` then counts only the tokens actually made.
    """

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...

    def stream(self) -> AsyncIterator[ChatCompletionChunk]: ...


@runtime_checkable
class TextGeneration(Protocol):
    """One prepared legacy-completions request; the same rules as :class:`Generation`."""

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...

    def stream(self) -> AsyncIterator[Completion]: ...


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

    def prepare_chat(self, request: ChatCompletionRequest, *, request_id: str, created: int) -> Generation:
        """Validate and tokenize; raise :class:`InvalidRequestError` for what cannot be honoured."""
        ...

    def prepare_completion(self, request: CompletionRequest, *, request_id: str, created: int) -> TextGeneration: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchingEngine(Protocol):
    """An engine that decodes up to ``max_running`` sequences at once (a request with ``n=4`` is 4)."""

    @property
    def max_running(self) -> int: ...
