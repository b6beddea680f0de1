"""Per-choice output: sampled tokens in, wire chunks out.

One writer follows one of the ``n`` sequences of a generation. It turns token bytes into text (never
splitting a code point), holds back what could be the start of a stop string, splits tool calls into
argument fragments, and wraps the result in chunks. Every chunk comes paired with the number of generated
tokens it accounts for, so a consumer that stops reading early knows exactly how many tokens it received.
The writers run on the engine's worker thread and do no I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypedDict, TypeVar, Unpack

from .._version import __version__
from ..types import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    TokenLogprob,
    TopLogprob,
)
from ._text import StopMatcher, TokenTextDecoder, ToolCallArgumentStream, ToolCallEvent

#: What text completions name as their ``system_fingerprint``: the Atoma TypeScript SDK's completions
#: require one (OpenAI's wire allows it).
SYSTEM_FINGERPRINT = f"chunkwise-{__version__}"

__all__ = [
    "ChatChoiceWriter",
    "ChoiceWriter",
    "ChunkHeader",
    "Emitted",
    "FinishReason",
    "SampledLogprobs",
    "TextChoiceWriter",
    "ToolMode",
]

ChunkT = TypeVar("ChunkT", ChatCompletionChunk, Completion)
FinishReason = Literal["stop", "length", "tool_calls"]
#: ``text``: plain content; ``call``: a tool call is forced; ``auto``: the first character decides.
ToolMode = Literal["text", "call", "auto"]
PieceLookup = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """What every chunk of one stream repeats."""

    id: str
    created: int
    model: str


@dataclass(frozen=True, slots=True)
class SampledLogprobs:
    """The model's log-probability of the sampled token and of the ``k`` most likely alternatives."""

    logprob: float
    top: Sequence[tuple[int, float]]


#: A chunk and the number of generated tokens it accounts for.
Emitted = tuple[ChunkT, int]


class _WriterArgs(TypedDict):
    """What every writer is built from; subclasses take these through and add their own."""

    index: int
    header: ChunkHeader
    piece: PieceLookup
    stops: Sequence[str]


class ChoiceWriter(Generic[ChunkT]):
    """The shared machinery; subclasses only shape text and endings into their wire type."""

    __slots__ = ("_decoder", "_index", "_piece", "_stop", "_unreported", "header", "stop_text", "stopped")

    def __init__(self, *, index: int, header: ChunkHeader, piece: PieceLookup, stops: Sequence[str]) -> None:
        self._index = index
        self.header = header
        self._piece = piece
        self._decoder = TokenTextDecoder()
        self._stop = StopMatcher(stops) if stops else None
        self._unreported = 0
        #: Set once a stop string has been found; the worker then ends this choice with ``finish("stop")``.
        self.stopped = False
        self.stop_text: str | None = None

    @property
    def grammar_needed(self) -> bool | None:
        """Whether this choice must stay under the request's grammar; None while its output is undecided."""
        return False

    def start(self) -> Emitted[ChunkT] | None:
        """Anything to send before the first token (the echoed prompt of a legacy completion)."""
        return None

    def token(self, token: int, logprobs: SampledLogprobs | None) -> Emitted[ChunkT] | None:
        """One generated (not end-of-generation) token; returns the chunk it completes, if any."""
        self._unreported += 1
        piece = self._piece(token)
        if logprobs is not None:
            self._record_logprobs(token, piece, logprobs)
        text = self._decoder.decode(piece)
        return self._on_text(text) if text else None

    def end_of_generation(self) -> list[Emitted[ChunkT]]:
        """The model produced its end-of-generation token (which is not counted or shown)."""
        return self.finish("stop")

    def finish(self, reason: FinishReason) -> list[Emitted[ChunkT]]:
        emitted: list[Emitted[ChunkT]] = []
        tail = self._decoder.flush()
        if tail:
            self._append(emitted, self._on_text(tail))
        self._flush(emitted, reason)
        emitted.append(self._final(reason))
        return emitted

    def _on_text(self, text: str) -> Emitted[ChunkT] | None:
        if self._stop is not None:
            result = self._stop.feed(text)
            if result.stop is not None:
                self.stopped = True
                self.stop_text = result.stop
            text = result.text
        return self._content(text) if text else None

    def _flush(self, emitted: list[Emitted[ChunkT]], reason: FinishReason) -> None:
        if self._stop is not None:
            held = self._stop.flush()
            if held:
                self._append(emitted, self._content(held))

    def _take_tokens(self) -> int:
        count, self._unreported = self._unreported, 0
        return count

    @staticmethod
    def _append(emitted: list[Emitted[ChunkT]], item: Emitted[ChunkT] | None) -> None:
        if item is not None:
            emitted.append(item)

    def _record_logprobs(self, token: int, piece: bytes, logprobs: SampledLogprobs) -> None:
        raise NotImplementedError

    def _content(self, text: str) -> Emitted[ChunkT]:
        raise NotImplementedError

    def _final(self, reason: FinishReason) -> Emitted[ChunkT]:
        raise NotImplementedError


def _token_text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


