"""The I/O-free stream reading behind the pass-through: bytes unchanged, cut only between events."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from chunkwise.gateway._passthrough import StreamInspector
from tests.client.fault_server import USAGE_CHUNK, answer_events, event

STREAM = b": keep-alive\n\n" + b"".join(answer_events())
USAGE_EVENT = event(USAGE_CHUNK)


def feed_in_pieces(inspector: StreamInspector, data: bytes, cuts: list[int]) -> bytes:
    out = []
    start = 0
    for cut in sorted(set(cuts)):
        out.append(inspector.feed(data[start:cut]))
        start = cut
    out.append(inspector.feed(data[start:]))
    out.append(inspector.close())
    return b"".join(out)


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_bytes_pass_through_unchanged_however_they_are_cut(cuts: list[int]) -> None:
    inspector = StreamInspector(strip_usage=False)
    assert feed_in_pieces(inspector, STREAM, cuts) == STREAM
    assert inspector.done and inspector.finished_properly
    assert inspector.usage is not None and (inspector.usage.prompt_tokens, inspector.usage.completion_tokens) == (5, 3)
    assert inspector.delivered_tokens == 4


@given(st.lists(st.integers(0, len(STREAM)), max_size=12), st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_the_usage_chunk_asked_for_by_the_gateway_is_removed(cuts: list[int], line_end: bytes) -> None:
    stream = STREAM.replace(b"\n", line_end)
    inspector = StreamInspector(strip_usage=True)
    out = feed_in_pieces(inspector, stream, cuts)
    assert out == stream.replace(USAGE_EVENT.replace(b"\n", line_end), b"")
    assert inspector.usage is not None and inspector.usage.completion_tokens == 3


def test_only_complete_events_go_out() -> None:
    inspector = StreamInspector(strip_usage=False)
    first = event({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    assert inspector.feed(first[:10]) == b""
    assert inspector.feed(first[10:] + b"data: {") == first
    assert inspector.delivered_tokens == 1 and not inspector.finished_properly


def test_error_frames_and_unfinished_streams_are_noticed() -> None:
    inspector = StreamInspector(strip_usage=False)
    error = {"error": {"message": "engine crashed", "type": "server_error", "param": None, "code": 500}}
    inspector.feed(answer_events()[1] + event(error))
    assert inspector.error is not None and json.loads(inspector.error)["message"] == "engine crashed"
    assert not inspector.finished_properly
    named = StreamInspector(strip_usage=False)
    named.feed(b"event: error\ndata: overloaded\n\n")
    assert named.error == b"overloaded"


def test_legacy_completions_text_counts_as_output() -> None:
    inspector = StreamInspector(strip_usage=False)
    inspector.feed(event({"choices": [{"index": 0, "text": "Hello", "finish_reason": None}]}))
    inspector.feed(event({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}))
    assert inspector.delivered_tokens == 1 and inspector.finished_properly


def test_tool_call_deltas_count_as_output() -> None:
    inspector = StreamInspector(strip_usage=False)
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    inspector.feed(event({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}))
    inspector.feed(event({"choices": [{"index": 0, "delta": {"content": None}}]}))
    assert inspector.delivered_tokens == 1
