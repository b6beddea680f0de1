"""Sending a request upstream with failover, and passing the answer through to the client.

Failover happens only while the client has received nothing: a connect error, a 5xx or a 429 (and, for a
stream, an upstream that breaks before its first byte) moves the request to the next candidate. Once a
byte went out, an upstream failure ends the stream with an error frame and ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..edge import DONE, OPENAI_ERRORS, SSE_HEADERS, wait_for_disconnect
from ..types import ErrorDetail
from ._passthrough import StreamInspector
from ._routing import Upstream
from ._upstream import UpstreamClient, UpstreamError, UpstreamResponse

__all__ = ["Attempt", "Failure", "ProxyStream", "StreamOutcome", "UpstreamStream", "send_with_failover"]


@dataclass
class Attempt:
    """An upstream that answered: a stream with its first read done, or any other final answer."""

    upstream: Upstream
    response: UpstreamResponse
    #: The rest of a 200 stream, after ``first``.
    rest: AsyncIterator[bytes] | None
    first: bytes


@dataclass
class Failure:
    """Every candidate failed before answering; the last status answer is passed on if there was one."""

    upstream: Upstream | None
    status: int
    body: bytes | None
    retry_after: str | None
    message: str


class Hooks:
    """What the failover loop reports, so the app keeps metrics and health without this module knowing them."""

    def __init__(
        self,
        *,
        on_start: Callable[[Upstream], None],
        on_release: Callable[[Upstream], None],
        on_error: Callable[[Upstream, str, str], None],
    ) -> None:
        self.on_start = on_start
        self.on_release = on_release
        self.on_error = on_error


async def send_with_failover(
    client: UpstreamClient,
    candidates: list[Upstream],
    path: str,
    body: bytes,
    *,
    model: str,
    stream: bool,
    hooks: Hooks,
) -> Attempt | Failure:
    """Tries ``candidates`` in turn."""
    failure = Failure(None, 503, None, None, "No upstream serves this model right now.")
    for upstream in candidates:
        hooks.on_start(upstream)
        try:
            response = await client.post(upstream.origin, path, body)
        except UpstreamError as exc:
            hooks.on_release(upstream)
            hooks.on_error(upstream, model, "connect")
            failure = Failure(upstream, 502, None, None, f"Upstream {upstream.name} unreachable: {_describe(exc)}")
            continue
        status = response.status_code
        if status >= 500 or status == 429:
            try:
                content = await response.aread()
            except UpstreamError:
                content = b""
            finally:
                await response.aclose()
            hooks.on_release(upstream)
            hooks.on_error(upstream, model, "status_429" if status == 429 else "status_5xx")
            failure = Failure(upstream, status, content, response.headers.get("retry-after"), "")
            continue
        if not (stream and status == 200):
            return Attempt(upstream, response, None, b"")
        rest = response.aiter_raw()
        try:
            first = await rest.__anext__()
        except (StopAsyncIteration, UpstreamError) as exc:
            await response.aclose()
            hooks.on_release(upstream)
            hooks.on_error(upstream, model, "connect")
            reason = "it ended the stream at once" if isinstance(exc, StopAsyncIteration) else _describe(exc)
            failure = Failure(upstream, 502, None, None, f"Upstream {upstream.name} failed: {reason}")
            continue
        return Attempt(upstream, response, rest, first)
    return failure


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass
class StreamOutcome:
    inspector: StreamInspector
    #: Seconds from ``arrived`` to the first chunk with output sent on; None if none was.
    ttft: float | None
    duration: float
    cancelled: bool
    #: Why the stream ended with the gateway's error frame, if it did.
    failure: str | None


OutcomeT = TypeVar("OutcomeT")

#: Bytes read ahead of a client that reads slower than the upstream writes; then the upstream waits too.
_MAX_READ_AHEAD = 1 << 20


@dataclass(eq=False)
class UpstreamStream(Response, Generic[OutcomeT]):
    """A 200 event stream made from an upstream's: the request's own task pumps it to the client, and a
    watcher task waits for ``http.disconnect``. A client that goes away cancels the pump at once, and the
    upstream response is closed, which closes its connection.

    A subclass writes :meth:`_pump`, may run more tasks beside it (:meth:`_helpers`), and reports how the
    stream went to ``on_end`` in :meth:`_ended`.
    """

    attempt: Attempt
    #: When the request arrived (``time.perf_counter()``).
    arrived: float = field(kw_only=True)
    #: Gets the outcome once the stream is over, whichever way it ended.
    on_end: Callable[[OutcomeT], None] = field(kw_only=True)

    def __post_init__(self) -> None:
        # Response.__init__ would render a body up front; this response writes its own.
        self.status_code = 200
        self.background = None
        self._client_gone = False
        #: Seconds from arrival to the first output sent on, once there was some.
        self._ttft: float | None = None
        #: Why the stream ended with the gateway's own error, if it did.
        self._failure: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Plain asyncio tasks: an anyio task group costs about four times as much per request.
        pump = asyncio.current_task()
        assert pump is not None
        tasks = [*self._helpers(), asyncio.create_task(self._watch_for_disconnect(receive, pump))]
        try:
            await self._pump(send)
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
            # The watcher stopped the copy loop because the client went away; that is not our cancellation.
            pump.uncancel()
        finally:
            for task in tasks:
                task.cancel()
            self._ended()
            await self.attempt.response.aclose()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_for_disconnect(self, receive: Receive, pump: asyncio.Task[Any]) -> None:
        await wait_for_disconnect(receive)
        self._client_gone = True
        self._client_left()
        pump.cancel()

    def _helpers(self) -> list[asyncio.Task[Any]]:
        """Tasks that run beside the pump, cancelled when it ends."""
        return []

    def _client_left(self) -> None:
        """Called as the client goes away, before the pump is cancelled."""

    async def _pump(self, send: Send) -> None:
        raise NotImplementedError

    def _ended(self) -> None:
        """Called once the stream is over, whichever way it ended."""


@dataclass(eq=False, kw_only=True)
class ProxyStream(UpstreamStream[StreamOutcome]):
    """A 200 event stream passed through from ``attempt``; ``on_end`` gets the outcome once it is over.

    Two tasks share the work: one reads the upstream as fast as it delivers, one sends to the client. Every
    upstream HTTP chunk is one read, but whatever piled up while the client's last send was under way goes
    out in one send, so a fast upstream costs one send per batch instead of one per chunk.
    """

    strip_usage: bool

    def __post_init__(self) -> None:
        super().__post_init__()
        self._inspector = StreamInspector(strip_usage=self.strip_usage)
        self._complete = False
        self._cancelled = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._upstream_done = False
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    @property
    def inspector(self) -> StreamInspector:
        """What the stream has shown so far: its usage once sent, the tokens delivered."""
        return self._inspector

    def _helpers(self) -> list[asyncio.Task[Any]]:
        return [asyncio.create_task(self._read_upstream())]

    def _client_left(self) -> None:
        # A client that closes once it has [DONE] (as openai-python does) did not cancel anything.
        self._cancelled = not (self._complete or self._inspector.done)

    def _ended(self) -> None:
        self.on_end(
            StreamOutcome(
                inspector=self._inspector,
                ttft=self._ttft,
                duration=time.perf_counter() - self.arrived,
                cancelled=self._cancelled,
                failure=self._failure,
            )
        )

    async def _read_upstream(self) -> None:
        rest = self.attempt.rest
        assert rest is not None
        pending = self._pending
        ready = self._ready
        try:
            async for data in rest:
                pending.append(data)
                self._pending_size += len(data)
                ready.set()
                if self._pending_size > _MAX_READ_AHEAD:
                    self._room.clear()
                    await self._room.wait()
        except UpstreamError as exc:
            self._failure = f"The upstream failed mid-stream: {_describe(exc)}"
        finally:
            self._upstream_done = True
            ready.set()

    async def _pump(self, send: Send) -> None:
        inspector = self._inspector
        pending = self._pending
        # The head and the first bytes in the same turn of the event loop, so that they leave in one write
        # (see ._http); what else arrived with the first read is already in it (the client joins pieces).
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        pending.insert(0, self.attempt.first)
        while True:
            if not pending:
                if self._upstream_done:
                    break
                self._ready.clear()
                await self._ready.wait()
                continue
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            self._pending_size = 0
            self._room.set()
            out = inspector.feed(data)
            if self._upstream_done:
                # The last batch goes out with the end of the response: one write less per request.
                await self._finish(send, out)
                return
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
                if self._ttft is None and inspector.delivered_tokens:
                    self._ttft = time.perf_counter() - self.arrived
        await self._finish(send, b"")

    async def _finish(self, send: Send, out: bytes) -> None:
        inspector = self._inspector
        if self._ttft is None and inspector.delivered_tokens:
            self._ttft = time.perf_counter() - self.arrived
        if self._failure is None:
            out += inspector.close()
            if not inspector.finished_properly:
                self._failure = "The upstream ended the stream before it was complete."
        if self._failure is not None:
            detail = ErrorDetail(message=self._failure, type="upstream_error", code="upstream_failed")
            out += OPENAI_ERRORS.event(502, detail)
            out += DONE
        self._complete = True
        await send({"type": "http.response.body", "body": out, "more_body": False})
