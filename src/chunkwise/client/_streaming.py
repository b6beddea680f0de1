"""``Stream`` and ``AsyncStream``: a response body as typed chunks (or, for the other dialects, typed events).

Everything but the reading of bytes lives in a core (:class:`EventCore`: the deadlines, turning broken
connections into errors; its subclass :class:`StreamCore` for chat: decoding, error frames, truncation,
keeping the chunks for :meth:`Stream.final_completion`). The two read loops, :func:`_read_chunks` and
:func:`_aread_chunks`, are the only code that differs between sync and async; :class:`SyncEventStream` and
:class:`AsyncEventStream` are the iteration every stream shares, whatever it yields.

The read loops are generators that close the response in ``finally`` and hold no reference to the
stream object, so the connection is released when iteration ends, fails, is abandoned (``break``:
the loop's generator is closed), or when the stream is garbage-collected.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast

import anyio
import httpx

from .._closing import AsyncClosing, Closing
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
from ._errors import APIConnectionError
from ._guards import ResponseGuard
from ._responses import request_id_of
from ._timeouts import Deadlines

if TYPE_CHECKING:
    from ._calls import Call

__all__ = ["AsyncEventStream", "AsyncStream", "EventCore", "Stream", "StreamCore", "SyncEventStream"]

T = TypeVar("T")


class EventCore(Generic[T]):
    """The sans-I/O half of any stream: feed it what the network gave, get items back.

    It keeps the deadlines and the end state; a subclass decodes (:meth:`_interpret`) and says what a stream
    cut short is (:meth:`_incomplete`).
    """

    __slots__ = ("_deadlines", "failure", "open", "received", "request_id")

    def __init__(self, deadlines: Deadlines, request_id: str | None) -> None:
        self._deadlines = deadlines
        self.request_id = request_id
        #: Every item so far.
        self.received: list[T] = []
        #: False once the stream ended: finished, failed, or cut short.
        self.open = True
        #: Why the stream ended, when it did not end well; raised once its earlier items are out.
        self.failure: ChunkwiseError | None = None

    def receive(self, data: bytes | None) -> list[T]:
        """The items in ``data`` (``None`` at end of input).

        The deadlines are checked first: data that arrives after one passed is not delivered, just
        as the async loop's cancel scope would not have waited for it.
        """
        deadlines = self._deadlines
        now = deadlines.now()
        expired = deadlines.passed(now)
        if expired is not None:
            raise self._stop(expired)
        try:
            items, progressed = self._interpret(data)
        except ChunkwiseError as exc:  # an undecodable or oversized event
            raise self._stop(exc) from None
        if progressed:
            deadlines.chunk_arrived(now)
        return items

    def _interpret(self, data: bytes | None) -> tuple[list[T], bool]:
        """Decode ``data``, record the items and the end; the items to deliver, and whether the stream progressed
        (what the idle deadline counts: a keep-alive event is not progress)."""
        raise NotImplementedError

    def _incomplete(self, message: str) -> IncompleteStreamError:
        raise NotImplementedError

    def _stop(self, error: ChunkwiseError) -> ChunkwiseError:
        """End the stream with ``error``, which the caller raises (and ``raise_failure`` raises again)."""
        self.open = False
        error.request_id = self.request_id
        self.failure = error
        return error

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def read_failed(self, exc: httpx.RequestError) -> ChunkwiseError:
        """The error for a failed network read. Before the first item it is a (retryable) connection error."""
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


class StreamCore(EventCore[ChatCompletionChunk]):
    """A chat stream's core: chunks, error frames, ``[DONE]``, and the checks of a signed or sealed stream."""

    __slots__ = ("_decoder", "_guard")

    def __init__(self, deadlines: Deadlines, request_id: str | None, guard: ResponseGuard | None = None) -> None:
        super().__init__(deadlines, request_id)
        self._decoder: ChunkStreamDecoder[ChatCompletionChunk] = ChunkStreamDecoder(
            ChatCompletionChunk, open_event=None if guard is None else guard.open
        )
        self._guard = guard

    def _interpret(self, data: bytes | None) -> tuple[list[ChatCompletionChunk], bool]:
        items = self._decoder.close() if data is None else self._decoder.feed(data)
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
        return chunks, bool(chunks)

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


def _reads_raw(response: httpx.Response) -> bool:
    # Without a content encoding the raw body is the body, and reading it raw skips httpx's decoder
    # layers. (A response built with its content already in memory has no raw stream left.)
    encoding: str = response.headers.get("content-encoding", "identity")
    return encoding.strip().lower() in ("identity", "") and not response.is_stream_consumed


def _read_chunks(response: httpx.Response, core: EventCore[T]) -> Generator[T, None, None]:
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


async def _aread_chunks(response: httpx.Response, core: EventCore[T]) -> AsyncGenerator[T, None]:
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


CoreT = TypeVar("CoreT", bound=EventCore[Any])


