"""Per-choice writers: token bytes in, chunks out, with every token accounted for exactly once."""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from chunkwise.accumulate import accumulate
from chunkwise.engine._choices import ChatChoiceWriter, ChunkHeader, SampledLogprobs, TextChoiceWriter, ToolMode
from chunkwise.engine._text import tool_call_prefix
from chunkwise.types import ChatCompletionChunk

HEADER = ChunkHeader(id="chatcmpl-1", created=5, model="m")

#: Shared CI machines stall now and then; these tests check correctness, not speed.
no_deadline = settings(deadline=None)


def byte_vocabulary(text: str) -> tuple[dict[int, bytes], list[int]]:
    """One token per byte: the harshest segmentation a model can produce."""
    data = text.encode()
    return {index: bytes([byte]) for index, byte in enumerate(data)}, list(range(len(data)))


def run_chat_writer(
    pieces: dict[int, bytes],
    tokens: list[int],
    *,
    stops: Sequence[str] = (),
    tool_mode: ToolMode = "text",
    tool_names: Sequence[str] = (),
) -> tuple[list[tuple[ChatCompletionChunk, int]], ChatChoiceWriter]:
    writer = ChatChoiceWriter(
        index=0,
        header=HEADER,
        piece=pieces.__getitem__,
        stops=stops,
        logprobs=False,
        tool_mode=tool_mode,
        tool_names=tool_names,
    )
    emitted = []
    for token in tokens:
        item = writer.token(token, None)
        if item is not None:
            emitted.append(item)
        if writer.stopped:
            return emitted + writer.finish("stop"), writer
    return emitted + writer.end_of_generation(), writer


@no_deadline
@given(text=st.text(alphabet="ab🐉你 \n", max_size=30), stop=st.sampled_from(["🐉a", "b b", "你\n", "zz"]))
def test_byte_by_byte_tokens_with_a_stop_string(text: str, stop: str):
    pieces, tokens = byte_vocabulary(text)
    emitted, writer = run_chat_writer(pieces, tokens, stops=[stop])
    chunks = [chunk for chunk, _ in emitted]
    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    expected = text[: text.find(stop)] if stop in text else text
    assert content == expected
    assert all("\ufffd" not in (chunk.choices[0].delta.content or "") for chunk in chunks)
    # every token made is counted once, even those held back or swallowed by the stop string
    consumed = len(text[: text.find(stop) + len(stop)].encode()) if stop in text else len(tokens)
    assert sum(count for _, count in emitted) == consumed
    assert [chunk.choices[0].delta.role for chunk in chunks].count("assistant") == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices[0].stop_reason == (stop if stop in text else None)


def test_a_forced_call_streams_name_then_argument_fragments():
    text = tool_call_prefix("add") + '{"a": 1, "b": {"c": 2}}}'
    pieces, tokens = byte_vocabulary(text)
    emitted, _ = run_chat_writer(pieces, tokens, tool_mode="call", tool_names=["add", "other"])
    chunks = [chunk for chunk, _ in emitted]
    assert sum(count for _, count in emitted) == len(tokens)
    result = accumulate(chunks).choices[0]
    assert result.finish_reason == "tool_calls"
    assert result.message.content is None
    (call,) = result.message.tool_calls or []
    assert call.function.name == "add"
    assert json.loads(call.function.arguments) == {"a": 1, "b": {"c": 2}}
    assert call.id.startswith("call_")


def test_auto_mode_is_decided_by_the_first_character():
    pieces = {1: b"Sure", 2: b"!", 3: b"{", 4: tool_call_prefix("f")[1:].encode(), 5: b"{}}"}
    text_writer = run_chat_writer(pieces, [1, 2], tool_mode="auto", tool_names=["f"])[1]
    assert text_writer.grammar_needed is False
    emitted, call_writer = run_chat_writer(pieces, [3, 4, 5], tool_mode="auto", tool_names=["f"])
    assert call_writer.grammar_needed is True
    assert accumulate([chunk for chunk, _ in emitted]).choices[0].finish_reason == "tool_calls"
    undecided = ChatChoiceWriter(
        index=0, header=HEADER, piece=pieces.__getitem__, stops=(), logprobs=False, tool_mode="auto"
    )
    assert undecided.grammar_needed is None


def test_held_back_tokens_carry_their_logprobs_to_the_next_chunk():
    pieces = {1: b"a", 2: b"#", 3: b"b"}
    writer = ChatChoiceWriter(index=2, header=HEADER, piece=pieces.__getitem__, stops=["##"], logprobs=True)
    first = writer.token(1, SampledLogprobs(-0.5, [(1, -0.5)]))
    held = writer.token(2, SampledLogprobs(-1.0, [(2, -1.0)]))
    released = writer.token(3, SampledLogprobs(-2.0, [(3, -2.0)]))
    assert first is not None and held is None and released is not None
    chunk, count = released
    assert count == 2
    assert chunk.choices[0].index == 2
    assert chunk.choices[0].delta.content == "#b"
    assert [entry.token for entry in chunk.choices[0].logprobs.content or []] == ["#", "b"]  # type: ignore[union-attr]


def test_text_writer_echo_offsets_and_finish():
    pieces = {1: b" Paris", 2: b"."}
    writer = TextChoiceWriter(
        index=0, header=HEADER, piece=pieces.__getitem__, stops=(), logprobs=True, echo="Capital:"
    )
    start = writer.start()
    assert start is not None and start[0].choices[0].text == "Capital:" and start[1] == 0
    first = writer.token(1, SampledLogprobs(-0.1, [(1, -0.1), (2, -3.0)]))
    second = writer.token(2, SampledLogprobs(-0.2, []))
    (final,) = writer.finish("length")
    assert first is not None and second is not None
    assert first[0].object == "text_completion"
    assert first[0].choices[0].logprobs is not None
    assert first[0].choices[0].logprobs.text_offset == [8]
    assert first[0].choices[0].logprobs.top_logprobs == [{" Paris": -0.1, ".": -3.0}]
    assert second[0].choices[0].logprobs is not None and second[0].choices[0].logprobs.text_offset == [14]
    assert final[0].choices[0].finish_reason == "length" and final[0].choices[0].text == ""
