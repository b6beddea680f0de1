"""Requests that share the engine's decode steps stay independent of each other."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chunkwise import EngineError
from chunkwise.engine import LlamaCppEngine

from .support import chat, content_of, run_chat

pytestmark = pytest.mark.anyio


async def test_an_error_in_one_request_ends_only_that_request(
    engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    bystander = chat("Name a color.", temperature=0, max_tokens=10)
    expected = content_of(await run_chat(engine, bystander))
    loop = engine._loop
    assert loop is not None

    # Faked: nothing in a healthy engine fails on demand. Only requests with logprobs reach this method.
    def broken_logprobs(*args: object) -> None:
        raise RuntimeError("simulated failure in one request")

    monkeypatch.setattr(loop, "_logprobs", broken_logprobs)
    doomed = chat("Say hello.", temperature=0, max_tokens=10, logprobs=True)
    failed, survived = await asyncio.gather(
        run_chat(engine, doomed), run_chat(engine, bystander), return_exceptions=True
    )
    assert isinstance(failed, EngineError) and "simulated failure" in str(failed)
    assert not isinstance(survived, BaseException)
    assert content_of(survived) == expected
    assert not engine.busy


@pytest.mark.engine  # a fresh engine of its own: the test needs the sequence ids of an unused one
async def test_a_shared_step_lists_consecutive_sequence_ids_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # llama.cpp splits a decode step into one pass over the weights per run of consecutive ids, so the
    # ids a step carries must come in order, and requests admitted together get neighbouring ids.
    questions = ["Name a color.", "Name a fruit.", "Say hello.", "Name an animal."]
    requests = [chat(question, temperature=0, max_tokens=16) for question in questions]
    with LlamaCppEngine(n_ctx=512, n_threads=1, max_sequences=4) as fresh:
        # Together, so that each prompt stays cached in its own sequence: ids 0, 1, 2, 3.
        await asyncio.gather(*(run_chat(fresh, request) for request in requests))
        loop = fresh._loop
        assert loop is not None
        steps: list[list[int]] = []
        decode_next_tokens = loop._decode_next_tokens

        def recording(sequences: list[Any]) -> None:
            decode_next_tokens(sequences)
            batch = loop._batch
            steps.append([batch.seq_id[index][0] for index in range(batch.n_tokens)])

        monkeypatch.setattr(loop, "_decode_next_tokens", recording)
        # Together and in reverse: admitted in descending order of the ids that hold their prompts.
        await asyncio.gather(*(run_chat(fresh, request) for request in reversed(requests)))
    assert steps
    assert all(ids == sorted(ids) for ids in steps)
    # A sequence's guessed tokens follow its next token, under the same id.
    widest = max((list(dict.fromkeys(ids)) for ids in steps), key=len)
    assert widest == list(range(widest[0], widest[0] + len(questions)))


async def test_the_time_inside_llama_decode_is_counted_for_prompt_pieces_and_steps_apart(
    engine: LlamaCppEngine,
) -> None:
    stats = engine.batching_stats()
    before = (stats.prompt_decodes, stats.prompt_decode_seconds, stats.step_decodes, stats.step_decode_seconds)
    # A prompt no earlier test sent, so that at least its last token is evaluated; greedy, 8 tokens.
    chunks = await run_chat(engine, chat("Count the decode calls of this test.", temperature=0, max_tokens=8))
    assert content_of(chunks)
    assert stats.prompt_decodes > before[0] and stats.prompt_decode_seconds > before[1]
    # The prompt's last token yields the first output token; each decode step samples one more at least.
    assert 1 <= stats.step_decodes - before[2] <= 7
    assert stats.step_decode_seconds > before[3]
