"""Helpers shared by the engine tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import msgspec

from chunkwise.engine import LlamaCppEngine
from chunkwise.engine._drafts import StepCosts
from chunkwise.types import ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest


class _FreeSteps(StepCosts):
    """Step costs that measure nothing: every size is priced the same, so every guess there is gets decoded."""

    def observe(self, tokens: int, seconds: float) -> None:
        pass


@contextlib.contextmanager
def guessing_freely(engine: LlamaCppEngine) -> Iterator[LlamaCppEngine]:
    """Make ``engine`` decode every guess it has, instead of those its measured step costs say pay.

    How many guesses pay depends on this machine's timing at the moment; tests of what guessing outputs
    must not, and decoding every guess puts the most through verification. Only those tests: every guess
    decoded makes long answers slower, which other tests' time limits would feel.
    """
    loop = engine._loop
    assert loop is not None
    measured = loop._step_costs
    loop._step_costs = _FreeSteps()
    try:
        yield engine
    finally:
        loop._step_costs = measured


def chat(content: str = "Write a short story about a dragon.", **fields: Any) -> ChatCompletionRequest:
    body = {"model": "test", "messages": [{"role": "user", "content": content}], **fields}
    return msgspec.convert(body, type=ChatCompletionRequest)


def completion(prompt: Any, **fields: Any) -> CompletionRequest:
    return msgspec.convert({"model": "test", "prompt": prompt, **fields}, type=CompletionRequest)


async def run_chat(engine: LlamaCppEngine, request: ChatCompletionRequest) -> list[ChatCompletionChunk]:
    generation = engine.prepare_chat(request, request_id="chatcmpl-test", created=1_700_000_000)
    return [chunk async for chunk in generation.stream()]


async def run_completion(engine: LlamaCppEngine, request: CompletionRequest) -> list[Completion]:
    generation = engine.prepare_completion(request, request_id="cmpl-test", created=1_700_000_000)
    return [chunk async for chunk in generation.stream()]


def content_of(chunks: list[ChatCompletionChunk], index: int = 0) -> str:
    return "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices if choice.index == index)


def finish_reason(chunks: list[ChatCompletionChunk], index: int = 0) -> str | None:
    reasons = [choice.finish_reason for chunk in chunks for choice in chunk.choices if choice.index == index]
    assert all(reason is None for reason in reasons[:-1]), "only the last chunk of a choice has a finish reason"
    return reasons[-1]
