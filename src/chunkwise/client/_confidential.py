"""A confidential chat call, sans I/O: end-to-end encrypted chat, against chunkwise or the Atoma cloud.

One call is two requests: ``POST /nodes/lock`` for the node's X25519 key, then ``POST
/confidential/chat/completions`` with the request sealed to that key. The answer comes back as the same
:class:`~chunkwise.types.ChatCompletion` or :class:`~chunkwise.Stream` as a plain call, decrypted and
checked chunk by chunk by a :class:`~chunkwise.client._guards.ResponseGuard`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from ..confidential import ClientSession, NodesCreateLockRequest, NodesCreateLockResponse
from ..signing import ChainVerifier, blake2b256, split_signed_json
from ._calls import Call, RequestOptions
from ._guards import ResponseGuard
from ._responses import decode_success

if TYPE_CHECKING:
    from ._client import _BaseClient

__all__ = ["ConfidentialExchange"]

_lock_decoder = msgspec.json.Decoder(NodesCreateLockResponse)
_raw_json_decoder = msgspec.json.Decoder(msgspec.Raw)


class ConfidentialExchange:
    """One confidential call: the lock request, the envelope, and the checks of the answer."""

    def __init__(
        self, client: _BaseClient[Any, Any, Any, Any, Any], *, model: str, request: bytes, stream: bool
    ) -> None:
        self._client = client
        self._model = model
        self._stream = stream
        self._verify_key = client.verify_key
        self._request = request
        self._lock_body = msgspec.json.encode(NodesCreateLockRequest(model=model))
        self._session: ClientSession | None = None

    def call(self, options: RequestOptions) -> Call:
        """The chat call; its body is sealed to the key that its lock call (made first) answers. The lock call
        has the options' deadlines and retries, not their headers."""
        client = self._client
        lock_options = RequestOptions(options.timeout, options.max_retries)
        lock = client._call("POST", "nodes/lock", lock_options, body=self._lock_body)
        return client._call(
            "POST",
            "confidential/chat/completions",
            options,
            body_from=(lock, self._seal),
            streaming=self._stream,
            new_guard=self._new_guard,
        )

    def _seal(self, lock_response: httpx.Response) -> bytes:
        """Take the node key from the lock answer (with a pinned key, the answer must be signed by it)."""
        if self._verify_key is None:
            lock = decode_success(lock_response, _lock_decoder)
        else:
            raw = bytes(decode_success(lock_response, _raw_json_decoder))
            ChainVerifier(blake2b256(self._lock_body), self._verify_key, require_chain=True).check_signed_json(raw)
            lock = _lock_decoder.decode(split_signed_json(raw)[0])
        self._session = ClientSession(lock)
        return self._session.seal_request(self._request, model=self._model, stream=self._stream)

    def _new_guard(self) -> ResponseGuard:
        session = self._session
        assert session is not None, "the lock call comes first"
        # An Atoma node, like chunkwise, always ends a confidential stream with the usage chunk.
        verifier = ChainVerifier(session.request_hash, self._verify_key, require_chain=self._verify_key is not None)
        return ResponseGuard(verifier, session, expect_usage=self._stream)
