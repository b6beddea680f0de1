"""The endpoints: ``client.chat.completions``, ``client.confidential.chat.completions`` and ``client.models``.

One implementation serves plain and confidential, sync and async. :class:`ChatCompletionsResource` builds
the call (plain, signed, or confidential) and hands it to its client, the requester, which does the I/O
and returns a value (``Client``) or a coroutine of it (``AsyncClient``). The public classes below only
bind the types: overloads on ``stream`` tell a type checker whether a completion or a stream comes back,
and the client's type parameters whether it is awaited.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypeVar, overload

from ..types import ChatCompletion, Message, ModelList
from ._calls import Call, chat_request_body
from ._confidential import ConfidentialExchange
from ._config import USE_CLIENT_DEFAULT, UseClientDefault
from ._guards import signed_guard_factory
from ._streaming import AsyncStream, Stream
from ._timeouts import Timeouts

if TYPE_CHECKING:
    from ._client import AsyncClient, Client, _BaseClient

__all__ = [
    "AsyncChat",
    "AsyncChatCompletions",
    "AsyncConfidential",
    "AsyncConfidentialChat",
    "AsyncConfidentialChatCompletions",
    "AsyncModels",
    "Chat",
    "ChatCompletions",
    "ChatCompletionsResource",
    "Confidential",
    "ConfidentialChat",
    "ConfidentialChatCompletions",
    "Models",
    "ModelsResource",
]

T = TypeVar("T")
CompletionT = TypeVar("CompletionT")
StreamT = TypeVar("StreamT")
ModelListT = TypeVar("ModelListT")

#: What an ``AsyncClient`` request returns: a coroutine, as an ``async def`` would.
Async: TypeAlias = Coroutine[Any, Any, T]
#: A message as a typed struct (``UserMessage(content="hi")``) or as its JSON-like dict.
MessageParam = Message | Mapping[str, Any]
TimeoutParam = Timeouts | float | None | UseClientDefault


class ChatCompletionsResource(Generic[CompletionT, StreamT]):
    """``client.chat.completions`` for any client: ``CompletionT`` and ``StreamT`` are what its requests return."""

    #: Whether calls go to ``/confidential/chat/completions``, encrypted end to end.
    _confidential = False

    def __init__(self, client: _BaseClient[Any, Any, CompletionT, StreamT, Any]) -> None:
        self._client = client

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        stream: Literal[False] = False,
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> CompletionT: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        stream: Literal[True],
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> StreamT: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        stream: bool,
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> CompletionT | StreamT: ...

    def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        stream: bool = False,
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> CompletionT | StreamT:
        """Create a chat completion; with ``stream=True``, a :class:`~chunkwise.Stream` of its chunks.

        ``params`` are the other fields of :class:`~chunkwise.types.ChatCompletionRequest`
        (``max_tokens=16``, ``temperature=0``, ``stream_options={"include_usage": True}``, ...), as
        values or dicts; fields it does not know go in ``extra_body``. The stream is returned once
        its first chunk arrived, so that everything before it can be retried. On an ``AsyncClient``
        it returns a coroutine (``await`` it) and the stream is an :class:`~chunkwise.AsyncStream`.

        On ``client.confidential``, only the client and the node can read the request and the answer:
        every chunk is decrypted and checked (its hash, the chain of chunks, and with ``verify_key`` its
        signature); a chunk that fails raises a :class:`~chunkwise.VerificationError`.
        """
        client = self._client

        def new_call() -> Call:
            body = chat_request_body(
                model=model, messages=messages, stream=stream, params=params, extra_body=extra_body
            )
            if self._confidential:
                exchange = ConfidentialExchange(client, model=model, request=body, stream=stream)
                return exchange.call(timeout, max_retries, extra_headers)
            key = client.verify_key
            return client._call(
                "POST",
                "chat/completions",
                body=body,
                streaming=stream,
                timeout=timeout,
                max_retries=max_retries,
                extra_headers=extra_headers,
                new_guard=None if key is None else signed_guard_factory(body, key),
            )

        return client._open_stream(new_call) if stream else client._complete(new_call)


class ModelsResource(Generic[ModelListT]):
    """``client.models`` for any client."""

    def __init__(self, client: _BaseClient[Any, Any, Any, Any, ModelListT]) -> None:
        self._client = client

    def list(
        self, *, timeout: TimeoutParam = USE_CLIENT_DEFAULT, max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT
    ) -> ModelListT:
        """The models the server offers (``GET /models``)."""
        return self._client._list_models(
            partial(self._client._call, "GET", "models", timeout=timeout, max_retries=max_retries)
        )


class ChatCompletions(ChatCompletionsResource[ChatCompletion, Stream]):
    """``client.chat.completions``."""


class AsyncChatCompletions(ChatCompletionsResource[Async[ChatCompletion], Async[AsyncStream]]):
    """``client.chat.completions`` of an :class:`~chunkwise.AsyncClient`."""


class ConfidentialChatCompletions(ChatCompletionsResource[ChatCompletion, Stream]):
    """``client.confidential.chat.completions``: chat that only the client and the node can read."""

    _confidential = True


class AsyncConfidentialChatCompletions(ChatCompletionsResource[Async[ChatCompletion], Async[AsyncStream]]):
    """``client.confidential.chat.completions`` of an :class:`~chunkwise.AsyncClient`."""

    _confidential = True


class Models(ModelsResource[ModelList]):
    """``client.models``."""


class AsyncModels(ModelsResource[Async[ModelList]]):
    """``client.models`` of an :class:`~chunkwise.AsyncClient`."""


class Chat:
    def __init__(self, client: Client) -> None:
        self.completions = ChatCompletions(client)


class AsyncChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = AsyncChatCompletions(client)


class ConfidentialChat:
    def __init__(self, client: Client) -> None:
        self.completions = ConfidentialChatCompletions(client)


class AsyncConfidentialChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = AsyncConfidentialChatCompletions(client)


class Confidential:
    """``client.confidential``: the confidential (end-to-end encrypted) endpoints."""

    def __init__(self, client: Client) -> None:
        self.chat = ConfidentialChat(client)


class AsyncConfidential:
    def __init__(self, client: AsyncClient) -> None:
        self.chat = AsyncConfidentialChat(client)
