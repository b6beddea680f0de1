"""What every dialect writer does with a chat stream, whatever events it writes.

It reads choice 0 of each chunk (a dialect carries one choice), hands each kind of fragment to the
dialect, closes the dialect's items at the finish reason, and writes the terminal events once the usage is
known: chat servers send the usage chunk after the finish, and both dialects put usage in their last event.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from ..types import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceDeltaToolCall,
    CompletionUsage,
    Message,
    StopReason,
    StreamOptions,
)

__all__ = ["ChatStreamWriter"]

E = TypeVar("E")


class DialectRequest(Protocol):
    """What a Responses and a Messages request carry over to chat as they are."""

    model: str
    stream: bool | None
    temperature: float | None
    top_p: float | None


def dialect_chat_request(request: DialectRequest, messages: list[Message], **fields: Any) -> ChatCompletionRequest:
    """The chat request a dialect request becomes: its model, streaming and sampling, ``messages``, and the
    dialect's own translated ``fields``. A streamed one always asks for the usage chunk: the writer needs it
    for the dialect's last event."""
    return ChatCompletionRequest(
        model=request.model,
        messages=messages,
        stream=request.stream,
        stream_options=StreamOptions(include_usage=True) if request.stream is True else None,
        temperature=request.temperature,
        top_p=request.top_p,
        **fields,
    )


class ChatStreamWriter(Generic[E]):
    """Call :meth:`start` as soon as the request is accepted (the first :meth:`feed` calls it too),
    :meth:`feed` for every chunk, then :meth:`finish` at the end of the chat stream."""

    __slots__ = ("_closed", "_finish_reason", "_started", "_stop_reason", "_terminated", "_usage")

    def __init__(self) -> None:
        self._started = False
        self._closed = False
        self._terminated = False
        self._finish_reason: str | None = None
        self._stop_reason: StopReason | None = None
        self._usage: CompletionUsage | None = None

    def start(self) -> list[E]:
        if self._started:
            return []
        self._started = True
        return self._opening()

    def feed(self, chunk: ChatCompletionChunk) -> list[E]:
        events = self.start() if not self._started else []
        if self._terminated:
            return events
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0 or self._closed:
                continue
            delta = choice.delta
            reasoning = delta.reasoning_content if delta.reasoning_content is not None else delta.reasoning
            if reasoning:
                self._reasoning_text(events, reasoning)
            if delta.content:
                self._content(events, delta.content)
            if delta.refusal:
                self._refusal(events, delta.refusal)
            if delta.tool_calls:
                for fragment in delta.tool_calls:
                    self._call(events, fragment)
            if choice.finish_reason is not None:
                self._finish_reason = choice.finish_reason
                self._stop_reason = choice.stop_reason
                self._close_once(events)
        if self._closed and self._usage is not None:
            self._terminated = True
            self._terminate(events)
        return events

    def finish(self) -> list[E]:
        """Close whatever is open and write the dialect's ending."""
        events = self.start() if not self._started else []
        if not self._terminated:
            self._close_once(events)
            self._terminated = True
            self._terminate(events)
        return events

    def _failing(self) -> list[E] | None:
        """The events a failure starts from, or None when the stream has already ended."""
        events = self.start() if not self._started else []
        if self._terminated:
            return None
        self._terminated = True
        return events

    def _close_once(self, events: list[E]) -> None:
        if not self._closed:
            self._closed = True
            self._close(events)

    # --- what each dialect writes ----------------------------------------------------------------------

    def _opening(self) -> list[E]:
        raise NotImplementedError

    def _reasoning_text(self, events: list[E], text: str) -> None:
        raise NotImplementedError

    def _content(self, events: list[E], text: str) -> None:
        raise NotImplementedError

    def _refusal(self, events: list[E], text: str) -> None:
        raise NotImplementedError

    def _call(self, events: list[E], fragment: ChoiceDeltaToolCall) -> None:
        raise NotImplementedError

    def _close(self, events: list[E]) -> None:
        raise NotImplementedError

    def _terminate(self, events: list[E]) -> None:
        raise NotImplementedError
