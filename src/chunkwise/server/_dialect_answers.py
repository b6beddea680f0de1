"""The Responses API and Anthropic Messages as answer encodings: the chat chunks, written as each dialect's events.

A :class:`~chunkwise.server._generation.GenerationResponse` runs every dialect's generation the same way;
only its :class:`~chunkwise.server._framing.AnswerEncoding` differs. These encodings hand the chunks to the
writers of :mod:`chunkwise.dialects` and the whole answer to its final-object translation, so a streamed
and a whole answer are the same object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from ..dialects import (
    ChatToMessages,
    ChatToResponses,
    PingEvent,
    ResponseObject,
    completion_to_message,
    completion_to_response,
    encode_dialect_event,
    messages_error_type,
)
from ..edge import KEEPALIVE, MESSAGES_ERRORS, OPENAI_ERRORS, ErrorShape
from ..types import ChatCompletion, ChatCompletionChunk, ErrorDetail

__all__ = ["MessagesAnswer", "ResponsesAnswer"]

_encoder = msgspec.json.Encoder()
_PING = encode_dialect_event(PingEvent())


def _events(events: Iterable[msgspec.Struct]) -> bytes:
    return b"".join(encode_dialect_event(event) for event in events)


def _chunk(value: msgspec.Struct) -> ChatCompletionChunk:
    if not isinstance(value, ChatCompletionChunk):
        raise TypeError(f"a dialect answers chat chunks, not {type(value).__name__}")
    return value


def _completion(value: msgspec.Struct) -> ChatCompletion:
    if not isinstance(value, ChatCompletion):
        raise TypeError(f"a dialect answers a chat completion, not {type(value).__name__}")
    return value


class ResponsesAnswer:
    """A ``response``: its lifecycle events while streaming, the object when whole; ``keep`` gets the final one."""

    __slots__ = ("_keep", "_template", "_writer")
    errors: ErrorShape = OPENAI_ERRORS

    def __init__(self, template: ResponseObject, keep: Callable[[ResponseObject], None] | None = None) -> None:
        self._template = template
        self._writer = ChatToResponses(template)
        self._keep = keep

    def opening(self) -> bytes:
        return _events(self._writer.start())

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def event(self, value: msgspec.Struct, /) -> bytes:
        return _events(self._writer.feed(_chunk(value)))

    def failure(self, status: int, detail: ErrorDetail) -> bytes:
        code = detail.code if isinstance(detail.code, str) else "server_error"
        return _events(self._writer.fail(detail.message, code=code))

    def end(self) -> bytes:
        data = _events(self._writer.finish())
        self._kept(self._writer.response)
        return data

    def body(self, value: msgspec.Struct, /) -> bytes:
        response = completion_to_response(_completion(value), self._template)
        self._kept(response)
        return _encoder.encode(response)

    def _kept(self, response: ResponseObject) -> None:
        if self._keep is not None and response.status in ("completed", "incomplete"):
            self._keep(response)


class MessagesAnswer:
    """An Anthropic ``message``: ``message_start``, its blocks and ``message_stop``, or the object when whole."""

    __slots__ = ("_message_id", "_model", "_writer")
    errors: ErrorShape = MESSAGES_ERRORS

    def __init__(self, *, message_id: str, model: str, input_tokens: int) -> None:
        self._message_id = message_id
        self._model = model
        self._writer = ChatToMessages(message_id=message_id, model=model, input_tokens=input_tokens)

    def opening(self) -> bytes:
        return _events(self._writer.start())

    def keepalive(self) -> bytes:
        # Anthropic's own keep-alive: a `ping` event while the request waits.
        return _PING

    def event(self, value: msgspec.Struct, /) -> bytes:
        return _events(self._writer.feed(_chunk(value)))

    def failure(self, status: int, detail: ErrorDetail) -> bytes:
        return _events(self._writer.fail(detail.message, error_type=messages_error_type(status)))

    def end(self) -> bytes:
        return _events(self._writer.finish())

    def body(self, value: msgspec.Struct, /) -> bytes:
        message = completion_to_message(_completion(value), message_id=self._message_id, model=self._model)
        return _encoder.encode(message)
