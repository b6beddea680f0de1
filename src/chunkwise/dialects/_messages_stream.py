"""Chat chunks as Anthropic Messages stream events, the events back as chunks, and the events reassembled.

The grammar :class:`ChatToMessages` writes::

    message_start
    per content block, one block at a time, ``index`` counting up from 0:
        content_block_start, content_block_delta ..., content_block_stop
    message_delta (stop_reason, stop_sequence, usage), message_stop
    or, on an error: error (and nothing after it)

Anthropic's blocks never overlap, while a chat stream may interleave the argument fragments of several
tool calls, or come back to its text after a call. So one block is open at a time, and a fragment for
another block waits in that block until the open one may close: a text or thinking block at once (text
that comes back later opens a new block), a tool call once its arguments are a whole JSON value (so a call
is never split). Waiting blocks are written whole when their turn comes, at the latest at the end. In the
usual order (thinking, text, then one call after another) nothing waits.
"""

from __future__ import annotations

import msgspec

from ..types import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    CompletionUsage,
    ErrorDetail,
)
from ._messages_final import (
    finish_reason_for,
    stop_reason_for,
    tool_input,
    tool_use_id,
    usage_to_chat,
    usage_to_messages,
)
from ._messages_types import (
    ContentBlock,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessagesErrorDetail,
    MessagesErrorEvent,
    MessagesResponse,
    MessagesStreamEvent,
    MessageStartEvent,
    MessageStopEvent,
    MessagesUsage,
    RedactedThinkingBlock,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)
from ._writer import ChatStreamWriter

__all__ = ["ChatToMessages", "MessagesAccumulator", "MessagesToChat"]

_THINKING, _TEXT, _TOOL = 0, 1, 2
_WAITING, _OPEN, _CLOSED = 0, 1, 2

_decode_json = msgspec.json.decode


class _Block:
    __slots__ = ("call_id", "index", "kind", "name", "pieces", "state")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.state = _WAITING
        self.index = -1
        # Text that waits to be written; for a tool call, all of its arguments (to tell when they are whole).
        self.pieces: list[str] = []
        self.call_id = ""
        self.name = ""

    def closable(self) -> bool:
        if self.kind != _TOOL:
            return True
        try:
            _decode_json("".join(self.pieces))
        except msgspec.DecodeError:
            return False
        return True


