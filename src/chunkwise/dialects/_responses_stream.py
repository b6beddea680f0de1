"""Chat chunks as Responses stream events, the events back as chunks, and the events reassembled.

The grammar :class:`ChatToResponses` writes, with ``sequence_number`` counting up from 0::

    response.created, response.in_progress
    per output item, in the order its first fragment arrives (a reasoning item, one message, one
    function_call per tool call), each item's events in this order, items free to interleave:
        response.output_item.added
        [response.content_part.added]                       (reasoning text and message text)
        response.reasoning_text.delta | response.output_text.delta | response.function_call_arguments.delta ...
        [response.*.done, response.content_part.done]
        response.output_item.done
    response.completed | response.incomplete                (after the last item is done)
    or, on an error: error, response.failed

Items stay open until the chat stream finishes, since a chat stream may come back to its text after a tool
call; every item of a turn cut by the token limit ends ``incomplete``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ..types import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    ErrorDetail,
)
from ._responses_final import (
    call_id_for,
    chat_finish_reason,
    ending,
    function_item_id,
    id_base,
    message_item_id,
    reasoning_item_id,
    usage_to_chat,
    usage_to_responses,
)
from ._responses_types import (
    ItemStatus,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseError,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionCall,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseObject,
    ResponseOutputItem,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningText,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
    ResponseRefusalDeltaEvent,
    ResponseRefusalDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    _PartEvent,
)
from ._writer import ChatStreamWriter

__all__ = ["ChatToResponses", "ResponseAccumulator", "ResponsesToChat"]

_PartEventT = TypeVar("_PartEventT", bound=_PartEvent)

_TEXT, _REFUSAL, _REASONING, _CALL = 0, 1, 2, 3

_OTHER_DELTA_EVENTS: dict[int, type[ResponseReasoningTextDeltaEvent | ResponseRefusalDeltaEvent]] = {
    _REASONING: ResponseReasoningTextDeltaEvent,
    _REFUSAL: ResponseRefusalDeltaEvent,
}

#: chunkwise sends no logprobs in text deltas; one shared empty list spares an allocation per event.
_NO_LOGPROBS: list[Any] = []


class _Part:
    """One content part of an item (message text, a refusal, reasoning text) or a call's arguments."""

    __slots__ = ("content_index", "item", "kind", "pieces")

    def __init__(self, item: _Item, kind: int, content_index: int) -> None:
        self.item = item
        self.kind = kind
        self.content_index = content_index
        self.pieces: list[str] = []


class _Item:
    __slots__ = ("call_id", "item_id", "kind", "name", "output_index", "parts")

    def __init__(self, kind: int, item_id: str, output_index: int) -> None:
        self.kind = kind
        self.item_id = item_id
        self.output_index = output_index
        self.parts: list[_Part] = []
        self.call_id = ""
        self.name = ""

    def final(self, status: ItemStatus) -> ResponseOutputItem:
        if self.kind == _REASONING:
            texts = [ResponseReasoningText(text="".join(part.pieces)) for part in self.parts]
            return ResponseReasoningItem(id=self.item_id, content=texts, status=status)
        if self.kind == _CALL:
            arguments = "".join(self.parts[0].pieces)
            return ResponseFunctionCall(
                id=self.item_id, call_id=self.call_id, name=self.name, arguments=arguments, status=status
            )
        # Text before refusal, whatever order they came in, as the final translation writes them.
        content: list[ResponseOutputText | ResponseOutputRefusal] = [
            ResponseOutputText(text="".join(part.pieces)) for part in self.parts if part.kind == _TEXT
        ]
        content.extend(
            ResponseOutputRefusal(refusal="".join(part.pieces)) for part in self.parts if part.kind == _REFUSAL
        )
        return ResponseOutputMessage(id=self.item_id, status=status, content=content)


