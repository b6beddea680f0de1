"""Run one scenario through ``Client`` or ``AsyncClient`` and record what the caller saw.

Tests take a ``kind`` ("sync" or "async") and call :func:`run`, so every behaviour is checked on
both clients with the same test body, and :func:`Outcome.signature` lets the parity test compare them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

import chunkwise
from chunkwise.types import ChatCompletion, ChatCompletionChunk

Kind = Literal["sync", "async"]
KINDS: list[Kind] = ["sync", "async"]
#: What to do with the answer: iterate the chunks, iterate the text, ask for the final completion
#: without iterating, or make an unstreamed request.
How = Literal["chunks", "text", "final", "unstreamed"]

MESSAGES = [{"role": "user", "content": "Say hello"}]


@dataclass
class Outcome:
    chunks: list[ChatCompletionChunk] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    completion: ChatCompletion | None = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def signature(self) -> tuple[Any, ...]:
        """What must be equal between the sync and async client."""
        error = self.error
        return (
            [chunkwise.types.encode(chunk) for chunk in self.chunks],
            self.texts,
            None if self.completion is None else chunkwise.types.encode(self.completion),
            None if error is None else type(error).__name__,
            None if error is None else getattr(error, "request_id", None),
        )


def run(kind: Kind, base_url: str, how: How = "chunks", client: dict[str, Any] | None = None, **create: Any) -> Outcome:
    """One request through a fresh client; errors are recorded, not raised."""
    if kind == "sync":
        return _run_sync(base_url, how, client or {}, create)
    return anyio.run(_run_async, base_url, how, client or {}, create)


def _create_args(how: How, create: dict[str, Any]) -> dict[str, Any]:
    return {"model": "fault-model", "messages": MESSAGES, "stream": how != "unstreamed", **create}


def _run_sync(base_url: str, how: How, client_options: dict[str, Any], create: dict[str, Any]) -> Outcome:
    outcome = Outcome()
    start = time.monotonic()
    with chunkwise.Client(base_url=base_url, **client_options) as client:
        try:
            result = client.chat.completions.create(**_create_args(how, create))
            if isinstance(result, ChatCompletion):
                outcome.completion = result
            else:
                with result as stream:
                    if how == "chunks":
                        for chunk in stream:
                            outcome.chunks.append(chunk)
                    elif how == "text":
                        for text in stream.iter_text():
                            outcome.texts.append(text)
                    outcome.completion = stream.final_completion()
        except chunkwise.ChunkwiseError as exc:
            outcome.error = exc
    outcome.seconds = time.monotonic() - start
    return outcome


async def _run_async(base_url: str, how: How, client_options: dict[str, Any], create: dict[str, Any]) -> Outcome:
    outcome = Outcome()
    start = time.monotonic()
    async with chunkwise.AsyncClient(base_url=base_url, **client_options) as client:
        try:
            result = await client.chat.completions.create(**_create_args(how, create))
            if isinstance(result, ChatCompletion):
                outcome.completion = result
            else:
                async with result as stream:
                    if how == "chunks":
                        async for chunk in stream:
                            outcome.chunks.append(chunk)
                    elif how == "text":
                        async for text in stream.iter_text():
                            outcome.texts.append(text)
                    outcome.completion = await stream.final_completion()
        except chunkwise.ChunkwiseError as exc:
            outcome.error = exc
    outcome.seconds = time.monotonic() - start
    return outcome
