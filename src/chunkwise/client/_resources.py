"""The endpoints: ``client.chat.completions``, ``client.confidential.chat.completions``, ``client.models``,
``client.responses`` and ``client.messages``.

One implementation serves plain and confidential, sync and async. :class:`ChatCompletionsResource` builds
the call (plain, signed, or confidential) and hands it to its client, the requester, which does the I/O
and returns a value (``Client``) or a coroutine of it (``AsyncClient``). The public classes below only
bind the types: overloads on ``stream`` tell a type checker whether a completion or a stream comes back,
and the client's type parameters whether it is awaited.

The other dialects (:class:`ResponsesResource`, :class:`MessagesResource`) build their calls the same way;
their public classes hand them the requester's two generic requests (``_read`` and ``_stream``) bound to the
dialect's reader and stream type, which tells a type checker what comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeAlias, TypeVar, overload

import httpx
import msgspec

from ..dialects import MessageParam as AnthropicMessageParam
from ..dialects import MessagesRequest, MessagesResponse, ResponseObject, ResponsesRequest
from ..types import ChatCompletion, Message, ModelList
from ._calls import Call, RequestOptions, chat_request_body, request_body
from ._confidential import ConfidentialExchange
from ._config import USE_CLIENT_DEFAULT, UseClientDefault
from ._dialect_streams import (
    AsyncMessagesStream,
    AsyncResponsesStream,
    MessagesStream,
    ResponsesStream,
    read_message,
    read_response,
)
from ._guards import signed_guard_factory
from ._streaming import AsyncStream, Stream
from ._timeouts import Timeouts

if TYPE_CHECKING:
    from ._client import AsyncClient, Client, NewCall, _BaseClient

__all__ = [
    "AsyncChat",
    "AsyncChatCompletions",
    "AsyncConfidential",
    "AsyncConfidentialChat",
    "AsyncConfidentialChatCompletions",
    "AsyncMessages",
    "AsyncModels",
    "AsyncResponses",
    "Chat",
    "ChatCompletions",
    "ChatCompletionsResource",
    "Confidential",
    "ConfidentialChat",
    "ConfidentialChatCompletions",
    "Messages",
    "MessagesResource",
    "Models",
    "ModelsResource",
    "Responses",
    "ResponsesResource",
]

T = TypeVar("T")
CompletionT = TypeVar("CompletionT")
StreamT = TypeVar("StreamT")
ModelListT = TypeVar("ModelListT")
FinalT = TypeVar("FinalT")

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
        options = RequestOptions(timeout, max_retries, extra_headers)

        def new_call() -> Call:
            body = chat_request_body(
                model=model, messages=messages, stream=stream, params=params, extra_body=extra_body
            )
            if self._confidential:
                return ConfidentialExchange(client, model=model, request=body, stream=stream).call(options)
            key = client.verify_key
            guard = None if key is None else signed_guard_factory(body, key)
            return client._call("POST", "chat/completions", options, body=body, streaming=stream, new_guard=guard)

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
            partial(self._client._call, "GET", "models", RequestOptions(timeout, max_retries))
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


# --- the other dialects -----------------------------------------------------------------------------------


class _DialectResource(Generic[FinalT, StreamT]):
    """What ``client.responses`` and ``client.messages`` share: a call built from ``create``'s arguments."""

    _path: ClassVar[str]
    _request_type: ClassVar[type[msgspec.Struct]]
    _what: ClassVar[str]

    def __init__(
        self,
        client: _BaseClient[Any, Any, Any, Any, Any],
        complete: Callable[[NewCall], FinalT],
        open_stream: Callable[[NewCall], StreamT],
    ) -> None:
        self._client = client
        self._complete = complete
        self._open_stream = open_stream

    def _base_headers(self) -> httpx.Headers | None:
        """The headers a request starts from, when not the client's."""
        return None

    def _create(
        self,
        fields: dict[str, Any],
        *,
        stream: bool,
        options: RequestOptions,
        extra_body: Mapping[str, Any] | None,
        params: Mapping[str, Any],
    ) -> FinalT | StreamT:
        client = self._client

        def new_call() -> Call:
            body = request_body(
                self._request_type, self._what, fields, stream=stream, params=params, extra_body=extra_body
            )
            return client._call(
                "POST", self._path, options, body=body, streaming=stream, base_headers=self._base_headers()
            )

        return self._open_stream(new_call) if stream else self._complete(new_call)


