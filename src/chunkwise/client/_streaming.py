"""``Stream`` and ``AsyncStream``: a response body as typed chunks.

Everything but the reading of bytes lives in :class:`StreamCore` (decoding, the deadlines, turning
error frames, truncation and broken connections into errors, keeping the chunks for
:meth:`Stream.final_completion`). The two read loops, :func:`_read_chunks` and
:func:`_aread_chunks`, are the only code that differs between sync and async.

The read loops are generators that close the response in ``finally`` and hold no reference to the
stream object, so the connection is released when iteration ends, fails, is abandoned (``break``:
the loop's generator is closed), or when the stream is garbage-collected.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import cast

import anyio
import httpx

from .._errors import (
    APIError,
    ChunkwiseError,
    IncompleteChainError,
    IncompleteStreamError,
    SignatureError,
    StreamConsumedError,
    StreamError,
)
from ..accumulate import accumulate
from ..sse import ChunkStreamDecoder, Done, EndOfInput, ErrorFrame
from ..types import ChatCompletion, ChatCompletionChunk
from ._closing import AsyncClosing, Closing
from ._errors import APIConnectionError
from ._guards import ResponseGuard
from ._responses import request_id_of
from ._timeouts import Deadlines

__all__ = ["AsyncStream", "Stream", "StreamCore"]


class StreamCore:
    """The sans-I/O half of a stream: feed it what the network gave, get chunks back."""

    __slots__ = ("_decoder", "_deadlines", "_guard", "failure", "open", "received", "request_id")

    def __init__(self, deadlines: Deadlines, request_id: str | None, guard: ResponseGuard | None = None) -> None:
        self._decoder: ChunkStreamDecoder[ChatCompletionChunk] = ChunkStreamDecoder(
            ChatCompletionChunk, open_event=None if guard is None else guard.open
        )
        self._guard = guard
        self._deadlines = deadlines
        self.request_id = request_id
        #: Every chunk so far, for the final completion.
        self.received: list[ChatCompletionChunk] = []
        #: False once the stream ended: finished, failed, or cut short.
        self.open = True
        #: Why the stream ended, when it did not end well; raised once its earlier chunks are out.
        self.failure: ChunkwiseError | None = None

    def receive(self, data: bytes | None) -> list[ChatCompletionChunk]:
        """The chunks in ``data`` (``None`` at end of input).

        The deadlines are checked first: data that arrives after one passed is not delivered, just
        as the async loop's cancel scope would not have waited for it.
        """
        deadlines = self._deadlines
        now = deadlines.now()
        expired = deadlines.passed(now)
        if expired is not None:
            raise self._stop(expired)
        try:
            items = self._decoder.close() if data is None else self._decoder.feed(data)
        except ChunkwiseError as exc:  # an undecodable or oversized event
            raise self._stop(exc) from None
        chunks: list[ChatCompletionChunk] = []
        end: Done | ErrorFrame | EndOfInput | None = None
        for item in items:
            if isinstance(item, ChatCompletionChunk):
                chunks.append(item)
            else:
                end = item
                break
        if chunks:
            self.received += chunks
            deadlines.chunk_arrived(now)
        failure = self._decoder.failure
        if failure is not None:  # a chunk failed its check (signature, chain, decryption)
            self._stop(failure)
        elif end is not None:
            self.open = False
            if isinstance(end, ErrorFrame):
                self.failure = self._error_frame(end)
            elif isinstance(end, EndOfInput) and not end.finished_properly:
                self.failure = self._incomplete(f"the stream ended after {len(self.received)} chunks without finishing")
            elif self._guard is not None:
                missing = self._guard.missing_end(self.received)
                if missing is not None:
                    self._stop(self._incomplete(missing))
        return chunks

    def _stop(self, error: ChunkwiseError) -> ChunkwiseError:
        """End the stream with ``error``, which the caller raises (and ``raise_failure`` raises again)."""
        self.open = False
        error.request_id = self.request_id
        self.failure = error
        return error

    def _error_frame(self, frame: ErrorFrame) -> ChunkwiseError:
        message = frame.error.message or "the server reported an error in the stream"
        if self._guard is None:
            return StreamError(message, error=frame.error, request_id=self.request_id)
        # Error frames are neither signed nor encrypted, so anyone on the path could have sent this one.
        return SignatureError(
            f"the checked stream ended with an error frame that is not signed or sealed: {message!r}",
            request_id=self.request_id,
        )

    def _incomplete(self, message: str) -> IncompleteStreamError:
        # Anyone on the path can cut a checked stream short: that breaks its chain too.
        kind = IncompleteStreamError if self._guard is None else IncompleteChainError
        return kind(
            message,
            partial=accumulate(self.received),
            chunks_received=len(self.received),
            request_id=self.request_id,
        )

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def read_failed(self, exc: httpx.RequestError) -> ChunkwiseError:
        """The error for a failed network read. Before the first chunk it is a (retryable) connection error."""
        error: APIError
        if isinstance(exc, httpx.TimeoutException):
            error = self._deadlines.expired()
        elif not self.received:
            error = APIConnectionError(f"the connection failed before the first chunk: {exc!r}")
        else:
            error = self._incomplete(f"the connection broke after {len(self.received)} chunks: {exc!r}")
        return self._stop(error)

    def deadline_passed(self) -> ChunkwiseError:
        return self._stop(self._deadlines.expired())

    def cancel_scope(self) -> anyio.CancelScope:
        return self._deadlines.cancel_scope()

    @property
    def completed(self) -> bool:
        return not self.open and self.failure is None


def _reads_raw(response: httpx.Response) -> bool:
    # Without a content encoding the raw body is the body, and reading it raw skips httpx's decoder
    # layers. (A response built with its content already in memory has no raw stream left.)
    encoding: str = response.headers.get("content-encoding", "identity")
    return encoding.strip().lower() in ("identity", "") and not response.is_stream_consumed


def _read_chunks(response: httpx.Response, core: StreamCore) -> Generator[ChatCompletionChunk, None, None]:
    body = response.iter_raw() if _reads_raw(response) else response.iter_bytes()
    reader = cast(Generator[bytes, None, None], body)
    try:
        while core.open:
            try:
                data = next(reader, None)
            except httpx.RequestError as exc:
                raise core.read_failed(exc) from exc
            yield from core.receive(data)
        core.raise_failure()
    finally:
        reader.close()
        response.close()


async def _aread_chunks(response: httpx.Response, core: StreamCore) -> AsyncGenerator[ChatCompletionChunk, None]:
    body = response.aiter_raw() if _reads_raw(response) else response.aiter_bytes()
    reader = cast(AsyncGenerator[bytes, None], body)
    try:
        while core.open:
            try:
                with core.cancel_scope() as scope:
                    data = await anext(reader, None)
                if scope.cancelled_caught:
                    raise core.deadline_passed()
            except httpx.RequestError as exc:
                raise core.read_failed(exc) from exc
            for chunk in core.receive(data):
                yield chunk
        core.raise_failure()
    finally:
        # Shielded: a cancelled task must still hand its connection back.
        with anyio.CancelScope(shield=True):
            await reader.aclose()
            await response.aclose()


class _StreamBase:
    """What both streams share: state, the response, and reassembly."""

    def __init__(self, response: httpx.Response, core: StreamCore) -> None:
        #: The HTTP response (headers, status). Its body belongs to the stream.
        self.response = response
        self._core = core
        self._head: ChatCompletionChunk | None = None
        self._closed = False
        self._completion: ChatCompletion | None = None

    @property
    def request_id(self) -> str | None:
        """The server's id for this request (``x-request-id`` or ``request-id``), if it sent one."""
        return self._core.request_id

    @property
    def chunks(self) -> list[ChatCompletionChunk]:
        """Every chunk received so far."""
        return self._core.received

    def _take_head(self) -> ChatCompletionChunk | None:
        head, self._head = self._head, None
        return head

    def _check_iterable(self) -> None:
        if self._closed:
            raise StreamConsumedError("the stream was already consumed or closed; it can be iterated only once")

    def _ready_completion(self) -> ChatCompletion | None:
        """The final completion if it is known without reading more; raises if it can never be."""
        core = self._core
        core.raise_failure()
        if core.completed:
            if self._completion is None:
                self._completion = accumulate(core.received)
            return self._completion
        if self._closed:
            raise StreamConsumedError("the stream was closed before it finished, so its final completion is unknown")
        return None

    @staticmethod
    def _text(chunk: ChatCompletionChunk, choice: int) -> str | None:
        for item in chunk.choices:
            if item.index == choice:
                return item.delta.content or None
        return None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "finished" if self._core.completed else "open"
        return f"<{type(self).__name__} {state}, {len(self._core.received)} chunks, request_id={self.request_id!r}>"


