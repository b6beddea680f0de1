"""Errors the server answers with, and the one place that turns any exception into an HTTP answer.

::

    ChunkwiseError
    ├── ServerError                 answered with ``status`` and the OpenAI error body
    │   ├── BadRequestError         400: malformed JSON, a schema violation (with ``param``)
    │   │   └── ClientClosedRequestError  the client went away while sending its body (nobody reads it)
    │   ├── AuthenticationError     401: missing or wrong bearer key
    │   ├── NotFoundError           404
    │   │   └── ModelNotFoundError  404 ``model_not_found``
    │   ├── MethodNotAllowedError   405
    │   ├── RequestTooLargeError    413: the body is over ``max_body_size``
    │   ├── UnsupportedMediaTypeError 415: the body is not JSON
    │   └── QueueFullError          429 with ``Retry-After``: the engine's queue is full
    ├── InvalidRequestError         (engine) the request cannot be honoured; carries its own status
    └── EngineError                 (engine) the model failed; 500, or an in-band frame once streaming

Every error body is ``{"error": {"message", "type", "param", "code"}}``
(:class:`chunkwise.types.ErrorResponse`); no traceback ever reaches a client.
"""

from __future__ import annotations

import http
import logging

from starlette.exceptions import HTTPException
from starlette.responses import Response

from .._errors import ChunkwiseError, EngineError
from ..engine._protocol import InvalidRequestError
from ..types import ErrorDetail, ErrorResponse
from ._responses import MsgspecResponse

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedRequestError",
    "MethodNotAllowedError",
    "ModelNotFoundError",
    "NotFoundError",
    "QueueFullError",
    "RequestTooLargeError",
    "ServerError",
    "UnsupportedMediaTypeError",
    "describe_error",
    "error_response",
]

logger = logging.getLogger("chunkwise.server")


class ServerError(ChunkwiseError):
    """An error with a fixed HTTP status; subclasses set ``status`` and ``type``."""

    status = 500
    type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class BadRequestError(ServerError):
    status = 400
    type = "invalid_request_error"


class ClientClosedRequestError(BadRequestError):
    """The client disconnected before its body arrived: an ordinary event, answered (into the void) quietly."""

    def __init__(self) -> None:
        super().__init__("The client closed the connection before sending the whole body.", code="client_closed")


class AuthenticationError(ServerError):
    status = 401
    type = "invalid_request_error"


class NotFoundError(ServerError):
    status = 404
    type = "invalid_request_error"


class ModelNotFoundError(NotFoundError):
    def __init__(self, model: str, served: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist; this server serves `{served}`.",
            param="model",
            code="model_not_found",
        )


class MethodNotAllowedError(ServerError):
    status = 405
    type = "invalid_request_error"


class RequestTooLargeError(ServerError):
    status = 413
    type = "invalid_request_error"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.", code="request_too_large")


class UnsupportedMediaTypeError(ServerError):
    status = 415
    type = "invalid_request_error"


class QueueFullError(ServerError):
    status = 429
    type = "rate_limit_error"

    def __init__(self, queue_size: int, retry_after: int) -> None:
        super().__init__(
            f"The server is busy: {queue_size} requests are already waiting. Retry after {retry_after} s.",
            code="queue_full",
            headers={"Retry-After": str(retry_after)},
        )


def describe_error(exc: BaseException) -> tuple[int, ErrorDetail, dict[str, str]]:
    """Status, error body and extra headers for any exception: the server's one mapping."""
    if isinstance(exc, ServerError):
        return exc.status, ErrorDetail(message=exc.message, type=exc.type, param=exc.param, code=exc.code), exc.headers
    if isinstance(exc, InvalidRequestError):
        return exc.status, ErrorDetail(message=exc.message, type=exc.type, param=exc.param, code=exc.code), {}
    if isinstance(exc, EngineError):
        detail = ErrorDetail(message=f"The model engine failed: {exc}", type="server_error", code="engine_error")
        return 500, detail, {}
    if isinstance(exc, HTTPException):
        status = exc.status_code
        phrase = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else "Error"
        message = exc.detail if exc.detail and exc.detail != phrase else phrase
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return status, ErrorDetail(message=message, type=kind), dict(exc.headers or {})
    return 500, ErrorDetail(message="The server had an internal error.", type="server_error"), {}


def error_response(exc: BaseException) -> Response:
    """The JSON answer for ``exc``; unexpected exceptions are logged with their traceback here."""
    status, detail, headers = describe_error(exc)
    if status >= 500:
        logger.error("answering %d: %s", status, detail.message, exc_info=exc)
    return MsgspecResponse(ErrorResponse(error=detail), status_code=status, headers=headers)
