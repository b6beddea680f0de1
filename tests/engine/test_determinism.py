"""The same greedy request gives the same text whatever the KV cache holds from earlier requests.

llama.cpp's arithmetic depends on how tokens are grouped into batches, and a 135M model's greedy choice
flips on such last-bit differences: before prompts were evaluated in one canonical grouping, a prompt's
first answer differed from its repeats (seen through the server, found by the CLI tests). With continuous
batching a request also shares its decode steps with others and may start from a prefix another request
left in (or is holding in) the cache; neither may change its greedy text.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from chunkwise.engine import LlamaCppEngine
from chunkwise.types import ChatCompletionRequest

from .support import chat, content_of, run_chat

pytestmark = pytest.mark.anyio

PROMPTS = ["Name a color.", "Name a color?", "Name a color.", "Write one word about the sea.", "Name a color."]


async def greedy(engine: LlamaCppEngine, prompt: str) -> str:
    return content_of(await run_chat(engine, chat(prompt, temperature=0, max_tokens=12)))


async def test_answers_do_not_depend_on_what_the_cache_held(engine: LlamaCppEngine) -> None:
    seen = {prompt: await greedy(engine, prompt) for prompt in PROMPTS[:2]}
    for prompt in PROMPTS:
        assert await greedy(engine, prompt) == seen.setdefault(prompt, await greedy(engine, prompt)), prompt


async def test_a_fresh_engine_answers_like_a_warm_one(engine: LlamaCppEngine) -> None:
    warm = [await greedy(engine, "Name a color.") for _ in range(2)]
    with LlamaCppEngine(n_threads=1) as fresh:
        cold = await greedy(fresh, "Name a color.")
    assert warm == [cold, cold]


SYSTEM = "You are a careful assistant. " + " ".join(f"Rule {number}: answer briefly, kindly." for number in range(12))
QUESTIONS = [
    "Name a color.",
    "What is two plus two?",
    "Say hello.",
    "Name a fruit.",
    "What do bees make?",
    "Name an animal.",
    "What is the sea made of?",
    "Give me a word that rhymes with moon.",
]


def with_system(question: str) -> ChatCompletionRequest:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    body = {"model": "test", "messages": messages, "temperature": 0, "max_tokens": 8}
    return msgspec.convert(body, type=ChatCompletionRequest)


async def test_answers_are_the_same_alone_or_among_seven_others_cached_prefix_or_not(engine: LlamaCppEngine) -> None:
    # Uncached: each question is the first request of a fresh engine.
    cold = []
    for question in QUESTIONS:
        with LlamaCppEngine(n_ctx=512, n_threads=1, max_sequences=1) as fresh:
            cold.append(content_of(await run_chat(fresh, with_system(question))))
    # All eight at once: they share decode steps, and the long system prompt is evaluated once, then copied.
    hits_before = engine.batching_stats().prefix_cache_hits
    together = await asyncio.gather(*(run_chat(engine, with_system(question)) for question in QUESTIONS))
    assert [content_of(chunks) for chunks in together] == cold
    assert engine.batching_stats().prefix_cache_hits > hits_before
    # Alone again, each reusing what the batch left in the cache.
    assert [content_of(await run_chat(engine, with_system(question))) for question in QUESTIONS] == cold


SHORT_SYSTEM = "You answer in one short sentence."


def with_short_system(question: str) -> ChatCompletionRequest:
    messages = [{"role": "system", "content": SHORT_SYSTEM}, {"role": "user", "content": question}]
    body = {"model": "test", "messages": messages, "temperature": 0, "max_tokens": 8}
    return msgspec.convert(body, type=ChatCompletionRequest)


async def test_a_system_prompt_shorter_than_a_prefill_piece_is_reused_without_changing_answers(
    engine: LlamaCppEngine,
) -> None:
    # The system turn is far shorter than one 64-token piece; it is still cut at the message boundary, so
    # a later request with another question starts from it, and answers as a fresh engine does.
    cold = []
    for question in QUESTIONS[:3]:
        with LlamaCppEngine(n_ctx=512, n_threads=1, max_sequences=1) as fresh:
            cold.append(content_of(await run_chat(fresh, with_short_system(question))))
    await run_chat(engine, with_short_system("Say anything."))
    stats = engine.batching_stats()
    hits, tokens = stats.prefix_cache_hits, stats.prefix_cache_tokens
    warm = [content_of(await run_chat(engine, with_short_system(question))) for question in QUESTIONS[:3]]
    assert warm == cold
    assert stats.prefix_cache_hits >= hits + 3
    # Each reused at least the system turn and the user turn's header.
    assert stats.prefix_cache_tokens - tokens >= 3 * len(SHORT_SYSTEM.split())


@pytest.mark.engine  # a fresh engine of its own: the test needs an empty prefix cache
async def test_two_system_prompts_in_turn_both_stay_cached() -> None:
    # The two prompts share only the template's first few tokens: reusing those in place would evict the
    # other system prompt each time, so every request would evaluate its long system prompt again.
    first = "You are a terse assistant. " + " ".join(f"Note {number}: be exact." for number in range(12))
    second = "You are a poet. " + " ".join(f"Line {number}: rhyme it." for number in range(12))

    def request(system: str, question: str) -> ChatCompletionRequest:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        body = {"model": "test", "messages": messages, "temperature": 0, "max_tokens": 2}
        return msgspec.convert(body, type=ChatCompletionRequest)

    with LlamaCppEngine(n_ctx=512, n_threads=1, max_sequences=4) as fresh:
        for system in (first, second):
            await run_chat(fresh, request(system, "Warm up."))
        stats = fresh.batching_stats()
        for index, system in enumerate([first, second] * 2):
            tokens = stats.prefix_cache_tokens
            await run_chat(fresh, request(system, f"Question {index}?"))
            assert stats.prefix_cache_tokens - tokens > len(system.split()), index


def conversation(messages: list[dict[str, str]], max_tokens: int) -> ChatCompletionRequest:
    body = {"model": "test", "messages": messages, "temperature": 0, "max_tokens": max_tokens}
    return msgspec.convert(body, type=ChatCompletionRequest)


async def next_turn(cache_type_k: str) -> tuple[list[dict[str, str]], str, int, int]:
    """A second turn after the engine's own first answer: the conversation, the answer, the tokens reused, and
    the first answer's length in tokens."""
    first = [{"role": "user", "content": "Name three colors and say why you like them."}]
    with LlamaCppEngine(n_ctx=512, n_threads=2, max_sequences=2, cache_type_k=cache_type_k) as engine:
        answer = content_of(await run_chat(engine, conversation(first, 24)))
        second = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "Why?"}]
        stats = engine.batching_stats()
        before = stats.prefix_cache_tokens
        text = content_of(await run_chat(engine, conversation(second, 12)))
        return second, text, stats.prefix_cache_tokens - before, len(engine.tokenize(answer))


