"""The same greedy request gives the same text whatever the KV cache holds from earlier requests.

llama.cpp's arithmetic depends on how tokens are grouped into batches, and a 135M model's greedy choice
flips on such last-bit differences: before prompts were evaluated in one canonical grouping, a prompt's
first answer differed from its repeats (seen through the server, found by the CLI tests).
"""

from __future__ import annotations

import pytest

from chunkwise.engine import LlamaCppEngine

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
