"""``client.confidential.chat.completions``: end-to-end encrypted chat, against chunkwise or the Atoma cloud.

One call is two requests: ``POST /nodes/lock`` for the node's X25519 key, then ``POST
/confidential/chat/completions`` with the encrypted request. The answer comes back as the same
:class:`~chunkwise.types.ChatCompletion` or :class:`~chunkwise.Stream` as a plain call, decrypted and
checked chunk by chunk by a :class:`~chunkwise.client._guards.ResponseGuard`. All of it but the two
sends is :class:`ConfidentialExchange`, shared by both clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx
import msgspec

from ..confidential import ClientSession, NodesCreateLockRequest, NodesCreateLockResponse
from ..signing import ChainVerifier, blake2b256, split_signed_json
from ..types import ChatCompletion
from ._calls import Call, chat_request_body
from ._config import USE_CLIENT_DEFAULT, UseClientDefault
from ._guards import ResponseGuard
from ._resources import MessageParam, TimeoutParam
from ._responses import decode_success
from ._streaming import AsyncStream, Stream

if TYPE_CHECKING:
    from ._client import AsyncClient, Client

__all__ = [
    "AsyncConfidential",
    "AsyncConfidentialChat",
    "AsyncConfidentialChatCompletions",
    "Confidential",
    "ConfidentialChat",
    "ConfidentialChatCompletions",
    "ConfidentialExchange",
]

_lock_decoder = msgspec.json.Decoder(NodesCreateLockResponse)
_raw_json_decoder = msgspec.json.Decoder(msgspec.Raw)


class ConfidentialExchange:
    """One confidential call, sans I/O: the lock request, the envelope, and the checks of the answer."""

    def __init__(
        self,
        client: Client | AsyncClient,
        *,
        model: str,
        messages: Iterable[MessageParam],
        stream: bool,
        params: Mapping[str, Any],
        extra_body: Mapping[str, Any] | None,
    ) -> None:
        self._client = client
        self._model = model
        self._stream = stream
        self._verify_key = client.verify_key
        self._request = chat_request_body(
            model=model, messages=messages, stream=stream, params=params, extra_body=extra_body
        )
        self._lock_body = msgspec.json.encode(NodesCreateLockRequest(model=model))
        self._session: ClientSession | None = None

    def lock_call(self, timeout: TimeoutParam, max_retries: int | UseClientDefault) -> Call:
        return self._client._call("POST", "nodes/lock", body=self._lock_body, timeout=timeout, max_retries=max_retries)

    def read_lock(self, response: httpx.Response) -> None:
        """Take the node key from the lock answer; with a pinned key, the answer must be signed by it."""
        if self._verify_key is None:
            lock = decode_success(response, _lock_decoder)
        else:
            raw = bytes(decode_success(response, _raw_json_decoder))
            ChainVerifier(blake2b256(self._lock_body), self._verify_key, require_chain=True).check_signed_json(raw)
            lock = _lock_decoder.decode(split_signed_json(raw)[0])
        self._session = ClientSession(lock)

    def chat_call(
        self, timeout: TimeoutParam, max_retries: int | UseClientDefault, extra_headers: Mapping[str, str] | None
    ) -> Call:
        session = self._session
        assert session is not None, "read_lock comes first"
        envelope = session.seal_request(self._request, model=self._model, stream=self._stream)
        return self._client._call(
            "POST",
            "confidential/chat/completions",
            body=envelope,
            streaming=self._stream,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            new_guard=self._new_guard,
        )

    def _new_guard(self) -> ResponseGuard:
        session = self._session
        assert session is not None
        # An Atoma node, like chunkwise, always ends a confidential stream with the usage chunk.
        verifier = ChainVerifier(session.request_hash, self._verify_key, require_chain=self._verify_key is not None)
        return ResponseGuard(verifier, session, expect_usage=self._stream)


class ConfidentialChatCompletions:
    """``client.confidential.chat.completions``."""

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
        """A chat completion whose request and answer only the client and the node can read.

        Takes the arguments of :meth:`~chunkwise.client.ChatCompletions.create`. Every chunk is decrypted
        and checked (its hash, the chain of chunks, and with ``verify_key`` its signature); a chunk that
        fails raises a :class:`~chunkwise.VerificationError`.
        """
        exchange = ConfidentialExchange(
            self._client, model=model, messages=messages, stream=stream, params=params, extra_body=extra_body
        )
        self._client._fetch(exchange.lock_call(timeout, max_retries), exchange.read_lock)
        call = exchange.chat_call(timeout, max_retries, extra_headers)
        if stream:
            return self._client._stream(call)
        return self._client._fetch(call, call.read_completion)


class AsyncConfidentialChatCompletions:
    """``client.confidential.chat.completions`` of an :class:`~chunkwise.AsyncClient`."""

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
        """The async twin of :meth:`ConfidentialChatCompletions.create`."""
        exchange = ConfidentialExchange(
            self._client, model=model, messages=messages, stream=stream, params=params, extra_body=extra_body
        )
        await self._client._fetch(exchange.lock_call(timeout, max_retries), exchange.read_lock)
        call = exchange.chat_call(timeout, max_retries, extra_headers)
        if stream:
            return await self._client._stream(call)
        return await self._client._fetch(call, call.read_completion)


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
