"""The client's own errors: failures to reach a server, and error answers with the response they came in.

Each status error here is also the root's class for its status (:class:`chunkwise.BadRequestError` is this
module's, and an instance of ``chunkwise._errors.BadRequestError`` too), so the one tree under
:class:`chunkwise.ChunkwiseError` holds; see :mod:`chunkwise._errors` for the whole tree.
"""

from __future__ import annotations

import httpx

from .. import _errors as base
from .._errors import APIError
from ..types import ErrorDetail

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
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
    "TotalTimeoutError",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
]


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


class APIStatusError(base.APIStatusError):
    """The server answered with a non-2xx status.

    ``error`` is the parsed ``{"error": {...}}`` body (also built from ``{"detail": ...}``, a bare
    string, or plain text), ``response`` the closed response with its headers and body; ``status``,
    ``type``, ``code`` and ``param`` come from them.
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
        super().__init__(
            message,
            status=status_code,
            type=None if error is None else error.type,
            param=None if error is None else error.param,
            code=None if error is None else error.code,
            request_id=request_id,
        )
        self.error = error
        self.response = response


class BadRequestError(APIStatusError, base.BadRequestError):
    """400: the server rejected the request as malformed."""


class AuthenticationError(APIStatusError, base.AuthenticationError):
    """401: missing or wrong API key."""


class PaymentRequiredError(APIStatusError, base.PaymentRequiredError):
    """402: the account cannot pay for the request (Atoma's ``BALANCE_ERROR``)."""


class PermissionDeniedError(APIStatusError, base.PermissionDeniedError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError, base.NotFoundError):
    """404: unknown path or model."""


class ConflictError(APIStatusError, base.ConflictError):
    """409: the request conflicts with the server's state; retried."""


class RequestTooLargeError(APIStatusError, base.RequestTooLargeError):
    """413: the request body is larger than the server accepts."""


class UnprocessableEntityError(APIStatusError, base.UnprocessableEntityError):
    """422: the body parsed but a field is invalid."""


class RateLimitError(APIStatusError, base.RateLimitError):
    """429: too many requests; retried after ``Retry-After``."""


class InternalServerError(APIStatusError, base.InternalServerError):
    """5xx: the server failed; retried."""


#: The error of each status that has a class of its own (any other 5xx is an InternalServerError).
BY_STATUS: dict[int, type[APIStatusError]] = {
    kind.status: kind
    for kind in (
        BadRequestError,
        AuthenticationError,
        PaymentRequiredError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        RequestTooLargeError,
        UnprocessableEntityError,
        RateLimitError,
    )
}


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
