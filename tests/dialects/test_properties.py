"""Properties of the dialect translations, over random chat chunk streams (see strategies.py).

(a) a stream translated to a dialect and reassembled equals the chat reassembly translated to the dialect's
    final object; (b) the events follow the dialect's grammar; (c) chat -> dialect -> chat keeps the
    completion's text, reasoning, tool calls, finish and usage; (d) events -> SSE bytes -> events is the
    identity, however the bytes are cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkwise.accumulate import accumulate
from chunkwise.dialects import (
    ChatToMessages,
    ChatToResponses,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    MessageDeltaEvent,
    MessagesAccumulator,
    MessagesStreamDecoder,
    MessagesStreamEvent,
    MessageStartEvent,
    MessagesToChat,
    MessageStopEvent,
    ResponseAccumulator,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseObject,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
    ResponseRefusalDeltaEvent,
    ResponseRefusalDoneEvent,
    ResponsesRequest,
    ResponsesStreamDecoder,
    ResponsesToChat,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
    completion_to_message,
    completion_to_response,
    encode_dialect_event,
    new_response,
)
from chunkwise.types import ChatCompletion, ChatCompletionChunk, ErrorDetail

from .strategies import ChatStream, chat_streams

RESPONSE_ID, MESSAGE_ID = "resp_0a1b", "msg_0a1b"


def template() -> ResponseObject:
    """An in-progress response that echoes a request using every echoed field, so the SDK checks them all."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = msgspec.convert(
        {
            "model": "m",
            "input": "hi",
            "stream": True,
            "instructions": "Be brief.",
            "tools": [{"type": "function", "name": "weather", "parameters": schema, "strict": False}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema}},
            "max_output_tokens": 100,
            "temperature": 0.7,
            "top_p": 0.9,
            "store": True,
            "metadata": {"k": "v"},
            "reasoning": {"effort": "low"},
            "truncation": "disabled",
            "user": "u",
        },
        ResponsesRequest,
    )
    return new_response(request, response_id=RESPONSE_ID, created_at=1_760_000_000, model="m")


def to_responses(chunks: Sequence[ChatCompletionChunk]) -> list[ResponseStreamEvent]:
    writer = ChatToResponses(template())
    events = writer.start()
    for chunk in chunks:
        events += writer.feed(chunk)
    return events + writer.finish()


def to_messages(chunks: Sequence[ChatCompletionChunk]) -> list[MessagesStreamEvent]:
    writer = ChatToMessages(message_id=MESSAGE_ID, model="m")
    events = writer.start()
    for chunk in chunks:
        events += writer.feed(chunk)
    return events + writer.finish()


# --- (a) reassembly agrees with the final-object translation --------------------------------------------


@settings(max_examples=300, deadline=None)
@given(chat_streams())
def test_responses_stream_reassembles_to_the_translated_completion(stream: ChatStream) -> None:
    events = to_responses(stream.chunks)
    accumulator = ResponseAccumulator()
    for event in events:
        accumulator.add(event)
    expected = completion_to_response(accumulate(stream.chunks), template())
    assert accumulator.finished
    assert accumulator.result() == expected
    # The terminal event carries the same response whole.
    terminal = events[-1]
    assert isinstance(terminal, ResponseCompletedEvent | ResponseIncompleteEvent)
    assert terminal.response == expected


@settings(max_examples=300, deadline=None)
@given(chat_streams())
def test_messages_stream_reassembles_to_the_translated_completion(stream: ChatStream) -> None:
    accumulator = MessagesAccumulator()
    for event in to_messages(stream.chunks):
        accumulator.add(event)
    assert accumulator.finished
    assert accumulator.result() == completion_to_message(accumulate(stream.chunks), message_id=MESSAGE_ID, model="m")


# --- (b) grammar ------------------------------------------------------------------------------------------


