"""The one error hierarchy of chunkwise.

::

    ChunkwiseError                    root; ``request_id`` is the server's id for the request, when known
    ├── SSEError                      malformed or oversized server-sent-event input
    │   └── EventTooLargeError        an event grew past ``max_event_size``
    ├── APIError                      anything that came from (or failed to reach) a server
    │   ├── APIConnectionError        the server could not be reached, or the connection broke
    │   │   └── APITimeoutError       a deadline passed; ``deadline`` names which one
    │   │       ├── ConnectTimeoutError      no connection within ``Timeouts.connect``
    │   │       ├── FirstChunkTimeoutError   no first chunk (or, unstreamed, no response) in time
    │   │       ├── IdleTimeoutError         no chunk for ``Timeouts.idle`` (keep-alives do not count)
    │   │       └── TotalTimeoutError        the whole call ran past ``Timeouts.total``
    │   ├── APIStatusError            a non-2xx answer, with the parsed error body
    │   │   ├── BadRequestError              400
    │   │   ├── AuthenticationError          401
    │   │   ├── PaymentRequiredError         402 (Atoma: insufficient balance)
    │   │   ├── PermissionDeniedError        403
    │   │   ├── NotFoundError                404
    │   │   ├── ConflictError                409
    │   │   ├── RequestTooLargeError         413
    │   │   ├── UnprocessableEntityError     422
    │   │   ├── RateLimitError               429
    │   │   └── InternalServerError          5xx
    │   ├── UnexpectedResponseError   a 2xx whose body is not what the API promises
    │   ├── StreamError               an in-band error frame inside a 200 stream
    │   ├── IncompleteStreamError     the stream ended (or broke) before it finished properly
    │   └── VerificationError         a response failed a cryptographic check (never retried)
    │       ├── SignatureError               a missing or bad signature or response hash
    │       ├── BrokenChainError             a chunk dropped, reordered or replayed from another response
    │       │   └── IncompleteChainError     a checked stream cut short: also an ``IncompleteStreamError``
    │       └── DecryptionError              a confidential response that does not decrypt
    ├── RequestValidationError        the client rejected a request before sending it, also a ``ValueError``
    ├── ClientConfigError             an invalid client setting (base URL, key, timeout), also a ``ValueError``
    ├── ClientStateError              misuse, also a ``RuntimeError``
    │   ├── ClientClosedError         the client was used after ``close()``
    │   └── StreamConsumedError       a stream was iterated again after it ended
    ├── EnvelopeError                 (server) a confidential request envelope that cannot be opened
    └── EngineError                   the model engine failed

Only :class:`APIConnectionError` (except the timeouts after the connection was made) and the status
errors for 408, 409, 429 and 5xx are retried, and only before a stream has produced a chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from .types import ChatCompletion, ErrorDetail

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ChunkwiseError",
    "ClientClosedError",
    "ClientConfigError",
    "ClientStateError",
    "ConflictError",
    "BrokenChainError",
    "ConnectTimeoutError",
    "DecryptionError",
    "EngineError",
    "EnvelopeError",
    "EventTooLargeError",
    "FirstChunkTimeoutError",
    "IdleTimeoutError",
    "IncompleteChainError",
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
    "StreamConsumedError",
    "StreamError",
    "TotalTimeoutError",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "VerificationError",
]


class ChunkwiseError(Exception):
    """Root of every error chunkwise raises on purpose."""

    #: The server's id for the request (``x-request-id`` / ``request-id``), when the error arose while
    #: reading a response that had one. The client stamps it on every error it lets through.
    request_id: str | None = None


class SSEError(ChunkwiseError):
    """The byte stream is not a valid server-sent-event stream."""


class EventTooLargeError(SSEError):
    """An event exceeded the decoder's ``max_event_size``; raised instead of buffering without bound."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"server-sent event of at least {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class EngineError(ChunkwiseError):
    """The model engine could not produce a completion."""