class Stream(_StreamBase, Closing):
    """A streamed chat completion: an iterator of :class:`~chunkwise.types.ChatCompletionChunk`.

    >>> with client.chat.completions.create(model="m", messages=messages, stream=True) as stream:
    ...     for text in stream.iter_text():
    ...         print(text, end="")
    ...     completion = stream.final_completion()

    Iterate it once. Leaving the ``with`` block, breaking out of the loop, an error, or garbage
    collection closes the connection. An error frame raises :class:`~chunkwise.StreamError`, a stream
    cut short :class:`~chunkwise.IncompleteStreamError`; on a checked (signed or confidential) stream they
    raise :class:`~chunkwise.SignatureError` and :class:`~chunkwise.IncompleteChainError`.
    """

    def __init__(self, response: httpx.Response, core: StreamCore) -> None:
        super().__init__(response, core)
        self._chunks = _read_chunks(response, core)

    @classmethod
    def _open(cls, response: httpx.Response, deadlines: Deadlines, guard: ResponseGuard | None = None) -> Stream:
        """Wait for the first chunk, so that everything before it can still be retried."""
        stream = cls(response, StreamCore(deadlines, request_id_of(response.headers), guard))
        stream._head = next(stream._chunks, None)
        return stream

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        self._check_iterable()
        try:
            head = self._take_head()
            if head is not None:
                yield head
            yield from self._chunks
        finally:
            self.close()

    def __next__(self) -> ChatCompletionChunk:
        head = self._take_head()
        if head is not None:
            return head
        return next(self._chunks)

    def iter_text(self, choice: int = 0) -> Iterator[str]:
        """Only the content text of one choice (the first by default), piece by piece."""
        for chunk in self:
            text = self._text(chunk, choice)
            if text is not None:
                yield text

    def final_completion(self) -> ChatCompletion:
        """The whole response, reassembled; reads the rest of the stream first if needed."""
        completion = self._ready_completion()
        if completion is None:
            for _ in self:
                pass
            completion = self._ready_completion()
            assert completion is not None
        return completion

    def close(self) -> None:
        """Release the connection. Safe to call more than once."""
        self._closed = True
        self._chunks.close()
        self.response.close()


