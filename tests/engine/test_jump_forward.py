"""Jump-forward changes no output: the text a grammar forces is guessed and verified like speculation's guesses.

Where a ``json_schema`` grammar forces text (a key, its quotes), the step loop guesses the tokens that write it
in the next decode and keeps them while the tokens sampled at their positions equal them; the grammar
checks only the sampled token unless it rejects it (``engine/_sampling.py``). Greedy text, and sampled text
for a given ``seed``, must be what sampling one token at a time with the grammar applied first gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import llama_cpp
import pytest

from chunkwise.engine import LlamaCppEngine
from chunkwise.engine._grammar import json_schema_grammar
from chunkwise.engine._jump import JumpForward
from chunkwise.engine._sampling import Candidates
from chunkwise.types import ChatCompletionChunk, ChatCompletionRequest

from .support import chat, content_of, finish_reason, guessing_freely, run_chat

pytestmark = [pytest.mark.anyio, pytest.mark.engine]

SCHEMA = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "topic": {"type": "string"},
                    "outcome": {"enum": ["approved", "rejected", "delayed", "asked"]},
                },
                "required": ["topic", "outcome"],
            },
        }
    },
    "required": ["decisions"],
}
MEETINGS = [
    "The council approved the new library on Mill Street. It delayed the repairs to the north road.",
    "The board rejected the plan to close the old bridge. It agreed to hold the festival in July.",
    "The assembly approved a budget of 2.4 million. It asked the treasurer for a report.",
    "The committee delayed the vote on the park. It approved the new school bus route.",
    "The council agreed to plant trees on Elm Avenue. It rejected the new parking fees.",
    "The board approved the harbour wall repairs. It delayed the sports fund until May.",
    "The assembly asked for a study of the ring road. It approved the summer market.",
    "The committee approved the pension fund report. It rejected the proposal for a new hall.",
]


def extraction(meeting: str, **fields: Any) -> ChatCompletionRequest:
    schema = {"type": "json_schema", "json_schema": {"name": "decisions", "schema": SCHEMA}}
    prompt = f"Extract every decision of this meeting as JSON:\n\n{meeting}"
    return chat(prompt, **{"max_tokens": 60, "temperature": 0, "response_format": schema, **fields})


@pytest.fixture(scope="module")
def plain() -> Iterator[LlamaCppEngine]:
    """Neither guesses nor forced text: every token decoded on its own."""
    with LlamaCppEngine(n_threads=1, speculation=False, jump_forward=False) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def jumping() -> Iterator[LlamaCppEngine]:
    """Forced text guessed, and nothing else: every guess it makes comes from the grammar."""
    with LlamaCppEngine(n_threads=1, speculation=False, jump_forward=True) as loaded, guessing_freely(loaded):
        yield loaded


@pytest.fixture(scope="module")
def guessing() -> Iterator[LlamaCppEngine]:
    """Forced text and prompt lookup both guessed."""
    with LlamaCppEngine(n_threads=1, jump_forward=True) as loaded, guessing_freely(loaded):
        yield loaded


async def texts(engine: LlamaCppEngine, requests: list[ChatCompletionRequest]) -> list[list[ChatCompletionChunk]]:
    return list(await asyncio.gather(*(run_chat(engine, body) for body in requests)))


async def test_greedy_json_is_the_same_with_jump_forward_alone_and_among_seven_others(
    plain: LlamaCppEngine, jumping: LlamaCppEngine, guessing: LlamaCppEngine
) -> None:
    requests = [extraction(meeting) for meeting in MEETINGS]
    reference = [content_of((await texts(plain, [request]))[0]) for request in requests]
    stats = jumping.batching_stats()
    assert [content_of((await texts(jumping, [request]))[0]) for request in requests[:2]] == reference[:2]
    assert [content_of(chunks) for chunks in await texts(jumping, requests)] == reference
    assert stats.forced_accepted_tokens > 0 and stats.drafted_tokens == 0
    # With speculation as well: grammar guesses and prompt lookup side by side (a sequence guesses while it
    # is decoded alone, so the first two requests go alone again).
    assert [content_of((await texts(guessing, [request]))[0]) for request in requests[:2]] == reference[:2]
    assert [content_of(chunks) for chunks in await texts(guessing, requests)] == reference
    assert guessing.batching_stats().forced_tokens > 0 and guessing.batching_stats().accepted_tokens > 0
    assert plain.batching_stats().forced_tokens == 0


async def test_checking_the_sampled_token_gives_what_masking_the_vocabulary_first_gives(plain: LlamaCppEngine) -> None:
    # A chain with penalties applies the grammar to the whole vocabulary before its argmax; a penalty far below
    # a float's resolution at the likeliest logits leaves them bitwise the same, so the text must not change.
    for meeting in MEETINGS[:4]:
        checked = content_of(await run_chat(plain, extraction(meeting, max_tokens=80)))
        masked = content_of(await run_chat(plain, extraction(meeting, max_tokens=80, frequency_penalty=1e-9)))
        assert checked == masked


async def test_a_biased_greedy_chain_offers_its_grammar_the_likeliest_biased_tokens(
    plain: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unbiased, the grammar rejects the model's first choice and then takes "{", and "The" opens every
    # topic. With both banned, the likeliest allowed token after a rejection is one the bias removed, and
    # some choices lie beyond the first tier of likeliest tokens. Masking first (the penalty) is the reference.
    bias = {str(token): -100 for word in ("{", "The") for token in plain.tokenize(word, parse_special=False)}
    offered: list[int] = []
    checking = Candidates.allowed

    def counted(self: Candidates, grammar: Any, tokens: list[int]) -> Any:
        offered.append(len(tokens))
        return checking(self, grammar, tokens)

    monkeypatch.setattr(Candidates, "allowed", counted)
    for meeting in MEETINGS[:3]:
        unbiased = content_of(await run_chat(plain, extraction(meeting, max_tokens=80)))
        checked = content_of(await run_chat(plain, extraction(meeting, max_tokens=80, logit_bias=bias)))
        masked = content_of(
            await run_chat(plain, extraction(meeting, max_tokens=80, logit_bias=bias, frequency_penalty=1e-9))
        )
        assert checked == masked != unbiased
    assert len({size for size in offered if size > 1}) > 1, "the grammar was offered a wider tier too"


async def test_the_same_seed_gives_the_same_json_with_jump_forward(
    plain: LlamaCppEngine, jumping: LlamaCppEngine
) -> None:
    request = extraction(MEETINGS[0], temperature=0.8, seed=5, n=2)
    forced = jumping.batching_stats().forced_tokens
    sampled = await run_chat(jumping, request)
    again = await run_chat(jumping, request)
    reference = await run_chat(plain, request)
    choices = [[content_of(chunks, index) for index in (0, 1)] for chunks in (sampled, again, reference)]
    assert choices[0] == choices[1] == choices[2]
    assert choices[0][0] != choices[0][1]
    assert jumping.batching_stats().forced_tokens > forced


@pytest.mark.parametrize("max_tokens", [3, 4, 10])
async def test_max_tokens_cuts_a_forced_run(plain: LlamaCppEngine, jumping: LlamaCppEngine, max_tokens: int) -> None:
    # '{', ' "', then the key "decisions" (forced) in a few tokens: the limit falls inside the forced text.
    request = extraction(MEETINGS[1], max_tokens=max_tokens)
    generation = jumping.prepare_chat(request, request_id="chatcmpl-cut", created=0)
    chunks = [chunk async for chunk in generation.stream()]
    assert content_of(chunks) == content_of(await run_chat(plain, request))
    assert finish_reason(chunks) == "length"
    assert generation.completion_tokens == max_tokens


async def test_logprobs_are_the_same_with_jump_forward(plain: LlamaCppEngine, jumping: LlamaCppEngine) -> None:
    request = extraction(MEETINGS[2], max_tokens=12, logprobs=True, top_logprobs=2)

    def logprobs(chunks: list[ChatCompletionChunk]) -> list[tuple[str, float | None]]:
        return [
            (item.token, item.logprob)
            for chunk in chunks
            for choice in chunk.choices
            if choice.logprobs is not None and choice.logprobs.content
            for item in choice.logprobs.content
        ]

    forced = jumping.batching_stats().forced_accepted_tokens
    found = logprobs(await run_chat(jumping, request))
    assert len(found) == 12 and found == logprobs(await run_chat(plain, request))
    assert jumping.batching_stats().forced_accepted_tokens > forced


def test_the_forced_text_is_the_key_and_nothing_inside_a_string(plain: LlamaCppEngine) -> None:
    jump: JumpForward = plain._jump_forward()
    grammar = llama_cpp.llama_sampler_init_grammar(plain._vocab, json_schema_grammar(SCHEMA).encode(), b"root")
    try:
        start = jump.replace(grammar, [], 16)
        assert start is not None and plain.detokenize(start) == "{"  # then ' ' or '"': a choice
        for token in plain.tokenize('{ "', parse_special=False):
            llama_cpp.llama_sampler_accept(grammar, token)
        forced = jump.replace(grammar, [], 16)
        assert forced is not None and plain.detokenize(forced) == 'decisions"'
        assert jump.replace(grammar, forced, 16) is None  # a guess that agrees is kept
        assert jump.replace(grammar, plain.tokenize("dec"), 16) is None
        assert jump.replace(grammar, plain.tokenize("topic"), 16) == forced
        assert jump.replace(grammar, [], 1) == forced[:1]
        for token in plain.tokenize('decisions": [ { "topic": "Li', parse_special=False):
            llama_cpp.llama_sampler_accept(grammar, token)
        assert jump.replace(grammar, [], 16) is None
    finally:
        llama_cpp.llama_sampler_free(grammar)