class EnvelopeError(ChunkwiseError):
    """A confidential request envelope that cannot be opened; the server answers 400 with ``param`` and ``code``.

    The message never depends on the plaintext, so it cannot serve as a decryption oracle.
    """

    def __init__(self, message: str, *, param: str | None = None, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


# --- the client's errors ----------------------------------------------------------------------------


class APIError(ChunkwiseError):
    """Something went wrong talking to a server. ``str(error)`` says what."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class APIConnectionError(APIError):
    """The server could not be reached, or the connection failed before a response arrived."""


class APITimeoutError(APIConnectionError):
    """A deadline of :class:`chunkwise.client.Timeouts` passed.

    ``deadline`` is ``"connect"``, ``"first_chunk"``, ``"idle"`` or ``"total"``; ``seconds`` is the
    configured limit that was exceeded.
    """

    deadline: str = ""

    def __init__(self, message: str, *, seconds: float, request_id: str | None = None) -> None:
        super().__init__(message, request_id=request_id)
        self.seconds = seconds


class ConnectTimeoutError(APITimeoutError):
    """No connection (or no free pooled connection) within ``Timeouts.connect``."""

    deadline = "connect"


class FirstChunkTimeoutError(APITimeoutError):
    """The first chunk did not arrive within ``Timeouts.first_chunk`` of sending the request.

    For a request without ``stream=True`` the whole response counts as the first chunk.
    """

    deadline = "first_chunk"


class IdleTimeoutError(APITimeoutError):
    """No chunk arrived for ``Timeouts.idle`` seconds. Keep-alive comments do not reset this clock."""

    deadline = "idle"


class TotalTimeoutError(APITimeoutError):
    """The call, retries included, ran past ``Timeouts.total``."""

    deadline = "total"


class APIStatusError(APIError):
    """The server answered with a non-2xx status.

    ``error`` is the parsed ``{"error": {...}}`` body (also built from ``{"detail": ...}``, a bare
    string, or plain text), ``response`` the closed response with its headers and body.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error: ErrorDetail | None,
        response: httpx.Response,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.status_code = status_code
        self.error = error
        self.response = response


class BadRequestError(APIStatusError):
    """400: the server rejected the request as malformed."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong API key."""


class PaymentRequiredError(APIStatusError):
    """402: the account cannot pay for the request (Atoma's ``BALANCE_ERROR``)."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError):
    """404: unknown path or model."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the server's state; retried."""


class RequestTooLargeError(APIStatusError):
    """413: the request body is larger than the server accepts."""


class UnprocessableEntityError(APIStatusError):
    """422: the body parsed but a field is invalid."""


class RateLimitError(APIStatusError):
    """429: too many requests; retried after ``Retry-After``."""


class InternalServerError(APIStatusError):
    """5xx: the server failed; retried."""


class UnexpectedResponseError(APIError):
    """A 2xx answer that is not what the API promises.

    For example a stream request answered with JSON instead of ``text/event-stream`` (some servers
    report errors that way; ``error`` then holds the parsed error), or a body that does not decode.
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        error: ErrorDetail | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.response = response
        self.error = error


class StreamError(APIError):
    """The server sent an error frame (``data: {"error": ...}`` or ``event: error``) inside a stream."""

    def __init__(self, message: str, *, error: ErrorDetail, request_id: str | None = None) -> None:
        super().__init__(message, request_id=request_id)
        self.error = error


class IncompleteStreamError(APIError):
    """The stream ended before it finished properly, or its connection broke.

    A stream finishes properly with ``[DONE]``, or at end of input once every choice has a
    ``finish_reason`` or the usage chunk arrived (the Atoma proxy never sends ``[DONE]``). ``partial``
    is the reassembly of the chunks that did arrive.
    """

    def __init__(
        self,
        message: str,
        *,
        partial: ChatCompletion,
        chunks_received: int,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.partial = partial
        self.chunks_received = chunks_received


class VerificationError(APIError):
    """A response failed a cryptographic check: it was tampered with, or is not from the pinned server."""


class SignatureError(VerificationError):
    """A signature or ``response_hash`` is missing, malformed, or does not match the content or the pinned key."""


class BrokenChainError(VerificationError):
    """A chunk does not follow the one before it: one was dropped, reordered, or replayed from another response."""


class IncompleteChainError(BrokenChainError, IncompleteStreamError):
    """A checked (signed or confidential) stream ended (``[DONE]`` is not signed) or broke before its last chunk.

    Whoever is on the path can cut a stream, so this is a :class:`BrokenChainError`; it is also an
    :class:`IncompleteStreamError`, with ``partial`` made of the chunks that passed their checks.
    """


class DecryptionError(VerificationError):
    """A confidential response does not decrypt with the request's key, or its plaintext hash differs."""


class RequestValidationError(ChunkwiseError, ValueError):
    """The client rejected a request before sending it (a field out of range, a wrong type): ``str`` says which."""


class ClientConfigError(ChunkwiseError, ValueError):
    """A client setting is invalid (``base_url``, ``verify_key``, a timeout, ...): ``str`` says which."""


class ClientStateError(ChunkwiseError, RuntimeError):
    """A client or stream was used in a state that does not allow it: a programming error."""


class ClientClosedError(ClientStateError):
    """The client was used after ``close()``."""


class StreamConsumedError(ClientStateError):
    """A stream was iterated after it ended, or its final completion asked for after it was closed early."""