class AsyncStream(_StreamBase, AsyncClosing):
    """The async twin of :class:`Stream`.

    >>> async with await client.chat.completions.create(model="m", messages=messages, stream=True) as stream:
    ...     async for text in stream.iter_text():
    ...         print(text, end="")
    ...     completion = await stream.final_completion()
    """

    def __init__(self, response: httpx.Response, core: StreamCore) -> None:
        super().__init__(response, core)
        self._chunks = _aread_chunks(response, core)

    @classmethod
    async def _open(
        cls, response: httpx.Response, deadlines: Deadlines, guard: ResponseGuard | None = None
    ) -> AsyncStream:
        stream = cls(response, StreamCore(deadlines, request_id_of(response.headers), guard))
        stream._head = await anext(stream._chunks, None)
        return stream

    async def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        self._check_iterable()
        try:
            head = self._take_head()
            if head is not None:
                yield head
            async for chunk in self._chunks:
                yield chunk
        finally:
            await self.aclose()

    async def __anext__(self) -> ChatCompletionChunk:
        head = self._take_head()
        if head is not None:
            return head
        return await anext(self._chunks)

    async def iter_text(self, choice: int = 0) -> AsyncIterator[str]:
        """Only the content text of one choice (the first by default), piece by piece."""
        async for chunk in self:
            text = self._text(chunk, choice)
            if text is not None:
                yield text

    async def final_completion(self) -> ChatCompletion:
        """The whole response, reassembled; reads the rest of the stream first if needed."""
        completion = self._ready_completion()
        if completion is None:
            async for _ in self:
                pass
            completion = self._ready_completion()
            assert completion is not None
        return completion

    async def aclose(self) -> None:
        """Release the connection. Safe to call more than once."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._chunks.aclose()
            await self.response.aclose()