class ChatChoiceWriter(ChoiceWriter[ChatCompletionChunk]):
    """Chat chunks: the role on the first chunk, content or tool-call fragments, then the finish reason."""

    __slots__ = ("_call_id", "_logprobs", "_mode", "_role", "_tool")

    def __init__(
        self,
        *,
        logprobs: bool,
        tool_mode: ToolMode = "text",
        tool_names: Sequence[str] = (),
        **common: Unpack[_WriterArgs],
    ) -> None:
        super().__init__(**common)
        self._role: str | None = "assistant"
        self._logprobs: list[TokenLogprob] | None = [] if logprobs else None
        self._mode: ToolMode = tool_mode
        self._tool = ToolCallArgumentStream(tool_names) if tool_mode != "text" else None
        self._call_id = ""

    @property
    def grammar_needed(self) -> bool | None:
        return None if self._mode == "auto" else self._mode == "call"

    def end_of_generation(self) -> list[Emitted[ChatCompletionChunk]]:
        calling = self._mode == "call" and self._tool is not None and self._tool.started
        return self.finish("tool_calls" if calling else "stop")

    def _on_text(self, text: str) -> Emitted[ChatCompletionChunk] | None:
        if self._mode == "auto":
            # The grammar lets plain text start with anything but "{", and a call always starts with it.
            self._mode = "call" if text.startswith("{") else "text"
        if self._mode == "call":
            assert self._tool is not None
            event = self._tool.feed(text)
            return self._tool_delta(event) if event is not None else None
        return super()._on_text(text)

    def _flush(self, emitted: list[Emitted[ChatCompletionChunk]], reason: FinishReason) -> None:
        if self._mode != "call" or self._tool is None:
            super()._flush(emitted, reason)
            return
        unparsed, arguments = self._tool.finish(complete=reason == "tool_calls")
        if unparsed:  # cut short before the tool's name was complete: keep the text rather than lose it
            emitted.append(self._content(unparsed))
        elif arguments:
            emitted.append(self._tool_delta(ToolCallEvent(arguments=arguments)))

    def _tool_delta(self, event: ToolCallEvent) -> Emitted[ChatCompletionChunk]:
        if event.name is not None:
            self._call_id = "call_" + secrets.token_hex(12)
            call = ChoiceDeltaToolCall(
                index=0,
                id=self._call_id,
                type="function",
                function=ChoiceDeltaToolCallFunction(name=event.name, arguments=event.arguments),
            )
        else:
            call = ChoiceDeltaToolCall(index=0, function=ChoiceDeltaToolCallFunction(arguments=event.arguments))
        return self._chunk(ChoiceDelta(role=self._take_role(), tool_calls=[call]))

    def _take_role(self) -> str | None:
        role, self._role = self._role, None
        return role

    def _record_logprobs(self, token: int, piece: bytes, logprobs: SampledLogprobs) -> None:
        assert self._logprobs is not None
        top = []
        for alternative, logprob in logprobs.top:
            alternative_piece = self._piece(alternative)
            top.append(TopLogprob(token=_token_text(alternative_piece), logprob=logprob, bytes=list(alternative_piece)))
        self._logprobs.append(
            TokenLogprob(token=_token_text(piece), logprob=logprobs.logprob, bytes=list(piece), top_logprobs=top)
        )

    def _chunk(
        self, delta: ChoiceDelta, finish_reason: str | None = None, stop_reason: str | None = None
    ) -> Emitted[ChatCompletionChunk]:
        logprobs = None
        if self._logprobs:
            logprobs = ChoiceLogprobs(content=self._logprobs)
            self._logprobs = []
        choice = ChunkChoice(
            index=self._index, delta=delta, logprobs=logprobs, finish_reason=finish_reason, stop_reason=stop_reason
        )
        header = self.header
        chunk = ChatCompletionChunk(id=header.id, created=header.created, model=header.model, choices=[choice])
        return chunk, self._take_tokens()

    def _content(self, text: str) -> Emitted[ChatCompletionChunk]:
        return self._chunk(ChoiceDelta(role=self._take_role(), content=text))

    def _final(self, reason: FinishReason) -> Emitted[ChatCompletionChunk]:
        return self._chunk(ChoiceDelta(role=self._take_role()), finish_reason=reason, stop_reason=self.stop_text)


class TextChoiceWriter(ChoiceWriter[Completion]):
    """Legacy ``text_completion`` chunks, with the legacy log-probability shape."""

    __slots__ = ("_echo", "_logprobs", "_offset")

    def __init__(self, *, logprobs: bool, echo: str | None = None, **common: Unpack[_WriterArgs]) -> None:
        super().__init__(**common)
        self._logprobs = CompletionLogprobs() if logprobs else None
        self._echo = echo
        #: Characters decoded so far (shown or held back), for ``text_offset``.
        self._offset = len(echo) if echo else 0

    def start(self) -> Emitted[Completion] | None:
        return self._content(self._echo) if self._echo else None

    def _record_logprobs(self, token: int, piece: bytes, logprobs: SampledLogprobs) -> None:
        assert self._logprobs is not None
        self._logprobs.tokens.append(_token_text(piece))
        self._logprobs.token_logprobs.append(logprobs.logprob)
        self._logprobs.top_logprobs.append(
            {_token_text(self._piece(alternative)): logprob for alternative, logprob in logprobs.top}
        )
        self._logprobs.text_offset.append(self._offset)

    def _on_text(self, text: str) -> Emitted[Completion] | None:
        self._offset += len(text)
        return super()._on_text(text)

    def _chunk(self, text: str, finish_reason: str | None = None) -> Emitted[Completion]:
        logprobs = None
        if self._logprobs is not None and self._logprobs.tokens:
            logprobs, self._logprobs = self._logprobs, CompletionLogprobs()
        choice = CompletionChoice(
            index=self._index,
            text=text,
            logprobs=logprobs,
            finish_reason=finish_reason,
            stop_reason=self.stop_text if finish_reason else None,
        )
        header = self.header
        chunk = Completion(
            id=header.id,
            created=header.created,
            model=header.model,
            choices=[choice],
            system_fingerprint=SYSTEM_FINGERPRINT,
        )
        return chunk, self._take_tokens()

    def _content(self, text: str) -> Emitted[Completion]:
        return self._chunk(text)

    def _final(self, reason: FinishReason) -> Emitted[Completion]:
        return self._chunk("", finish_reason=reason)
