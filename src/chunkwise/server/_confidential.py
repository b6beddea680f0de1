"""Confidential chat in the Atoma shape: ``POST /v1/nodes/lock`` and ``POST /v1/confidential/chat/completions``.

The confidential route opens the envelope, checks it, and hands the plaintext request to the ordinary chat
route, which seals each chunk as it encodes it with a :class:`~chunkwise.server._framing.ConfidentialFramer`: a fresh
nonce for every envelope, a chain link in every plaintext chunk, usage in the clear for billing, and a
signature when the server has a signing key. Streams always end with the usage chunk, as an Atoma node
forces ``stream_options.include_usage``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import BadRequestError, EnvelopeError
from ..confidential import (
    ConfidentialComputeRequest,
    NodeKey,
    NodesCreateLockRequest,
    NodesCreateLockResponse,
    OpenedRequest,
    open_request,
)
from ..edge import JSONResponse, read_json
from ..signing import ChainSealer, Signer, blake2b256
from ._errors import ModelNotFoundError
from ._framing import ConfidentialFramer, Framer

__all__ = ["ConfidentialEndpoints"]

_encoder = msgspec.json.Encoder()


def _plaintext_request(opened: OpenedRequest) -> bytes:
    """The request to run, checked against its envelope; streams always get the usage chunk."""
    try:
        fields = msgspec.json.decode(opened.plaintext)
    except msgspec.DecodeError:
        raise BadRequestError(
            "The decrypted request is not valid JSON.", param="ciphertext", code="invalid_json"
        ) from None
    if not isinstance(fields, dict):
        raise BadRequestError("The decrypted request is not a JSON object.", param="ciphertext")
    envelope = opened.envelope
    stream = fields.get("stream") is True
    if envelope.stream is not None and envelope.stream != stream:
        raise BadRequestError(
            f"The envelope's `stream` ({str(envelope.stream).lower()}) disagrees with the encrypted request's "
            f"({str(stream).lower()}).",
            param="stream",
        )
    if fields.get("model") != envelope.model_name:
        raise BadRequestError("The envelope's `model_name` is not the encrypted request's `model`.", param="model_name")
    if not stream:
        return opened.plaintext
    fields["stream_options"] = {"include_usage": True}
    return _encoder.encode(fields)


class ConfidentialEndpoints:
    """The confidential routes of one app."""

    def __init__(
        self,
        *,
        model_id: str,
        node_key: NodeKey,
        signer: Signer | None,
        max_body_size: int,
        chat: Callable[[Request, bytes, Framer], Awaitable[Response]],
    ) -> None:
        self._model_id = model_id
        self._node_key = node_key
        self._signer = signer
        self._max_body_size = max_body_size
        self._chat = chat
        self._stacks = itertools.count(1)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/nodes/lock", self.lock, methods=["POST"]),
            Route("/v1/confidential/chat/completions", self.chat_completions, methods=["POST"]),
        ]

    async def lock(self, request: Request) -> Response:
        """The node key to encrypt to. There are no stacks here: each lock gets a new ``stack_small_id``."""
        body, _ = await read_json(request, NodesCreateLockRequest, limit=self._max_body_size)
        if body.model != self._model_id:
            raise ModelNotFoundError(body.model, self._model_id)
        answer = _encoder.encode(
            NodesCreateLockResponse(
                public_key=self._node_key.public_key_base64, node_small_id=0, stack_small_id=next(self._stacks)
            )
        )
        if self._signer is not None:
            # Signed like any answer (chained to the request), so a client pinning the signing key
            # detects a node key swapped in transit before it encrypts anything.
            answer = ChainSealer(blake2b256(_encoder.encode(body)), self._signer).seal(answer)
        return JSONResponse(answer)

    async def chat_completions(self, request: Request) -> Response:
        envelope, _ = await read_json(request, ConfidentialComputeRequest, limit=self._max_body_size)
        try:
            opened = open_request(envelope, self._node_key)
        except EnvelopeError as exc:
            raise BadRequestError(exc.message, param=exc.param, code=exc.code) from None
        plaintext = _plaintext_request(opened)
        framer = ConfidentialFramer(ChainSealer(opened.plaintext_hash, self._signer), opened.sealer)
        return await self._chat(request, plaintext, framer)
