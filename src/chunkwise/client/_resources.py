"""The endpoint namespaces: ``client.chat.completions`` and ``client.models``.

Each method builds a :class:`~chunkwise.client._calls.Call` and hands it to its client. The sync and
async classes differ only in their signatures (overloads on ``stream`` tell a type checker whether a
completion or a stream comes back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from ..types import ChatCompletion, Message, ModelList
from ._calls import Call, chat_request_body, read_model_list
from ._config import USE_CLIENT_DEFAULT, UseClientDefault
from ._guards import signed_guard_factory
from ._streaming import AsyncStream, Stream
from ._timeouts import Timeouts

if TYPE_CHECKING:
    from ._client import AsyncClient, Client

__all__ = ["AsyncChat", "AsyncChatCompletions", "AsyncModels", "Chat", "ChatCompletions", "Models"]

#: A message as a typed struct (``UserMessage(content="hi")``) or as its JSON-like dict.
MessageParam = Message | Mapping[str, Any]
TimeoutParam = Timeouts | float | None | UseClientDefault


def _chat_call(
    client: Client | AsyncClient,
    *,
    model: str,
    messages: Iterable[MessageParam],
    stream: bool,
    timeout: TimeoutParam,
    max_retries: int | UseClientDefault,
    extra_headers: Mapping[str, str] | None,
    extra_body: Mapping[str, Any] | None,
    params: Mapping[str, Any],
) -> Call:
    body = chat_request_body(model=model, messages=messages, stream=stream, params=params, extra_body=extra_body)
    return client._call(
        "POST",
        "chat/completions",
        body=body,
        streaming=stream,
        timeout=timeout,
        max_retries=max_retries,
        extra_headers=extra_headers,
        new_guard=None if client.verify_key is None else signed_guard_factory(body, client.verify_key),
    )


class ChatCompletions:
    """``client.chat.completions``."""

    def __init__(self, client: Client) -> None:
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
    ) -> ChatCompletion: ...

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
    ) -> Stream: ...

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
    ) -> ChatCompletion | Stream: ...

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
    ) -> ChatCompletion | Stream:
        """Create a chat completion; with ``stream=True``, a :class:`Stream` of its chunks.

        ``params`` are the other fields of :class:`~chunkwise.types.ChatCompletionRequest`
        (``max_tokens=16``, ``temperature=0``, ``stream_options={"include_usage": True}``, ...), as
        values or dicts; fields it does not know go in ``extra_body``. The stream is returned once
        its first chunk arrived, so that everything before it can be retried.
        """
        call = _chat_call(
            self._client,
            model=model,
            messages=messages,
            stream=stream,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            extra_body=extra_body,
            params=params,
        )
        if stream:
            return self._client._stream(call)
        return self._client._fetch(call, call.read_completion)


class AsyncChatCompletions:
    """``client.chat.completions`` of an :class:`AsyncClient`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @overload
    async def create(
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
    ) -> ChatCompletion: ...

    @overload
    async def create(
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
    ) -> AsyncStream: ...

    @overload
    async def create(
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
    ) -> ChatCompletion | AsyncStream: ...

    async def create(
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
    ) -> ChatCompletion | AsyncStream:
        """Create a chat completion; with ``stream=True``, an :class:`AsyncStream` of its chunks.

        Takes the same arguments as :meth:`ChatCompletions.create`.
        """
        call = _chat_call(
            self._client,
            model=model,
            messages=messages,
            stream=stream,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            extra_body=extra_body,
            params=params,
        )
        if stream:
            return await self._client._stream(call)
        return await self._client._fetch(call, call.read_completion)


class Chat:
    def __init__(self, client: Client) -> None:
        self.completions = ChatCompletions(client)


class AsyncChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = AsyncChatCompletions(client)


class Models:
    """``client.models``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self, *, timeout: TimeoutParam = USE_CLIENT_DEFAULT, max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT
    ) -> ModelList:
        """The models the server offers (``GET /models``)."""
        call = self._client._call("GET", "models", timeout=timeout, max_retries=max_retries)
        return self._client._fetch(call, read_model_list)


class AsyncModels:
    """``client.models`` of an :class:`AsyncClient`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(
        self, *, timeout: TimeoutParam = USE_CLIENT_DEFAULT, max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT
    ) -> ModelList:
        """The models the server offers (``GET /models``)."""
        call = self._client._call("GET", "models", timeout=timeout, max_retries=max_retries)
        return await self._client._fetch(call, read_model_list)
