"""Answering a Responses or Messages client from a chat upstream: its chat answer, rewritten in the dialect.

The pass-through (:mod:`._proxy`) never parses more than it must; a translated answer has to be read
whole: every upstream chat chunk is decoded and handed to the dialect's answer writer
(:class:`~chunkwise.edge.DialectAnswer`, the same one the server writes its engine's chunks through),
and what it writes goes to the client. Upstream errors become the dialect's: an error frame or a broken
stream ends the stream with the dialect's error events, and a whole error answer is rewritten in the
dialect's error shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.types import Send

from .._errors import ChunkwiseError
from ..edge import OPENAI_ERRORS, SSE_HEADERS, DialectAnswer, ErrorShape
from ..sse import ChunkStreamDecoder, EndOfInput, ErrorFrame
from ..types import ChatCompletion, ChatCompletionChunk, CompletionUsage, ErrorDetail, ErrorResponse
from ._proxy import UpstreamStream
from ._upstream import UpstreamError

__all__ = ["TranslatedOutcome", "TranslatedStream", "render_whole", "reshaped_error"]

_error_decoder = msgspec.json.Decoder(ErrorResponse)
_completion_decoder = msgspec.json.Decoder(ChatCompletion)


def _upstream_detail(status: int, body: bytes) -> ErrorDetail:
    try:
        return _error_decoder.decode(body).error
    except msgspec.MsgspecError:
        kind = "upstream_error" if status >= 500 else "invalid_request_error"
        return ErrorDetail(
            message=body[:500].decode("utf-8", "replace") or f"The upstream answered {status}.", type=kind
        )


def reshaped_error(status: int, body: bytes, errors: ErrorShape) -> bytes:
    """An upstream's error answer (OpenAI's shape, or anything) in the dialect's error shape."""
    return errors.body(status, _upstream_detail(status, body))


def render_whole(
    status: int, body: bytes, render: Callable[[ChatCompletion], bytes], errors: ErrorShape
) -> tuple[int, bytes]:
    """An upstream's whole chat answer in the dialect: ``render`` for a 200, the dialect's error shape else
    (a 502 for a 200 that is not a chat completion)."""
    if status != 200:
        return status, body if errors is OPENAI_ERRORS else reshaped_error(status, body, errors)
    try:
        completion = _completion_decoder.decode(body)
    except msgspec.MsgspecError:
        detail = ErrorDetail(message="The upstream's answer is not a chat completion.", type="upstream_error")
        return 502, errors.body(502, detail)
    return 200, render(completion)


@dataclass
class TranslatedOutcome:
    usage: CompletionUsage | None
    #: Chunks with output: the completion tokens of a stream that ends without usage.
    delivered_tokens: int
    ttft: float | None
    cancelled: bool
    #: Why the stream ended with the gateway's own error events, if it did.
    failure: str | None
    #: The upstream's in-stream error frame, if it sent one.
    upstream_error: ErrorDetail | None


def _has_output(chunk: ChatCompletionChunk) -> bool:
    for choice in chunk.choices:
        delta = choice.delta
        if delta.content or delta.tool_calls or delta.reasoning_text or delta.refusal:
            return True
    return False


@dataclass(eq=False)
class TranslatedStream(UpstreamStream[TranslatedOutcome]):
    """A 200 event stream in the dialect of ``answer``, from the chat stream of ``attempt``: the pump reads,
    translates and sends, one upstream read at a time."""

    answer: DialectAnswer

    def __post_init__(self) -> None:
        super().__post_init__()
        self._decoder = ChunkStreamDecoder()
        self._usage: CompletionUsage | None = None
        self._delivered = 0
        self._upstream_error: ErrorDetail | None = None
        self._finished = False

    @property
    def usage(self) -> CompletionUsage | None:
        """The upstream's usage, once its usage chunk has arrived."""
        return self._usage

    @property
    def delivered_tokens(self) -> int:
        """Chunks with output so far."""
        return self._delivered

    def _ended(self) -> None:
        self.on_end(
            TranslatedOutcome(
                usage=self._usage,
                delivered_tokens=self._delivered,
                ttft=self._ttft,
                cancelled=self._client_gone and not self._finished,
                failure=self._failure,
                upstream_error=self._upstream_error,
            )
        )

    async def _pump(self, send: Send) -> None:
        answer = self.answer
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        out = answer.opening() + self._translate(self.attempt.first)
        rest = self.attempt.rest
        assert rest is not None
        try:
            async for data in rest:
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                    out = b""
                if self._finished:
                    break
                out = self._translate(data)
        except UpstreamError as exc:
            self._fail(f"The upstream failed mid-stream: {exc}")
        if not self._finished:
            out += self._close_decoder()
        if self._failure is not None:
            out += answer.failure(502, ErrorDetail(message=self._failure, type="upstream_error"))
        elif self._upstream_error is not None:
            out += answer.failure(_status_of(self._upstream_error), self._upstream_error)
        out += answer.end()
        self._finished = True
        await send({"type": "http.response.body", "body": out, "more_body": False})

    def _translate(self, data: bytes) -> bytes:
        if self._finished:
            return b""
        try:
            items = self._decoder.feed(data)
        except ChunkwiseError as exc:
            self._fail(f"The upstream sent an unreadable stream: {exc}")
            return b""
        return self._written(items)

    def _close_decoder(self) -> bytes:
        try:
            items = self._decoder.close()
        except ChunkwiseError as exc:
            self._fail(f"The upstream sent an unreadable stream: {exc}")
            return b""
        return self._written(items)

    def _written(self, items: list[Any]) -> bytes:
        out = b""
        event = self.answer.event
        for item in items:
            if isinstance(item, ChatCompletionChunk):
                if item.usage is not None:
                    self._usage = item.usage
                if _has_output(item):
                    self._delivered += 1
                    if self._ttft is None:
                        self._ttft = time.perf_counter() - self.arrived
                out += event(item)
            elif isinstance(item, ErrorFrame):
                self._upstream_error = item.error
                self._finished = True
                break
            elif isinstance(item, EndOfInput):
                if not item.finished_properly:
                    self._fail("The upstream ended the stream before it was complete.")
            else:  # Done
                self._finished = True
                break
        return out

    def _fail(self, reason: str) -> None:
        if self._failure is None and self._upstream_error is None:
            self._failure = reason
        self._finished = True


def _status_of(error: ErrorDetail) -> int:
    status = error.http_status_code
    return status if isinstance(status, int) and 400 <= status < 600 else 500
