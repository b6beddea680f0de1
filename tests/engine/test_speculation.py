"""Speculative decoding changes no output: the same text with guesses verified in the decode step as without.

Each running sequence guesses the tokens that followed the previous occurrence of its latest tokens (in its
prompt or output) and the step decodes them with its next token; a guess is kept only where the token
sampled at its position equals it. That gives the same text as decoding one token at a time because a
token's logits are bitwise the same in every batch shape the step loop makes (``engine/_splits.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec
import pytest

from chunkwise.engine import LlamaCppEngine
from chunkwise.types import ChatCompletionChunk, ChatCompletionRequest

from .support import chat, content_of, guessing_freely, run_chat

pytestmark = pytest.mark.anyio

LISTS = [
    "apples, pears, plums, cherries, grapes, lemons, limes, oranges",
    "red, green, blue, yellow, purple, orange, black, white, grey",
    "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday",
    "one, two, three, four, five, six, seven, eight, nine, ten",
    "north, south, east, west, up, down, left, right, in, out",
    "January, February, March, April, May, June, July, August",
    "cat, dog, horse, cow, sheep, goat, pig, hen, duck, goose",
    "Paris, London, Rome, Berlin, Madrid, Vienna, Prague, Lisbon",
]


def copy_task(items: str, **fields: object) -> ChatCompletionRequest:
    return chat(f"Repeat this list exactly, twice: {items}", **{"max_tokens": 40, **fields})


@pytest.fixture(scope="module", autouse=True)
def every_guess_decoded(engine: LlamaCppEngine) -> Iterator[None]:
    """While this module runs, the shared engine decodes every guess it has (see ``guessing_freely``)."""
    with guessing_freely(engine):
        yield


@pytest.fixture(scope="module")
def plain() -> Iterator[LlamaCppEngine]:
    """The same model without speculation: every token decoded on its own."""
    with LlamaCppEngine(n_threads=1, speculation=False) as loaded:
        yield loaded


async def texts(engine: LlamaCppEngine, requests: list[ChatCompletionRequest]) -> list[str]:
    return [content_of(chunks) for chunks in await asyncio.gather(*(run_chat(engine, body) for body in requests))]


async def test_greedy_text_is_the_same_with_speculation_alone_and_among_seven_others(
    engine: LlamaCppEngine, plain: LlamaCppEngine
) -> None:
    requests = [copy_task(items, temperature=0) for items in LISTS]
    reference = [(await texts(plain, [request]))[0] for request in requests]
    stats = engine.batching_stats()
    accepted = stats.accepted_tokens
    assert [(await texts(engine, [request]))[0] for request in requests[:2]] == reference[:2]
    assert await texts(engine, requests) == reference
    assert stats.accepted_tokens > accepted
    assert plain.batching_stats().drafted_tokens == 0


async def test_the_same_seed_gives_the_same_text_with_speculation(
    engine: LlamaCppEngine, plain: LlamaCppEngine
) -> None:
    # n=2: each choice guesses from its own output, and draws from its own seeded stream.
    request = copy_task(LISTS[0], temperature=0.4, seed=11, n=2)
    stats = engine.batching_stats()
    drafted = stats.drafted_tokens
    sampled = await run_chat(engine, request)
    reference = await run_chat(plain, request)
    assert [content_of(sampled, index) for index in (0, 1)] == [content_of(reference, index) for index in (0, 1)]
    assert stats.drafted_tokens > drafted


async def test_structured_output_is_the_same_with_speculation(engine: LlamaCppEngine, plain: LlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"fruits": {"type": "array", "items": {"type": "string"}}},
        "required": ["fruits"],
    }
    body = {
        "model": "test",
        "messages": [{"role": "user", "content": f"List these fruits as JSON: {LISTS[0]}"}],
        "temperature": 0,
        "max_tokens": 40,
        "response_format": {"type": "json_schema", "json_schema": {"name": "fruits", "schema": schema}},
    }
    request = msgspec.convert(body, type=ChatCompletionRequest)
    assert await texts(engine, [request]) == await texts(plain, [request])


async def test_guesses_are_mostly_accepted_on_a_copy_task(engine: LlamaCppEngine) -> None:
    stats = engine.batching_stats()
    drafted, accepted = stats.drafted_tokens, stats.accepted_tokens
    await run_chat(engine, copy_task(LISTS[3], temperature=0, max_tokens=60))
    assert stats.accepted_tokens - accepted >= 10
    assert stats.accepted_tokens - accepted >= (stats.drafted_tokens - drafted) / 2


async def test_an_answer_given_before_is_guessed_from_the_shared_output_cache(engine: LlamaCppEngine) -> None:
    # A story repeats nothing of its prompt or itself: its guesses come from the earlier output.
    request = chat("Write a short story about a dragon.", temperature=0, max_tokens=30)
    first = content_of(await run_chat(engine, request))
    stats = engine.batching_stats()
    accepted = stats.accepted_tokens
    assert content_of(await run_chat(engine, request)) == first
    assert stats.accepted_tokens - accepted >= 20


@pytest.mark.engine
async def test_an_engine_prices_guesses_by_the_steps_it_times_and_still_writes_the_same_text(
    plain: LlamaCppEngine,
) -> None:
    request = copy_task(LISTS[0], temperature=0, max_tokens=60)  # copied word for word, even when fresh
    with LlamaCppEngine(n_threads=1) as engine:
        assert engine._loop is not None
        assert engine._loop._step_costs.estimate(2) == [1.0, 1.0]  # nothing timed yet
        assert content_of(await run_chat(engine, request)) == content_of(await run_chat(plain, request))
        timed = engine._loop._step_costs.estimate(2)
        assert timed != [1.0, 1.0] and all(0 < seconds < 1 for seconds in timed)
        # Sizes not timed yet are priced as the largest timed one, so the first guesses are made whatever
        # this machine's costs turn out to be, and a copy task's are kept.
        assert engine.batching_stats().accepted_tokens > 0


LONG_SYSTEM = " ".join(f"Rule {number}: keep every answer short, kind and exact." for number in range(30))


def long_request(question: str) -> ChatCompletionRequest:
    messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": question}]
    body = {"model": "test", "messages": messages, "temperature": 0, "max_tokens": 4, "logprobs": True}
    return msgspec.convert(body, type=ChatCompletionRequest)


def logprobs_of(chunks: list[ChatCompletionChunk]) -> list[float | None]:
    return [
        item.logprob
        for chunk in chunks
        for choice in chunk.choices
        if choice.logprobs is not None and choice.logprobs.content
        for item in choice.logprobs.content
    ]


@pytest.mark.engine
@pytest.mark.parametrize("cache_type_k", ["q8_0", "f16"])
async def test_a_long_sequence_gets_bitwise_the_same_logprobs_alone_and_among_others_with_two_threads(
    cache_type_k: str,
) -> None:
    # With f16 keys, two threads split the attention of a lone token over a 512-cell KV view and merge the
    # partial sums, which changes the last bits (found with bench/verify_invariance.py), so the loop never
    # decodes that shape; with q8_0 keys flash attention never takes that path. One thread never takes it
    # either, hence an engine of its own.
    questions = ["Name a color.", "Say hello.", "Name a fruit.", "Name an animal."]
    with LlamaCppEngine(n_ctx=512, n_threads=2, max_sequences=4, cache_type_k=cache_type_k) as engine:
        assert len(engine.tokenize(LONG_SYSTEM)) > 300
        alone = logprobs_of(await run_chat(engine, long_request(questions[0])))
        together = await asyncio.gather(*(run_chat(engine, long_request(question)) for question in questions))
    assert alone and logprobs_of(together[0]) == alone


@pytest.mark.engine  # refused before loading, but the marker check cannot tell
def test_an_unknown_key_cache_type_is_refused_before_the_model_loads() -> None:
    with pytest.raises(ValueError, match="cache_type_k must be one of q8_0, f16"):
        LlamaCppEngine(cache_type_k="q4_0")
