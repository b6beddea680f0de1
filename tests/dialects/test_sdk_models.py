"""What the dialects write validates with the official SDKs' own models, which proves the wire shape.

openai-python's ``ResponseStreamEvent`` and ``Response``, and anthropic-sdk-python's ``RawMessageStreamEvent``,
``Message`` and ``ErrorResponse`` are pydantic models with the field names, required fields and literals
of each API; a field misnamed or missing here fails their validation.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pydantic
import pytest
from hypothesis import given, settings

from chunkwise.accumulate import accumulate
from chunkwise.dialects import (
    ChatToMessages,
    ChatToResponses,
    MessagesErrorEvent,
    MessageStartEvent,
    MessageTokensCount,
    PingEvent,
    ResponseStreamEvent,
    completion_to_message,
    completion_to_response,
    messages_error,
    messages_error_detail,
)
from chunkwise.types import ErrorDetail

from .strategies import ChatStream, chat_streams
from .test_properties import MESSAGE_ID, template, to_messages, to_responses

openai_responses = pytest.importorskip("openai.types.responses")
anthropic_types = pytest.importorskip("anthropic.types")

openai_event: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(openai_responses.ResponseStreamEvent)
anthropic_event: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(anthropic_types.RawMessageStreamEvent)


def wire(value: msgspec.Struct) -> bytes:
    return msgspec.json.encode(value)


@settings(max_examples=60, deadline=None)
@given(chat_streams(canonical=False))
def test_responses_events_and_response_validate_with_openai_python(stream: ChatStream) -> None:
    events = to_responses(stream.chunks)
    for event in events:
        parsed = openai_event.validate_json(wire(event))
        assert parsed.type == type(event).__struct_config__.tag
        assert parsed.sequence_number == event.sequence_number
    final = completion_to_response(accumulate(stream.chunks), template())
    response = openai_responses.Response.model_validate_json(wire(final))
    assert response.output_text == final.output_text


@settings(max_examples=60, deadline=None)
@given(chat_streams(canonical=False))
def test_messages_events_and_message_validate_with_anthropic_sdk(stream: ChatStream) -> None:
    for event in to_messages(stream.chunks):
        parsed = anthropic_event.validate_json(wire(event))
        assert parsed.type == type(event).__struct_config__.tag
    final = completion_to_message(accumulate(stream.chunks), message_id=MESSAGE_ID, model="m")
    message = anthropic_types.Message.model_validate_json(wire(final))
    assert [block.type for block in message.content] == [type(block).__struct_config__.tag for block in final.content]


def test_failed_responses_stream_validates_with_openai_python() -> None:
    writer = ChatToResponses(template())
    events: list[ResponseStreamEvent] = writer.start() + writer.fail("the engine stopped")
    parsed = [openai_event.validate_json(wire(event)) for event in events]
    assert [event.type for event in parsed] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert parsed[2].message == "the engine stopped"
    assert parsed[3].response.status == "failed" and parsed[3].response.error.code == "server_error"


def test_anthropic_ping_error_event_and_error_body_validate_with_anthropic_sdk() -> None:
    anthropic_shared = pytest.importorskip("anthropic.types.shared")
    writer = ChatToMessages(message_id=MESSAGE_ID, model="m")
    start = writer.start()
    assert isinstance(start[0], MessageStartEvent)
    error = writer.fail("overloaded", error_type="overloaded_error")[0]
    assert isinstance(error, MessagesErrorEvent)
    body = anthropic_shared.ErrorResponse.model_validate_json(wire(error))
    assert (body.type, body.error.type, body.error.message) == ("error", "overloaded_error", "overloaded")
    answer = anthropic_shared.ErrorResponse.model_validate_json(wire(messages_error(404, "no such model")))
    assert answer.error.type == "not_found_error"
    assert msgspec.json.decode(wire(PingEvent())) == {"type": "ping"}


def test_chat_errors_take_anthropic_types() -> None:
    assert messages_error_detail(ErrorDetail(message="m", type="rate_limit_error")).type == "rate_limit_error"
    assert messages_error_detail(ErrorDetail(message="m", type="server_error")).type == "api_error"
    assert messages_error_detail(ErrorDetail(message="m", type="x", http_status_code=529)).type == "overloaded_error"
    assert messages_error(400, "bad").error.type == "invalid_request_error"
    assert messages_error(502, "bad").error.type == "api_error"


def test_count_tokens_answer_validates_with_anthropic_sdk() -> None:
    counted = anthropic_types.MessageTokensCount.model_validate_json(wire(MessageTokensCount(input_tokens=12)))
    assert counted.input_tokens == 12