class ChatToMessages(ChatStreamWriter[MessagesStreamEvent]):
    """Chat chunks in, Messages events out, for one message.

    Call :meth:`start` when the request is accepted (the first :meth:`feed` calls it too), :meth:`feed` for
    every chunk, then :meth:`finish` at the end of the chat stream, or :meth:`fail` when it broke. Only
    choice 0 is read. ``input_tokens``, when the caller knows the prompt's size, goes in ``message_start``.
    """

    __slots__ = (
        "_calls",
        "_input_tokens",
        "_live",
        "_message_id",
        "_model",
        "_next_index",
        "_text",
        "_thinking",
        "_waiting",
    )

    def __init__(self, *, message_id: str, model: str, input_tokens: int = 0) -> None:
        super().__init__()
        self._message_id = message_id
        self._model = model
        self._input_tokens = input_tokens
        self._live: _Block | None = None
        self._waiting: list[_Block] = []
        self._text: _Block | None = None
        self._thinking: _Block | None = None
        self._calls: dict[int, _Block] = {}
        self._next_index = 0

    def fail(self, message: str, *, error_type: str = "api_error") -> list[MessagesStreamEvent]:
        """End the stream with Anthropic's ``error`` event, the chat stream having broken."""
        events = self._failing()
        if events is None:
            return []
        events.append(MessagesErrorEvent(error=MessagesErrorDetail(type=error_type, message=message)))
        return events

    def _opening(self) -> list[MessagesStreamEvent]:
        message = MessagesResponse(
            id=self._message_id, model=self._model, usage=MessagesUsage(input_tokens=self._input_tokens)
        )
        return [MessageStartEvent(message=message)]

    # --- blocks ------------------------------------------------------------------------------------------

    def _reasoning_text(self, events: list[MessagesStreamEvent], text: str) -> None:
        block = self._thinking
        if block is None:
            block = self._thinking = _Block(_THINKING)
        self._deliver(events, block, text)

    def _content(self, events: list[MessagesStreamEvent], text: str) -> None:
        block = self._text
        if block is None:
            block = self._text = _Block(_TEXT)
        self._deliver(events, block, text)

    def _refusal(self, events: list[MessagesStreamEvent], text: str) -> None:
        """Anthropic has no refusal text (a refusal is only a stop reason); it is left out."""

    def _call(self, events: list[MessagesStreamEvent], fragment: ChoiceDeltaToolCall) -> None:
        function = fragment.function
        arguments = (function.arguments or "") if function is not None else ""
        block = self._calls.get(fragment.index)
        if block is None:
            block = self._calls[fragment.index] = _Block(_TOOL)
            # Named by the call's place among this turn's calls, as the final translation names them.
            block.call_id = tool_use_id(self._message_id, len(self._calls) - 1, fragment.id or "")
            block.name = (function.name or "") if function is not None else ""
            self._deliver(events, block, arguments)
            return
        if function is not None and function.name and not block.name:
            block.name = function.name
        if arguments and block.state != _CLOSED:
            # A call closes only once its arguments are whole JSON, so nothing more can belong to it after.
            self._deliver(events, block, arguments)

    def _deliver(self, events: list[MessagesStreamEvent], block: _Block, piece: str) -> None:
        if block.state == _OPEN:
            if block.kind == _TOOL:
                block.pieces.append(piece)
            if piece:
                events.append(ContentBlockDeltaEvent(index=block.index, delta=_delta(block.kind, piece)))
            return
        if piece:
            block.pieces.append(piece)
        waiting = self._waiting
        if block not in waiting:
            waiting.append(block)
        live = self._live
        if live is None or live.closable():
            if live is not None:
                self._close_block(events, live)
            self._open(events, waiting.pop(0))

    def _open(self, events: list[MessagesStreamEvent], block: _Block) -> None:
        self._live = block
        block.state = _OPEN
        block.index = self._next_index
        self._next_index += 1
        start: ContentBlock
        if block.kind == _TEXT:
            start = TextBlock()
        elif block.kind == _THINKING:
            start = ThinkingBlock()
        else:
            start = ToolUseBlock(id=block.call_id, name=block.name)
        events.append(ContentBlockStartEvent(index=block.index, content_block=start))
        if block.pieces:
            events.append(ContentBlockDeltaEvent(index=block.index, delta=_delta(block.kind, "".join(block.pieces))))
            if block.kind != _TOOL:
                block.pieces.clear()

    def _close_block(self, events: list[MessagesStreamEvent], block: _Block) -> None:
        block.state = _CLOSED
        events.append(ContentBlockStopEvent(index=block.index))
        if block is self._text:
            self._text = None
        elif block is self._thinking:
            self._thinking = None
        if block is self._live:
            self._live = None

    def _close(self, events: list[MessagesStreamEvent]) -> None:
        if self._live is not None:
            self._close_block(events, self._live)
        for block in self._waiting:
            self._open(events, block)
            self._close_block(events, block)
        self._waiting.clear()

    def _terminate(self, events: list[MessagesStreamEvent]) -> None:
        stop_reason, stop_sequence = stop_reason_for(self._finish_reason, self._stop_reason)
        if self._usage is None:
            delta_usage = MessageDeltaUsage(output_tokens=0)
        else:
            usage = usage_to_messages(self._usage)
            delta_usage = MessageDeltaUsage(
                output_tokens=usage.output_tokens,
                input_tokens=usage.input_tokens,
                cache_creation_input_tokens=usage.cache_creation_input_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens,
            )
        events.append(
            MessageDeltaEvent(
                delta=MessageDelta(stop_reason=stop_reason, stop_sequence=stop_sequence), usage=delta_usage
            )
        )
        events.append(MessageStopEvent())


