"""The shape of a chat stream from the real engine, reproducibility, ``n`` > 1, cancellation and failures."""

from __future__ import annotations

import asyncio
import time

import pytest

from chunkwise import EngineError
from chunkwise.engine import LlamaCppEngine, LlamaGeneration
from chunkwise.engine._llama import DEFAULT_DRAFT_MAX
from chunkwise.types import ChatCompletionChunk

from .support import chat, content_of, finish_reason, run_chat

pytestmark = [pytest.mark.engine, pytest.mark.anyio]


async def test_every_chunk_carries_the_stream_identity_and_the_first_one_the_role(engine: LlamaCppEngine):
    generation = engine.prepare_chat(chat(max_tokens=6, temperature=0), request_id="chatcmpl-abc", created=123)
    chunks = [chunk async for chunk in generation.stream()]

    assert {(chunk.id, chunk.created, chunk.model, chunk.object) for chunk in chunks} == {
        ("chatcmpl-abc", 123, "HuggingFaceTB/SmolLM2-135M-Instruct", "chat.completion.chunk")
    }
    assert [chunk.choices[0].delta.role for chunk in chunks] == ["assistant"] + [None] * (len(chunks) - 1)
    assert finish_reason(chunks) == "length"
    assert chunks[-1].choices[0].delta.content is None
    assert generation.completion_tokens == 6
    assert generation.prompt_tokens > 10
    assert content_of(chunks).strip()


async def test_one_chunk_per_token_while_nothing_is_held_back(engine: LlamaCppEngine):
    generation = engine.prepare_chat(chat(max_tokens=8, temperature=0), request_id="x", created=0)
    chunks = [chunk async for chunk in generation.stream()]
    assert len([chunk for chunk in chunks if chunk.choices[0].delta.content]) == generation.completion_tokens == 8


async def test_greedy_decoding_is_deterministic_even_with_another_prompt_in_between(engine: LlamaCppEngine):
    first = content_of(await run_chat(engine, chat(max_tokens=12, temperature=0)))
    other = content_of(await run_chat(engine, chat("List three colours.", max_tokens=12, temperature=0)))
    again = content_of(await run_chat(engine, chat(max_tokens=12, temperature=0)))
    assert first == again
    assert other != first


async def test_the_same_seed_gives_the_same_text_and_other_seeds_vary(engine: LlamaCppEngine):
    def seeded(seed: int):
        return chat("Name an animal.", max_tokens=8, temperature=1.0, seed=seed)

    first = content_of(await run_chat(engine, seeded(42)))
    assert content_of(await run_chat(engine, seeded(42))) == first
    others = {content_of(await run_chat(engine, seeded(seed))) for seed in range(1, 6)}
    assert len(others | {first}) > 1


async def test_top_p_near_zero_is_greedy(engine: LlamaCppEngine):
    greedy = content_of(await run_chat(engine, chat(max_tokens=8, temperature=0)))
    nucleus = content_of(await run_chat(engine, chat(max_tokens=8, temperature=1.0, top_p=0.0, seed=5)))
    assert nucleus == greedy


async def test_n_choices_are_decoded_together_and_streamed_interleaved(engine: LlamaCppEngine):
    chunks = await run_chat(engine, chat(max_tokens=5, temperature=1.0, seed=11, n=2))
    indices = [chunk.choices[0].index for chunk in chunks]
    assert indices[:4] == [0, 1, 0, 1]
    for index in (0, 1):
        own = [chunk.choices[0] for chunk in chunks if chunk.choices[0].index == index]
        assert own[0].delta.role == "assistant"
        assert [choice.delta.role for choice in own[1:]] == [None] * (len(own) - 1)
        assert finish_reason(chunks, index) in {"stop", "length"}
    again = await run_chat(engine, chat(max_tokens=5, temperature=1.0, seed=11, n=2))
    assert [content_of(again, index) for index in (0, 1)] == [content_of(chunks, index) for index in (0, 1)]


async def test_n_greedy_choices_agree_with_a_single_greedy_choice(engine: LlamaCppEngine):
    single = content_of(await run_chat(engine, chat(max_tokens=8, temperature=0)))
    chunks = await run_chat(engine, chat(max_tokens=8, temperature=0, n=3))
    assert [content_of(chunks, index) for index in range(3)] == [single] * 3


