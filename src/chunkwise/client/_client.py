"""``Client`` and ``AsyncClient``.

:class:`_BaseClient` holds the configuration and everything that does no I/O; each client adds only
its I/O loop: the retry loop (sleep or ``await`` sleep), sending an attempt, and opening a stream.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Self, TypeVar

import anyio
import httpx

from .._errors import APIError, ClientClosedError
from ..signing import decode_public_key
from ._calls import Call
from ._confidential import AsyncConfidential, Confidential
from ._config import DEFAULT_MAX_RETRIES, USE_CLIENT_DEFAULT, ClientConfig, UseClientDefault
from ._guards import ResponseGuard
from ._resources import AsyncChat, AsyncModels, Chat, Models
from ._retries import Backoff
from ._streaming import AsyncStream, Stream
from ._timeouts import Timeouts

__all__ = ["AsyncClient", "Client"]

R = TypeVar("R")

#: Room for many concurrent streams; httpx's own default (100) would queue the 101st.
_DEFAULT_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)


class _BaseClient:
    _http: httpx.Client | httpx.AsyncClient

    def __init__(
        self,
        *,
        base_url: str | httpx.URL | None,
        api_key: str | None,
        timeout: Timeouts | float | None,
        max_retries: int,
        backoff: Backoff,
        default_headers: Mapping[str, str] | None,
        default_query: Mapping[str, str] | None,
        verify_key: str | bytes | None,
        injected: bool,
    ) -> None:
        self._config = ClientConfig.resolve(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            default_headers=default_headers,
            default_query=default_query,
        )
        #: The pinned Ed25519 public key every answer must be signed by, if any.
        self.verify_key: bytes | None = None if verify_key is None else decode_public_key(verify_key)
        self._owns_http = not injected
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

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        streaming: bool = False,
        timeout: Timeouts | float | None | UseClientDefault = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        new_guard: Callable[[], ResponseGuard] | None = None,
    ) -> Call:
        if self._closed:
            raise ClientClosedError(f"{type(self).__name__} was used after it was closed")
        return Call(
            self._config,
            self._rng,
            method=method,
            path=path,
            body=body,
            streaming=streaming,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            new_guard=new_guard,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self.base_url)!r})"


class Client(_BaseClient):
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

    ``verify_key`` pins a server's Ed25519 public key (``chunkwise serve --signing-key-file``, ``GET
    /signing-key``): every answer must then be signed by it and chained, or reading it raises a
    :class:`~chunkwise.VerificationError`. ``client.confidential.chat.completions`` runs confidential chat
    (end-to-end encrypted) against chunkwise or the Atoma cloud.
    """

    _http: httpx.Client

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
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        verify_key: str | bytes | None = None,
    ) -> None:
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            default_headers=default_headers,
            default_query=default_query,
            verify_key=verify_key,
            injected=http_client is not None,
        )
        self._http = http_client or httpx.Client(transport=transport, limits=_DEFAULT_LIMITS)
        self.chat = Chat(self)
        self.models = Models(self)
        self.confidential = Confidential(self)

    def _retrying(self, call: Call, attempt: Callable[[], R]) -> R:
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
                try:
                    response.read()
                finally:
                    response.close()
        return response

    def _fetch(self, call: Call, read: Callable[[httpx.Response], R]) -> R:
        return self._retrying(call, lambda: read(self._send(call)))

    def _stream(self, call: Call) -> Stream:
        def attempt() -> Stream:
            response = self._send(call)
            if not call.streams(response):
                call.raise_unstreamable(response)
            return Stream._open(response, call.deadlines, call.guard())

        return self._retrying(call, attempt)

    def close(self) -> None:
        """Close the connections, unless the ``httpx.Client`` was passed in. Safe to call more than once."""
        self._closed = True
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(_BaseClient):
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

    _http: httpx.AsyncClient

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
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify_key: str | bytes | None = None,
    ) -> None:
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            default_headers=default_headers,
            default_query=default_query,
            verify_key=verify_key,
            injected=http_client is not None,
        )
        self._http = http_client or httpx.AsyncClient(transport=transport, limits=_DEFAULT_LIMITS)
        self.chat = AsyncChat(self)
        self.models = AsyncModels(self)
        self.confidential = AsyncConfidential(self)

    async def _retrying(self, call: Call, attempt: Callable[[], Awaitable[R]]) -> R:
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

    async def _stream(self, call: Call) -> AsyncStream:
        async def attempt() -> AsyncStream:
            response = await self._send(call)
            if not call.streams(response):
                call.raise_unstreamable(response)
            return await AsyncStream._open(response, call.deadlines, call.guard())

        return await self._retrying(call, attempt)

    async def aclose(self) -> None:
        """Close the connections, unless the ``httpx.AsyncClient`` was passed in. Safe to call more than once."""
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()
