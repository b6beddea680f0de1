"""Hypothesis strategies: chat chunk streams as engines and chat servers send them.

A stream has one choice the dialects carry (index 0), sometimes beside a second choice they must ignore:
a role chunk (OpenAI-style servers send ``content: ""`` in it), reasoning pieces, text pieces, several tool
calls whose argument fragments interleave (each call's first fragment, with its id and name, arrives in
``index`` order, as chat servers number them), a finish reason (a stop sequence named in ``stop_reason``,
a token limit that cuts a call's arguments short) and, sometimes, the usage chunk.

``canonical`` streams keep the order every real producer uses (reasoning, then text, then tool calls); the
others shuffle text and reasoning among the calls, which the chat reassembly cannot tell apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hypothesis import strategies as st

from chunkwise.types import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    CompletionTokensDetails,
    CompletionUsage,
    PromptTokensDetails,
)

ID, CREATED, MODEL = "chatcmpl-7", 1_760_000_000, "HuggingFaceTB/SmolLM2-135M-Instruct"

piece = st.text(min_size=1, max_size=8)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@dataclass
class ChatStream:
    chunks: list[ChatCompletionChunk]
    finish_reason: str
    calls: int
    stop_text: str | None = None
    notes: list[str] = field(default_factory=list)


def _chunk(
    delta: ChoiceDelta, *, index: int = 0, finish: str | None = None, stop: int | str | None = None
) -> ChatCompletionChunk:
    choice = ChunkChoice(index=index, delta=delta, finish_reason=finish, stop_reason=stop)
    return ChatCompletionChunk(id=ID, created=CREATED, model=MODEL, choices=[choice])


def _split(data: st.DataObject, text: str) -> list[str]:
    if not text:
        return []
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=4)))
    bounds = [0, *[cut for cut in cuts if cut < len(text)], len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if a < b]


@st.composite
def chat_streams(draw: st.DrawFn, *, canonical: bool = True) -> ChatStream:
    data = draw(st.data())
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    reasoning = draw(st.lists(piece, max_size=4))
    content = draw(st.lists(piece, max_size=4))
    call_count = draw(st.integers(0, 3)) if finish in ("tool_calls", "length") else 0
    if finish == "tool_calls" and call_count == 0:
        finish = "stop"
    # Each call's fragments: the first carries id, type and name; arguments are JSON text cut anywhere.
    call_fragments: list[list[ChoiceDeltaToolCall]] = []
    for index in range(call_count):
        arguments = json.dumps(draw(st.dictionaries(st.text(max_size=5), json_value, max_size=3)))
        if finish == "length" and index == call_count - 1:
            arguments = arguments[: draw(st.integers(0, len(arguments)))]  # the token limit cut the last call
        pieces = _split(data, arguments) or [""]
        call_id = draw(st.sampled_from([f"call_{index}x", None]))
        name = draw(st.from_regex(r"[a-z_]{1,8}", fullmatch=True))
        fragments = [
            ChoiceDeltaToolCall(
                index=index,
                id=call_id,
                type="function",
                function=ChoiceDeltaToolCallFunction(name=name, arguments=pieces[0]),
            )
        ]
        fragments += [
            ChoiceDeltaToolCall(index=index, function=ChoiceDeltaToolCallFunction(arguments=rest))
            for rest in pieces[1:]
        ]
        call_fragments.append(fragments)
    # Interleave the calls' fragments, each call starting only after the one before it started.
    order: list[ChoiceDeltaToolCall] = []
    positions = [0] * call_count
    while any(positions[i] < len(call_fragments[i]) for i in range(call_count)):
        ready = [
            i for i in range(call_count) if positions[i] < len(call_fragments[i]) and (i == 0 or positions[i - 1] > 0)
        ]
        chosen = data.draw(st.sampled_from(ready))
        order.append(call_fragments[chosen][positions[chosen]])
        positions[chosen] += 1

    deltas: list[ChoiceDelta] = [ChoiceDelta(reasoning_content=text) for text in reasoning]
    deltas += [ChoiceDelta(content=text) for text in content]
    tool_deltas = [ChoiceDelta(tool_calls=[fragment]) for fragment in order]
    if canonical:
        deltas += tool_deltas
    else:
        # Shuffle text and reasoning among the calls; the calls keep their own relative order.
        merged: list[ChoiceDelta] = []
        rest = list(deltas)
        for delta in tool_deltas:
            while rest:
                if not data.draw(st.booleans()):
                    break
                merged.append(rest.pop(data.draw(st.integers(0, len(rest) - 1))))
            merged.append(delta)
        merged += rest
        deltas = merged

    chunks = [_chunk(ChoiceDelta(role="assistant", content=draw(st.sampled_from(["", None]))))]
    chunks += [_chunk(delta) for delta in deltas]
    if draw(st.booleans()):
        # A second choice (n > 1) that a dialect, carrying one choice, leaves out.
        chunks.insert(draw(st.integers(1, len(chunks))), _chunk(ChoiceDelta(content="other"), index=1))
    stop_text: str | None = None
    stop: int | str | None = None
    if finish == "stop":
        kind = draw(st.sampled_from(["none", "sequence", "token"]))
        if kind == "sequence":
            stop = stop_text = draw(st.sampled_from(["</s>", "\n\nUser:", "END"]))
        elif kind == "token":
            stop = 2  # an end-of-sequence token id, which is no stop sequence
    chunks.append(_chunk(ChoiceDelta(), finish=finish, stop=stop))
    if draw(st.booleans()):
        prompt = draw(st.integers(1, 500))
        completion = draw(st.integers(0, 500))
        cached = draw(st.integers(0, prompt))
        reasoning_tokens = draw(st.integers(0, completion))
        usage = CompletionUsage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached) if cached else None,
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning_tokens)
            if reasoning_tokens
            else None,
        )
        chunks.append(ChatCompletionChunk(id=ID, created=CREATED, model=MODEL, choices=[], usage=usage))
    return ChatStream(chunks=chunks, finish_reason=finish, calls=call_count, stop_text=stop_text)