@pytest.mark.engine  # engines of their own: the test needs empty prefix caches
async def test_with_q8_0_keys_a_conversations_earlier_answer_is_reused_from_the_cache_unchanged() -> None:
    # With q8_0 keys any grouping of tokens gives the same cache, so the answer the engine generated token by
    # token is a prefix the next turn keeps; with f16 keys only the turns up to that answer's start are kept.
    second, text, reused, answer_tokens = await next_turn("q8_0")
    _, _, f16_reused, _ = await next_turn("f16")
    assert answer_tokens > 12
    assert reused > f16_reused + answer_tokens // 2
    with LlamaCppEngine(n_ctx=512, n_threads=2, max_sequences=2) as cold:
        assert content_of(await run_chat(cold, conversation(second, 12))) == text


@pytest.mark.engine  # an idle engine of its own
@pytest.mark.parametrize(("cache_type_k", "decodes"), [("q8_0", 1), ("f16", 4)])
async def test_an_idle_engine_reads_a_prompt_in_one_decode_when_any_grouping_will_do(
    cache_type_k: str, decodes: int
) -> None:
    system = "You are a careful assistant. " + " ".join(f"Rule {number}: answer briefly." for number in range(12))
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Name a color."}]
    with LlamaCppEngine(n_ctx=512, n_threads=2, max_sequences=2, cache_type_k=cache_type_k) as engine:
        assert 64 < len(engine.tokenize(system)) < 400
        await run_chat(engine, conversation(messages, 1))
        assert engine.batching_stats().prompt_decodes >= decodes
        if cache_type_k == "q8_0":
            assert engine.batching_stats().prompt_decodes == 1
