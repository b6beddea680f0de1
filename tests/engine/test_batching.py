"""Requests that share the engine's decode steps stay independent of each other."""

from __future__ import annotations

import asyncio

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
