"""Verifiable answers: with a signing key, every chunk and every non-stream answer is signed and chained.

:class:`SigningMiddleware` wraps the completion routes. It hashes the request body as the route reads it
(the root of the chain) and passes the answer through a :class:`~chunkwise.server._framing.SignedFramer`.
``GET /signing-key`` publishes the public key (outside ``/v1``, so it needs no API key).
"""

from __future__ import annotations

import hashlib

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..signing import ChainSealer, Signer
from ._errors import NotFoundError
from ._framing import Framer, SignedFramer, reframing
from ._responses import MsgspecResponse

__all__ = ["SIGNED_PATHS", "SigningKeyInfo", "SigningMiddleware", "signing_key_route"]

#: The routes whose answers are signed (the confidential route signs inside its envelopes).
SIGNED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


class _LazySignedFramer:
    """A :class:`SignedFramer` whose chain root, the request body's hash, is known once the body was read."""

    __slots__ = ("_framer", "_hasher", "_signer")

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self._hasher = hashlib.blake2b(digest_size=32)
        self._framer: SignedFramer | None = None

    def body_part(self, data: bytes) -> None:
        self._hasher.update(data)

    def _ready(self) -> Framer:
        if self._framer is None:
            self._framer = SignedFramer(ChainSealer(self._hasher.digest(), self._signer))
        return self._framer

    def payload(self, data: bytes) -> bytes:
        return self._ready().payload(data)

    def done(self) -> bytes:
        return self._ready().done()

    def error(self, data: bytes) -> bytes:
        return data


class SigningMiddleware:
    """Signs the answers of :data:`SIGNED_PATHS` (pure ASGI: streams pass through unbuffered)."""

    def __init__(self, app: ASGIApp, *, signer: Signer) -> None:
        self.app = app
        self._signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in SIGNED_PATHS:
            await self.app(scope, receive, send)
            return
        framer = _LazySignedFramer(self._signer)

        async def hashing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                framer.body_part(message.get("body", b""))
            return message

        await self.app(scope, hashing_receive, reframing(send, framer))


class SigningKeyInfo(msgspec.Struct, kw_only=True):
    """The body of ``GET /signing-key``."""

    #: Always ``ed25519``; signatures are Sui's base64 ``flag || signature || public key``, flag 0.
    algorithm: str = "ed25519"
    #: The 32-byte public key in base64: pin it with ``Client(verify_key=...)``.
    public_key: str


def signing_key_route(signer: Signer | None) -> Route:
    async def signing_key(request: Request) -> Response:
        if signer is None:
            raise NotFoundError("This server does not sign its answers (start it with --signing-key-file).")
        return MsgspecResponse(SigningKeyInfo(public_key=signer.public_key_base64))

    return Route("/signing-key", signing_key, methods=["GET"])