async def test_closing_the_stream_stops_within_a_token_and_counts_only_what_was_delivered(engine: LlamaCppEngine):
    generation = engine.prepare_chat(chat(max_tokens=64, temperature=0), request_id="x", created=0)
    stream = generation.stream()
    received = []
    async for chunk in stream:
        received.append(chunk)
        if len(received) == 3:
            break
    started = time.perf_counter()
    await stream.aclose()  # type: ignore[attr-defined]
    closing_time = time.perf_counter() - started

    assert not engine.busy, "the engine is free as soon as aclose() returns"
    assert generation.completion_tokens == 3
    # the model went at most one step beyond those delivered: one token and the guesses verified with it
    released = max(engine._loop._slots, key=lambda slot: slot.last_used)  # type: ignore[union-attr]
    assert len(released.tokens) <= generation.prompt_tokens + 4 + DEFAULT_DRAFT_MAX
    assert closing_time < 1.0

    follow_up = await run_chat(engine, chat(max_tokens=4, temperature=0))
    assert finish_reason(follow_up) == "length"


async def test_a_cancelled_consumer_task_releases_the_engine(engine: LlamaCppEngine):
    generation = engine.prepare_chat(chat(max_tokens=64, temperature=0), request_id="x", created=0)
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async for _ in generation.stream():
            first_chunk.set()

    task = asyncio.create_task(consume())
    await first_chunk.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not engine.busy
    assert 1 <= generation.completion_tokens < 64


async def test_a_stream_can_be_iterated_only_once(engine: LlamaCppEngine):
    generation = engine.prepare_chat(chat(max_tokens=1, temperature=0), request_id="x", created=0)
    assert [chunk async for chunk in generation.stream()]
    with pytest.raises(RuntimeError):
        generation.stream()


async def test_a_failure_mid_stream_raises_engine_error_and_the_engine_recovers(
    engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
):
    expected = content_of(await run_chat(engine, chat(max_tokens=6, temperature=0)))
    loop = engine._loop
    assert loop is not None
    real_decode = loop._decode_batch
    calls = 0

    def failing_decode() -> None:
        nonlocal calls
        calls += 1
        # Twice: a failed shared step is retried request by request, and that retry fails too.
        if calls in (3, 4):
            raise EngineError("simulated backend failure")
        real_decode()

    monkeypatch.setattr(loop, "_decode_batch", failing_decode)
    generation = engine.prepare_chat(
        chat("Tell me about rivers.", max_tokens=20, temperature=0), request_id="x", created=0
    )
    received = []
    with pytest.raises(EngineError, match="simulated backend failure"):
        async for chunk in generation.stream():
            received.append(chunk)
    assert received, "the chunks made before the failure were delivered"
    monkeypatch.undo()

    assert not engine.busy
    assert content_of(await run_chat(engine, chat(max_tokens=6, temperature=0))) == expected


async def test_concurrent_streams_take_turns_and_each_gets_its_own_answer(engine: LlamaCppEngine):
    alone = [content_of(await run_chat(engine, chat(topic, max_tokens=6, temperature=0))) for topic in ("Hi!", "Bye!")]
    together = await asyncio.gather(
        *(run_chat(engine, chat(topic, max_tokens=6, temperature=0)) for topic in ("Hi!", "Bye!"))
    )
    assert [content_of(chunks) for chunks in together] == alone


async def test_the_event_loop_keeps_running_while_the_model_works(engine: LlamaCppEngine):
    long_prompt = "Summarise this: " + " ".join(f"item {number} is blue;" for number in range(20))
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    await run_chat(engine, chat(long_prompt, max_tokens=4, temperature=0))
    elapsed = time.perf_counter() - started
    done.set()
    await ticking
    assert elapsed > 0.3, "the prompt is long enough that a blocked loop would stand still most of the time"
    # A loop blocked by the model stands still through each prompt piece (tens of milliseconds or more), so
    # long gaps would fill most of the time. A busy machine may delay a few ticks; it does not fill half.
    stalled = sum(gap for gap in gaps if gap > 0.05)
    assert stalled < elapsed / 2, f"the event loop stood still for {stalled:.2f} s of {elapsed:.2f} s"


async def test_closing_the_engine_stops_the_running_stream_and_fails_the_queued_one():
    engine = LlamaCppEngine(n_ctx=512, n_threads=1, max_sequences=1)  # one sequence: the second request waits
    running = engine.prepare_chat(chat(max_tokens=200, temperature=0), request_id="a", created=0)
    queued = engine.prepare_chat(chat(max_tokens=200, temperature=0), request_id="b", created=0)
    first_chunk = asyncio.Event()

    async def consume(generation: LlamaGeneration[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
        chunks = []
        async for chunk in generation.stream():
            chunks.append(chunk)
            first_chunk.set()
        return chunks

    tasks = [asyncio.create_task(consume(generation)) for generation in (running, queued)]
    await first_chunk.wait()
    await asyncio.to_thread(engine.close)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(result, EngineError) for result in results), results
    assert "closed" in str(results[0]) and "closed" in str(results[1])
    assert 1 <= running.completion_tokens < 200
    assert queued.completion_tokens == 0
    with pytest.raises(EngineError, match="closed"):
        engine.prepare_chat(chat(max_tokens=1), request_id="c", created=0)
