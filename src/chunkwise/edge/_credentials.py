"""Reading the caller's API key from the request headers, in either dialect's header."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

__all__ = ["BEARER", "X_API_KEY", "Credential", "find_credential"]

CredentialScheme = Literal["bearer", "x-api-key"]

#: ``Authorization: Bearer KEY`` (OpenAI, Atoma).
BEARER: CredentialScheme = "bearer"
#: ``x-api-key: KEY`` (Anthropic).
X_API_KEY: CredentialScheme = "x-api-key"


class Credential:
    """An API key and the header it came in."""

    __slots__ = ("scheme", "secret")

    def __init__(self, secret: bytes, scheme: CredentialScheme) -> None:
        self.secret = secret
        self.scheme = scheme

    @property
    def text(self) -> str:
        return self.secret.decode("latin-1")


def find_credential(headers: Iterable[tuple[bytes, bytes]]) -> Credential | None:
    """The key of ``Authorization: Bearer KEY`` (the scheme in any case), else of ``x-api-key``; None if neither.

    ``headers`` are the ASGI scope's (lower-case names). An empty key counts as none.
    """
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer":
                token = token.strip()
                return Credential(token, BEARER) if token else None
        if name == b"x-api-key" and api_key is None:
            api_key = value.strip()
    return Credential(api_key, X_API_KEY) if api_key else None
