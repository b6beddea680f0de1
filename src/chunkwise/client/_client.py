"""``Client`` and ``AsyncClient``.

:class:`_BaseClient` is everything that does no I/O: the constructor, the configuration and the calls. It is
also the requester that the endpoints (:mod:`._resources`) hold: they build a call and ask their client for
a completion, a stream or the model list. Each client adds only its I/O: the retry loop (sleep or ``await``
sleep), sending an attempt, and those three requests, which return values (``Client``) or coroutines of
them (``AsyncClient``); the type parameters tell a type checker which.
"""

from __future__ import annotations

import random
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping
from functools import cached_property, partial
from typing import Generic, TypeVar, Unpack

import anyio
import httpx

from .._closing import AsyncClosing, Closing
from .._errors import APIError, ClientClosedError, ClientConfigError
from ..signing import decode_public_key
from ..types import ChatCompletion, ModelList
from ._calls import Call, CallRequest, RequestOptions, read_model_list
from ._config import DEFAULT_MAX_RETRIES, ClientConfig
from ._resources import (
    Async,
    AsyncChat,
    AsyncConfidential,
    AsyncMessages,
    AsyncModels,
    AsyncResponses,
    Chat,
    Confidential,
    Messages,
    Models,
    Responses,
)
from ._retries import Backoff
from ._streaming import AsyncStream, Stream
from ._timeouts import Deadlines, Timeouts

__all__ = ["AsyncClient", "Client"]

R = TypeVar("R")
HttpT = TypeVar("HttpT")
TransportT = TypeVar("TransportT")
CompletionT = TypeVar("CompletionT")
StreamT = TypeVar("StreamT")
ModelListT = TypeVar("ModelListT")

#: Builds the call when a request starts (so that an async request raises when awaited, not when made).
NewCall = Callable[[], Call]

#: Room for many concurrent streams; httpx's own default (100) would queue the 101st.
_DEFAULT_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)


class _BaseClient(Generic[HttpT, TransportT, CompletionT, StreamT, ModelListT]):
    #: The httpx client class a client opens when none is passed in.
    _http_type: Callable[..., HttpT]

    def __init__(
        self,
        *,
        base_url: str | httpx.URL | None = None,
        api_key: str | None = None,
        timeout: Timeouts | float | None = Timeouts(),  # noqa: B008 (frozen)
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: Backoff = Backoff(),  # noqa: B008 (frozen)
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        http_client: HttpT | None = None,
        transport: TransportT | None = None,
        verify_key: str | bytes | None = None,
    ) -> None:
        if http_client is not None and transport is not None:
            raise ClientConfigError("pass http_client or transport, not both")
        self._config = ClientConfig.resolve(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            default_headers=default_headers,
            default_query=default_query,
        )
        try:
            #: The pinned Ed25519 public key every answer must be signed by, if any.
            self.verify_key: bytes | None = None if verify_key is None else decode_public_key(verify_key)
        except ValueError as exc:
            raise ClientConfigError(f"verify_key: {exc}") from None
        self._owns_http = http_client is None
        self._http: HttpT = self._open_http(transport) if http_client is None else http_client
        self._closed = False
        self._rng = random.Random()

    @property
    def base_url(self) -> httpx.URL:
        return self._config.base_url

    @property
    def timeouts(self) -> Timeouts:
        return self._config.timeouts

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    def _call(self, method: str, path: str, options: RequestOptions, **request: Unpack[CallRequest]) -> Call:
        if self._closed:
            raise ClientClosedError(f"{type(self).__name__} was used after it was closed")
        return Call(self._config, self._rng, options, method, path, **request)

    def _open_http(self, transport: TransportT | None) -> HttpT:
        return self._http_type(transport=transport, limits=_DEFAULT_LIMITS)

    @abstractmethod
    def _complete(self, new_call: NewCall) -> CompletionT: ...

    @abstractmethod
    def _open_stream(self, new_call: NewCall) -> StreamT:
        """The stream, once its first chunk arrived, so that everything before it can be retried."""

    @abstractmethod
    def _list_models(self, new_call: NewCall) -> ModelListT: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self.base_url)!r})"


