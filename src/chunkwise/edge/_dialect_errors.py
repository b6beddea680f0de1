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

__all__ = ["MESSAGES_ERRORS", "MessagesErrorShape"]

_encoder = msgspec.json.Encoder()


class MessagesErrorShape:
    """``{"type": "error", "error": {"type", "message"}}``; in a stream, the ``error`` event."""

    def body(self, status: int, detail: ErrorDetail) -> bytes:
        return _encoder.encode(messages_error(status, detail.message))

    def event(self, status: int, detail: ErrorDetail) -> bytes:
        error = MessagesErrorDetail(type=messages_error_type(status), message=detail.message)
        return encode_dialect_event(MessagesErrorEvent(error=error))


MESSAGES_ERRORS = MessagesErrorShape()
