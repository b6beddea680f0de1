"""The Responses API and Anthropic Messages as answers: chat chunks in, each dialect's bytes out.

Both apps answer a dialect request the same way: translate it to a chat request (:func:`responses_answer`;
``messages_request_to_chat`` and a :class:`MessagesAnswer`), get chat chunks or a chat completion for it
(from the engine, or from an upstream), and write them through the answer. An answer hands the chunks to
the writers of :mod:`chunkwise.dialects` and a whole completion to its final-object translation, so a
streamed and a whole answer are the same object. In the server an answer is its generation's
``AnswerEncoding``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import msgspec

from ..dialects import (
    ChatToMessages,
    ChatToResponses,
    PingEvent,
    ResponseObject,
    ResponsesRequest,
    completion_to_message,
    completion_to_response,
    encode_dialect_event,
    messages_error_type,
    new_response,
    responses_request_to_chat,
)
from ..types import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ErrorDetail
from ._dialect_errors import MESSAGES_ERRORS
from ._errors import OPENAI_ERRORS, ErrorShape
from ._response_store import ResponseStore, StoredResponse, conversation
from ._sse import KEEPALIVE

__all__ = ["DialectAnswer", "MessagesAnswer", "ResponsesAnswer", "responses_answer"]

_encoder = msgspec.json.Encoder()
_PING = encode_dialect_event(PingEvent())


class DialectAnswer(Protocol):
    """What each dialect writes for one answer, from chat chunks (streamed) or a chat completion (whole)."""

    #: The shape of an error answered before anything was sent.
    errors: ErrorShape

    def opening(self) -> bytes:
        """The events a stream starts with, sent at once."""
        ...

    def keepalive(self) -> bytes:
        """What a stream sends while nothing else comes."""
        ...

    def event(self, value: msgspec.Struct, /) -> bytes:
        """The events for one chat chunk (maybe none)."""
        ...

    def failure(self, status: int, detail: ErrorDetail) -> bytes:
        """The stream's error events, the chat stream having broken."""
        ...

    def end(self) -> bytes:
        """The stream's last events."""
        ...

    def body(self, value: msgspec.Struct, /) -> bytes:
        """The whole answer for a chat completion."""
        ...


def responses_answer(
    request: ResponsesRequest,
    store: ResponseStore,
    *,
    response_id: str,
    created_at: int,
    model: str,
    owner: str | None = None,
) -> tuple[ChatCompletionRequest, ResponsesAnswer]:
    """The chat request for a Responses request (the stored turns it continues first) and its answer, which
    stores the final response unless ``store`` is false. Only ``owner`` may read or continue it."""
    items = conversation(request, store, owner)
    chat = responses_request_to_chat(msgspec.structs.replace(request, input=items))
    template = new_response(request, response_id=response_id, created_at=created_at, model=model)
    keep = None
    if request.store is not False:

        def keep(response: ResponseObject) -> None:
            store.put(StoredResponse(response=response, input=items, owner=owner))

    return chat, ResponsesAnswer(template, keep)


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


class _EventWriter(Protocol):
    """A dialect's stream writer (``ChatToResponses``, ``ChatToMessages``): chat chunks in, its events out."""

    def start(self) -> Sequence[msgspec.Struct]: ...

    def feed(self, chunk: ChatCompletionChunk) -> Sequence[msgspec.Struct]: ...

    def finish(self) -> Sequence[msgspec.Struct]: ...


class _WrittenAnswer:
    """What both answers stream alike: the events their dialect's writer makes of the chat chunks."""

    __slots__ = ()
    _writer: _EventWriter

    def opening(self) -> bytes:
        return _events(self._writer.start())

    def event(self, value: msgspec.Struct, /) -> bytes:
        return _events(self._writer.feed(_chunk(value)))

    def end(self) -> bytes:
        return _events(self._writer.finish())


class ResponsesAnswer(_WrittenAnswer):
    """A ``response``: its lifecycle events while streaming, the object when whole; ``keep`` gets the final one."""

    __slots__ = ("_keep", "_template", "_writer")
    _writer: ChatToResponses
    errors: ErrorShape = OPENAI_ERRORS

    def __init__(self, template: ResponseObject, keep: Callable[[ResponseObject], None] | None = None) -> None:
        self._template = template
        self._writer = ChatToResponses(template)
        self._keep = keep

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def failure(self, status: int, detail: ErrorDetail) -> bytes:
        code = detail.code if isinstance(detail.code, str) else "server_error"
        return _events(self._writer.fail(detail.message, code=code))

    def end(self) -> bytes:
        data = super().end()
        self._kept(self._writer.response)
        return data

    def body(self, value: msgspec.Struct, /) -> bytes:
        response = completion_to_response(_completion(value), self._template)
        self._kept(response)
        return _encoder.encode(response)

    def _kept(self, response: ResponseObject) -> None:
        if self._keep is not None and response.status in ("completed", "incomplete"):
            self._keep(response)


class MessagesAnswer(_WrittenAnswer):
    """An Anthropic ``message``: ``message_start``, its blocks and ``message_stop``, or the object when whole."""

    __slots__ = ("_message_id", "_model", "_writer")
    _writer: ChatToMessages
    errors: ErrorShape = MESSAGES_ERRORS

    def __init__(self, *, message_id: str, model: str, input_tokens: int) -> None:
        self._message_id = message_id
        self._model = model
        self._writer = ChatToMessages(message_id=message_id, model=model, input_tokens=input_tokens)

    def keepalive(self) -> bytes:
        # Anthropic's own keep-alive: a `ping` event while the request waits.
        return _PING

    def failure(self, status: int, detail: ErrorDetail) -> bytes:
        return _events(self._writer.fail(detail.message, error_type=messages_error_type(status)))

    def body(self, value: msgspec.Struct, /) -> bytes:
        message = completion_to_message(_completion(value), message_id=self._message_id, model=self._model)
        return _encoder.encode(message)