class Client(_BaseClient[httpx.Client, httpx.BaseTransport, ChatCompletion, Stream, ModelList], Closing):
    """A client for any OpenAI-compatible chat-completions server.

    >>> with chunkwise.Client() as client:  # CHUNKWISE_BASE_URL, else http://127.0.0.1:8000/v1
    ...     completion = client.chat.completions.create(
    ...         model="HuggingFaceTB/SmolLM2-135M-Instruct",
    ...         messages=[{"role": "user", "content": "Hi"}],
    ...         max_tokens=16,
    ...     )
    ...     print(completion.choices[0].message.content)

    ``api_key`` defaults to ``CHUNKWISE_API_KEY``, then ``ATOMASDK_BEARER_AUTH``, then
    ``OPENAI_API_KEY``. ``timeout`` is a :class:`Timeouts` (a number sets connect, first-chunk and
    idle at once; ``None`` disables them). Pass ``http_client`` to reuse an ``httpx.Client`` (it is
    not closed by :meth:`close`), or ``transport`` to build the client on a transport of your own.
    An invalid setting raises a :class:`~chunkwise.ClientConfigError` (a ``ValueError``).

    ``verify_key`` pins a server's Ed25519 public key (``chunkwise serve --signing-key-file``, ``GET
    /signing-key``): every answer must then be signed by it and chained, or reading it raises a
    :class:`~chunkwise.VerificationError`. ``client.confidential.chat.completions`` runs confidential chat
    (end-to-end encrypted) against chunkwise or the Atoma cloud. ``client.responses`` (OpenAI's Responses API)
    and ``client.messages`` (Anthropic's Messages API) speak the other dialects, with the same deadlines,
    retries and errors; ``base_url`` ends in ``/v1`` for them too (``https://api.anthropic.com/v1``).
    """

    _http_type = httpx.Client
    chat = cached_property(Chat)
    models = cached_property(Models)
    confidential = cached_property(Confidential)
    responses = cached_property(Responses)
    messages = cached_property(Messages)

    def _retrying(self, call: Call, attempt: Callable[[], R]) -> R:
        if call.body_from is not None:
            call.body = self._fetch(*call.body_from)
        while True:
            call.start_attempt()
            try:
                return attempt()
            except APIError as error:
                delay = call.delay_before_retry(error)
                if delay is None:
                    raise
            time.sleep(delay)

    def _send(self, call: Call) -> httpx.Response:
        request = call.build_request(self._http, self._config)
        with call.translating_errors():
            response = self._http.send(request, stream=True)
            call.headers_arrived()
            if not call.streams(response):
                assert isinstance(response.stream, httpx.SyncByteStream)
                response.stream = _DeadlineBoundBody(response.stream, call.deadlines)
                try:
                    response.read()
                finally:
                    response.close()
        return response

    def _fetch(self, call: Call, read: Callable[[httpx.Response], R]) -> R:
        return self._retrying(call, lambda: read(self._send(call)))

    def _read(self, new_call: NewCall, read: Callable[[Call, httpx.Response], R]) -> R:
        """Make the call and ``read`` its answer: any endpoint's whole-answer request."""
        call = new_call()
        return self._fetch(call, partial(read, call))

    def _stream(self, new_call: NewCall, open_stream: Callable[[httpx.Response, Call], R]) -> R:
        """Make the call and open its answer as a stream: any endpoint's stream request."""
        call = new_call()

        def attempt() -> R:
            response = self._send(call)
            if not call.streams(response):
                call.raise_unstreamable(response)
            return open_stream(response, call)

        return self._retrying(call, attempt)

    def _complete(self, new_call: NewCall) -> ChatCompletion:
        return self._read(new_call, Call.read_completion)

    def _open_stream(self, new_call: NewCall) -> Stream:
        return self._stream(new_call, Stream._open)

    def _list_models(self, new_call: NewCall) -> ModelList:
        return self._fetch(new_call(), read_model_list)

    def close(self) -> None:
        """Close the connections, unless the ``httpx.Client`` was passed in. Safe to call more than once."""
        self._closed = True
        if self._owns_http:
            self._http.close()


