"""chunkwise: streaming chat completions in the OpenAI/Atoma wire format.

The names below load on first use: ``import chunkwise.server`` or ``chunkwise.engine`` runs this module, and must
not pull in the client (and httpx) that only a client process needs.
"""

from __future__ import annotations

import importlib
import typing

from ._version import __version__

if typing.TYPE_CHECKING:
    from ._errors import (
        APIConnectionError as APIConnectionError,
    )
    from ._errors import (
        APIError as APIError,
    )
    from ._errors import (
        APIStatusError as APIStatusError,
    )
    from ._errors import (
        APITimeoutError as APITimeoutError,
    )
    from ._errors import (
        AuthenticationError as AuthenticationError,
    )
    from ._errors import (
        BadRequestError as BadRequestError,
    )
    from ._errors import (
        BrokenChainError as BrokenChainError,
    )
    from ._errors import (
        ChunkwiseError as ChunkwiseError,
    )
    from ._errors import (
        ClientClosedError as ClientClosedError,
    )
    from ._errors import (
        ClientStateError as ClientStateError,
    )
    from ._errors import (
        ConflictError as ConflictError,
    )
    from ._errors import (
        ConnectTimeoutError as ConnectTimeoutError,
    )
    from ._errors import (
        DecryptionError as DecryptionError,
    )
    from ._errors import (
        EngineError as EngineError,
    )
    from ._errors import (
        EnvelopeError as EnvelopeError,
    )
    from ._errors import (
        EventTooLargeError as EventTooLargeError,
    )
    from ._errors import (
        FirstChunkTimeoutError as FirstChunkTimeoutError,
    )
    from ._errors import (
        IdleTimeoutError as IdleTimeoutError,
    )
    from ._errors import (
        IncompleteStreamError as IncompleteStreamError,
    )
    from ._errors import (
        InternalServerError as InternalServerError,
    )
    from ._errors import (
        NotFoundError as NotFoundError,
    )
    from ._errors import (
        PaymentRequiredError as PaymentRequiredError,
    )
    from ._errors import (
        PermissionDeniedError as PermissionDeniedError,
    )
    from ._errors import (
        RateLimitError as RateLimitError,
    )
    from ._errors import (
        RequestTooLargeError as RequestTooLargeError,
    )
    from ._errors import (
        RequestValidationError as RequestValidationError,
    )
    from ._errors import (
        SignatureError as SignatureError,
    )
    from ._errors import (
        SSEError as SSEError,
    )
    from ._errors import (
        StreamConsumedError as StreamConsumedError,
    )
    from ._errors import (
        StreamError as StreamError,
    )
    from ._errors import (
        TotalTimeoutError as TotalTimeoutError,
    )
    from ._errors import (
        UnexpectedResponseError as UnexpectedResponseError,
    )
    from ._errors import (
        UnprocessableEntityError as UnprocessableEntityError,
    )
    from ._errors import (
        VerificationError as VerificationError,
    )
    from .client import (
        AsyncClient as AsyncClient,
    )
    from .client import (
        AsyncStream as AsyncStream,
    )
    from .client import (
        Backoff as Backoff,
    )
    from .client import (
        Client as Client,
    )
    from .client import (
        Stream as Stream,
    )
    from .client import (
        Timeouts as Timeouts,
    )
    from .types import ChatCompletion as ChatCompletion
    from .types import ChatCompletionChunk as ChatCompletionChunk

#: Where each lazily exported name lives (module path relative to this package).
_LAZY: dict[str, str] = {
    "APIConnectionError": "._errors",
    "APIError": "._errors",
    "APIStatusError": "._errors",
    "APITimeoutError": "._errors",
    "AuthenticationError": "._errors",
    "BadRequestError": "._errors",
    "BrokenChainError": "._errors",
    "ChunkwiseError": "._errors",
    "ClientClosedError": "._errors",
    "ClientStateError": "._errors",
    "ConflictError": "._errors",
    "ConnectTimeoutError": "._errors",
    "DecryptionError": "._errors",
    "EngineError": "._errors",
    "EnvelopeError": "._errors",
    "EventTooLargeError": "._errors",
    "FirstChunkTimeoutError": "._errors",
    "IdleTimeoutError": "._errors",
    "IncompleteStreamError": "._errors",
    "InternalServerError": "._errors",
    "NotFoundError": "._errors",
    "PaymentRequiredError": "._errors",
    "PermissionDeniedError": "._errors",
    "RateLimitError": "._errors",
    "RequestTooLargeError": "._errors",
    "RequestValidationError": "._errors",
    "SignatureError": "._errors",
    "SSEError": "._errors",
    "StreamConsumedError": "._errors",
    "StreamError": "._errors",
    "TotalTimeoutError": "._errors",
    "UnexpectedResponseError": "._errors",
    "UnprocessableEntityError": "._errors",
    "VerificationError": "._errors",
    "AsyncClient": ".client",
    "AsyncStream": ".client",
    "Backoff": ".client",
    "Client": ".client",
    "Stream": ".client",
    "Timeouts": ".client",
    "ChatCompletion": ".types",
    "ChatCompletionChunk": ".types",
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncStream",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "BrokenChainError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChunkwiseError",
    "Client",
    "ClientClosedError",
    "ClientStateError",
    "ConflictError",
    "ConnectTimeoutError",
    "DecryptionError",
    "EngineError",
    "EnvelopeError",
    "EventTooLargeError",
    "FirstChunkTimeoutError",
    "IdleTimeoutError",
    "IncompleteStreamError",
    "InternalServerError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "RequestValidationError",
    "SSEError",
    "SignatureError",
    "Stream",
    "StreamConsumedError",
    "StreamError",
    "Timeouts",
    "TotalTimeoutError",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "VerificationError",
    "__version__",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Imported by name, not by an import statement, so that import-linter's graph does not see the root
    # depending on the client: only code that asks for a client name loads it.
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
