"""The streaming edge cases of PEERS.md section 7 that concern the core, one named test each.

Each vector comes from a bug seen in a peer; the test name carries its E-number.
"""

from __future__ import annotations

import json
from typing import Any

from chunkwise.accumulate import accumulate
from chunkwise.sse import ChunkStreamDecoder, Done, EndOfInput, ErrorFrame
from chunkwise.types import ChatCompletionChunk, ChatCompletionRequest, CompletionUsage


def chunk(choices: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m",
        "choices": choices,
        **top,
    }


def frame(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def read(pieces: list[bytes]) -> list[Any]:
    decoder: ChunkStreamDecoder[ChatCompletionChunk] = ChunkStreamDecoder()
    items: list[Any] = []
    for piece in pieces:
        items.extend(decoder.feed(piece))
    items.extend(decoder.close())
    return items


def chunks_of(items: list[Any]) -> list[ChatCompletionChunk]:
    return [item for item in items if isinstance(item, ChatCompletionChunk)]


def content(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": {"content": text}, "finish_reason": finish}


def test_e1_two_events_in_one_read() -> None:
    wire = frame(chunk([content(0, "a")])) + frame(chunk([content(0, "b", "stop")]))
    items = read([wire])
    assert [c.choices[0].delta.content for c in chunks_of(items)] == ["a", "b"]
    assert isinstance(items[-1], EndOfInput) and items[-1].finished_properly


def test_e2_event_split_mid_json_and_mid_utf8() -> None:
    wire = frame(chunk([content(0, "naïve 😀 漢字")])) + b"data: [DONE]\n\n"
    for cut in range(1, len(wire)):
        items = read([wire[:cut], wire[cut:]])
        (only,) = chunks_of(items)
        assert only.choices[0].delta.content == "naïve 😀 漢字"
    # and one byte at a time
    items = read([wire[i : i + 1] for i in range(len(wire))])
    assert chunks_of(items)[0].choices[0].delta.content == "naïve 😀 漢字"


def test_e3_crlf_and_bare_cr_line_endings_and_cr_at_end_of_read() -> None:
    body = json.dumps(chunk([content(0, "x", "stop")]))
    for newline in ["\r\n", "\r", "\n"]:
        wire = f"data: {body}{newline}{newline}data: [DONE]{newline}{newline}".encode()
        for cut in range(len(wire)):
            items = read([wire[:cut], wire[cut:]])
            assert len(chunks_of(items)) == 1, (newline, cut)
            assert isinstance(items[-2], Done)


def test_e4_comment_frames_between_events() -> None:
    wire = b":\n\n" + b": ping\n\n" + frame(chunk([content(0, "a")])) + b": keep-alive\n\n" + b"data: [DONE]\n\n"
    items = read([wire])
    assert len(chunks_of(items)) == 1
    assert isinstance(items[1], Done)


def test_e6_error_frame_after_200_with_and_without_done() -> None:
    vllm = {"error": {"message": "engine died", "type": "InternalServerError", "param": None, "code": 500}}
    tgi = {"error": {"message": "Input validation error", "http_status_code": 422}}
    litellm_string = {"error": "upstream failure"}
    for payload in (vllm, tgi, litellm_string):
        for tail in (b"data: [DONE]\n\n", b""):
            items = read([frame(chunk([content(0, "partial")])) + frame(payload) + tail])
            errors = [item for item in items if isinstance(item, ErrorFrame)]
            assert len(errors) == 1
            assert errors[0].error.message in {"engine died", "Input validation error", "upstream failure"}
    tgi_items = read([frame(tgi)])
    assert [i.error.http_status_code for i in tgi_items if isinstance(i, ErrorFrame)] == [422]


def test_e6_event_error_without_json() -> None:
    items = read([b"event: error\ndata: overloaded\n\n"])
    assert isinstance(items[0], ErrorFrame) and items[0].error.message == "overloaded"


def test_e6_content_that_merely_mentions_error_is_a_chunk() -> None:
    items = read([frame(chunk([content(0, "error")])), frame(chunk([content(0, '{"error": 1}')]))])
    assert [c.choices[0].delta.content for c in chunks_of(items)] == ["error", '{"error": 1}']


def test_e7_eof_without_done_or_finish_is_not_a_proper_end() -> None:
    items = read([frame(chunk([content(0, "cut")]))])
    assert items[-1].finished_properly is False


def test_e7_eof_after_finish_or_usage_is_a_proper_end_without_done() -> None:
    # The Atoma proxy never forwards [DONE]: EOF after the finish or the usage chunk is complete.
    finished = read([frame(chunk([content(0, "ok", "stop")]))])
    assert finished[-1].finished_properly is True
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    with_usage = read([frame(chunk([content(0, "ok")])) + frame(chunk([], usage=usage))])
    assert with_usage[-1].finished_properly is True
    two_choices_one_open = read([frame(chunk([content(0, "a", "stop"), content(1, "b")]))])
    assert two_choices_one_open[-1].finished_properly is False


def test_e7_data_after_done_is_ignored() -> None:
    items = read([b"data: [DONE]\n\n" + frame(chunk([content(0, "late")]))])
    assert chunks_of(items) == []
    assert items[-1].finished_properly


def call(index: int, **fields: Any) -> dict[str, Any]:
    return {"index": index, **fields}


def tool_delta(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"index": 0, "delta": {"tool_calls": calls}}


def test_e8_two_fragments_with_the_same_index_in_one_chunk() -> None:
    first = tool_delta(
        [
            call(0, id="call_1", type="function", function={"name": "get_weather", "arguments": ""}),
            call(0, function={"arguments": '{"city": '}),
        ]
    )
    rest = tool_delta([call(0, function={"arguments": '"Paris"}'})])
    completion = accumulate(chunks_of(read([frame(chunk([first])), frame(chunk([rest]))])))
    (tool_call,) = completion.choices[0].message.tool_calls or []
    assert (tool_call.id, tool_call.function.name) == ("call_1", "get_weather")
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}


def test_e9_parallel_tool_calls_interleaved_with_late_id_and_name() -> None:
    deltas = [
        tool_delta([call(0, id="a", type="function", function={"name": "f", "arguments": '{"x"'})]),
        tool_delta([call(1, id="b", type="function", function={"name": "g", "arguments": '{"y"'})]),
        tool_delta([call(0, function={"arguments": ": 1}"})]),
        tool_delta([call(1, function={"arguments": ": 2}"})]),
        {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
    ]
    completion = accumulate(chunks_of(read([frame(chunk([d])) for d in deltas])))
    calls = completion.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("a", "f", {"x": 1}),
        ("b", "g", {"y": 2}),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_e9_id_and_name_arriving_after_the_first_fragment() -> None:
    deltas = [
        tool_delta([call(0, function={"arguments": "{"})]),
        tool_delta([call(0, id="late", type="function", function={"name": "h", "arguments": "}"})]),
    ]
    (tool_call,) = accumulate(chunks_of(read([frame(chunk([d])) for d in deltas]))).choices[0].message.tool_calls or []
    assert (tool_call.id, tool_call.function.name, tool_call.function.arguments) == ("late", "h", "{}")


def test_e10_tool_calls_sent_as_an_object_with_empty_id() -> None:
    tgi = {
        "index": 0,
        "delta": {
            "role": "assistant",
            "tool_calls": {
                "index": 0,
                "id": "",
                "type": "function",
                "function": {"name": "search", "arguments": '{"q": "x"}'},
            },
        },
    }
    later = tool_delta([call(0, id="", function={"arguments": ""})])
    items = read([frame(chunk([tgi])), frame(chunk([later]))])
    parsed = chunks_of(items)[0].choices[0].delta.tool_calls
    assert isinstance(parsed, list) and len(parsed) == 1
    (tool_call,) = accumulate(chunks_of(items)).choices[0].message.tool_calls or []
    assert (tool_call.id, tool_call.function.name, tool_call.function.arguments) == ("", "search", '{"q": "x"}')


def test_e11_two_choices_interleaved_finish_separately() -> None:
    deltas = [
        {"index": 1, "delta": {"role": "assistant", "content": ""}},
        {"index": 0, "delta": {"role": "assistant", "content": ""}},
        content(0, "zero "),
        content(1, "one "),
        content(1, "two", "length"),
        content(0, "again", "stop"),
    ]
    items = read([frame(chunk([d])) for d in deltas])
    completion = accumulate(chunks_of(items))
    assert [(c.index, c.message.content, c.finish_reason) for c in completion.choices] == [
        (0, "zero again", "stop"),
        (1, "one two", "length"),
    ]
    assert items[-1].finished_properly


def test_e12_reasoning_under_both_spellings() -> None:
    deltas = [
        {"index": 0, "delta": {"reasoning_content": "think "}},
        {"index": 0, "delta": {"reasoning": "more"}},
        # vLLM's deprecated copy: the same text under both names, taken once.
        {"index": 0, "delta": {"reasoning": " twice", "reasoning_content": " twice"}},
        {"index": 0, "delta": {"content": "answer", "reasoning_items": [{"type": "summary"}]}},
    ]
    message = accumulate(chunks_of(read([frame(chunk([d])) for d in deltas]))).choices[0].message
    assert message.reasoning_text == "think more twice"
    assert message.reasoning_content == message.reasoning == "think more twice"
    assert message.content == "answer"


def test_e13_usage_chunk_with_empty_choices_and_continuous_usage() -> None:
    def usage(completion_tokens: int) -> dict[str, int]:
        return {"prompt_tokens": 5, "completion_tokens": completion_tokens, "total_tokens": 5 + completion_tokens}

    continuous = [
        chunk([content(0, "a")], usage=usage(1)),
        chunk([content(0, "b", "stop")], usage=usage(2)),
        chunk([], usage=usage(2)),
        chunk([], usage=None),
    ]
    completion = accumulate(chunks_of(read([frame(c) for c in continuous])))
    assert completion.usage == CompletionUsage(prompt_tokens=5, completion_tokens=2, total_tokens=7)
    assert completion.choices[0].message.content == "ab"


def test_e14_stream_options_empty_absent_or_false_do_not_ask_for_usage() -> None:
    base = '{"model": "m", "messages": [{"role": "user", "content": "x"}]'
    import msgspec

    def include_usage(extra: str) -> bool:
        return msgspec.json.decode(base + extra + "}", type=ChatCompletionRequest).include_usage

    assert include_usage("") is False
    assert include_usage(', "stream_options": {}') is False
    assert include_usage(', "stream_options": {"include_usage": false}') is False
    assert include_usage(', "stream_options": {"include_usage": true}') is True


def test_e17_empty_deltas_and_empty_content() -> None:
    deltas = [
        {"index": 0, "delta": {"role": "assistant", "content": ""}},
        {"index": 0, "delta": {}},
        content(0, ""),
        content(0, "text"),
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    ]
    completion = accumulate(chunks_of(read([frame(chunk([d])) for d in deltas])))
    assert completion.choices[0].message.content == "text"
    assert completion.choices[0].finish_reason == "stop"


def test_e18_azure_non_chunk_events_are_ignored() -> None:
    azure_filter = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    }
    azure_late = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [{"index": 0, "delta": {"content": "IGNORED"}, "content_filter_offsets": {}}],
    }
    wire = (
        frame(azure_filter)
        + frame(chunk([content(0, "hello")]))
        + frame(azure_late)
        + frame(chunk([content(0, "", "stop")]))
    )
    completion = accumulate(chunks_of(read([wire])))
    assert (completion.id, completion.model, completion.created) == ("chatcmpl-1", "m", 7)
    assert completion.choices[0].message.content == "hello"