def _delta(kind: int, piece: str) -> TextDelta | ThinkingDelta | InputJSONDelta:
    if kind == _TEXT:
        return TextDelta(text=piece)
    if kind == _THINKING:
        return ThinkingDelta(thinking=piece)
    return InputJSONDelta(partial_json=piece)


# --- back to chat -----------------------------------------------------------------------------------


class MessagesToChat:
    """Messages events in, chat chunks out: what a chat client would have received for the same answer.

    Each ``tool_use`` block becomes a tool call with the next ``index``. ``message_delta`` gives the finish
    chunk (a stop sequence in ``stop_reason``, as vLLM writes it) and ``message_stop`` the usage chunk. An
    ``error`` event gives one :class:`~chunkwise.types.ErrorDetail` and ends the translation. Anthropic's
    messages carry no creation time, so ``created`` is the caller's.
    """

    __slots__ = ("_created", "_ended", "_id", "_input", "_model", "_tool_indices", "_usage")

    def __init__(self, *, created: int = 0) -> None:
        self._id = ""
        self._created = created
        self._model = ""
        self._tool_indices: dict[int, int] = {}
        self._input: MessagesUsage = MessagesUsage()
        self._usage: CompletionUsage | None = None
        self._ended = False

    def _chunk(
        self, delta: ChoiceDelta, finish_reason: str | None = None, stop_reason: str | None = None
    ) -> ChatCompletionChunk:
        choice = ChunkChoice(index=0, delta=delta, finish_reason=finish_reason, stop_reason=stop_reason)
        return ChatCompletionChunk(id=self._id, created=self._created, model=self._model, choices=[choice])

    def feed(self, event: MessagesStreamEvent) -> list[ChatCompletionChunk | ErrorDetail]:
        if self._ended:
            return []
        if isinstance(event, ContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, TextDelta):
                return [self._chunk(ChoiceDelta(content=delta.text))]
            if isinstance(delta, ThinkingDelta):
                return [self._chunk(ChoiceDelta(reasoning_content=delta.thinking))]
            if isinstance(delta, InputJSONDelta):
                index = self._tool_indices.get(event.index)
                if index is None or not delta.partial_json:
                    return []
                function = ChoiceDeltaToolCallFunction(arguments=delta.partial_json)
                return [self._chunk(ChoiceDelta(tool_calls=[ChoiceDeltaToolCall(index=index, function=function)]))]
            return []
        if isinstance(event, ContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, ToolUseBlock):
                index = self._tool_indices[event.index] = len(self._tool_indices)
                # Streams start with `input: {}` and send the arguments as deltas; a whole input comes at once.
                arguments = msgspec.json.encode(block.input).decode() if block.input else ""
                function = ChoiceDeltaToolCallFunction(name=block.name, arguments=arguments)
                fragment = ChoiceDeltaToolCall(index=index, id=block.id, type="function", function=function)
                return [self._chunk(ChoiceDelta(tool_calls=[fragment]))]
            if isinstance(block, TextBlock) and block.text:
                return [self._chunk(ChoiceDelta(content=block.text))]
            if isinstance(block, ThinkingBlock) and block.thinking:
                return [self._chunk(ChoiceDelta(reasoning_content=block.thinking))]
            return []
        if isinstance(event, MessageStartEvent):
            message = event.message
            self._id, self._model, self._input = message.id, message.model, message.usage
            return [self._chunk(ChoiceDelta(role="assistant"))]
        if isinstance(event, MessageDeltaEvent):
            usage = event.usage
            start = self._input
            self._usage = usage_to_chat(
                usage.input_tokens if usage.input_tokens is not None else start.input_tokens,
                usage.output_tokens,
                usage.cache_read_input_tokens
                if usage.cache_read_input_tokens is not None
                else start.cache_read_input_tokens,
                usage.cache_creation_input_tokens
                if usage.cache_creation_input_tokens is not None
                else start.cache_creation_input_tokens,
            )
            stop = event.delta.stop_reason
            return [self._chunk(ChoiceDelta(), finish_reason_for(stop), event.delta.stop_sequence)]
        if isinstance(event, MessageStopEvent):
            self._ended = True
            if self._usage is None:
                return []
            return [
                ChatCompletionChunk(
                    id=self._id, created=self._created, model=self._model, choices=[], usage=self._usage
                )
            ]
        if isinstance(event, MessagesErrorEvent):
            self._ended = True
            return [ErrorDetail(message=event.error.message, type=event.error.type)]
        return []


