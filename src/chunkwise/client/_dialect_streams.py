"""The Responses API and Anthropic Messages on the client: their streams of typed events and their final objects.

A dialect stream is read by the same loops, with the same deadlines, as a chat stream (:mod:`._streaming`); its
core decodes the dialect's events (:mod:`chunkwise.dialects`), reassembles them as they arrive, and turns the
dialect's ways of failing into the one error tree: an ``error`` event (both dialects) or ``response.failed``
raises :class:`~chunkwise.StreamError`, a stream that ends before its terminal event (``response.completed`` or
``response.incomplete``; ``message_stop``) raises :class:`~chunkwise.IncompleteStreamError`, whose ``partial``
is the chat view of what arrived. Anthropic's ``ping`` events are delivered but, like SSE keep-alive comments,
do not count as progress for the idle deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import httpx
import msgspec

from .._errors import IncompleteStreamError, StreamError
from ..accumulate import accumulate
from ..dialects import (
    ContentBlockDeltaEvent,
    MessagesAccumulator,
    MessagesErrorEvent,
    MessagesResponse,
    MessagesStreamDecoder,
    MessagesStreamEvent,
    MessagesToChat,
    MessageStopEvent,
    PingEvent,
    ResponseAccumulator,
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseObject,
    ResponsesStreamDecoder,
    ResponsesToChat,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    TextDelta,
)
from ..types import ChatCompletionChunk, ErrorDetail
from ._calls import read_whole_stream, whole_body_deadlines
from ._responses import decode_success, is_event_stream, request_id_of
from ._streaming import AsyncEventStream, EventCore, SyncEventStream
from ._timeouts import Deadlines

if TYPE_CHECKING:
    from ._calls import Call

__all__ = [
    "AsyncMessagesStream",
    "AsyncResponsesStream",
    "MessagesStream",
    "ResponsesStream",
    "read_message",
    "read_response",
]

E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)
E_contra = TypeVar("E_contra", contravariant=True)
FinalT = TypeVar("FinalT")
FinalT_co = TypeVar("FinalT_co", covariant=True)

_response_decoder = msgspec.json.Decoder(ResponseObject)
_message_decoder = msgspec.json.Decoder(MessagesResponse)


class _Decoder(Protocol[E_co]):
    def feed(self, data: bytes) -> Sequence[E_co]: ...

    def close(self) -> Sequence[E_co]: ...


class _Accumulator(Protocol[E_contra, FinalT_co]):
    def add(self, event: E_contra) -> None: ...

    def result(self) -> FinalT_co: ...


class _DialectCore(EventCore[E], Generic[E, FinalT]):
    """A dialect stream's core: events in, reassembled as they come; errors and cut streams raise."""

    __slots__ = ("_accumulator", "_decoder")
    #: The dialect's decoder and accumulator classes, named by each subclass in its ``class`` line.
    _new_decoder: ClassVar[Callable[[], _Decoder[Any]]]
    _new_accumulator: ClassVar[Callable[[], _Accumulator[Any, Any]]]

    def __init_subclass__(
        cls, *, decoder: Callable[[], _Decoder[Any]], accumulator: Callable[[], _Accumulator[Any, Any]], **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls._new_decoder, cls._new_accumulator = decoder, accumulator

    def __init__(self, deadlines: Deadlines, request_id: str | None) -> None:
        super().__init__(deadlines, request_id)
        self._decoder: _Decoder[E] = type(self)._new_decoder()
        self._accumulator: _Accumulator[E, FinalT] = type(self)._new_accumulator()

    def result(self) -> FinalT:
        """The final object as far as the events go (a snapshot)."""
        return self._accumulator.result()

    def _interpret(self, data: bytes | None) -> tuple[list[E], bool]:
        events = self._decoder.close() if data is None else self._decoder.feed(data)
        delivered: list[E] = []
        progressed = False
        for event in events:
            self._accumulator.add(event)
            error = self._error(event)
            if error is not None:
                self.open = False
                message = error.message or "the server reported an error in the stream"
                self.failure = StreamError(message, error=error, request_id=self.request_id)
                break
            delivered.append(event)
            progressed = progressed or not isinstance(event, PingEvent)
            if self._ends(event):
                self.open = False
                break
        self.received += delivered
        if data is None and self.open:
            self.open = False
            self.failure = self._incomplete(f"the stream ended after {len(self.received)} events without finishing")
        return delivered, progressed

    def _incomplete(self, message: str) -> IncompleteStreamError:
        to_chat = self._to_chat()
        chunks = [
            chunk for event in self.received for chunk in to_chat(event) if isinstance(chunk, ChatCompletionChunk)
        ]
        return IncompleteStreamError(
            message, partial=accumulate(chunks), chunks_received=len(self.received), request_id=self.request_id
        )

    # --- what each dialect says --------------------------------------------------------------------------

    def _error(self, event: E) -> ErrorDetail | None:
        raise NotImplementedError

    def _ends(self, event: E) -> bool:
        raise NotImplementedError

    def _to_chat(self) -> Callable[[E], list[ChatCompletionChunk | ErrorDetail]]:
        """A function from one event to the chat chunks it stands for."""
        raise NotImplementedError

    def text_of(self, event: E) -> str | None:
        """The output text an event carries (what ``iter_text`` yields)."""
        raise NotImplementedError


class ResponsesCore(
    _DialectCore[ResponseStreamEvent, ResponseObject], decoder=ResponsesStreamDecoder, accumulator=ResponseAccumulator
):
    __slots__ = ()

    def _error(self, event: ResponseStreamEvent) -> ErrorDetail | None:
        if isinstance(event, ResponseErrorEvent):
            return ErrorDetail(message=event.message, type="server_error", param=event.param, code=event.code)
        if isinstance(event, ResponseFailedEvent):  # a server that sends no `error` event before it
            error = event.response.error
            if error is None:
                return ErrorDetail(message="the response failed", type="server_error")
            return ErrorDetail(message=error.message, type="server_error", code=error.code)
        return None

    def _ends(self, event: ResponseStreamEvent) -> bool:
        return isinstance(event, ResponseCompletedEvent | ResponseIncompleteEvent)

    def text_of(self, event: ResponseStreamEvent) -> str | None:
        return event.delta or None if isinstance(event, ResponseTextDeltaEvent) else None

    def _to_chat(self) -> Callable[[ResponseStreamEvent], list[ChatCompletionChunk | ErrorDetail]]:
        return ResponsesToChat().feed


class MessagesCore(
    _DialectCore[MessagesStreamEvent, MessagesResponse], decoder=MessagesStreamDecoder, accumulator=MessagesAccumulator
):
    __slots__ = ()

    def _error(self, event: MessagesStreamEvent) -> ErrorDetail | None:
        if isinstance(event, MessagesErrorEvent):
            return ErrorDetail(message=event.error.message, type=event.error.type)
        return None

    def _ends(self, event: MessagesStreamEvent) -> bool:
        return isinstance(event, MessageStopEvent)

    def text_of(self, event: MessagesStreamEvent) -> str | None:
        if isinstance(event, ContentBlockDeltaEvent) and isinstance(event.delta, TextDelta):
            return event.delta.text or None
        return None

    def _to_chat(self) -> Callable[[MessagesStreamEvent], list[ChatCompletionChunk | ErrorDetail]]:
        return MessagesToChat().feed


def _read_final(
    response: httpx.Response, decoder: msgspec.json.Decoder[FinalT], core: _DialectCore[Any, FinalT]
) -> FinalT:
    """The final object of a read response; a server that streamed anyway gets its stream reassembled."""
    if not (response.is_success and is_event_stream(response)):
        return decode_success(response, decoder)
    read_whole_stream(core, response)
    return core.result()


def read_response(call: Call, response: httpx.Response) -> ResponseObject:
    """The ``response`` object of a read ``POST /responses`` answer (a failed one raises, as a 2xx error body)."""
    return _read_final(
        response, _response_decoder, ResponsesCore(whole_body_deadlines(), request_id_of(response.headers))
    )


def read_message(call: Call, response: httpx.Response) -> MessagesResponse:
    """The ``message`` of a read ``POST /messages`` answer."""
    return _read_final(
        response, _message_decoder, MessagesCore(whole_body_deadlines(), request_id_of(response.headers))
    )


# --- the streams ------------------------------------------------------------------------------------------


class _DialectEvents(Generic[E, FinalT]):
    """What a dialect stream adds to its event stream: the events so far, and the final object they make."""

    _core: _DialectCore[E, FinalT]

    @property
    def events(self) -> list[E]:
        """Every event received so far."""
        return self._core.received

    def snapshot(self) -> FinalT:
        """The ``response`` or ``message`` as far as the events so far go (also after the stream failed or was cut)."""
        return self._core.result()

    def _text_of(self, event: E) -> str | None:
        return self._core.text_of(event)


class _ResponsesEvents(_DialectEvents[ResponseStreamEvent, ResponseObject]):
    _core: ResponsesCore

    @classmethod
    def _new_core(cls, response: httpx.Response, call: Call) -> ResponsesCore:
        return ResponsesCore(call.deadlines, request_id_of(response.headers))


class _MessagesEvents(_DialectEvents[MessagesStreamEvent, MessagesResponse]):
    _core: MessagesCore

    @classmethod
    def _new_core(cls, response: httpx.Response, call: Call) -> MessagesCore:
        return MessagesCore(call.deadlines, request_id_of(response.headers))


class _SyncFinishing(Protocol[FinalT_co]):
    def _read_to_end(self) -> None: ...

    def snapshot(self) -> FinalT_co: ...


class _AsyncFinishing(Protocol[FinalT_co]):
    async def _read_to_end(self) -> None: ...

    def snapshot(self) -> FinalT_co: ...


class _SyncFinal:
    def _final(self: _SyncFinishing[FinalT]) -> FinalT:
        """The whole ``response`` or ``message``, reassembled from the events; reads the rest of the stream
        first if needed."""
        self._read_to_end()
        return self.snapshot()


class _AsyncFinal:
    async def _final(self: _AsyncFinishing[FinalT]) -> FinalT:
        await self._read_to_end()
        return self.snapshot()

    _final.__doc__ = _SyncFinal._final.__doc__


class ResponsesStream(_ResponsesEvents, SyncEventStream[ResponseStreamEvent, ResponsesCore], _SyncFinal):
    """A streamed ``POST /responses``: an iterator of typed Responses events.

    >>> with client.responses.create(model="m", input="Hi", stream=True) as stream:
    ...     for text in stream.iter_text():
    ...         print(text, end="")
    ...     response = stream.final_response()

    Iterate it once; closing, breaking out or an error releases the connection. The ``error`` event and
    ``response.failed`` raise :class:`~chunkwise.StreamError`, a stream cut short
    :class:`~chunkwise.IncompleteStreamError`. ``response.incomplete`` (the token limit) is a proper end.
    """

    final_response = _SyncFinal._final


class AsyncResponsesStream(_ResponsesEvents, AsyncEventStream[ResponseStreamEvent, ResponsesCore], _AsyncFinal):
    """The async twin of :class:`ResponsesStream`."""

    final_response = _AsyncFinal._final


class MessagesStream(_MessagesEvents, SyncEventStream[MessagesStreamEvent, MessagesCore], _SyncFinal):
    """A streamed ``POST /messages``: an iterator of typed Anthropic Messages events.

    >>> with client.messages.create(model="m", messages=[...], max_tokens=64, stream=True) as stream:
    ...     for text in stream.iter_text():
    ...         print(text, end="")
    ...     message = stream.final_message()

    Iterate it once; closing, breaking out or an error releases the connection. The ``error`` event raises
    :class:`~chunkwise.StreamError`, a stream that ends before ``message_stop``
    :class:`~chunkwise.IncompleteStreamError`.
    """

    final_message = _SyncFinal._final


class AsyncMessagesStream(_MessagesEvents, AsyncEventStream[MessagesStreamEvent, MessagesCore], _AsyncFinal):
    """The async twin of :class:`MessagesStream`."""

    final_message = _AsyncFinal._final