class _DeadlineBoundBody(httpx.SyncByteStream):
    """A body read that stops at the call's deadlines.

    httpx's sync API bounds each read, not the whole body, so a server that drips a byte now and then would
    outlast every deadline: the clock is checked after each read, as the async client's cancel scope would.
    """

    def __init__(self, body: httpx.SyncByteStream, deadlines: Deadlines) -> None:
        self._body = body
        self._deadlines = deadlines

    def __iter__(self) -> Iterator[bytes]:
        for data in self._body:
            expired = self._deadlines.passed(self._deadlines.now())
            if expired is not None:
                raise expired
            yield data

    def close(self) -> None:
        self._body.close()


class AsyncClient(
    _BaseClient[
        httpx.AsyncClient, httpx.AsyncBaseTransport, Async[ChatCompletion], Async[AsyncStream], Async[ModelList]
    ],
    AsyncClosing,
):
    """The async twin of :class:`Client`, on ``httpx.AsyncClient``.

    >>> async with chunkwise.AsyncClient() as client:
    ...     stream = await client.chat.completions.create(
    ...         model="HuggingFaceTB/SmolLM2-135M-Instruct",
    ...         messages=[{"role": "user", "content": "Hi"}],
    ...         stream=True,
    ...     )
    ...     async with stream:
    ...         async for text in stream.iter_text():
    ...             print(text, end="")
    """

    _http_type = httpx.AsyncClient
    chat = cached_property(AsyncChat)
    models = cached_property(AsyncModels)
    confidential = cached_property(AsyncConfidential)
    responses = cached_property(AsyncResponses)
    messages = cached_property(AsyncMessages)

    async def _retrying(self, call: Call, attempt: Callable[[], Awaitable[R]]) -> R:
        if call.body_from is not None:
            call.body = await self._fetch(*call.body_from)
        while True:
            call.start_attempt()
            try:
                return await attempt()
            except APIError as error:
                delay = call.delay_before_retry(error)
                if delay is None:
                    raise
            await anyio.sleep(delay)

    async def _send(self, call: Call) -> httpx.Response:
        request = call.build_request(self._http, self._config)
        deadlines = call.deadlines
        with call.translating_errors():
            # httpx's timeouts are only a backstop here: a cancel scope ends at the deadline itself.
            with deadlines.cancel_scope() as scope:
                response = await self._http.send(request, stream=True)
            if scope.cancelled_caught:
                raise deadlines.expired()
            call.headers_arrived()
            if not call.streams(response):
                try:
                    with deadlines.cancel_scope() as scope:
                        await response.aread()
                    if scope.cancelled_caught:
                        raise deadlines.expired()
                finally:
                    with anyio.CancelScope(shield=True):
                        await response.aclose()
        return response

    async def _fetch(self, call: Call, read: Callable[[httpx.Response], R]) -> R:
        async def attempt() -> R:
            return read(await self._send(call))

        return await self._retrying(call, attempt)

    async def _read(self, new_call: NewCall, read: Callable[[Call, httpx.Response], R]) -> R:
        call = new_call()
        return await self._fetch(call, partial(read, call))

    async def _stream(self, new_call: NewCall, open_stream: Callable[[httpx.Response, Call], Awaitable[R]]) -> R:
        call = new_call()

        async def attempt() -> R:
            response = await self._send(call)
            if not call.streams(response):
                call.raise_unstreamable(response)
            return await open_stream(response, call)

        return await self._retrying(call, attempt)

    async def _complete(self, new_call: NewCall) -> ChatCompletion:
        return await self._read(new_call, Call.read_completion)

    async def _open_stream(self, new_call: NewCall) -> AsyncStream:
        return await self._stream(new_call, AsyncStream._open)

    async def _list_models(self, new_call: NewCall) -> ModelList:
        return await self._fetch(new_call(), read_model_list)

    async def aclose(self) -> None:
        """Close the connections, unless the ``httpx.AsyncClient`` was passed in. Safe to call more than once."""
        self._closed = True
        if self._owns_http:
            await self._http.aclose()