class ChatToResponses(ChatStreamWriter[ResponseStreamEvent]):
    """Chat chunks in, Responses events out, for one response.

    ``template`` is the ``in_progress`` response (:func:`new_response`): its id names the items, and its
    echoed request fields appear in every lifecycle event. Call :meth:`start` as soon as the request is
    accepted (it is also called by the first :meth:`feed`), :meth:`feed` for every chunk, then :meth:`finish`
    at the end of the chat stream, or :meth:`fail` when it broke. Only choice 0 is read.
    """

    __slots__ = ("_base", "_calls", "_items", "_message", "_parts", "_reasoning", "_sequence", "_template", "response")

    def __init__(self, template: ResponseObject) -> None:
        super().__init__()
        self._template = template
        self._base = id_base(template.id)
        self._sequence = 0
        self._items: list[_Item] = []
        self._message: _Item | None = None
        self._reasoning: _Item | None = None
        self._calls: dict[int, _Item] = {}
        # The open part of each kind (_TEXT, _REFUSAL, _REASONING), found without a search per delta.
        self._parts: list[_Part | None] = [None, None, None]
        #: The response as the last lifecycle event showed it: the final one after :meth:`finish`.
        self.response = template

    def _next(self) -> int:
        number = self._sequence
        self._sequence = number + 1
        return number

    def fail(self, message: str, *, code: str = "server_error") -> list[ResponseStreamEvent]:
        """End the stream with an ``error`` event and ``response.failed``, the chat stream having broken."""
        events = self._failing()
        if events is None:
            return []
        events.append(ResponseErrorEvent(code=code, message=message, sequence_number=self._next()))
        self.response = msgspec.structs.replace(
            self._template,
            status="failed",
            error=ResponseError(code=code, message=message),
            output=[item.final("incomplete") for item in self._items],
            usage=usage_to_responses(self._usage) if self._usage is not None else None,
        )
        events.append(ResponseFailedEvent(response=self.response, sequence_number=self._next()))
        return events

    def _opening(self) -> list[ResponseStreamEvent]:
        return [
            ResponseCreatedEvent(response=self._template, sequence_number=self._next()),
            ResponseInProgressEvent(response=self._template, sequence_number=self._next()),
        ]

    def _reasoning_text(self, events: list[ResponseStreamEvent], text: str) -> None:
        self._text(events, _REASONING, text)

    def _content(self, events: list[ResponseStreamEvent], text: str) -> None:
        self._text(events, _TEXT, text)

    def _refusal(self, events: list[ResponseStreamEvent], text: str) -> None:
        self._text(events, _REFUSAL, text)

    # --- items ---------------------------------------------------------------------------------------

    def _open(self, events: list[ResponseStreamEvent], kind: int, item_id: str) -> _Item:
        item = _Item(kind, item_id, len(self._items))
        self._items.append(item)
        added: ResponseOutputItem
        if kind == _REASONING:
            added = ResponseReasoningItem(id=item_id, content=[], status="in_progress")
        elif kind == _CALL:
            return item  # the caller writes the added event once it knows the call's name
        else:
            added = ResponseOutputMessage(id=item_id, status="in_progress")
        events.append(
            ResponseOutputItemAddedEvent(output_index=item.output_index, item=added, sequence_number=self._next())
        )
        return item

    def _text(self, events: list[ResponseStreamEvent], kind: int, text: str) -> None:
        part = self._parts[kind]
        if part is None:
            part = self._parts[kind] = self._open_part(events, kind)
        part.pieces.append(text)
        number = self._sequence
        self._sequence = number + 1
        item = part.item
        if kind == _TEXT:
            events.append(
                ResponseTextDeltaEvent(
                    item_id=item.item_id,
                    output_index=item.output_index,
                    content_index=part.content_index,
                    delta=text,
                    logprobs=_NO_LOGPROBS,
                    sequence_number=number,
                )
            )
        else:
            events.append(
                _OTHER_DELTA_EVENTS[kind](
                    item_id=item.item_id,
                    output_index=item.output_index,
                    content_index=part.content_index,
                    delta=text,
                    sequence_number=number,
                )
            )

    def _open_part(self, events: list[ResponseStreamEvent], kind: int) -> _Part:
        if kind == _REASONING:
            item = self._reasoning
            if item is None:
                item = self._reasoning = self._open(events, _REASONING, reasoning_item_id(self._base))
        else:
            item = self._message
            if item is None:
                item = self._message = self._open(events, _TEXT, message_item_id(self._base))
        part = _Part(item, kind, len(item.parts))
        item.parts.append(part)
        events.append(self._addressed(ResponseContentPartAddedEvent(part=_empty_part(kind)), part))
        return part

    def _call(self, events: list[ResponseStreamEvent], fragment: ChoiceDeltaToolCall) -> None:
        index = fragment.index
        function = fragment.function
        item = self._calls.get(index)
        if item is None:
            # Named by the call's place among this turn's calls, as the final translation names them.
            ordinal = len(self._calls)
            item = self._calls[index] = self._open(events, _CALL, function_item_id(self._base, ordinal))
            item.call_id = call_id_for(self._base, ordinal, fragment.id or "")
            item.name = (function.name or "") if function is not None else ""
            item.parts.append(_Part(item, _CALL, 0))
            added = ResponseFunctionCall(
                id=item.item_id, call_id=item.call_id, name=item.name, arguments="", status="in_progress"
            )
            events.append(
                ResponseOutputItemAddedEvent(output_index=item.output_index, item=added, sequence_number=self._next())
            )
        elif function is not None and function.name and not item.name:
            item.name = function.name
        if function is not None and function.arguments:
            item.parts[0].pieces.append(function.arguments)
            events.append(
                ResponseFunctionCallArgumentsDeltaEvent(
                    item_id=item.item_id,
                    output_index=item.output_index,
                    delta=function.arguments,
                    sequence_number=self._next(),
                )
            )

    def _close(self, events: list[ResponseStreamEvent]) -> None:
        item_status = ending(self._finish_reason)[2]
        for item in self._items:
            if item.kind == _CALL:
                events.append(
                    ResponseFunctionCallArgumentsDoneEvent(
                        item_id=item.item_id,
                        output_index=item.output_index,
                        arguments="".join(item.parts[0].pieces),
                        sequence_number=self._next(),
                    )
                )
            else:
                for part in item.parts:
                    self._close_part(events, part)
            events.append(
                ResponseOutputItemDoneEvent(
                    output_index=item.output_index, item=item.final(item_status), sequence_number=self._next()
                )
            )

    def _close_part(self, events: list[ResponseStreamEvent], part: _Part) -> None:
        text = "".join(part.pieces)
        text_done: ResponseTextDoneEvent | ResponseReasoningTextDoneEvent | ResponseRefusalDoneEvent
        done: ResponseOutputText | ResponseOutputRefusal | ResponseReasoningText
        if part.kind == _TEXT:
            text_done, done = ResponseTextDoneEvent(text=text), ResponseOutputText(text=text)
        elif part.kind == _REASONING:
            text_done, done = ResponseReasoningTextDoneEvent(text=text), ResponseReasoningText(text=text)
        else:
            text_done, done = ResponseRefusalDoneEvent(refusal=text), ResponseOutputRefusal(refusal=text)
        events.append(self._addressed(text_done, part))
        events.append(self._addressed(ResponseContentPartDoneEvent(part=done), part))

    def _addressed(self, event: _PartEventT, part: _Part) -> _PartEventT:
        """``event`` about ``part`` (its item, output and content index), numbered next in the stream."""
        event.item_id = part.item.item_id
        event.output_index = part.item.output_index
        event.content_index = part.content_index
        event.sequence_number = self._next()
        return event

    def _terminate(self, events: list[ResponseStreamEvent]) -> None:
        status, incomplete, item_status = ending(self._finish_reason)
        self.response = msgspec.structs.replace(
            self._template,
            status=status,
            incomplete_details=incomplete,
            output=[item.final(item_status) for item in self._items],
            usage=usage_to_responses(self._usage) if self._usage is not None else None,
        )
        if status == "completed":
            events.append(ResponseCompletedEvent(response=self.response, sequence_number=self._next()))
        else:
            events.append(ResponseIncompleteEvent(response=self.response, sequence_number=self._next()))


