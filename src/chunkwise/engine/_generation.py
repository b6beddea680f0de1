"""The bridge between the model's worker thread and the event loop.

:meth:`LlamaGeneration.stream` submits the plan to the engine's step loop (one worker thread that decodes
every running request together) and reads what it emits from an :class:`asyncio.Queue`. The worker never
waits for the loop: it hands chunks over with ``loop.call_soon_threadsafe`` and carries on decoding, so the
loop only ever wakes to forward ready chunks. Closing the stream early sets a cancel flag that the worker
checks before every step, then waits (at most one step) until the worker has let go of the request's
sequences, so they are free for the next request.

A streamed answer's chunks are handed over at every step. An answer sent whole (the request did not ask to
stream) has its first step's handed over at once (its first token is timed), then the rest in batches at most
:data:`WHOLE_ANSWER_BATCH_SECONDS` apart and at the end. Every hand-over wakes the loop, which then takes the
GIL from the worker between two decodes: on one stream alone that was most of the worker's time outside
``llama_decode`` (BENCHMARKS.md, session 10). The batches still come a few times a second, so a consumer
that watches for progress (a Ray replica's health check) sees it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Generic, Protocol

from .._errors import EngineError
from ._choices import ChunkT, Emitted
from ._protocol import StreamOnce
from ._requests import DecodePlan

__all__ = ["WHOLE_ANSWER_BATCH_SECONDS", "Emit", "LlamaGeneration", "Runner", "WorkerDone"]

#: How long the worker holds an answer sent whole before handing over what it has made.
WHOLE_ANSWER_BATCH_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class WorkerDone:
    """The worker's last message: it finished normally, or failed with ``error``."""

    error: BaseException | None = None


Emit = Callable[[list[Emitted[ChunkT]] | WorkerDone], None]


class _Handoff(Generic[ChunkT]):
    """The worker's :data:`Emit` for one request (called on the worker thread only); see the module docstring."""

    __slots__ = ("_cancel", "_handed_at", "_held", "_loop", "_queue", "_whole")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[list[Emitted[ChunkT]] | WorkerDone],
        cancel: threading.Event,
        *,
        whole: bool,
    ) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[list[Emitted[ChunkT]] | WorkerDone] = queue
        self._cancel = cancel
        self._whole = whole
        self._held: list[Emitted[ChunkT]] = []
        #: When chunks were last handed over (None: never yet).
        self._handed_at: float | None = None

    def __call__(self, item: list[Emitted[ChunkT]] | WorkerDone) -> None:
        if isinstance(item, WorkerDone):
            if self._held:
                self._hand_over(self._held)
                self._held = []
        elif self._whole:
            now = time.monotonic()
            if self._handed_at is not None and now - self._handed_at < WHOLE_ANSWER_BATCH_SECONDS:
                self._held += item
                return
            self._handed_at = now
            if self._held:
                item, self._held = self._held + item, []
        self._hand_over(item)

    def _hand_over(self, item: list[Emitted[ChunkT]] | WorkerDone) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._cancel.set()


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

        worker = self._runner.submit(self._plan, _Handoff(loop, queue, cancel, whole=self._plan.whole), cancel)

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
