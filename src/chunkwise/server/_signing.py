"""Verifiable answers: with a signing key, every chunk and every non-stream answer is signed and chained.

The completion routes sign as they encode: the request body's hash is the root of the chain, and each chunk
(or the whole JSON answer) goes through a :class:`~chunkwise.server._framing.SignedFramer` (see
``Endpoints._encoding``).
``GET /signing-key`` publishes the public key (outside ``/v1``, so it needs no API key).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import NotFoundError
from ..edge import JSONResponse
from ..signing import Signer

__all__ = ["SigningKeyInfo", "signing_key_route"]


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
        return JSONResponse(SigningKeyInfo(public_key=signer.public_key_base64))

    return Route("/signing-key", signing_key, methods=["GET"])