def _empty_part(kind: int) -> ResponseOutputText | ResponseOutputRefusal | ResponseReasoningText:
    if kind == _TEXT:
        return ResponseOutputText()
    if kind == _REASONING:
        return ResponseReasoningText()
    return ResponseOutputRefusal()


# --- back to chat -----------------------------------------------------------------------------------


class ResponsesToChat:
    """Responses events in, chat chunks out: what a chat client would have received for the same answer.

    Each function_call item becomes a tool call with the next ``index``. Text and arguments come from the
    deltas; a server that sends a ``.done`` event without deltas before it gets the whole text from the
    ``.done``. The terminal event gives the finish chunk and, when the response has usage, a usage chunk
    (``choices: []``). An ``error`` event or ``response.failed`` gives one
    :class:`~chunkwise.types.ErrorDetail` and ends the translation.
    """

    __slots__ = ("_created", "_ended", "_id", "_model", "_streamed", "_tool_indices")

    def __init__(self) -> None:
        self._id = ""
        self._created = 0
        self._model = ""
        self._tool_indices: dict[int, int] = {}
        # (output_index, content_index) of every part that had a delta; a function call's content_index is -1.
        self._streamed: set[tuple[int, int]] = set()
        self._ended = False

    def _chunk(self, delta: ChoiceDelta, finish_reason: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
        )

    def feed(self, event: ResponseStreamEvent) -> list[ChatCompletionChunk | ErrorDetail]:
        if self._ended:
            return []
        if isinstance(event, ResponseTextDeltaEvent):
            self._streamed.add((event.output_index, event.content_index))
            return [self._chunk(ChoiceDelta(content=event.delta))]
        if isinstance(event, ResponseReasoningTextDeltaEvent | ResponseRefusalDeltaEvent):
            self._streamed.add((event.output_index, event.content_index))
            if isinstance(event, ResponseRefusalDeltaEvent):
                return [self._chunk(ChoiceDelta(refusal=event.delta))]
            return [self._chunk(ChoiceDelta(reasoning_content=event.delta))]
        if isinstance(event, ResponseFunctionCallArgumentsDeltaEvent):
            self._streamed.add((event.output_index, -1))
            return self._arguments(event.output_index, event.delta)
        if isinstance(event, ResponseReasoningSummaryTextDeltaEvent):
            return [self._chunk(ChoiceDelta(reasoning_content=event.delta))]
        if isinstance(event, ResponseTextDoneEvent | ResponseReasoningTextDoneEvent | ResponseRefusalDoneEvent):
            if (event.output_index, event.content_index) in self._streamed:
                return []
            if isinstance(event, ResponseTextDoneEvent):
                return [self._chunk(ChoiceDelta(content=event.text))] if event.text else []
            if isinstance(event, ResponseRefusalDoneEvent):
                return [self._chunk(ChoiceDelta(refusal=event.refusal))] if event.refusal else []
            return [self._chunk(ChoiceDelta(reasoning_content=event.text))] if event.text else []
        if isinstance(event, ResponseFunctionCallArgumentsDoneEvent):
            if (event.output_index, -1) in self._streamed:
                return []
            return self._arguments(event.output_index, event.arguments)
        if isinstance(event, ResponseOutputItemAddedEvent):
            item = event.item
            if not isinstance(item, ResponseFunctionCall):
                return []
            index = self._tool_indices[event.output_index] = len(self._tool_indices)
            if item.arguments:
                self._streamed.add((event.output_index, -1))
            function = ChoiceDeltaToolCallFunction(name=item.name, arguments=item.arguments)
            fragment = ChoiceDeltaToolCall(index=index, id=item.call_id, type="function", function=function)
            return [self._chunk(ChoiceDelta(tool_calls=[fragment]))]
        if isinstance(event, ResponseCreatedEvent):
            response = event.response
            self._id, self._created, self._model = response.id, int(response.created_at), response.model
            return [self._chunk(ChoiceDelta(role="assistant"))]
        if isinstance(event, ResponseCompletedEvent | ResponseIncompleteEvent):
            self._ended = True
            response = event.response
            chunks: list[ChatCompletionChunk | ErrorDetail] = [
                self._chunk(ChoiceDelta(), chat_finish_reason(response, bool(self._tool_indices)))
            ]
            if response.usage is not None:
                usage = usage_to_chat(response.usage)
                chunks.append(
                    ChatCompletionChunk(id=self._id, created=self._created, model=self._model, choices=[], usage=usage)
                )
            return chunks
        if isinstance(event, ResponseErrorEvent):
            self._ended = True
            return [ErrorDetail(message=event.message, type="server_error", param=event.param, code=event.code)]
        if isinstance(event, ResponseFailedEvent):
            self._ended = True
            error = event.response.error or ResponseError(message="the response failed")
            return [ErrorDetail(message=error.message, type="server_error", code=error.code)]
        return []

    def _arguments(self, output_index: int, text: str) -> list[ChatCompletionChunk | ErrorDetail]:
        index = self._tool_indices.get(output_index)
        if index is None or not text:
            return []
        fragment = ChoiceDeltaToolCall(index=index, function=ChoiceDeltaToolCallFunction(arguments=text))
        return [self._chunk(ChoiceDelta(tool_calls=[fragment]))]