def check_responses_grammar(events: Sequence[ResponseStreamEvent]) -> None:
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert isinstance(events[0], ResponseCreatedEvent)
    assert isinstance(events[1], ResponseInProgressEvent)
    assert isinstance(events[-1], ResponseCompletedEvent | ResponseIncompleteEvent)
    added: dict[int, str] = {}  # output_index -> item id
    parts_open: set[tuple[int, int]] = set()
    parts_done: set[tuple[int, int]] = set()
    items_done: set[int] = set()
    for event in events[2:-1]:
        assert not isinstance(event, ResponseCreatedEvent | ResponseInProgressEvent | ResponseCompletedEvent)
        if isinstance(event, ResponseOutputItemAddedEvent):
            assert event.output_index == len(added), "items are added in output_index order"
            assert event.item.status == "in_progress"
            added[event.output_index] = event.item.id or ""
            continue
        index = event.output_index  # type: ignore[union-attr]
        assert index in added and index not in items_done, f"{type(event).__name__} outside its item"
        if isinstance(event, ResponseOutputItemDoneEvent):
            assert not any(key[0] == index for key in parts_open), "an item ends after its parts"
            assert event.item.id == added[index]
            items_done.add(index)
            continue
        assert event.item_id == added[index]  # type: ignore[union-attr]
        if isinstance(event, ResponseContentPartAddedEvent):
            key = (index, event.content_index)
            assert key not in parts_open and key not in parts_done
            parts_open.add(key)
        elif isinstance(
            event,
            ResponseTextDeltaEvent
            | ResponseReasoningTextDeltaEvent
            | ResponseTextDoneEvent
            | ResponseReasoningTextDoneEvent
            | ResponseRefusalDeltaEvent
            | ResponseRefusalDoneEvent,
        ):
            assert (index, event.content_index) in parts_open
        elif isinstance(event, ResponseContentPartDoneEvent):
            key = (index, event.content_index)
            parts_open.remove(key)
            parts_done.add(key)
        else:
            assert isinstance(event, ResponseFunctionCallArgumentsDeltaEvent | ResponseFunctionCallArgumentsDoneEvent)
    assert items_done == set(added), "every item is done before the response is"


def check_messages_grammar(events: Sequence[MessagesStreamEvent]) -> None:
    assert isinstance(events[0], MessageStartEvent)
    assert events[0].message.content == [] and events[0].message.stop_reason is None
    assert isinstance(events[-2], MessageDeltaEvent)
    assert events[-2].delta.stop_reason is not None
    assert isinstance(events[-1], MessageStopEvent)
    open_block: ContentBlockStartEvent | None = None
    next_index = 0
    for event in events[1:-2]:
        if isinstance(event, ContentBlockStartEvent):
            assert open_block is None, "blocks never overlap"
            assert event.index == next_index
            next_index += 1
            open_block = event
        elif isinstance(event, ContentBlockDeltaEvent):
            assert open_block is not None and event.index == open_block.index
            block, delta = open_block.content_block, event.delta
            expected: dict[type[Any], type[Any]] = {
                TextBlock: TextDelta,
                ThinkingBlock: ThinkingDelta,
                ToolUseBlock: InputJSONDelta,
            }
            assert isinstance(delta, expected[type(block)])
        else:
            assert isinstance(event, ContentBlockStopEvent)
            assert open_block is not None and event.index == open_block.index
            open_block = None
    assert open_block is None


@settings(max_examples=300, deadline=None)
@given(chat_streams(canonical=False))
def test_responses_events_follow_the_grammar(stream: ChatStream) -> None:
    check_responses_grammar(to_responses(stream.chunks))


@settings(max_examples=300, deadline=None)
@given(chat_streams(canonical=False))
def test_messages_events_follow_the_grammar(stream: ChatStream) -> None:
    check_messages_grammar(to_messages(stream.chunks))


# --- (c) round trip -----------------------------------------------------------------------------------------


def same_answer(original: ChatCompletion, back: ChatCompletion, *, messages: bool) -> None:
    """Messages names the stop sequence and drops the reasoning-token count; Responses the other way round."""
    before, after = original.choices[0], back.choices[0]
    assert (after.message.content or "") == (before.message.content or "")
    assert (after.message.reasoning_text or "") == (before.message.reasoning_text or "")
    calls_before = before.message.tool_calls or []
    calls_after = after.message.tool_calls or []
    assert [(call.function.name, call.function.arguments) for call in calls_after] == [
        (call.function.name, call.function.arguments) for call in calls_before
    ]
    for call_before, call_after in zip(calls_before, calls_after, strict=True):
        if call_before.id:
            assert call_after.id == call_before.id
    assert after.finish_reason == before.finish_reason
    if messages and isinstance(before.stop_reason, str):
        assert after.stop_reason == before.stop_reason
    if original.usage is None:
        return
    assert back.usage is not None
    assert (back.usage.prompt_tokens, back.usage.completion_tokens, back.usage.total_tokens) == (
        original.usage.prompt_tokens,
        original.usage.completion_tokens,
        original.usage.total_tokens,
    )
    cached = original.usage.prompt_tokens_details
    back_cached = back.usage.prompt_tokens_details
    assert (cached.cached_tokens if cached else 0) == (back_cached.cached_tokens if back_cached else 0)
    if not messages:
        assert back.usage.completion_tokens_details == original.usage.completion_tokens_details


