"""Reassembly: a stream of chunks into the one complete response it stands for.

Nothing is dropped. Choices are kept apart by ``index`` however they interleave (n > 1); content,
refusal and reasoning (spelled ``reasoning_content`` or ``reasoning``) concatenate; tool calls merge by
their ``index``, taking ``id``, ``type`` and ``function.name`` whenever they first arrive; logprobs
extend; the last ``finish_reason``/``stop_reason`` of a choice wins; and the last non-null ``usage``
wins, so both a final usage chunk and vLLM's continuous usage give the right totals.

Empty deltas are harmless and objects that are not chat chunks (Azure's ``object: ""`` filter
results) are ignored. Text pieces are kept in lists and joined once, so a long stream costs O(n).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionUsage,
    FunctionCall,
    StopReason,
    TokenLogprob,
    ToolCall,
)

__all__ = [
    "ChatCompletionAccumulator",
    "CompletionAccumulator",
    "accumulate",
    "accumulate_completions",
]

_PieceT = TypeVar("_PieceT", ChatCompletionChunk, Completion)
_ResultT = TypeVar("_ResultT", ChatCompletion, Completion)

_CHUNK_OBJECT = "chat.completion.chunk"
_TEXT_COMPLETION_OBJECT = "text_completion"


class _ToolCallState:
    __slots__ = ("arguments", "id", "name", "type")

    def __init__(self) -> None:
        self.id = ""
        self.type = ""
        self.name = ""
        self.arguments: list[str] = []

    def result(self) -> ToolCall:
        return ToolCall(
            id=self.id,
            type=self.type or "function",
            function=FunctionCall(name=self.name, arguments="".join(self.arguments)),
        )


class _ChoiceState:
    __slots__ = (
        "content",
        "finish_reason",
        "function_call",
        "logprobs_content",
        "logprobs_refusal",
        "reasoning",
        "reasoning_spellings",
        "refusal",
        "role",
        "stop_reason",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        # Which field names the reasoning arrived under, so the result uses the same ones.
        self.reasoning_spellings: set[str] = set()
        self.tool_calls: dict[int, _ToolCallState] = {}
        self.function_call: _ToolCallState | None = None
        self.logprobs_content: list[TokenLogprob] | None = None
        self.logprobs_refusal: list[TokenLogprob] | None = None
        self.finish_reason: str | None = None
        self.stop_reason: StopReason | None = None

    def result(self, index: int) -> Choice:
        reasoning = "".join(self.reasoning) if self.reasoning else None
        message = ChatCompletionMessage(
            role=self.role,
            content="".join(self.content) if self.content else None,
            refusal="".join(self.refusal) if self.refusal else None,
            reasoning_content=reasoning if "reasoning_content" in self.reasoning_spellings else None,
            reasoning=reasoning if "reasoning" in self.reasoning_spellings else None,
            tool_calls=[self.tool_calls[i].result() for i in sorted(self.tool_calls)] if self.tool_calls else None,
            function_call=self.function_call.result().function if self.function_call else None,
        )
        logprobs = None
        if self.logprobs_content is not None or self.logprobs_refusal is not None:
            logprobs = ChoiceLogprobs(content=self.logprobs_content, refusal=self.logprobs_refusal)
        return Choice(
            index=index,
            message=message,
            finish_reason=self.finish_reason,
            logprobs=logprobs,
            stop_reason=self.stop_reason,
        )


class _Accumulator(ABC, Generic[_PieceT, _ResultT]):
    """Reassembles one kind of stream. Keeps what every piece repeats about the response: ``id``, ``created``
    and ``model`` from the first piece that has them, ``system_fingerprint`` and ``usage`` from the latest."""

    __slots__ = ("created", "id", "model", "system_fingerprint", "usage")

    def __init__(self) -> None:
        self.id = ""
        self.created = 0
        self.model = ""
        self.system_fingerprint: str | None = None
        self.usage: CompletionUsage | None = None

    def _read_header(self, piece: ChatCompletionChunk | Completion) -> None:
        if not self.id and piece.id:
            self.id = piece.id
        if not self.created and piece.created:
            self.created = piece.created
        if not self.model and piece.model:
            self.model = piece.model
        if piece.system_fingerprint is not None:
            self.system_fingerprint = piece.system_fingerprint
        if piece.usage is not None:
            self.usage = piece.usage

    def _whole(self, result_type: type[_ResultT], choices: list[Any], **fields: Any) -> _ResultT:
        return result_type(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=choices,
            usage=self.usage,
            system_fingerprint=self.system_fingerprint,
            **fields,
        )

    @abstractmethod
    def add(self, piece: _PieceT) -> None: ...

    @abstractmethod
    def result(self) -> _ResultT: ...


def _reassemble(accumulator: _Accumulator[_PieceT, _ResultT], pieces: Iterable[_PieceT]) -> _ResultT:
    for piece in pieces:
        accumulator.add(piece)
    return accumulator.result()


class ChatCompletionAccumulator(_Accumulator[ChatCompletionChunk, ChatCompletion]):
    """Feed chunks with :meth:`add`; read the reassembled :class:`ChatCompletion` with :meth:`result`.

    ``result`` may be called at any point and as often as wanted: it is a snapshot.
    """

    __slots__ = ("_choices", "service_tier")

    def __init__(self) -> None:
        super().__init__()
        self._choices: dict[int, _ChoiceState] = {}
        self.service_tier: str | None = None

    @property
    def finished(self) -> bool:
        """Every choice seen so far has a ``finish_reason`` (and at least one choice was seen)."""
        return bool(self._choices) and all(state.finish_reason is not None for state in self._choices.values())

    def add(self, chunk: ChatCompletionChunk) -> None:
        if chunk.object != _CHUNK_OBJECT:
            return
        self._read_header(chunk)
        if chunk.service_tier is not None:
            self.service_tier = chunk.service_tier
        choices = self._choices
        for choice in chunk.choices:
            state = choices.get(choice.index)
            if state is None:
                state = choices[choice.index] = _ChoiceState()
            delta = choice.delta
            if delta.content is not None:
                state.content.append(delta.content)
            if delta.role:
                state.role = delta.role
            if delta.reasoning_content is not None:
                # vLLM sends the same text under both names; take it once.
                state.reasoning.append(delta.reasoning_content)
                state.reasoning_spellings.add("reasoning_content")
                if delta.reasoning is not None:
                    state.reasoning_spellings.add("reasoning")
            elif delta.reasoning is not None:
                state.reasoning.append(delta.reasoning)
                state.reasoning_spellings.add("reasoning")
            if delta.refusal is not None:
                state.refusal.append(delta.refusal)
            if delta.tool_calls:
                for fragment in delta.tool_calls:
                    call = state.tool_calls.get(fragment.index)
                    if call is None:
                        call = state.tool_calls[fragment.index] = _ToolCallState()
                    # TGI sends `id: ""`; an empty value never replaces a real one.
                    if fragment.id and not call.id:
                        call.id = fragment.id
                    if fragment.type and not call.type:
                        call.type = fragment.type
                    function = fragment.function
                    if function is not None:
                        if function.name and not call.name:
                            call.name = function.name
                        if function.arguments:
                            call.arguments.append(function.arguments)
            if delta.function_call is not None:
                legacy = state.function_call
                if legacy is None:
                    legacy = state.function_call = _ToolCallState()
                if delta.function_call.name and not legacy.name:
                    legacy.name = delta.function_call.name
                if delta.function_call.arguments:
                    legacy.arguments.append(delta.function_call.arguments)
            logprobs = choice.logprobs
            if logprobs is not None:
                if logprobs.content is not None:
                    if state.logprobs_content is None:
                        state.logprobs_content = []
                    state.logprobs_content.extend(logprobs.content)
                if logprobs.refusal is not None:
                    if state.logprobs_refusal is None:
                        state.logprobs_refusal = []
                    state.logprobs_refusal.extend(logprobs.refusal)
            if choice.finish_reason is not None:
                state.finish_reason = choice.finish_reason
            if choice.stop_reason is not None:
                state.stop_reason = choice.stop_reason

    def result(self) -> ChatCompletion:
        choices = [self._choices[index].result(index) for index in sorted(self._choices)]
        return self._whole(ChatCompletion, choices, service_tier=self.service_tier)


def accumulate(chunks: Iterable[ChatCompletionChunk]) -> ChatCompletion:
    """Reassemble a whole chat stream."""
    return _reassemble(ChatCompletionAccumulator(), chunks)


class _TextChoiceState:
    __slots__ = ("finish_reason", "logprobs", "stop_reason", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.logprobs: CompletionLogprobs | None = None
        self.finish_reason: str | None = None
        self.stop_reason: StopReason | None = None


class CompletionAccumulator(_Accumulator[Completion, Completion]):
    """The same reassembly for the legacy ``/v1/completions`` stream of :class:`Completion` pieces."""

    __slots__ = ("_choices",)

    def __init__(self) -> None:
        super().__init__()
        self._choices: dict[int, _TextChoiceState] = {}

    def add(self, piece: Completion) -> None:
        if piece.object != _TEXT_COMPLETION_OBJECT:
            return
        self._read_header(piece)
        for choice in piece.choices:
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = _TextChoiceState()
            if choice.text:
                state.text.append(choice.text)
            if choice.logprobs is not None:
                if state.logprobs is None:
                    state.logprobs = CompletionLogprobs()
                state.logprobs.tokens.extend(choice.logprobs.tokens)
                state.logprobs.token_logprobs.extend(choice.logprobs.token_logprobs)
                state.logprobs.top_logprobs.extend(choice.logprobs.top_logprobs)
                state.logprobs.text_offset.extend(choice.logprobs.text_offset)
            if choice.finish_reason is not None:
                state.finish_reason = choice.finish_reason
            if choice.stop_reason is not None:
                state.stop_reason = choice.stop_reason

    def result(self) -> Completion:
        choices = [
            CompletionChoice(
                index=index,
                text="".join(state.text),
                logprobs=state.logprobs,
                finish_reason=state.finish_reason,
                stop_reason=state.stop_reason,
            )
            for index, state in sorted(self._choices.items())
        ]
        return self._whole(Completion, choices)


def accumulate_completions(pieces: Iterable[Completion]) -> Completion:
    """Reassemble a whole legacy completions stream."""
    return _reassemble(CompletionAccumulator(), pieces)
