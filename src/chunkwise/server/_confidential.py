"""Confidential answers in the Atoma shape: ``POST /v1/nodes/lock`` and ``POST /v1/confidential/*``.

Chat, legacy completions and embeddings each have a confidential route. It opens the envelope, checks it,
and hands the plaintext request to the ordinary route's handler, which seals each chunk (or the whole
answer) as it encodes it with a :class:`~chunkwise.server._framing.ConfidentialFramer`: a fresh
nonce for every envelope, a chain link in every plaintext chunk, usage in the clear for billing, and a
signature when the server has a signing key. Streams always end with the usage chunk, as an Atoma node
forces ``stream_options.include_usage``.

Once a request is decrypted, what goes back in the clear must carry nothing of it: an error about the
plaintext (a bad role, a schema path, a prompt's token count) keeps its status, type and code, and loses its
message and ``param`` (:data:`~._framing.WITHHELD_ERRORS`, also used for errors inside a sealed answer).

Replays are refused, beyond what Atoma does (it has none). The envelope has no timestamp, so there is no
time window to check; instead each opened envelope's (client key, salt, nonce), which fix the AES-GCM key
and nonce, is remembered in a bounded set, and a second envelope with the same triple is a 400. The
protection lasts as long as the node key (envelopes to an old key no longer open) and as long as the
envelope is among the last :data:`REPLAY_MEMORY` seen.
"""

from __future__ import annotations

import base64
import itertools
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import BadRequestError, ChunkwiseError, EnvelopeError
from ..confidential import (
    ConfidentialComputeRequest,
    NodeKey,
    NodesCreateLockRequest,
    NodesCreateLockResponse,
    OpenedRequest,
    open_request,
)
from ..edge import JSONResponse, error_response, read_json
from ..signing import ChainSealer, blake2b256
from ._errors import ModelNotFoundError
from ._framing import WITHHELD_ERRORS, ConfidentialFramer, Framer
from ._settings import ServerSettings

__all__ = ["REPLAY_MEMORY", "ConfidentialAnswer", "ConfidentialEndpoints", "ReplayGuard"]

#: How many opened envelopes are remembered to refuse their replay.
REPLAY_MEMORY = 100_000

#: A route's handler for an opened request: the plaintext body and the framer that seals the answer.
ConfidentialAnswer = Callable[[Request, bytes, Framer], Awaitable[Response]]

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


class ReplayGuard:
    """Remembers the last ``capacity`` envelopes' (client key, salt, nonce); thread-safe."""

    def __init__(self, capacity: int = REPLAY_MEMORY) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, opened: OpenedRequest) -> bool:
        """True for an envelope not seen before (and remember it); False for a replay."""
        envelope = opened.envelope
        fields = (envelope.client_dh_public_key, envelope.salt, envelope.nonce)
        fingerprint = blake2b256(b"".join(base64.b64decode(field) for field in fields))
        with self._lock:
            if fingerprint in self._seen:
                return False
            self._seen[fingerprint] = None
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True


class ConfidentialEndpoints:
    """The confidential routes of one app."""

    def __init__(
        self,
        *,
        model_ids: tuple[str, ...],
        settings: ServerSettings,
        answers: Mapping[str, ConfidentialAnswer],
    ) -> None:
        """``answers``: each confidential path (``/v1/confidential/chat/completions``) and its handler."""
        self._model_ids = model_ids
        self._node_key = settings.node_key or NodeKey()
        self._signer = settings.signer
        self._max_body_size = settings.max_body_size
        self._node_small_id = settings.node_small_id
        self._answers = answers
        self._stacks = itertools.count(1)
        self._replays = ReplayGuard()

    def routes(self) -> list[Route]:
        routes = [Route("/v1/nodes/lock", self.lock, methods=["POST"])]
        for path, answer in self._answers.items():
            routes.append(Route(path, self._confidential_route(answer), methods=["POST"]))
        return routes

    async def lock(self, request: Request) -> Response:
        """The node key to encrypt to. There are no stacks here: each lock gets a new ``stack_small_id``."""
        body, _ = await read_json(request, NodesCreateLockRequest, limit=self._max_body_size)
        if body.model not in self._model_ids:
            raise ModelNotFoundError(body.model, ", ".join(self._model_ids))
        answer = _encoder.encode(
            NodesCreateLockResponse(
                public_key=self._node_key.public_key_base64,
                node_small_id=self._node_small_id,
                stack_small_id=next(self._stacks),
            )
        )
        if self._signer is not None:
            # Signed like any answer (chained to the request), so a client pinning the signing key
            # detects a node key swapped in transit before it encrypts anything.
            answer = ChainSealer(blake2b256(_encoder.encode(body)), self._signer).seal(answer)
        return JSONResponse(answer)

    def _confidential_route(self, answer: ConfidentialAnswer) -> Callable[[Request], Awaitable[Response]]:
        async def confidential(request: Request) -> Response:
            envelope, _ = await read_json(request, ConfidentialComputeRequest, limit=self._max_body_size)
            try:
                opened = open_request(envelope, self._node_key)
            except EnvelopeError as exc:
                raise BadRequestError(exc.message, param=exc.param, code=exc.code) from None
            if not self._replays.first_time(opened):
                raise BadRequestError(
                    "This envelope was already received; a confidential request is answered once.",
                    param="nonce",
                    code="replayed_envelope",
                )
            plaintext = _plaintext_request(opened)  # its errors compare the envelope's fields, quoting neither
            framer = ConfidentialFramer(ChainSealer(opened.plaintext_hash, self._signer), opened.sealer)
            try:
                return await answer(request, plaintext, framer)
            except ChunkwiseError as exc:
                return error_response(exc, WITHHELD_ERRORS)

        return confidential
