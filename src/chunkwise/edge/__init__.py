"""The HTTP edge that the server and the gateway share.

Everything between the socket and a route's own logic that both apps need, written once: bounded body
reading (deep nesting included), the caller's credentials (``Authorization: Bearer`` or ``x-api-key``),
error answers in a dialect's :class:`ErrorShape` behind one choke point (:class:`ErrorBoundary`,
:func:`respond`), JSON answers and the model list, and event-stream answers (headers, keep-alives, the
``[DONE]`` frame, disconnect watching), the metrics registry and its ``GET /metrics`` answer, and the
Responses API and Anthropic Messages answered from chat (each dialect's answer writer, Anthropic's error
shape, the bounded store of Responses). It sits above the engine and the dialects and below the server and
the gateway, and imports neither.
"""

from __future__ import annotations

from ._body import decode_json, read_body, read_json, validation_param
from ._boundary import ErrorBoundary, Handler, exception_handlers, respond
from ._credentials import BEARER, X_API_KEY, Credential, find_credential
from ._dialect_answers import DialectAnswer, MessagesAnswer, ResponsesAnswer, responses_answer
from ._dialect_errors import MESSAGES_ERRORS, MessagesErrorShape, errors_for_path
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
from ._metrics import AppMetrics
from ._response_routes import ResponseDeleted, stored_response_routes
from ._response_store import (
    MemoryResponseStore,
    ResponseStore,
    SQLiteResponseStore,
    StoredResponse,
    open_response_store,
    stored_response,
)
from ._sse import DONE, KEEPALIVE, SSE_HEADERS, wait_for_disconnect

__all__ = [
    "AppMetrics",
    "BEARER",
    "BodyTooLargeError",
    "ClientClosedRequestError",
    "Credential",
    "DONE",
    "DialectAnswer",
    "ErrorBoundary",
    "ErrorShape",
    "Handler",
    "JSONResponse",
    "JSON_MEDIA_TYPE",
    "KEEPALIVE",
    "MESSAGES_ERRORS",
    "MemoryResponseStore",
    "MessagesAnswer",
    "MessagesErrorShape",
    "OPENAI_ERRORS",
    "OpenAIErrorShape",
    "ResponseDeleted",
    "ResponseStore",
    "ResponsesAnswer",
    "SQLiteResponseStore",
    "SSE_HEADERS",
    "StoredResponse",
    "X_API_KEY",
    "decode_json",
    "describe_error",
    "error_response",
    "errors_for_path",
    "exception_handlers",
    "find_credential",
    "model_list_response",
    "open_response_store",
    "read_body",
    "read_json",
    "respond",
    "responses_answer",
    "stored_response",
    "stored_response_routes",
    "validation_param",
    "wait_for_disconnect",
]