def chunks_only(items: Sequence[ChatCompletionChunk | ErrorDetail]) -> list[ChatCompletionChunk]:
    assert not any(isinstance(item, ErrorDetail) for item in items)
    return [item for item in items if isinstance(item, ChatCompletionChunk)]


@settings(max_examples=300, deadline=None)
@given(chat_streams(canonical=False))
def test_chat_to_responses_and_back_keeps_the_answer(stream: ChatStream) -> None:
    reader = ResponsesToChat()
    back = chunks_only([chunk for event in to_responses(stream.chunks) for chunk in reader.feed(event)])
    same_answer(accumulate(stream.chunks), accumulate(back), messages=False)
    assert all(chunk.id == RESPONSE_ID for chunk in back)


@settings(max_examples=300, deadline=None)
@given(chat_streams(canonical=False))
def test_chat_to_messages_and_back_keeps_the_answer(stream: ChatStream) -> None:
    reader = MessagesToChat(created=7)
    back = chunks_only([chunk for event in to_messages(stream.chunks) for chunk in reader.feed(event)])
    same_answer(accumulate(stream.chunks), accumulate(back), messages=True)
    assert all(chunk.id == MESSAGE_ID and chunk.created == 7 for chunk in back)


# --- (d) the SSE codec ------------------------------------------------------------------------------------


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


DIALECTS: list[tuple[Callable[[Sequence[ChatCompletionChunk]], list[Any]], Callable[[], Any]]] = [
    (to_responses, ResponsesStreamDecoder),
    (to_messages, MessagesStreamDecoder),
]


@pytest.mark.parametrize(("write", "make_decoder"), DIALECTS, ids=["responses", "messages"])
@settings(max_examples=200, deadline=None)
@given(stream=chat_streams(canonical=False), cuts=st.lists(st.integers(0, 1 << 20), max_size=12))
def test_events_survive_sse_at_any_fragmentation(
    write: Callable[[Sequence[ChatCompletionChunk]], list[Any]],
    make_decoder: Callable[[], Any],
    stream: ChatStream,
    cuts: list[int],
) -> None:
    events = write(stream.chunks)
    decoder = make_decoder()
    decoded: list[Any] = []
    for piece in cut(b"".join(map(encode_dialect_event, events)), cuts):
        decoded += decoder.feed(piece)
    decoded += decoder.close()
    assert decoded == events
    assert decoder.finished


def test_every_event_is_one_sse_event_named_by_its_type() -> None:
    events: list[Any] = [*to_messages([]), *to_responses([])]
    for event in events:
        data = encode_dialect_event(event)
        name, _, rest = data.partition(b"\n")
        assert name == b"event: " + msgspec.json.decode(rest.removeprefix(b"data: "))["type"].encode()
        assert data.endswith(b"}\n\n") and data.count(b"\n") == 3


def test_a_refusal_is_a_refusal_part_of_the_message() -> None:
    from chunkwise.types import ChoiceDelta, ChunkChoice

    def chunk(delta: ChoiceDelta, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id="c", choices=[ChunkChoice(delta=delta, finish_reason=finish)])

    chunks = [
        chunk(ChoiceDelta(refusal="I can")),
        chunk(ChoiceDelta(content="Sorry. ")),
        chunk(ChoiceDelta(refusal="not.")),
    ]
    chunks.append(chunk(ChoiceDelta(), "stop"))
    events = to_responses(chunks)
    check_responses_grammar(events)
    accumulator = ResponseAccumulator()
    for event in events:
        accumulator.add(event)
    assert accumulator.result() == completion_to_response(accumulate(chunks), template())
    reader = ResponsesToChat()
    back = accumulate(chunks_only([item for event in events for item in reader.feed(event)]))
    assert (back.choices[0].message.refusal, back.choices[0].message.content) == ("I cannot.", "Sorry. ")


def test_a_broken_chat_stream_ends_each_dialect_with_its_error() -> None:
    from chunkwise.types import ChoiceDelta, ChunkChoice

    chunk = ChatCompletionChunk(id="c", choices=[ChunkChoice(delta=ChoiceDelta(content="Hel"))])
    responses = ChatToResponses(template())
    events = responses.feed(chunk) + responses.fail("engine died")
    assert [type(event).__struct_config__.tag for event in events[-2:]] == ["error", "response.failed"]
    assert responses.response.status == "failed" and responses.response.output_text == "Hel"
    assert responses.finish() == [] and responses.fail("again") == []
    messages = ChatToMessages(message_id=MESSAGE_ID, model="m")
    message_events = messages.feed(chunk) + messages.fail("engine died")
    assert type(message_events[-1]).__struct_config__.tag == "error"
    assert messages.finish() == [] and messages.feed(chunk) == []