# --- reassembly -------------------------------------------------------------------------------------


class MessagesAccumulator:
    """Feed events with :meth:`add`; :meth:`result` is the ``message`` they stand for (a snapshot)."""

    __slots__ = ("_blocks", "_message", "_pieces", "error")

    def __init__(self) -> None:
        self._message = MessagesResponse()
        self._blocks: dict[int, ContentBlock] = {}
        self._pieces: dict[int, list[str]] = {}
        #: The ``error`` event's detail, when the stream ended with one.
        self.error: MessagesErrorDetail | None = None

    @property
    def finished(self) -> bool:
        return self._message.stop_reason is not None or self.error is not None

    def add(self, event: MessagesStreamEvent) -> None:
        if isinstance(event, ContentBlockDeltaEvent):
            pieces = self._pieces.get(event.index)
            if pieces is not None:
                delta = event.delta
                if isinstance(delta, TextDelta):
                    pieces.append(delta.text)
                elif isinstance(delta, ThinkingDelta):
                    pieces.append(delta.thinking)
                elif isinstance(delta, InputJSONDelta):
                    pieces.append(delta.partial_json)
                else:
                    block = self._blocks[event.index]
                    if isinstance(block, ThinkingBlock):
                        block.signature += delta.signature
        elif isinstance(event, ContentBlockStartEvent):
            self._blocks[event.index] = msgspec.structs.replace(event.content_block)
            self._pieces[event.index] = []
        elif isinstance(event, MessageStartEvent):
            self._message = event.message
        elif isinstance(event, MessageDeltaEvent):
            usage = self._message.usage
            update = event.usage
            self._message = msgspec.structs.replace(
                self._message,
                stop_reason=event.delta.stop_reason,
                stop_sequence=event.delta.stop_sequence,
                usage=MessagesUsage(
                    input_tokens=update.input_tokens if update.input_tokens is not None else usage.input_tokens,
                    output_tokens=update.output_tokens,
                    cache_creation_input_tokens=update.cache_creation_input_tokens
                    if update.cache_creation_input_tokens is not None
                    else usage.cache_creation_input_tokens,
                    cache_read_input_tokens=update.cache_read_input_tokens
                    if update.cache_read_input_tokens is not None
                    else usage.cache_read_input_tokens,
                ),
            )
        elif isinstance(event, MessagesErrorEvent):
            self.error = event.error

    def result(self) -> MessagesResponse:
        content = [_finished_block(self._blocks[index], self._pieces[index]) for index in sorted(self._blocks)]
        return msgspec.structs.replace(self._message, content=content)


def _finished_block(block: ContentBlock, pieces: list[str]) -> ContentBlock:
    if isinstance(block, RedactedThinkingBlock) or not pieces:
        return block
    text = "".join(pieces)
    if isinstance(block, TextBlock):
        return msgspec.structs.replace(block, text=block.text + text)
    if isinstance(block, ThinkingBlock):
        return msgspec.structs.replace(block, thinking=block.thinking + text)
    return msgspec.structs.replace(block, input=tool_input(text))
