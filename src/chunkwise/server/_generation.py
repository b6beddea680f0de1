"""Running one admitted generation and answering with it: an SSE stream, or the reassembled JSON.

:class:`GenerationResponse` is an ASGI response that owns the request from the moment it is admitted to
the scheduler. While it runs it listens for ``http.disconnect`` on ``receive`` in a sibling task; a
disconnect cancels the work at once, whether the request is still queued (it leaves the queue) or
generating (the engine stream is closed, which stops the model within one token, and the engine goes
to the next request). Polling ``request.is_disconnected()`` between sends would notice nothing while
the request waits in the queue or while a long prompt is evaluated.

A client that stops reading is treated the same way once it has taken nothing for ``write_timeout``
seconds: holding the engine (or a place in the queue) for it would stall everyone else. A watchdog in the
same task group notices, cancels the response and counts it in ``chunkwise_stalled_streams``. It looks at
two things: a write that has waited that long (the buffers are full), and, where the server's protocol
measures it (:data:`~._protocol.UNSENT_BYTES`), bytes written that the peer has not taken for that long,
so that buffers large enough to absorb the whole answer do not hide a client that has stopped reading.
The engine never waits for this side in any case: its worker hands chunks over without blocking (see
:mod:`chunkwise.engine._generation`), so a slow consumer delays only its own response.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import anyio
import msgspec
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..accumulate import ChatCompletionAccumulator, CompletionAccumulator
from ..edge import SSE_HEADERS, JSONResponse, describe_error, error_response, wait_for_disconnect
from ..engine import Generation, generation_usage, usage_chunk
from ..types import ChatCompletion, ChatCompletionChunk, Completion
from ._admission import Ticket
from ._framing import AnswerEncoding
from ._metrics import ServerMetrics
from ._protocol import UNSENT_BYTES
from ._settings import ServerSettings

__all__ = ["CHAT", "MESSAGES", "RESPONSES", "TEXT", "GenerationResponse", "StreamKind", "quiet_stalled_responses"]

logger = logging.getLogger("chunkwise.server")

#: Set in the request's task when its response was cut for a stalled client; uvicorn then reports the
#: unfinished response from the same task (and so the same context), which is expected, not an error.
_cut_for_stall: contextvars.ContextVar[bool] = contextvars.ContextVar("chunkwise_cut_for_stall", default=False)
_UNFINISHED_RESPONSE = "ASGI callable returned without completing response."


class _StalledResponseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_cut_for_stall.get() and record.getMessage() == _UNFINISHED_RESPONSE)


_stalled_response_filter = _StalledResponseFilter()
_quieting_lock = threading.Lock()
_quieting = 0


@contextlib.contextmanager
def quiet_stalled_responses() -> Iterator[None]:
    """While the block runs, uvicorn logs no error for a response this module cut on purpose.

    The filter goes on uvicorn's process-wide logger, so it is added only while an app runs (its lifespan)
    and removed when the last running app stops: several apps may run in one process at once.
    """
    global _quieting
    uvicorn_logger = logging.getLogger("uvicorn.error")
    with _quieting_lock:
        _quieting += 1
        uvicorn_logger.addFilter(_stalled_response_filter)
    try:
        yield
    finally:
        with _quieting_lock:
            _quieting -= 1
            if _quieting == 0:
                uvicorn_logger.removeFilter(_stalled_response_filter)


ChunkT = TypeVar("ChunkT", ChatCompletionChunk, Completion)
ChunkT_contra = TypeVar("ChunkT_contra", ChatCompletionChunk, Completion, contravariant=True)
ResultT = TypeVar("ResultT", ChatCompletion, Completion)
ResultT_co = TypeVar("ResultT_co", ChatCompletion, Completion, covariant=True)


class Accumulator(Protocol[ChunkT_contra, ResultT_co]):
    def add(self, chunk: ChunkT_contra, /) -> None: ...

    def result(self) -> ResultT_co: ...


@dataclass(frozen=True)
class StreamKind(Generic[ChunkT, ResultT]):
    """What differs between chat and legacy text completions."""

    #: The ``endpoint`` label of the metrics.
    endpoint: str
    accumulator: Callable[[], Accumulator[ChunkT, ResultT]]
    #: The chunk class, which :func:`~chunkwise.engine.usage_chunk` builds the usage chunk of.
    chunk_type: type[ChunkT]
    has_output: Callable[[ChunkT], bool]


def _chat_has_output(chunk: ChatCompletionChunk) -> bool:
    for choice in chunk.choices:
        delta = choice.delta
        if delta.content or delta.tool_calls or delta.reasoning_text or delta.refusal or delta.function_call:
            return True
    return False


def _text_has_output(piece: Completion) -> bool:
    return any(choice.text for choice in piece.choices)


CHAT: StreamKind[ChatCompletionChunk, ChatCompletion] = StreamKind(
    "chat", ChatCompletionAccumulator, ChatCompletionChunk, _chat_has_output
)
#: The Responses API and Anthropic Messages: chat underneath, counted under their own endpoint label.
RESPONSES = dataclasses.replace(CHAT, endpoint="responses")
MESSAGES = dataclasses.replace(CHAT, endpoint="messages")
TEXT: StreamKind[Completion, Completion] = StreamKind(
    "completions", CompletionAccumulator, Completion, _text_has_output
)


class _Stage(enum.Enum):
    QUEUED = "queued"
    GENERATING = "generating"
    FINISHED = "finished"


class _ClientGone(Exception):
    """``send`` failed because the client closed the connection."""


#: How often, relative to ``write_timeout``, the watchdog looks for a stuck write.
_STALL_CHECKS_PER_TIMEOUT = 4


@dataclass(eq=False, kw_only=True)
class GenerationResponse(Response, Generic[ChunkT, ResultT]):
    """Waits for the engine, runs ``job`` and answers with its chunks (``stream``) or their reassembly."""

    kind: StreamKind[ChunkT, ResultT]
    job: Generation[ChunkT]
    ticket: Ticket
    stream: bool
    include_usage: bool
    completion_id: str
    created: int
    model: str
    received_at: float
    metrics: ServerMetrics
    settings: ServerSettings
    encoding: AnswerEncoding

    def __post_init__(self) -> None:
        # Response.__init__ would render a body up front; this response writes its own.
        self.status_code = 200
        self.background = None
        #: When the write in progress began (``time.monotonic()``), or None between writes.
        self._write_started: float | None = None
        self._stage = _Stage.QUEUED
        self._first_output_seen = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = stalled = False
        if self.stream:
            self.metrics.active_streams.inc()

        written = 0
        unsent_bytes: Callable[[], int] | None = scope.get("extensions", {}).get(UNSENT_BYTES)

        async def timed_send(message: Message) -> None:
            nonlocal written
            written += len(message.get("body", b""))
            self._write_started = time.monotonic()
            try:
                await send(message)
            finally:
                self._write_started = None

        try:
            async with anyio.create_task_group() as task_group:

                async def watch_for_disconnect() -> None:
                    nonlocal disconnected
                    await wait_for_disconnect(receive)
                    disconnected = True
                    task_group.cancel_scope.cancel()

                async def watch_for_stall() -> None:
                    nonlocal stalled
                    # The peer has taken ``written - unsent`` bytes (HTTP framing aside); it reads while that grows.
                    taken, last_taken_at = 0, time.monotonic()
                    while True:
                        await anyio.sleep(self.settings.write_timeout / _STALL_CHECKS_PER_TIMEOUT)
                        now = time.monotonic()
                        if unsent_bytes is not None:
                            unsent = unsent_bytes()
                            if unsent == 0 or written - unsent > taken:
                                taken, last_taken_at = max(taken, written - unsent), now
                            elif now - last_taken_at >= self.settings.write_timeout:
                                stalled = True
                        started = self._write_started
                        if stalled or (started is not None and now - started >= self.settings.write_timeout):
                            stalled = True
                            task_group.cancel_scope.cancel()
                            return

                task_group.start_soon(watch_for_disconnect)
                task_group.start_soon(watch_for_stall)
                try:
                    if self.stream:
                        await self._send_stream(timed_send)
                    else:
                        await self._send_reassembled(scope, receive, timed_send)
                except _ClientGone:
                    disconnected = True
                task_group.cancel_scope.cancel()
        finally:
            self.ticket.release()
            if self.stream:
                self.metrics.active_streams.dec()
        if stalled:
            _cut_for_stall.set(True)
            self.metrics.stalled.labels(self.kind.endpoint).inc()
            logger.info(
                "%s: client read nothing for %g s while %s; cancelled after %d completion tokens",
                self.completion_id,
                self.settings.write_timeout,
                self._stage.value,
                self.job.completion_tokens,
            )
        elif disconnected and self._stage is not _Stage.FINISHED:
            self.metrics.cancelled.labels(self.kind.endpoint, self._stage.value).inc()
            logger.info(
                "%s: client went away while %s; cancelled after %d completion tokens",
                self.completion_id,
                self._stage.value,
                self.job.completion_tokens,
            )

    async def _wait_for_engine(self, send: Send | None) -> None:
        """Wait for the engine; with ``send``, write a keep-alive comment every interval meanwhile."""
        ticket = self.ticket
        while not ticket.granted:
            if send is None:
                await ticket.wait()
                break
            with anyio.move_on_after(self.settings.keepalive_interval):
                await ticket.wait()
            if not ticket.granted:
                await self._send_body(send, self.encoding.keepalive())
        self._stage = _Stage.GENERATING

    async def _generate(self, on_chunk: Callable[[ChunkT], Awaitable[None]]) -> BaseException | None:
        """Run the engine stream to its end; return the exception it failed with, if any.

        The stream is closed in every case, under a shield: a disconnect cancels this task, and the close
        must still complete so that the model stops and the next request can take the engine.
        """
        chunks = self.job.stream()
        has_output = self.kind.has_output
        failure: BaseException | None = None
        try:
            async for chunk in chunks:
                if not self._first_output_seen and has_output(chunk):
                    self._first_output_seen = True
                    self.metrics.time_to_first_token.labels(self.kind.endpoint).observe(
                        time.perf_counter() - self.received_at
                    )
                await on_chunk(chunk)
            self._stage = _Stage.FINISHED
        except _ClientGone:
            raise
        except Exception as exc:
            failure = exc
            self._stage = _Stage.FINISHED
            self.metrics.engine_errors.labels(self.kind.endpoint).inc()
            logger.error("%s: generation failed", self.completion_id, exc_info=exc)
        finally:
            with anyio.CancelScope(shield=True):
                await self.job.aclose()
            self.ticket.release()
            self.metrics.prompt_tokens.labels(self.kind.endpoint).inc(self.job.prompt_tokens)
            self.metrics.generated_tokens.labels(self.kind.endpoint).inc(self.job.completion_tokens)
        return failure

    async def _send_body(self, send: Send, data: bytes, *, more: bool = True) -> None:
        try:
            await send({"type": "http.response.body", "body": data, "more_body": more})
        except OSError as exc:
            raise _ClientGone from exc

    async def _send_stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        opening = self.encoding.opening()
        if opening:
            await self._send_body(send, opening)
        await self._wait_for_engine(send)
        model = self.model
        encode = self.encoding.event

        async def send_chunk(chunk: ChunkT) -> None:
            nonlocal model
            model = chunk.model or model
            data = encode(chunk)
            if data:  # a dialect may write nothing for a chunk (an empty role-only delta)
                await self._send_body(send, data)

        failure = await self._generate(send_chunk)
        if failure is not None:
            status, detail, _ = describe_error(failure)
            await self._send_body(send, self.encoding.failure(status, detail))
        elif self.include_usage:
            last = usage_chunk(self.kind.chunk_type, self.job, id=self.completion_id, created=self.created, model=model)
            await self._send_body(send, encode(last))
        await self._send_body(send, self.encoding.end(), more=False)

    async def _send_reassembled(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._wait_for_engine(None)
        accumulator = self.kind.accumulator()

        async def add(chunk: ChunkT) -> None:
            accumulator.add(chunk)

        failure = await self._generate(add)
        response: Response
        if failure is not None:
            response = error_response(failure, self.encoding.errors)
        else:
            result = accumulator.result()
            result = msgspec.structs.replace(
                result,
                id=self.completion_id,
                created=self.created,
                model=result.model or self.model,
                usage=generation_usage(self.job),
            )
            response = JSONResponse(self.encoding.body(result))
        try:
            await response(scope, receive, send)
        except OSError as exc:
            raise _ClientGone from exc
