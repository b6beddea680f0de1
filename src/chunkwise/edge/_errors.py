"""Error answers: the edge's own errors, the one mapping from any exception to an answer, and error shapes.

A dialect answers errors in its own shape. :class:`ErrorShape` is what a dialect supplies: the body of an
error answer and the frame of an error inside a stream, from the status and the OpenAI-style detail that
every error maps to first (:func:`describe_error`). :data:`OPENAI_ERRORS` is the shape of the OpenAI API
(and of every route today): ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import http
import logging
from typing import Protocol

import msgspec
from starlette.exceptions import HTTPException
from starlette.responses import Response

from .. import sse
from .._errors import APIStatusError, BadRequestError, EngineError, RequestTooLargeError
from ..types import ErrorDetail, ErrorResponse

__all__ = [
    "OPENAI_ERRORS",
    "BodyTooLargeError",
    "ClientClosedRequestError",
    "ErrorShape",
    "OpenAIErrorShape",
    "describe_error",
    "error_response",
]

logger = logging.getLogger("chunkwise.edge")

_encoder = msgspec.json.Encoder()


class BodyTooLargeError(RequestTooLargeError):
    """The request body passed the app's limit while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.", code="request_too_large")


class ClientClosedRequestError(BadRequestError):
    """The client disconnected before its body arrived: an ordinary event, answered (into the void) quietly."""

    def __init__(self) -> None:
        super().__init__("The client closed the connection before sending the whole body.", code="client_closed")


def describe_error(exc: BaseException) -> tuple[int, ErrorDetail, dict[str, str]]:
    """Status, error detail and extra headers for any exception: the one mapping of both apps."""
    if isinstance(exc, APIStatusError):
        code = exc.code
        detail = ErrorDetail(message=exc.message, type=exc.type, param=exc.param, code=code)
        return exc.status, detail, exc.headers
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


class ErrorShape(Protocol):
    """How a dialect writes an error: as a whole answer, and as an event inside a stream."""

    def body(self, status: int, detail: ErrorDetail) -> bytes: ...

    def event(self, status: int, detail: ErrorDetail) -> bytes: ...


class OpenAIErrorShape:
    """``{"error": {"message", "type", "param", "code"}}``; in a stream, ``data: {"error": ...}``."""

    def body(self, status: int, detail: ErrorDetail) -> bytes:
        return _encoder.encode(ErrorResponse(error=detail))

    def event(self, status: int, detail: ErrorDetail) -> bytes:
        return sse.encode_error(detail)


OPENAI_ERRORS: ErrorShape = OpenAIErrorShape()


def error_response(exc: BaseException, shape: ErrorShape = OPENAI_ERRORS) -> Response:
    """The answer for ``exc`` in ``shape``; failures are logged with their traceback here.

    An :class:`APIStatusError` is an answer chosen on purpose (the gateway's 502 for a failed upstream, a
    refusal): it is not logged again. Anything else that maps to a 5xx is a failure of this process.
    """
    status, detail, headers = describe_error(exc)
    if status >= 500 and not isinstance(exc, APIStatusError):
        logger.error("answering %d: %s", status, detail.message, exc_info=exc)
    return Response(shape.body(status, detail), status_code=status, headers=headers, media_type="application/json")
