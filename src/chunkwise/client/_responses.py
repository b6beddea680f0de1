"""Reading responses, sans I/O: request ids, content types, and the one status-to-error mapping."""

from __future__ import annotations

import http
from typing import Any, TypeVar

import httpx
import msgspec

from ..types import ErrorDetail
from ._errors import BY_STATUS, APIStatusError, InternalServerError, UnexpectedResponseError

__all__ = ["decode_body", "decode_success", "is_event_stream", "parse_error_body", "request_id_of", "status_error"]

T = TypeVar("T")

_REQUEST_ID_HEADERS = ("x-request-id", "request-id")


#: How much of a body that is not JSON goes into an error message.
_TEXT_EXCERPT = 500


def request_id_of(headers: httpx.Headers) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value: str | None = headers.get(name)
        if value:
            return value
    return None


def is_event_stream(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


class _ErrorShapes(msgspec.Struct):
    # OpenAI, vLLM, Atoma: {"error": {...}}; TGI: {"error": "..."}; FastAPI: {"detail": ...};
    # others: {"message": "..."}.
    error: ErrorDetail | str | None = None
    detail: Any = None
    message: str | None = None


_error_shapes_decoder = msgspec.json.Decoder(_ErrorShapes)


def _error_from_json(content: bytes) -> ErrorDetail | None:
    """The error a JSON body reports, ``None`` if it is not JSON or reports none."""
    try:
        shapes = _error_shapes_decoder.decode(content)
    except msgspec.DecodeError:
        return None
    if isinstance(shapes.error, ErrorDetail):
        return shapes.error
    if isinstance(shapes.error, str):
        return ErrorDetail(message=shapes.error)
    if shapes.detail is not None:
        detail = shapes.detail if isinstance(shapes.detail, str) else msgspec.json.encode(shapes.detail).decode()
        return ErrorDetail(message=detail)
    if shapes.message is not None:
        return ErrorDetail(message=shapes.message)
    return None


def parse_error_body(content: bytes) -> ErrorDetail | None:
    """The error a body reports, whatever its shape; plain text becomes the message."""
    error = _error_from_json(content)
    if error is not None:
        return error
    text = content.decode("utf-8", "replace").strip()
    if not text or text.startswith(("{", "[")):
        return None
    return ErrorDetail(message=text[:_TEXT_EXCERPT])


def status_error(response: httpx.Response) -> APIStatusError:
    """The error for a non-2xx response whose body was read: the one place statuses become errors."""
    status = response.status_code
    error = parse_error_body(response.content)
    kind = BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    reason = response.reason_phrase
    if not reason:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "error"
    message = f"{status} {reason}"
    if error is not None and error.message:
        message = f"{message}: {error.message}"
    return kind(message, status_code=status, error=error, response=response, request_id=request_id_of(response.headers))


def decode_success(response: httpx.Response, decoder: msgspec.json.Decoder[T]) -> T:
    """The typed body of a response whose body was read; raises for an error status or a bad body."""
    if not response.is_success:
        raise status_error(response)
    content = response.content
    # Decoding is tolerant, so `{"error": ...}` would decode as an empty result: look for it first.
    if b'"error"' in content:
        error = _error_from_json(content)
        if error is not None:
            raise UnexpectedResponseError(
                f"the server answered {response.status_code} with an error: {error.message}",
                response=response,
                error=error,
                request_id=request_id_of(response.headers),
            )
    return decode_body(response, content, decoder)


def decode_body(response: httpx.Response, content: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """``content`` (the body of ``response``, or what a guard opened of it), typed."""
    try:
        return decoder.decode(content)
    except msgspec.DecodeError as exc:
        raise UnexpectedResponseError(
            f"the {response.status_code} response body does not decode: {exc}",
            response=response,
            request_id=request_id_of(response.headers),
        ) from exc