class ResponsesResource(_DialectResource[FinalT, StreamT]):
    """``client.responses``: OpenAI's Responses API (``POST /responses``) on any client."""

    _path = "responses"
    _request_type = ResponsesRequest
    _what = "Responses"

    @overload
    def create(
        self,
        *,
        model: str,
        input: str | Iterable[Any],
        stream: Literal[False] = False,
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> FinalT: ...

    @overload
    def create(
        self,
        *,
        model: str,
        input: str | Iterable[Any],
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
        input: str | Iterable[Any],
        stream: bool,
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> FinalT | StreamT: ...

    def create(
        self,
        *,
        model: str,
        input: str | Iterable[Any],
        stream: bool = False,
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> FinalT | StreamT:
        """Create a response; with ``stream=True``, a :class:`ResponsesStream` of its typed events.

        ``input`` is a string or a list of items (messages, ``function_call``, ``function_call_output``) as dicts
        or structs; ``params`` are the other fields of :class:`~chunkwise.dialects.ResponsesRequest`
        (``instructions``, ``max_output_tokens``, ``tools``, ``text``, ``previous_response_id``, ...). Deadlines,
        retries and errors are those of chat: the stream is returned once its first event arrived. A
        ``failed`` response answered whole raises :class:`~chunkwise.UnexpectedResponseError`.
        """
        items: str | list[Any] = input if isinstance(input, str) else list(input)
        return self._create(
            {"model": model, "input": items},
            stream=stream,
            options=RequestOptions(timeout, max_retries, extra_headers),
            extra_body=extra_body,
            params=params,
        )


class MessagesResource(_DialectResource[FinalT, StreamT]):
    """``client.messages``: Anthropic's Messages API (``POST /messages``) on any client.

    Requests carry ``anthropic-version`` and the key in ``x-api-key`` as well as ``Authorization`` (only
    ``x-api-key`` to Anthropic itself); see :meth:`ClientConfig.messages_headers` for why.
    """

    _path = "messages"
    _request_type = MessagesRequest
    _what = "Messages"

    def _base_headers(self) -> httpx.Headers:
        return self._client._config.messages_headers()

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[AnthropicMessageParam | Mapping[str, Any]],
        max_tokens: int,
        stream: Literal[False] = False,
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> FinalT: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[AnthropicMessageParam | Mapping[str, Any]],
        max_tokens: int,
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
        messages: Iterable[AnthropicMessageParam | Mapping[str, Any]],
        max_tokens: int,
        stream: bool,
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> FinalT | StreamT: ...

    def create(
        self,
        *,
        model: str,
        messages: Iterable[AnthropicMessageParam | Mapping[str, Any]],
        max_tokens: int,
        stream: bool = False,
        timeout: TimeoutParam = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> FinalT | StreamT:
        """Create a message; with ``stream=True``, a :class:`MessagesStream` of its typed events.

        ``max_tokens`` is required, as Anthropic requires it. ``params`` are the other fields of
        :class:`~chunkwise.dialects.MessagesRequest` (``system``, ``tools``, ``tool_choice``, ``stop_sequences``,
        ``temperature``, ...). Deadlines, retries and errors are those of chat; Anthropic's error shape maps to
        the same status errors, and the stream is returned once its first event arrived.
        """
        return self._create(
            {"model": model, "messages": list(messages), "max_tokens": max_tokens},
            stream=stream,
            options=RequestOptions(timeout, max_retries, extra_headers),
            extra_body=extra_body,
            params=params,
        )


class Responses(ResponsesResource[ResponseObject, ResponsesStream]):
    """``client.responses``."""

    def __init__(self, client: Client) -> None:
        super().__init__(
            client,
            partial(client._read, read=read_response),
            partial(client._stream, open_stream=ResponsesStream._open),
        )


class AsyncResponses(ResponsesResource[Async[ResponseObject], Async[AsyncResponsesStream]]):
    """``client.responses`` of an :class:`~chunkwise.AsyncClient`."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__(
            client,
            partial(client._read, read=read_response),
            partial(client._stream, open_stream=AsyncResponsesStream._open),
        )


class Messages(MessagesResource[MessagesResponse, MessagesStream]):
    """``client.messages``."""

    def __init__(self, client: Client) -> None:
        super().__init__(
            client, partial(client._read, read=read_message), partial(client._stream, open_stream=MessagesStream._open)
        )


class AsyncMessages(MessagesResource[Async[MessagesResponse], Async[AsyncMessagesStream]]):
    """``client.messages`` of an :class:`~chunkwise.AsyncClient`."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__(
            client,
            partial(client._read, read=read_message),
            partial(client._stream, open_stream=AsyncMessagesStream._open),
        )