class _StreamBase(Generic[T, CoreT]):
    """What every stream shares: state, the response, and when its final object is known."""

    def __init__(self, response: httpx.Response, core: CoreT) -> None:
        #: The HTTP response (headers, status). Its body belongs to the stream.
        self.response = response
        self._core = core
        self._head: T | None = None
        self._closed = False

    @classmethod
    def _new_core(cls, response: httpx.Response, call: Call) -> CoreT:
        raise NotImplementedError

    @property
    def request_id(self) -> str | None:
        """The server's id for this request (``x-request-id`` or ``request-id``), if it sent one."""
        return self._core.request_id

    def _text_of(self, item: T) -> str | None:
        """The text an item carries, for ``iter_text``."""
        raise NotImplementedError

    def _take_head(self) -> T | None:
        head, self._head = self._head, None
        return head

    def _check_iterable(self) -> None:
        if self._closed:
            raise StreamConsumedError("the stream was already consumed or closed; it can be iterated only once")

    def _finished(self) -> bool:
        """Whether the stream finished well (its final object is known); raises if it never can."""
        core = self._core
        core.raise_failure()
        if core.completed:
            return True
        if self._closed:
            raise StreamConsumedError("the stream was closed before it finished, so its final result is unknown")
        return False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "finished" if self._core.completed else "open"
        return f"<{type(self).__name__} {state}, {len(self._core.received)} chunks, request_id={self.request_id!r}>"


class SyncEventStream(_StreamBase[T, CoreT], Closing):
    """Iteration, once, over what a core reads from a response; closing releases the connection."""

    def __init__(self, response: httpx.Response, core: CoreT) -> None:
        super().__init__(response, core)
        self._items: Generator[T, None, None] = _read_chunks(response, core)

    @classmethod
    def _open(cls, response: httpx.Response, call: Call) -> Self:
        """Wait for the first item, so that everything before it can still be retried."""
        stream = cls(response, cls._new_core(response, call))
        stream._head = next(stream._items, None)
        return stream

    def __iter__(self) -> Iterator[T]:
        self._check_iterable()
        try:
            head = self._take_head()
            if head is not None:
                yield head
            yield from self._items
        finally:
            self.close()

    def __next__(self) -> T:
        head = self._take_head()
        if head is not None:
            return head
        return next(self._items)

    def iter_text(self) -> Iterator[str]:
        """Only the text, piece by piece."""
        for item in self:
            text = self._text_of(item)
            if text is not None:
                yield text

    def _read_to_end(self) -> None:
        """Read what is left, when the final object is asked for before the stream finished."""
        if not self._finished():
            for _ in self:
                pass
            finished = self._finished()
            assert finished

    def close(self) -> None:
        """Release the connection. Safe to call more than once."""
        self._closed = True
        self._items.close()
        self.response.close()


class AsyncEventStream(_StreamBase[T, CoreT], AsyncClosing):
    """The async twin of :class:`SyncEventStream`."""

    def __init__(self, response: httpx.Response, core: CoreT) -> None:
        super().__init__(response, core)
        self._items: AsyncGenerator[T, None] = _aread_chunks(response, core)

    @classmethod
    async def _open(cls, response: httpx.Response, call: Call) -> Self:
        stream = cls(response, cls._new_core(response, call))
        stream._head = await anext(stream._items, None)
        return stream

    async def __aiter__(self) -> AsyncIterator[T]:
        self._check_iterable()
        try:
            head = self._take_head()
            if head is not None:
                yield head
            async for item in self._items:
                yield item
        finally:
            await self.aclose()

    async def __anext__(self) -> T:
        head = self._take_head()
        if head is not None:
            return head
        return await anext(self._items)

    async def iter_text(self) -> AsyncIterator[str]:
        """Only the text, piece by piece."""
        async for item in self:
            text = self._text_of(item)
            if text is not None:
                yield text

    async def _read_to_end(self) -> None:
        if not self._finished():
            async for _ in self:
                pass
            finished = self._finished()
            assert finished

    async def aclose(self) -> None:
        """Release the connection. Safe to call more than once."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._items.aclose()
            await self.response.aclose()


class _ChatStream:
    """What both chat streams add: the chunks, one choice's text, and the reassembled completion."""

    _core: StreamCore
    _completion: ChatCompletion | None = None

    @classmethod
    def _new_core(cls, response: httpx.Response, call: Call) -> StreamCore:
        return StreamCore(call.deadlines, request_id_of(response.headers), call.guard())

    @property
    def chunks(self) -> list[ChatCompletionChunk]:
        """Every chunk received so far."""
        return self._core.received

    def _final(self) -> ChatCompletion:
        if self._completion is None:
            self._completion = accumulate(self._core.received)
        return self._completion

    @staticmethod
    def _text(chunk: ChatCompletionChunk, choice: int) -> str | None:
        for item in chunk.choices:
            if item.index == choice:
                return item.delta.content or None
        return None


class Stream(_ChatStream, SyncEventStream[ChatCompletionChunk, StreamCore]):
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

    def iter_text(self, choice: int = 0) -> Iterator[str]:
        """Only the content text of one choice (the first by default), piece by piece."""
        for chunk in self:
            text = self._text(chunk, choice)
            if text is not None:
                yield text

    def final_completion(self) -> ChatCompletion:
        """The whole response, reassembled; reads the rest of the stream first if needed."""
        self._read_to_end()
        return self._final()


class AsyncStream(_ChatStream, AsyncEventStream[ChatCompletionChunk, StreamCore]):
    """The async twin of :class:`Stream`.

    >>> async with await client.chat.completions.create(model="m", messages=messages, stream=True) as stream:
    ...     async for text in stream.iter_text():
    ...         print(text, end="")
    ...     completion = await stream.final_completion()
    """

    async def iter_text(self, choice: int = 0) -> AsyncIterator[str]:
        """Only the content text of one choice (the first by default), piece by piece."""
        async for chunk in self:
            text = self._text(chunk, choice)
            if text is not None:
                yield text

    async def final_completion(self) -> ChatCompletion:
        """The whole response, reassembled; reads the rest of the stream first if needed."""
        await self._read_to_end()
        return self._final()
