"""chunkwise: streaming chat completions in the OpenAI/Atoma wire format.

The client's names load on first use: ``import chunkwise.server`` or ``chunkwise.engine`` runs this module, and
must not pull in the client (and httpx) that only a client process needs. The root's errors and the types cost nothing.
"""

from __future__ import annotations

import importlib
import typing

from . import _errors
from ._errors import *
from ._version import __version__
from .types import ChatCompletion, ChatCompletionChunk

if typing.TYPE_CHECKING:  # for type checkers; at run time __getattr__ loads them
    from .client import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AsyncClient,
        AsyncStream,
        AuthenticationError,
        Backoff,
        BadRequestError,
        Client,
        ConflictError,
        ConnectTimeoutError,
        FirstChunkTimeoutError,
        IdleTimeoutError,
        InternalServerError,
        NotFoundError,
        PaymentRequiredError,
        PermissionDeniedError,
        RateLimitError,
        RequestTooLargeError,
        Stream,
        Timeouts,
        TotalTimeoutError,
        UnexpectedResponseError,
        UnprocessableEntityError,
    )

# The client's names (loaded by __getattr__), the types and the version; then the root's own errors.
__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncStream",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "Client",
    "ConflictError",
    "ConnectTimeoutError",
    "FirstChunkTimeoutError",
    "IdleTimeoutError",
    "InternalServerError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "Stream",
    "Timeouts",
    "TotalTimeoutError",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "__version__",
]
__all__ += _errors.__all__
__all__.sort()


def __getattr__(name: str) -> object:
    # Every exported name not bound above is one of the client's (the TYPE_CHECKING import lists them):
    # the client, and the errors built from its responses.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Imported by name, not by an import statement, so that import-linter's graph does not see the root
    # depending on the client: only code that asks for a client name loads it.
    value = getattr(importlib.import_module(".client", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
