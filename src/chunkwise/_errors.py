"""The one error hierarchy of chunkwise.

::

    ChunkwiseError                    root; ``request_id`` is the server's id for the request, when known
    ├── SSEError                      malformed or oversized server-sent-event input
    │   └── EventTooLargeError        an event grew past ``max_event_size``
    ├── APIError                      an error in the HTTP API's terms, on either side of the wire
    │   ├── APIStatusError            an error answer: ``status``, ``type``, ``code``, ``param``, ``message``
    │   │   ├── BadRequestError              400
    │   │   ├── AuthenticationError          401
    │   │   ├── PaymentRequiredError         402 (Atoma: insufficient balance)
    │   │   ├── PermissionDeniedError        403
    │   │   ├── NotFoundError                404
    │   │   ├── MethodNotAllowedError        405
    │   │   ├── ConflictError                409
    │   │   ├── RequestTooLargeError         413
    │   │   ├── UnsupportedMediaTypeError    415
    │   │   ├── UnprocessableEntityError     422
    │   │   ├── RateLimitError               429
    │   │   ├── InternalServerError          5xx
    │   │   ├── (engine) InvalidRequestError       a request the engine cannot serve; carries its own status
    │   │   ├── (edge, server, gateway)            the answers they send, each under the class of its status
    │   │   └── (client) one subclass per class above, with the ``response`` it came in: what
    │   │                ``chunkwise.BadRequestError`` and the other public status names are
    │   ├── (client) APIConnectionError      the server could not be reached, or the connection broke
    │   │   └── APITimeoutError       a deadline passed; ``deadline`` names which one
    │   │       ├── ConnectTimeoutError      no connection within ``Timeouts.connect``
    │   │       ├── FirstChunkTimeoutError   no first chunk (or, unstreamed, no response) in time
    │   │       ├── IdleTimeoutError         no chunk for ``Timeouts.idle`` (keep-alives do not count)
    │   │       └── TotalTimeoutError        the whole call ran past ``Timeouts.total``
    │   ├── (client) UnexpectedResponseError a 2xx whose body is not what the API promises
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
    ├── EngineError                   the model engine failed
    └── (gateway) UpstreamError       an upstream could not be reached, or broke off the exchange

The classes marked (client) live in :mod:`chunkwise.client` (they are built from an ``httpx.Response`` or
an httpx failure); ``chunkwise`` exports them under the names it always did. Only
:class:`APIConnectionError` (except the timeouts after the connection was made) and the status errors for
408, 409, 429 and 5xx are retried, and only before a stream has produced a chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import ChatCompletion, ErrorDetail

# What ``chunkwise`` exports from here. The status errors (``APIStatusError``, ``BadRequestError``, ...) are
# left out: under those names the root exports the client's subclasses, which carry the response; the
# engine, the edge, the server and the gateway import them from here by name.
__all__ = [
    "APIError",
    "BrokenChainError",
    "ChunkwiseError",
    "ClientClosedError",
    "ClientConfigError",
    "ClientStateError",
    "DecryptionError",
    "EngineError",
    "EnvelopeError",
    "EventTooLargeError",
    "IncompleteChainError",
    "IncompleteStreamError",
    "RequestValidationError",
    "SSEError",
    "SignatureError",
    "StreamConsumedError",
    "StreamError",
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


# --- errors in the HTTP API's terms ----------------------------------------------------------------


class APIError(ChunkwiseError):
    """Something went wrong in the terms of the HTTP API: an error answer, or talking to a server failed.

    ``str(error)`` says what.
    """

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class APIStatusError(APIError):
    """An error answer: an HTTP ``status`` and the error body's ``type``, ``code``, ``param`` and ``message``.

    The server, the engine and the gateway raise these to answer with them (``headers`` go with the
    answer); the client raises its subclasses (:mod:`chunkwise.client`), which also carry the
    ``response``, when a server answered with an error status. Subclasses fix ``status`` and ``type``.
    """

    status: int = 500
    type: str | None = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | int | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
        type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.param = param
        self.code = code
        self.headers = headers or {}
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type

    @property
    def status_code(self) -> int:
        """The same as ``status`` (the name the client always used)."""
        return self.status


class BadRequestError(APIStatusError):
    """400: the request is malformed, or names something the server cannot do."""

    status = 400
    type = "invalid_request_error"


class AuthenticationError(APIStatusError):
    """401: missing or wrong API key."""

    status = 401
    type = "invalid_request_error"


class PaymentRequiredError(APIStatusError):
    """402: the account cannot pay for the request (Atoma's ``BALANCE_ERROR``)."""

    status = 402
    type = "invalid_request_error"


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""

    status = 403
    type = "invalid_request_error"


class NotFoundError(APIStatusError):
    """404: unknown path or model."""

    status = 404
    type = "invalid_request_error"


class MethodNotAllowedError(APIStatusError):
    """405: the path exists, the method does not."""

    status = 405
    type = "invalid_request_error"


class ConflictError(APIStatusError):
    """409: the request conflicts with the server's state; retried."""

    status = 409
    type = "invalid_request_error"


class RequestTooLargeError(APIStatusError):
    """413: the request body is larger than the server accepts."""

    status = 413
    type = "invalid_request_error"


class UnsupportedMediaTypeError(APIStatusError):
    """415: the body is not of a media type the server reads."""

    status = 415
    type = "invalid_request_error"


class UnprocessableEntityError(APIStatusError):
    """422: the body parsed but a field is invalid."""

    status = 422
    type = "invalid_request_error"


class RateLimitError(APIStatusError):
    """429: too many requests; retried after ``Retry-After``."""

    status = 429
    type = "rate_limit_error"


class InternalServerError(APIStatusError):
    """5xx: the server failed; retried."""

    status = 500
    type = "server_error"


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
