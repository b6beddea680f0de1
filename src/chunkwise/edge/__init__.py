"""The HTTP edge that the server and the gateway share.

Everything between the socket and a route's own logic that both apps need, written once: bounded body
reading (deep nesting included), the caller's credentials (``Authorization: Bearer`` or ``x-api-key``),
error answers in a dialect's :class:`ErrorShape` behind one choke point (:class:`ErrorBoundary`,
:func:`respond`), JSON answers and the model list, and event-stream answers (headers, keep-alives, the
``[DONE]`` frame, disconnect watching). It sits above the engine and below the server and the gateway,
and imports neither.
"""

from __future__ import annotations

from ._body import decode_json, read_body, read_json, validation_param
from ._boundary import ErrorBoundary, Handler, exception_handlers, respond
from ._credentials import BEARER, X_API_KEY, Credential, find_credential
from ._errors import (
    OPENAI_ERRORS,
    BodyTooLargeError,
    ClientClosedRequestError,
    ErrorShape,
    OpenAIErrorShape,
    describe_error,
    error_response,
)
from ._json import JSON_MEDIA_TYPE, JSONResponse, model_list_response
from ._sse import DONE, KEEPALIVE, SSE_HEADERS, wait_for_disconnect

__all__ = [
    "BEARER",
    "BodyTooLargeError",
    "ClientClosedRequestError",
    "Credential",
    "DONE",
    "ErrorBoundary",
    "ErrorShape",
    "Handler",
    "JSONResponse",
    "JSON_MEDIA_TYPE",
    "KEEPALIVE",
    "OPENAI_ERRORS",
    "OpenAIErrorShape",
    "SSE_HEADERS",
    "X_API_KEY",
    "decode_json",
    "describe_error",
    "error_response",
    "exception_handlers",
    "find_credential",
    "model_list_response",
    "read_body",
    "read_json",
    "respond",
    "validation_param",
    "wait_for_disconnect",
]
