"""Reassembly: random completions are cut into random chunk streams and must come back unchanged."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkwise.accumulate import (
    ChatCompletionAccumulator,
    CompletionAccumulator,
    accumulate,
    accumulate_completions,
)
from chunkwise.sse import ChunkStreamDecoder, encode_json
from chunkwise.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionUsage,
    FunctionCall,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)

text = st.text(max_size=30)
nonempty = st.text(min_size=1, max_size=12)

# -inf has no JSON spelling (it is written as null), so the round trip through bytes needs finite values.
finite_logprob = st.floats(max_value=0.0, allow_nan=False, allow_infinity=False, width=32)
token_logprobs = st.builds(
    TokenLogprob,
    token=text,
    logprob=finite_logprob,
    bytes=st.none() | st.lists(st.integers(0, 255), max_size=4),
    top_logprobs=st.lists(st.builds(TopLogprob, token=text, logprob=finite_logprob), max_size=2),
)
tool_calls = st.builds(
    ToolCall,
    id=nonempty,
    type=st.just("function"),
    function=st.builds(FunctionCall, name=nonempty, arguments=text),
)


@st.composite
def choices(draw: st.DrawFn, index: int) -> Choice:
    reasoning = draw(st.none() | text)
    spelling = draw(st.sampled_from(["reasoning_content", "reasoning", "both"]))
    message = ChatCompletionMessage(
        content=draw(st.none() | text),
        refusal=draw(st.none() | nonempty),
        reasoning_content=reasoning if spelling in ("reasoning_content", "both") else None,
        reasoning=reasoning if spelling in ("reasoning", "both") else None,
        tool_calls=draw(st.none() | st.lists(tool_calls, min_size=1, max_size=3)),
    )
    # A stream cannot tell `logprobs: {}` from no logprobs, so a drawn value carries at least one list.
    logprobs = draw(
        st.none()
        | st.builds(
            ChoiceLogprobs,
            content=st.none() | st.lists(token_logprobs, max_size=4),
            refusal=st.none() | st.lists(token_logprobs, max_size=2),
        ).filter(lambda lp: lp.content is not None or lp.refusal is not None)
    )
    return Choice(
        index=index,
        message=message,
        finish_reason=draw(st.none() | st.sampled_from(["stop", "length", "tool_calls", "content_filter"])),
        logprobs=logprobs,
        stop_reason=draw(st.none() | st.integers(0, 200000) | nonempty),
    )


@st.composite
def completions(draw: st.DrawFn) -> ChatCompletion:
    count = draw(st.integers(min_value=1, max_value=4))
    return ChatCompletion(
        id=draw(nonempty),
        created=draw(st.integers(min_value=1, max_value=2**40)),
        model=draw(nonempty),
        choices=[draw(choices(i)) for i in range(count)],
        usage=draw(
            st.none()
            | st.builds(
                CompletionUsage,
                prompt_tokens=st.integers(0, 10**6),
                completion_tokens=st.integers(0, 10**6),
                total_tokens=st.integers(0, 10**6),
            )
        ),
        system_fingerprint=draw(st.none() | nonempty),
        service_tier=draw(st.none() | st.sampled_from(["default", "flex"])),
    )


def pieces_of(draw: st.DrawFn, value: str) -> list[str]:
    """Cut a string anywhere, at least one piece (which may be empty)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(value)), max_size=4)))
    bounds = [0, *cuts, len(value)]
    return [value[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def list_pieces(draw: st.DrawFn, values: list[Any]) -> list[list[Any]]:
    cuts = sorted(draw(st.lists(st.integers(0, len(values)), max_size=3)))
    bounds = [0, *cuts, len(values)]
    return [values[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def deltas_for(draw: st.DrawFn, choice: Choice) -> list[ChunkChoice]:
    """The deltas a server could have streamed for one choice, in order."""
    message = choice.message
    index = choice.index
    out: list[ChunkChoice] = [ChunkChoice(index=index, delta=ChoiceDelta(role="assistant"))]
    reasoning = message.reasoning_text
    if reasoning is not None:
        for piece in pieces_of(draw, reasoning):
            out.append(
                ChunkChoice(
                    index=index,
                    delta=ChoiceDelta(
                        reasoning_content=piece if message.reasoning_content is not None else None,
                        reasoning=piece if message.reasoning is not None else None,
                    ),
                )
            )
    if message.content is not None:
        out.extend(ChunkChoice(index=index, delta=ChoiceDelta(content=p)) for p in pieces_of(draw, message.content))
    if message.refusal is not None:
        out.extend(ChunkChoice(index=index, delta=ChoiceDelta(refusal=p)) for p in pieces_of(draw, message.refusal))
    # Parallel tool calls: the first fragment of each carries id/type/name, arguments may interleave.
    fragments: list[list[ChoiceDeltaToolCall]] = []
    for call_index, call in enumerate(message.tool_calls or []):
        args = pieces_of(draw, call.function.arguments)
        first = ChoiceDeltaToolCall(
            index=call_index,
            id=call.id,
            type=call.type,
            function=ChoiceDeltaToolCallFunction(name=call.function.name, arguments=args[0]),
        )
        rest = [
            ChoiceDeltaToolCall(index=call_index, function=ChoiceDeltaToolCallFunction(arguments=a)) for a in args[1:]
        ]
        fragments.append([first, *rest])
    while any(fragments):
        live = [f for f in fragments if f]
        source = live[draw(st.integers(0, len(live) - 1))]
        batch = [source.pop(0)]
        if len(source) > 0 and draw(st.booleans()):
            batch.append(source.pop(0))  # two fragments of one call in one delta (E8)
        out.append(ChunkChoice(index=index, delta=ChoiceDelta(tool_calls=batch)))
    if choice.logprobs is not None:
        # Spread logprobs over the existing deltas (or new empty ones) without reordering them.
        for field in ("content", "refusal"):
            entries = getattr(choice.logprobs, field)
            if entries is None:
                continue
            for position, part in enumerate(list_pieces(draw, entries)):
                target = out[min(position, len(out) - 1)] if position < len(out) else None
                if target is None:
                    target = ChunkChoice(index=index, delta=ChoiceDelta())
                    out.append(target)
                if target.logprobs is None:
                    target.logprobs = ChoiceLogprobs()
                existing = getattr(target.logprobs, field)
                setattr(target.logprobs, field, (existing or []) + part)
    out.append(
        ChunkChoice(
            index=index, delta=ChoiceDelta(), finish_reason=choice.finish_reason, stop_reason=choice.stop_reason
        )
    )
    return out


@st.composite
def streams(draw: st.DrawFn) -> tuple[ChatCompletion, list[ChatCompletionChunk]]:
    completion = draw(completions())
    queues = [deltas_for(draw, choice) for choice in completion.choices]
    chunks: list[ChatCompletionChunk] = []

    def make(choice_list: list[ChunkChoice], usage: CompletionUsage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=completion.id,
            created=completion.created,
            model=completion.model,
            choices=choice_list,
            usage=usage,
            system_fingerprint=completion.system_fingerprint,
            service_tier=completion.service_tier,
        )

    while any(queues):
        live = [q for q in queues if q]
        picked = draw(st.lists(st.integers(0, len(live) - 1), min_size=1, max_size=2, unique=True))
        chunks.append(make([live[i].pop(0) for i in picked]))
        if draw(st.integers(0, 9)) == 0:
            chunks.append(make([]))  # an empty chunk (E17)
    if completion.usage is not None:
        chunks.append(make([], usage=completion.usage))
    return completion, chunks


@settings(max_examples=200, deadline=None)
@given(streams())
def test_random_chunk_sequences_reassemble_to_the_completion_they_were_cut_from(
    case: tuple[ChatCompletion, list[ChatCompletionChunk]],
) -> None:
    completion, chunks = case
    assert accumulate(chunks) == completion


@settings(max_examples=75, deadline=None)
@given(streams(), st.lists(st.integers(min_value=0, max_value=5000), max_size=8))
def test_bytes_to_completion_through_the_sse_layer(
    case: tuple[ChatCompletion, list[ChatCompletionChunk]], cuts: list[int]
) -> None:
    completion, chunks = case
    wire = b"".join(encode_json(chunk) for chunk in chunks) + b"data: [DONE]\n\n"
    decoder: ChunkStreamDecoder[ChatCompletionChunk] = ChunkStreamDecoder()
    accumulator = ChatCompletionAccumulator()
    points = sorted({min(c, len(wire)) for c in cuts})
    for start, end in zip([0, *points], [*points, len(wire)], strict=False):
        for item in decoder.feed(wire[start:end]):
            if isinstance(item, ChatCompletionChunk):
                accumulator.add(item)
    decoder.close()
    assert decoder.finished_properly
    assert accumulator.result() == completion


def test_result_is_a_snapshot_and_finished_tracks_every_choice() -> None:
    accumulator = ChatCompletionAccumulator()
    assert not accumulator.finished
    accumulator.add(
        ChatCompletionChunk(
            id="c",
            choices=[
                ChunkChoice(index=0, delta=ChoiceDelta(content="a")),
                ChunkChoice(index=1, delta=ChoiceDelta(content="b")),
            ],
        )
    )
    first = accumulator.result()
    accumulator.add(
        ChatCompletionChunk(
            id="c", choices=[ChunkChoice(index=0, delta=ChoiceDelta(content="c"), finish_reason="stop")]
        )
    )
    assert first.choices[0].message.content == "a"
    assert accumulator.result().choices[0].message.content == "ac"
    assert not accumulator.finished
    accumulator.add(
        ChatCompletionChunk(id="c", choices=[ChunkChoice(index=1, delta=ChoiceDelta(), finish_reason="length")])
    )
    assert accumulator.finished


def test_legacy_function_call_deltas() -> None:
    raw = [
        {"index": 0, "delta": {"role": "assistant", "function_call": {"name": "f", "arguments": ""}}},
        {"index": 0, "delta": {"function_call": {"arguments": '{"a":'}}},
        {"index": 0, "delta": {"function_call": {"arguments": "1}"}}, "finish_reason": "function_call"},
    ]
    chunks = [msgspec.convert({"id": "x", "choices": [c]}, ChatCompletionChunk) for c in raw]
    message = accumulate(chunks).choices[0].message
    assert message.function_call == FunctionCall(name="f", arguments='{"a":1}')


def test_legacy_completions_reassemble() -> None:
    pieces = [
        Completion(
            id="cmpl-1",
            created=3,
            model="m",
            choices=[
                CompletionChoice(index=1, text="B"),
                CompletionChoice(
                    index=0,
                    text="A",
                    logprobs=CompletionLogprobs(
                        tokens=["A"], token_logprobs=[-0.5], top_logprobs=[{"A": -0.5}], text_offset=[0]
                    ),
                ),
            ],
        ),
        Completion(
            id="cmpl-1",
            created=3,
            model="m",
            choices=[
                CompletionChoice(
                    index=0,
                    text="a",
                    finish_reason="stop",
                    logprobs=CompletionLogprobs(
                        tokens=["a"], token_logprobs=[-1.0], top_logprobs=[None], text_offset=[1]
                    ),
                ),
                CompletionChoice(index=1, text="b", finish_reason="length"),
            ],
        ),
        Completion(
            id="cmpl-1",
            created=3,
            model="m",
            usage=CompletionUsage(prompt_tokens=1, completion_tokens=4, total_tokens=5),
        ),
        Completion(object="", id="", choices=[CompletionChoice(index=0, text="ignored")]),
    ]
    result = accumulate_completions(pieces)
    assert [(c.index, c.text, c.finish_reason) for c in result.choices] == [(0, "Aa", "stop"), (1, "Bb", "length")]
    assert result.choices[0].logprobs == CompletionLogprobs(
        tokens=["A", "a"], token_logprobs=[-0.5, -1.0], top_logprobs=[{"A": -0.5}, None], text_offset=[0, 1]
    )
    assert result.usage is not None and result.usage.total_tokens == 5
    assert (result.id, result.created) == ("cmpl-1", 3)
    assert CompletionAccumulator().result().choices == []
