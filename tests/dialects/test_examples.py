"""Event streams shaped like the ones OpenAI and Anthropic document and send, read by the decoders.

The streams follow the examples of each API reference (Responses streaming and function-calling guides;
Anthropic's "Streaming Messages" page): the fields real servers add beyond the SDK models (``response_id``,
``obfuscation``, ``cache_creation``, ``service_tier``), ``ping`` events, keep-alive comments, and event types
the decoders do not know, which must be skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from chunkwise.accumulate import accumulate
from chunkwise.dialects import (
    MessagesAccumulator,
    MessagesStreamDecoder,
    MessagesStreamEvent,
    MessagesToChat,
    ResponseAccumulator,
    ResponseFunctionCall,
    ResponseOutputMessage,
    ResponsesStreamDecoder,
    ResponsesToChat,
    ResponseStreamEvent,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)
from chunkwise.sse import InvalidChunkError
from chunkwise.types import ChatCompletionChunk, ErrorDetail


def sse(*events: tuple[str, str]) -> bytes:
    return b"".join(f"event: {name}\ndata: {data}\n\n".encode() for name, data in events)


def read_responses(data: bytes) -> tuple[list[ResponseStreamEvent], bool]:
    decoder = ResponsesStreamDecoder()
    # Byte by byte: the hardest fragmentation a network can produce.
    events = [event for i in range(len(data)) for event in decoder.feed(data[i : i + 1])]
    return events + decoder.close(), decoder.finished


def read_messages(data: bytes) -> tuple[list[MessagesStreamEvent], bool]:
    decoder = MessagesStreamDecoder()
    events = [event for i in range(len(data)) for event in decoder.feed(data[i : i + 1])]
    return events + decoder.close(), decoder.finished


def to_chat(reader: ResponsesToChat | MessagesToChat, events: Sequence[Any]) -> list[ChatCompletionChunk | ErrorDetail]:
    return [item for event in events for item in reader.feed(event)]


RESPONSE_HEAD = (
    '{"id":"resp_67c9","object":"response","created_at":1741290958,"status":"in_progress","error":null,'
    '"incomplete_details":null,"instructions":"You are a helpful assistant.","max_output_tokens":null,'
    '"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"previous_response_id":null,'
    '"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},'
    '"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}'
)
USAGE = (
    '{"input_tokens":37,"input_tokens_details":{"cached_tokens":5},"output_tokens":11,'
    '"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48}'
)


def completed(output: str, status: str = "completed", extra: str = "") -> str:
    head = RESPONSE_HEAD.replace('"status":"in_progress"', f'"status":"{status}"').replace(
        '"output":[]', f'"output":[{output}]'
    )
    return head.replace('"usage":null', f'"usage":{USAGE}{extra}')


MESSAGE_DONE = (
    '{"type":"message","id":"msg_67c9","status":"completed","role":"assistant",'
    '"content":[{"type":"output_text","text":"Hi there!","annotations":[],"logprobs":[]}]}'
)
RESPONSES_TEXT = sse(
    ("response.created", f'{{"type":"response.created","sequence_number":0,"response":{RESPONSE_HEAD}}}'),
    ("response.in_progress", f'{{"type":"response.in_progress","sequence_number":1,"response":{RESPONSE_HEAD}}}'),
    (
        "response.output_item.added",
        '{"type":"response.output_item.added","sequence_number":2,"output_index":0,'
        '"item":{"type":"message","id":"msg_67c9","status":"in_progress","role":"assistant","content":[]}}',
    ),
    (
        "response.content_part.added",
        '{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_67c9","output_index":0,'
        '"content_index":0,"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}}',
    ),
    (
        "response.output_text.delta",
        '{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c9","output_index":0,'
        '"content_index":0,"delta":"Hi","logprobs":[],"obfuscation":"x4Fq"}',
    ),
    (
        "response.output_text.delta",
        '{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_67c9","output_index":0,'
        '"content_index":0,"delta":" there!","logprobs":[],"obfuscation":"9"}',
    ),
    (
        "response.output_text.done",
        '{"type":"response.output_text.done","sequence_number":6,"item_id":"msg_67c9","output_index":0,'
        '"content_index":0,"text":"Hi there!","logprobs":[]}',
    ),
    (
        "response.content_part.done",
        '{"type":"response.content_part.done","sequence_number":7,"item_id":"msg_67c9","output_index":0,'
        '"content_index":0,"part":{"type":"output_text","text":"Hi there!","annotations":[],"logprobs":[]}}',
    ),
    (
        "response.output_item.done",
        f'{{"type":"response.output_item.done","sequence_number":8,"output_index":0,"item":{MESSAGE_DONE}}}',
    ),
    ("response.completed", f'{{"type":"response.completed","sequence_number":9,"response":{completed(MESSAGE_DONE)}}}'),
)


def test_responses_text_stream_reassembles_and_reads_as_chat() -> None:
    events, finished = read_responses(b": keep-alive\n\n" + RESPONSES_TEXT)
    assert finished and len(events) == 10
    accumulator = ResponseAccumulator()
    for event in events:
        accumulator.add(event)
    response = accumulator.result()
    assert (response.status, response.output_text, response.model) == ("completed", "Hi there!", "gpt-4.1-2025-04-14")
    assert isinstance(response.output[0], ResponseOutputMessage) and response.output[0].id == "msg_67c9"
    assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 5
    completion = accumulate(
        item for item in to_chat(ResponsesToChat(), events) if isinstance(item, ChatCompletionChunk)
    )
    choice = completion.choices[0]
    assert (completion.id, completion.created, choice.message.content, choice.finish_reason) == (
        "resp_67c9",
        1741290958,
        "Hi there!",
        "stop",
    )
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        37,
        11,
        48,
    )


CALL_DONE = (
    '{"type":"function_call","id":"fc_12","call_id":"call_12","name":"get_weather",'
    '"arguments":"{\\"location\\":\\"Paris, France\\"}","status":"completed"}'
)
RESPONSES_CALL = sse(
    ("response.created", f'{{"type":"response.created","sequence_number":0,"response":{RESPONSE_HEAD}}}'),
    (
        "response.output_item.added",
        '{"type":"response.output_item.added","response_id":"resp_67c9","sequence_number":1,"output_index":0,'
        '"item":{"type":"function_call","id":"fc_12","call_id":"call_12","name":"get_weather","arguments":"","status":"in_progress"}}',
    ),
    (
        "response.function_call_arguments.delta",
        '{"type":"response.function_call_arguments.delta","sequence_number":2,"item_id":"fc_12","output_index":0,"delta":"{\\""}',
    ),
    # A hosted-tool event this decoder does not know: skipped, as the SDKs skip it.
    (
        "response.web_search_call.in_progress",
        '{"type":"response.web_search_call.in_progress","sequence_number":3,"item_id":"ws_1","output_index":1}',
    ),
    (
        "response.function_call_arguments.delta",
        '{"type":"response.function_call_arguments.delta","sequence_number":4,"item_id":"fc_12","output_index":0,'
        '"delta":"location\\":\\"Paris, France\\"}"}',
    ),
    (
        "response.function_call_arguments.done",
        '{"type":"response.function_call_arguments.done","sequence_number":5,"item_id":"fc_12","output_index":0,'
        '"arguments":"{\\"location\\":\\"Paris, France\\"}"}',
    ),
    (
        "response.output_item.done",
        f'{{"type":"response.output_item.done","sequence_number":6,"output_index":0,"item":{CALL_DONE}}}',
    ),
    ("response.completed", f'{{"type":"response.completed","sequence_number":7,"response":{completed(CALL_DONE)}}}'),
)


def test_responses_function_call_stream_skips_unknown_events() -> None:
    events, finished = read_responses(RESPONSES_CALL)
    assert finished and [event.sequence_number for event in events] == [0, 1, 2, 4, 5, 6, 7]
    accumulator = ResponseAccumulator()
    for event in events:
        accumulator.add(event)
    call = accumulator.result().output[0]
    assert isinstance(call, ResponseFunctionCall)
    assert (call.call_id, call.name, call.arguments, call.status) == (
        "call_12",
        "get_weather",
        '{"location":"Paris, France"}',
        "completed",
    )
    completion = accumulate(
        item for item in to_chat(ResponsesToChat(), events) if isinstance(item, ChatCompletionChunk)
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []] == [
        ("call_12", "get_weather", '{"location":"Paris, France"}')
    ]


def test_responses_incomplete_stream_ends_with_length() -> None:
    message = MESSAGE_DONE.replace('"status":"completed"', '"status":"incomplete"')
    response = completed(message, "incomplete").replace(
        '"incomplete_details":null', '"incomplete_details":{"reason":"max_output_tokens"}'
    )
    events, finished = read_responses(
        sse(
            ("response.created", f'{{"type":"response.created","sequence_number":0,"response":{RESPONSE_HEAD}}}'),
            ("response.incomplete", f'{{"type":"response.incomplete","sequence_number":1,"response":{response}}}'),
        )
    )
    assert finished
    chunks = [item for item in to_chat(ResponsesToChat(), events) if isinstance(item, ChatCompletionChunk)]
    assert accumulate(chunks).choices[0].finish_reason == "length"


def test_responses_error_event_and_failed_response_give_one_error() -> None:
    failed = RESPONSE_HEAD.replace('"status":"in_progress"', '"status":"failed"').replace(
        '"error":null', '"error":{"code":"server_error","message":"The model crashed."}'
    )
    events, finished = read_responses(
        sse(
            ("response.created", f'{{"type":"response.created","sequence_number":0,"response":{RESPONSE_HEAD}}}'),
            (
                "error",
                '{"type":"error","sequence_number":1,"code":"server_error",'
                '"message":"The model crashed.","param":null}',
            ),
            ("response.failed", f'{{"type":"response.failed","sequence_number":2,"response":{failed}}}'),
        )
    )
    assert finished
    items = to_chat(ResponsesToChat(), events)
    errors = [item for item in items if isinstance(item, ErrorDetail)]
    assert len(errors) == 1 and errors[0].message == "The model crashed." and errors[0].code == "server_error"
    accumulator = ResponseAccumulator()
    for event in events:
        accumulator.add(event)
    assert accumulator.finished and accumulator.result().status == "failed"


def test_a_responses_stream_cut_short_is_not_finished() -> None:
    _, finished = read_responses(RESPONSES_TEXT[: RESPONSES_TEXT.index(b"event: response.completed")])
    assert not finished


def test_a_hosted_tool_item_is_skipped_like_an_unknown_event() -> None:
    decoder = ResponsesStreamDecoder()
    added = (
        b'data: {"type":"response.output_item.added","sequence_number":3,"output_index":1,'
        b'"item":{"type":"web_search_call","id":"ws_1","status":"in_progress"}}\n\n'
    )
    assert decoder.feed(added) == []


def test_a_malformed_known_event_is_an_error_and_garbage_too() -> None:
    with pytest.raises(InvalidChunkError):
        ResponsesStreamDecoder().feed(b'data: {"type":"response.output_text.delta","output_index":"zero"}\n\n')
    with pytest.raises(InvalidChunkError):
        MessagesStreamDecoder().feed(b"data: {not json\n\n")


MESSAGE_START = (
    '{"type":"message_start","message":{"id":"msg_01K2","type":"message","role":"assistant","content":[],'
    '"model":"claude-haiku-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,'
    '"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0},'
    '"output_tokens":1,"service_tier":"standard"}}}'
)


def test_anthropic_text_stream_with_ping_reassembles_and_reads_as_chat() -> None:
    events, finished = read_messages(
        sse(
            ("message_start", MESSAGE_START),
            (
                "content_block_start",
                '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
            ),
            ("ping", '{"type": "ping"}'),
            (
                "content_block_delta",
                '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}',
            ),
            (
                "content_block_delta",
                '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}',
            ),
            ("content_block_stop", '{"type":"content_block_stop","index":0}'),
            (
                "message_delta",
                '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}',
            ),
            ("message_stop", '{"type":"message_stop"}'),
        )
    )
    assert finished
    accumulator = MessagesAccumulator()
    for event in events:
        accumulator.add(event)
    message = accumulator.result()
    assert message.content == [TextBlock(text="Hello!")]
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == ("end_turn", 25, 15)
    completion = accumulate(
        item for item in to_chat(MessagesToChat(created=9), events) if isinstance(item, ChatCompletionChunk)
    )
    assert (completion.id, completion.model, completion.choices[0].message.content) == (
        "msg_01K2",
        "claude-haiku-4-5",
        "Hello!",
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        25,
        15,
    )


def test_anthropic_thinking_text_and_tool_use_stream() -> None:
    events, finished = read_messages(
        sse(
            ("message_start", MESSAGE_START),
            (
                "content_block_start",
                '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}',
            ),
            (
                "content_block_delta",
                '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Use the tool."}}',
            ),
            (
                "content_block_delta",
                '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}',
            ),
            ("content_block_stop", '{"type":"content_block_stop","index":0}'),
            (
                "content_block_start",
                '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
            ),
            (
                "content_block_delta",
                '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Checking."}}',
            ),
            ("content_block_stop", '{"type":"content_block_stop","index":1}'),
            (
                "content_block_start",
                '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01KF","name":"get_weather","input":{}}}',
            ),
            (
                "content_block_delta",
                '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}',
            ),
            ("ping", '{"type":"ping"}'),
            (
                "content_block_delta",
                '{"type":"content_block_delta","index":2,'
                '"delta":{"type":"input_json_delta","partial_json":"{\\"location\\": \\"San Fra"}}',
            ),
            (
                "content_block_delta",
                '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ncisco\\"}"}}',
            ),
            ("content_block_stop", '{"type":"content_block_stop","index":2}'),
            (
                "message_delta",
                '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
                '"usage":{"input_tokens":849,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":47}}',
            ),
            ("message_stop", '{"type":"message_stop"}'),
        )
    )
    assert finished
    accumulator = MessagesAccumulator()
    for event in events:
        accumulator.add(event)
    message = accumulator.result()
    assert message.content == [
        ThinkingBlock(thinking="Use the tool.", signature="EqQBCgIYAhIM"),
        TextBlock(text="Checking."),
        ToolUseBlock(id="toolu_01KF", name="get_weather", input={"location": "San Francisco"}),
    ]
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == ("tool_use", 849, 47)
    chunks = [item for item in to_chat(MessagesToChat(), events) if isinstance(item, ChatCompletionChunk)]
    choice = accumulate(chunks).choices[0]
    assert (choice.message.reasoning_content, choice.message.content, choice.finish_reason) == (
        "Use the tool.",
        "Checking.",
        "tool_calls",
    )
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []] == [
        ("toolu_01KF", "get_weather", '{"location": "San Francisco"}')
    ]


def test_anthropic_stop_sequence_becomes_chat_stop_reason() -> None:
    events, _ = read_messages(
        sse(
            ("message_start", MESSAGE_START),
            (
                "message_delta",
                '{"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"\\n\\nHuman:"},"usage":{"output_tokens":3}}',
            ),
            ("message_stop", '{"type":"message_stop"}'),
        )
    )
    choice = accumulate(
        item for item in to_chat(MessagesToChat(), events) if isinstance(item, ChatCompletionChunk)
    ).choices[0]
    assert (choice.finish_reason, choice.stop_reason) == ("stop", "\n\nHuman:")


def test_anthropic_error_event_ends_the_stream() -> None:
    events, finished = read_messages(
        sse(
            ("message_start", MESSAGE_START),
            ("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'),
        )
    )
    assert finished
    items = to_chat(MessagesToChat(), events)
    assert items[-1] == ErrorDetail(message="Overloaded", type="overloaded_error")
    accumulator = MessagesAccumulator()
    for event in events:
        accumulator.add(event)
    assert accumulator.finished and accumulator.error is not None and accumulator.error.type == "overloaded_error"


def test_a_responses_stream_without_deltas_is_read_from_its_done_events() -> None:
    events, finished = read_responses(
        sse(
            ("response.created", f'{{"type":"response.created","sequence_number":0,"response":{RESPONSE_HEAD}}}'),
            (
                "response.output_item.added",
                '{"type":"response.output_item.added","sequence_number":1,"output_index":0,'
                '"item":{"type":"message","id":"msg_67c9","status":"in_progress","role":"assistant","content":[]}}',
            ),
            (
                "response.output_text.done",
                '{"type":"response.output_text.done","sequence_number":2,"item_id":"msg_67c9","output_index":0,'
                '"content_index":0,"text":"Hi there!","logprobs":[]}',
            ),
            (
                "response.output_item.done",
                f'{{"type":"response.output_item.done","sequence_number":3,"output_index":0,"item":{MESSAGE_DONE}}}',
            ),
            (
                "response.output_item.added",
                '{"type":"response.output_item.added","sequence_number":4,"output_index":1,'
                '"item":{"type":"function_call","id":"fc_12","call_id":"call_12","name":"get_weather","arguments":""}}',
            ),
            (
                "response.function_call_arguments.done",
                '{"type":"response.function_call_arguments.done","sequence_number":5,"item_id":"fc_12",'
                '"output_index":1,"arguments":"{\\"location\\":\\"Paris, France\\"}"}',
            ),
            (
                "response.output_item.done",
                f'{{"type":"response.output_item.done","sequence_number":6,"output_index":1,"item":{CALL_DONE}}}',
            ),
            (
                "response.completed",
                '{"type":"response.completed","sequence_number":7,"response":'
                + completed(MESSAGE_DONE + "," + CALL_DONE)
                + "}",
            ),
        )
    )
    assert finished
    accumulator = ResponseAccumulator()
    for event in events:
        accumulator.add(event)
    response = accumulator.result()
    assert response.output_text == "Hi there!"
    assert isinstance(response.output[1], ResponseFunctionCall)
    assert response.output[1].arguments == '{"location":"Paris, France"}'
    choice = accumulate(
        item for item in to_chat(ResponsesToChat(), events) if isinstance(item, ChatCompletionChunk)
    ).choices[0]
    assert choice.message.content == "Hi there!"
    assert [c.function.arguments for c in choice.message.tool_calls or []] == ['{"location":"Paris, France"}']