# --- reassembly -------------------------------------------------------------------------------------


class _ItemState:
    __slots__ = ("item", "parts", "pieces", "status")

    def __init__(self, item: ResponseOutputItem) -> None:
        self.item = item
        self.status: ItemStatus | None = None
        # Text per content index (message and reasoning items), or the arguments (function calls).
        self.parts: dict[int, tuple[str, list[str]]] = {}
        self.pieces: list[str] = []


class ResponseAccumulator:
    """Feed events with :meth:`add`; :meth:`result` is the ``response`` they stand for.

    The output is rebuilt from the item events and their deltas; the lifecycle events give the rest
    (status, usage, ``incomplete_details``, ``error``). :meth:`result` is a snapshot and may be called at
    any point.
    """

    __slots__ = ("_items", "_response")

    def __init__(self) -> None:
        self._response = ResponseObject()
        self._items: dict[int, _ItemState] = {}

    @property
    def finished(self) -> bool:
        return self._response.status in ("completed", "incomplete", "failed")

    def add(self, event: ResponseStreamEvent) -> None:
        if isinstance(event, ResponseTextDeltaEvent | ResponseReasoningTextDeltaEvent | ResponseRefusalDeltaEvent):
            state = self._items.get(event.output_index)
            if state is not None:
                kind = "output_text" if isinstance(event, ResponseTextDeltaEvent) else "other"
                state.parts.setdefault(event.content_index, (kind, []))[1].append(event.delta)
        elif isinstance(event, ResponseFunctionCallArgumentsDeltaEvent):
            state = self._items.get(event.output_index)
            if state is not None:
                state.pieces.append(event.delta)
        elif isinstance(event, ResponseContentPartAddedEvent):
            state = self._items.get(event.output_index)
            if state is not None:
                state.parts[event.content_index] = (_part_kind(event.part), [])
        elif isinstance(event, ResponseOutputItemAddedEvent):
            self._items[event.output_index] = _ItemState(event.item)
        elif isinstance(event, ResponseOutputItemDoneEvent):
            state = self._items.get(event.output_index)
            if state is None:
                self._items[event.output_index] = state = _ItemState(event.item)
            elif not state.pieces and not any(pieces for _, pieces in state.parts.values()):
                state.item = event.item  # nothing streamed: the done item is the whole of it
                state.parts.clear()
            state.status = event.item.status
        elif isinstance(
            event,
            ResponseCreatedEvent
            | ResponseInProgressEvent
            | ResponseCompletedEvent
            | ResponseIncompleteEvent
            | ResponseFailedEvent,
        ):
            self._response = event.response
        elif isinstance(event, ResponseErrorEvent):
            self._response = msgspec.structs.replace(
                self._response,
                status="failed",
                error=ResponseError(code=event.code or "server_error", message=event.message),
            )

    def result(self) -> ResponseObject:
        output = [_rebuilt(self._items[index]) for index in sorted(self._items)]
        return msgspec.structs.replace(self._response, output=output)


