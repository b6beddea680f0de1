"""The bridge between the model's worker thread and the event loop.

:meth:`LlamaGeneration.stream` submits the plan to the engine's step loop (one worker thread that decodes
every running request together) and reads what it emits from an :class:`asyncio.Queue`. The worker never
waits for the loop: it hands each step's chunks over with ``loop.call_soon_threadsafe`` and carries on
decoding, so the loop only ever wakes to forward ready chunks. Closing the stream early sets a cancel flag
that the worker checks before every step, then waits (at most one step) until the worker has let go of the
request's sequences, so they are free for the next request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol

from .._errors import EngineError
from ._choices import ChunkT, Emitted
from ._protocol import StreamOnce
from ._requests import DecodePlan

__all__ = ["Emit", "LlamaGeneration", "Runner", "WorkerDone"]


@dataclass(frozen=True, slots=True)
class WorkerDone:
    """The worker's last message: it finished normally, or failed with ``error``."""

    error: BaseException | None = None


Emit = Callable[[list[Emitted[ChunkT]] | WorkerDone], None]


class Runner(Protocol[ChunkT]):
    """Runs a plan on the engine's step loop (the engine's side of the bridge)."""

    def submit(self, plan: DecodePlan[ChunkT], emit: Emit[ChunkT], cancel: threading.Event) -> asyncio.Future[None]: ...


class LlamaGeneration(StreamOnce[ChunkT]):
    """One prepared request; implements both :class:`Generation` and :class:`TextGeneration`."""

    def __init__(self, runner: Runner[ChunkT], plan: DecodePlan[ChunkT]) -> None:
        self._runner: Runner[ChunkT] = runner
        self._plan: DecodePlan[ChunkT] = plan

    @property
    def prompt_tokens(self) -> int:
        return len(self._plan.prompt)

    @property
    def max_new_tokens(self) -> int:
        """The per-choice token budget after clamping to the context."""
        return self._plan.max_new_tokens

    async def _stream(self) -> AsyncGenerator[ChunkT, None]:
        # Closed early (aclose), the finally below stops the model within one step and waits until the worker
        # has let go of this request's sequences.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[Emitted[ChunkT]] | WorkerDone] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: list[Emitted[ChunkT]] | WorkerDone) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        worker = self._runner.submit(self._plan, emit, cancel)

        def check_worker(future: asyncio.Future[None]) -> None:
            # The worker reports its own end; this only covers a run that never started (engine closed).
            if future.cancelled():
                queue.put_nowait(WorkerDone(EngineError("The engine was closed before this request ran")))
            elif future.exception() is not None:
                queue.put_nowait(WorkerDone(future.exception()))

        worker.add_done_callback(check_worker)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, WorkerDone):
                    if item.error is None:
                        return
                    if isinstance(item.error, EngineError):
                        raise item.error
                    raise EngineError(f"The model failed while generating: {item.error}") from item.error
                for chunk, tokens in item:
                    self._completion_tokens += tokens
                    yield chunk
        finally:
            cancel.set()
            # Let the worker finish its current token so the engine is free when this returns.
            if not worker.done():
                await asyncio.wait([worker])
