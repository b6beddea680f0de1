"""The official SDKs' stream helpers read the bytes the dialect writers produce.

openai-python's ``client.responses.stream(...)`` and anthropic-sdk-python's ``client.messages.stream(...)``
rebuild the final response from the events themselves (by ``output_index``, ``content_index`` and block
``index``), so they check the event grammar, not only each event's fields. The HTTP exchange is replaced
by each SDK's own mock transport because the server endpoints that will send these bytes are built
elsewhere (issue 18, item 2); the bytes are exactly what ``encode_dialect_event`` writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from chunkwise.accumulate import accumulate
from chunkwise.dialects import (
    ChatToMessages,
    ChatToResponses,
    completion_to_message,
    completion_to_response,
    encode_dialect_event,
)
from chunkwise.types import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    CompletionUsage,
)

from .test_properties import MESSAGE_ID, template

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
httpx2 = pytest.importorskip("httpx2")


def chunk(delta: ChoiceDelta, finish: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk(id="c", created=1, model="m", choices=[ChunkChoice(delta=delta, finish_reason=finish)])


def call(index: int, arguments: str, name: str | None = None) -> ChatCompletionChunk:
    function = ChoiceDeltaToolCallFunction(name=name, arguments=arguments)
    fragment = ChoiceDeltaToolCall(index=index, id=f"call_{index}" if name else None, function=function)
    return chunk(ChoiceDelta(tool_calls=[fragment]))


CHUNKS = [
    chunk(ChoiceDelta(role="assistant", content="")),
    chunk(ChoiceDelta(reasoning_content="The user wants weather.")),
    chunk(ChoiceDelta(content="Let me ")),
    chunk(ChoiceDelta(content="check.")),
    call(0, '{"city":', "weather"),
    call(1, '{"city":"Ro', "weather"),
    call(0, '"Paris"}'),
    call(1, 'me"}'),
    chunk(ChoiceDelta(), "tool_calls"),
    ChatCompletionChunk(
        id="c",
        created=1,
        model="m",
        choices=[],
        usage=CompletionUsage(prompt_tokens=20, completion_tokens=9, total_tokens=29),
    ),
]


def transport(body: bytes, seen: list[dict[str, Any]]) -> Any:
    def handler(request: Any) -> Any:
        seen.append(json.loads(request.content))
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx2.MockTransport(handler)


def sse_body(events: list[Any]) -> bytes:
    return b"".join(encode_dialect_event(event) for event in events)


def written(writer: ChatToResponses | ChatToMessages) -> list[Any]:
    events: list[Any] = list(writer.start())
    for item in CHUNKS:
        events += writer.feed(item)
    return events + writer.finish()


def test_openai_responses_stream_helper_rebuilds_the_response() -> None:
    seen: list[dict[str, Any]] = []
    body = sse_body(written(ChatToResponses(template())))
    client = openai.OpenAI(
        api_key="k", base_url="http://mock/v1", http_client=httpx2.Client(transport=transport(body, seen))
    )
    texts: list[str] = []
    arguments: dict[str, str] = {}
    with client.responses.stream(model="m", input="Weather in Paris and Rome?") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
            elif event.type == "response.function_call_arguments.delta":
                arguments[event.item_id] = arguments.get(event.item_id, "") + event.delta
        final = stream.get_final_response()
    assert seen[0]["stream"] is True
    assert "".join(texts) == final.output_text == "Let me check."
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call", "function_call"]
    calls = [(item.call_id, item.name, item.arguments) for item in final.output if item.type == "function_call"]
    assert calls == [("call_0", "weather", '{"city":"Paris"}'), ("call_1", "weather", '{"city":"Rome"}')]
    # The two calls' fragments interleave, each named by its item.
    assert list(arguments.values()) == ['{"city":"Paris"}', '{"city":"Rome"}']
    assert final.status == "completed" and final.usage is not None and final.usage.total_tokens == 29
    expected = completion_to_response(accumulate(CHUNKS), template())
    assert final.id == expected.id and final.output_text == expected.output_text


def test_anthropic_messages_stream_helper_rebuilds_the_message() -> None:
    seen: list[dict[str, Any]] = []
    body = sse_body(written(ChatToMessages(message_id=MESSAGE_ID, model="m")))
    client = anthropic.Anthropic(
        api_key="k", base_url="http://mock", http_client=httpx2.Client(transport=transport(body, seen))
    )
    with client.messages.stream(
        model="m", max_tokens=64, messages=[{"role": "user", "content": "Weather in Paris and Rome?"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert seen[0]["stream"] is True
    assert text == "Let me check."
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    tools = [(block.id, block.name, block.input) for block in final.content if block.type == "tool_use"]
    assert tools == [("call_0", "weather", {"city": "Paris"}), ("call_1", "weather", {"city": "Rome"})]
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == ("tool_use", 20, 9)
    expected = completion_to_message(accumulate(CHUNKS), message_id=MESSAGE_ID, model="m")
    as_sdk = anthropic.types.Message.model_validate_json(msgspec.json.encode(expected))
    assert [block.model_dump() for block in final.content] == [block.model_dump() for block in as_sdk.content]
    assert final.usage == as_sdk.usage and final.stop_reason == as_sdk.stop_reason


@pytest.mark.parametrize(
    "make", [lambda: ChatToResponses(template()), lambda: ChatToMessages(message_id="m", model="m")]
)
def test_sdk_helpers_see_the_final_object_of_a_text_only_answer(make: Callable[[], Any]) -> None:
    writer = make()
    events = writer.start() + writer.feed(chunk(ChoiceDelta(content="Hi"))) + writer.finish()
    body = sse_body(events)
    if isinstance(writer, ChatToResponses):
        client: Any = openai.OpenAI(
            api_key="k", base_url="http://mock/v1", http_client=httpx2.Client(transport=transport(body, []))
        )
        with client.responses.stream(model="m", input="x") as stream:
            assert stream.get_final_response().output_text == "Hi"
    else:
        client = anthropic.Anthropic(
            api_key="k", base_url="http://mock", http_client=httpx2.Client(transport=transport(body, []))
        )
        with client.messages.stream(model="m", max_tokens=8, messages=[{"role": "user", "content": "x"}]) as stream:
            assert stream.get_final_text() == "Hi"