def _part_kind(part: ResponseOutputText | ResponseOutputRefusal | ResponseReasoningText) -> str:
    if isinstance(part, ResponseOutputText):
        return "output_text"
    return "refusal" if isinstance(part, ResponseOutputRefusal) else "reasoning_text"


def _rebuilt(state: _ItemState) -> ResponseOutputItem:
    item = state.item
    status = state.status if state.status is not None else item.status
    if isinstance(item, ResponseFunctionCall):
        arguments = "".join(state.pieces) if state.pieces else item.arguments
        return msgspec.structs.replace(item, arguments=arguments, status=status)
    if not state.parts:
        return msgspec.structs.replace(item, status=status)
    texts = {index: (kind, "".join(pieces)) for index, (kind, pieces) in sorted(state.parts.items())}
    if isinstance(item, ResponseReasoningItem):
        return msgspec.structs.replace(
            item, content=[ResponseReasoningText(text=text) for _, text in texts.values()], status=status
        )
    content: list[ResponseOutputText | ResponseOutputRefusal] = [
        ResponseOutputText(text=text) for kind, text in texts.values() if kind == "output_text"
    ]
    content.extend(ResponseOutputRefusal(refusal=text) for kind, text in texts.values() if kind == "refusal")
    return msgspec.structs.replace(item, content=content, status=status or "completed")
