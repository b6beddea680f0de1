"""Anthropic's error shape, for every answer of a Messages endpoint in both apps.

A Responses endpoint needs no shape of its own: its HTTP errors are OpenAI's, and its in-stream errors
(``error`` then ``response.failed``) belong to the stream writer, which knows the response they fail.
"""

from __future__ import annotations

import msgspec

from ..dialects import (
    MessagesErrorDetail,
    MessagesErrorEvent,
    encode_dialect_event,
    messages_error,
    messages_error_type,
)
from ..types import ErrorDetail
from ._errors import OPENAI_ERRORS, ErrorShape

__all__ = ["MESSAGES_ERRORS", "MessagesErrorShape", "errors_for_path"]

_encoder = msgspec.json.Encoder()


class MessagesErrorShape:
    """``{"type": "error", "error": {"type", "message"}}``; in a stream, the ``error`` event."""

    def body(self, status: int, detail: ErrorDetail) -> bytes:
        return _encoder.encode(messages_error(status, detail.message))

    def event(self, status: int, detail: ErrorDetail) -> bytes:
        error = MessagesErrorDetail(type=messages_error_type(status), message=detail.message)
        return encode_dialect_event(MessagesErrorEvent(error=error))


MESSAGES_ERRORS = MessagesErrorShape()


def errors_for_path(path: str) -> ErrorShape:
    """The error shape of the dialect a request path speaks: Anthropic's under ``/v1/messages``, else OpenAI's.

    For errors answered before a route's own handler runs (a refused key, the router's 404 and 405).
    """
    return MESSAGES_ERRORS if path.startswith("/v1/messages") else OPENAI_ERRORS
