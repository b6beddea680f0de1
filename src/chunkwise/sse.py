"""Server-sent events: a sans-I/O decoder and encoder, and the chunk-stream reading on top.

Three layers, none of which does I/O:

* :class:`SSEDecoder` turns bytes, cut anywhere (inside a CRLF, inside a multi-byte UTF-8 character),
  into :class:`ServerSentEvent` objects, following the WHATWG event-stream parsing rules: CR, LF and
  CRLF line ends, multi-line ``data``, comments, ``event``/``id``/``retry`` fields and a leading BOM. It
  is bounded: an event larger than ``max_event_size`` raises :class:`~chunkwise.EventTooLargeError`
  instead of growing memory without limit.
* :class:`ChunkStreamDecoder` reads an OpenAI-style chunk stream: each event becomes a typed chunk, an
  :class:`ErrorFrame` (``data: {"error": ...}`` or ``event: error``), or :class:`Done` (``[DONE]``), and
  :meth:`ChunkStreamDecoder.close` ends with :class:`EndOfInput`, which tells whether the stream
  finished properly. The Atoma proxy never sends ``[DONE]``, so a stream also counts as finished when
  it ends after every choice has a ``finish_reason`` or after the usage chunk.
* ``encode_*`` functions write events; the server uses them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar, overload

import msgspec

from ._errors import ChunkwiseError, EventTooLargeError, SSEError
from .types import ChatCompletionChunk, ErrorDetail, ErrorResponse

__all__ = [
    "ChunkStreamDecoder",
    "DEFAULT_MAX_EVENT_SIZE",
    "DONE",
    "Done",
    "EndOfInput",
    "ErrorFrame",
    "InvalidChunkError",
    "SSEDecoder",
    "ServerSentEvent",
    "complete_events_end",
    "encode_comment",
    "encode_error",
    "encode_event",
    "encode_json",
    "event_blocks",
]

#: Far above any real chunk, far below what would hurt a server.
DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"


class ServerSentEvent:
    """One dispatched event. ``id`` is the last event id seen so far in the stream, as the spec says."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(self, data: str = "", event: str = "message", id: str = "", retry: int | None = None) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def json(self) -> Any:
        return msgspec.json.decode(self.data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return (self.data, self.event, self.id, self.retry) == (other.data, other.event, other.id, other.retry)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"data={self.data!r}"]
        if self.event != "message":
            parts.append(f"event={self.event!r}")
        if self.id:
            parts.append(f"id={self.id!r}")
        if self.retry is not None:
            parts.append(f"retry={self.retry}")
        return f"ServerSentEvent({', '.join(parts)})"


#: An event with its data still as UTF-8 bytes, so chunk decoding skips a str round trip:
#: ``(data, event type or None, last event id, retry)``, or for the common plain ``message`` event just the
#: data bytes (its id and retry are the decoder's current ones). Made once per chunk, so kept minimal.
_RawEvent = bytes | tuple[bytes, bytes | None, str, int | None]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class SSEDecoder:
    """Incremental ``text/event-stream`` parser: feed it bytes, get complete events.

    ``feed`` may be given any fragmentation of the stream. ``flush`` is called once at end of input; it
    dispatches a last event that was not followed by a blank line (real servers do end that way, and
    dropping their final ``data: [DONE]`` would turn a complete stream into a truncated one).
    """

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size <= 0:
            raise ValueError("max_event_size must be positive")
        self.max_event_size = max_event_size
        #: The reconnection time the server asked for with ``retry:``, in milliseconds.
        self.retry: int | None = None
        self._last_event_id = ""
        # Bytes of a line whose terminator has not arrived yet, kept as pieces to avoid quadratic copying.
        self._pending: list[bytes] = []
        self._pending_size = 0
        # A feed that ended in CR: if the next one starts with LF, that LF belongs to the same line end.
        self._after_cr = False
        self._at_start = True
        self._data: list[bytes] = []
        self._data_size = 0
        self._event_type: bytes | None = None

    @property
    def last_event_id(self) -> str:
        return self._last_event_id

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        return [self._public(raw) for raw in self.feed_raw(data)]

    def flush(self) -> list[ServerSentEvent]:
        return [self._public(raw) for raw in self.flush_raw()]

    def feed_raw(self, data: bytes) -> list[_RawEvent]:
        """Like :meth:`feed`, with event data left as UTF-8 bytes."""
        if self._at_start:
            data = self._strip_bom(data)
            if self._at_start:
                return []
        if self._after_cr:
            self._after_cr = False
            if data[:1] == b"\n":
                data = data[1:]
        elif not self._pending and data[-2:] == b"\n\n":
            # A read that holds whole events and nothing else: what a token server's flushes look like.
            events = self._plain_data_events(data)
            if events is not None:
                return events
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if end < 0:
            if data:
                self._pending.append(data)
                self._pending_size += len(data)
                self._check_size()
            return []
        if self._pending:
            self._pending.append(data[: end + 1])
            complete = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
        else:
            complete = data[: end + 1]
        rest = data[end + 1 :]
        if rest:
            self._pending.append(rest)
            self._pending_size = len(rest)
        elif complete[-1] == 0x0D:
            self._after_cr = True
        events = self._plain_data_events(complete)
        if events is None:
            events = self._process_lines(complete.splitlines())
        if self._pending:
            self._check_size()
        return events

    def flush_raw(self) -> list[_RawEvent]:
        if self._at_start and self._pending:
            # Fewer than three bytes arrived, all of them a prefix of the BOM: they are content after all.
            self._at_start = False
        lines = [b"".join(self._pending)] if self._pending else []
        self._pending.clear()
        self._pending_size = 0
        self._after_cr = False
        events = self._process_lines(lines)
        if self._data:
            events.append(self._dispatch())
        self._event_type = None
        return events

    def _strip_bom(self, data: bytes) -> bytes:
        # The BOM may itself arrive in pieces; hold back bytes that could still be its start.
        if self._pending:
            data = b"".join(self._pending) + data
            self._pending.clear()
            self._pending_size = 0
        if len(data) < len(_BOM) and _BOM.startswith(data):
            if data:
                self._pending.append(data)
                self._pending_size = len(data)
            return data
        self._at_start = False
        return data[len(_BOM) :] if data.startswith(_BOM) else data

    def _check_size(self) -> None:
        size = self._pending_size + self._data_size
        if size > self.max_event_size:
            raise EventTooLargeError(size, self.max_event_size)

    def _plain_data_events(self, complete: bytes) -> list[_RawEvent] | None:
        """The fast path: input that is nothing but ``data: ...\\n\\n`` events, each one line.

        That is what every OpenAI-style producer sends, so it is worth one split in C instead of a Python
        loop over lines. Returns None whenever the input holds anything else (comments, other fields,
        multi-line data, CR line ends, an event still open), and the line-by-line parser takes over.
        """
        if (
            self._data
            or self._event_type is not None
            or not complete.startswith(b"data: ")
            or not complete.endswith(b"\n\n")
            or b"\r" in complete
        ):
            return None
        newlines = complete.count(b"\n")
        payloads: list[bytes]
        if newlines == 2:
            payloads = [complete[6:-2]]
        else:
            payloads = complete[6:-2].split(b"\n\ndata: ")
            # Exactly two LFs per event means no LF hides inside an event: each is one `data:` line.
            if newlines != 2 * len(payloads):
                return None
        if len(complete) > self.max_event_size:
            largest = max(map(len, payloads)) + 1
            if largest > self.max_event_size:
                raise EventTooLargeError(largest, self.max_event_size)
        return payloads  # type: ignore[return-value]

    def _process_lines(self, lines: list[bytes]) -> list[_RawEvent]:
        events: list[_RawEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(self._dispatch())
                else:
                    self._event_type = None
                continue
            # The common case first: nearly every line of a chunk stream is `data: {...}`.
            if line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
                data.append(value)
                self._data_size += len(value) + 1
                if self._data_size > self.max_event_size:
                    raise EventTooLargeError(self._data_size, self.max_event_size)
                continue
            if line[0] == 0x3A:  # ":" starts a comment (keep-alives)
                continue
            field, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            if field == b"data":  # "data" with no colon at all
                data.append(value)
                self._data_size += len(value) + 1
            elif field == b"event":
                self._event_type = value
            elif field == b"id" and b"\x00" not in value:
                self._last_event_id = _text(value)
            elif field == b"retry" and value.isdigit():
                self.retry = int(value)
            # Any other field name is ignored, as the spec requires.
        return events

    def _dispatch(self) -> _RawEvent:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = (data, self._event_type, self._last_event_id, self.retry)
        self._data.clear()
        self._data_size = 0
        self._event_type = None
        return event

    def _public(self, raw: _RawEvent) -> ServerSentEvent:
        if isinstance(raw, bytes):
            return ServerSentEvent(_text(raw), "message", self._last_event_id, self.retry)
        data, event_type, last_id, retry = raw
        return ServerSentEvent(_text(data), _text(event_type) if event_type else "message", last_id, retry)


# --- reading a chunk stream --------------------------------------------------------------------------


class Done:
    """The ``data: [DONE]`` sentinel: the producer says the stream is complete."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Done()"


class EndOfInput:
    """The byte stream ended. ``finished_properly`` is False for a stream that was cut short."""

    __slots__ = ("finished_properly",)

    def __init__(self, finished_properly: bool) -> None:
        self.finished_properly = finished_properly

    def __repr__(self) -> str:
        return f"EndOfInput(finished_properly={self.finished_properly})"


class ErrorFrame:
    """An error sent inside a 200 stream: ``data: {"error": {...}}`` or an ``event: error`` event."""

    __slots__ = ("error", "event")

    def __init__(self, error: ErrorDetail, event: ServerSentEvent) -> None:
        self.error = error
        self.event = event

    def __repr__(self) -> str:
        return f"ErrorFrame({self.error!r})"


class InvalidChunkError(SSEError):
    """An event's data is neither a chunk, an error, nor ``[DONE]``."""


class _Choice(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def finish_reason(self) -> str | None: ...


class _Chunk(Protocol):
    @property
    def choices(self) -> Sequence[_Choice]: ...

    @property
    def usage(self) -> object | None: ...


_ChunkT = TypeVar("_ChunkT", bound=_Chunk)


class _ErrorEnvelope(msgspec.Struct):
    # TGI and some proxies send a bare string; vLLM, LiteLLM and OpenAI send an object.
    error: ErrorDetail | str | None = None


_error_envelope_decoder = msgspec.json.Decoder(_ErrorEnvelope)


class ChunkStreamDecoder(Generic[_ChunkT]):
    """Bytes in, typed chunks out, for one chat (or legacy completions) stream.

    >>> decoder = ChunkStreamDecoder()
    >>> for item in decoder.feed(network_bytes): ...
    >>> for item in decoder.close(): ...  # ends with EndOfInput

    Anything after ``[DONE]`` is ignored. Undecodable data raises :class:`InvalidChunkError`, so a
    stream never silently loses a chunk. ``open_event``, when given, sees the data of every event that is
    not ``[DONE]`` or an error frame and returns the chunk JSON to decode: it checks signatures or decrypts
    (:mod:`chunkwise.signing`, :mod:`chunkwise.confidential`). When it raises, the stream ends there like
    at an error frame: the chunks before come out, and :attr:`failure` holds the error.
    """

    @overload
    def __init__(
        self: ChunkStreamDecoder[ChatCompletionChunk],
        *,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        open_event: Callable[[bytes], bytes] | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        chunk_type: type[_ChunkT],
        *,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        open_event: Callable[[bytes], bytes] | None = None,
    ) -> None: ...

    def __init__(
        self,
        chunk_type: type[Any] = ChatCompletionChunk,
        *,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        open_event: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._sse = SSEDecoder(max_event_size=max_event_size)
        self._open_event = open_event
        self._failure: ChunkwiseError | None = None
        self._decode_chunk = msgspec.json.Decoder(chunk_type).decode
        self._done = False
        self._usage_seen = False
        self._open_choices: set[int] = set()
        self._finished_choices: set[int] = set()

    @property
    def done(self) -> bool:
        """Whether ``[DONE]`` arrived."""
        return self._done

    @property
    def failure(self) -> ChunkwiseError | None:
        """What ``open_event`` raised, which ended the stream."""
        return self._failure

    @property
    def finished_properly(self) -> bool:
        """``[DONE]`` arrived, or the usage chunk did, or every choice seen so far has finished."""
        return self._done or self._usage_seen or (bool(self._finished_choices) and not self._open_choices)

    @property
    def last_event_id(self) -> str:
        return self._sse.last_event_id

    def feed(self, data: bytes) -> list[_ChunkT | ErrorFrame | Done]:
        if self._done or self._failure is not None:
            return []
        return self._interpret(self._sse.feed_raw(data))

    def close(self) -> list[_ChunkT | ErrorFrame | Done | EndOfInput]:
        items: list[_ChunkT | ErrorFrame | Done | EndOfInput] = []
        if not self._done and self._failure is None:
            items.extend(self._interpret(self._sse.flush_raw()))
        items.append(EndOfInput(self.finished_properly))
        return items

    def _interpret(self, events: list[_RawEvent]) -> list[_ChunkT | ErrorFrame | Done]:
        items: list[_ChunkT | ErrorFrame | Done] = []
        decode = self._decode_chunk
        open_event = self._open_event
        open_choices = self._open_choices
        for raw in events:
            if isinstance(raw, bytes):
                data = raw
            else:
                data = raw[0]
                if raw[1] == b"error":
                    items.append(self._error_event(raw))
                    continue
            if data[:1] != b"{":
                stripped = data.strip()
                if stripped == b"[DONE]":
                    self._done = True
                    items.append(Done())
                    break
                if not stripped:
                    continue  # `data:` with nothing in it carries nothing
            if b'"error"' in data:
                frame = self._error_payload(raw)
                if frame is not None:
                    items.append(frame)
                    continue
            if open_event is not None:
                try:
                    data = open_event(data)
                except ChunkwiseError as exc:
                    self._failure = exc
                    break
            try:
                chunk = decode(data)
            except msgspec.DecodeError as exc:
                excerpt = data[:200].decode("utf-8", "replace")
                raise InvalidChunkError(f"undecodable event in chunk stream ({exc}): {excerpt!r}") from exc
            if chunk.usage is not None:
                self._usage_seen = True
            for choice in chunk.choices:
                if choice.finish_reason is None:
                    open_choices.add(choice.index)
                else:
                    open_choices.discard(choice.index)
                    self._finished_choices.add(choice.index)
            items.append(chunk)
        return items

    def _error_payload(self, raw: _RawEvent) -> ErrorFrame | None:
        try:
            envelope = _error_envelope_decoder.decode(raw if isinstance(raw, bytes) else raw[0])
        except msgspec.DecodeError:
            return None
        if envelope.error is None:
            return None
        detail = envelope.error if isinstance(envelope.error, ErrorDetail) else ErrorDetail(message=envelope.error)
        return ErrorFrame(detail, self._sse._public(raw))

    def _error_event(self, raw: _RawEvent) -> ErrorFrame:
        frame = self._error_payload(raw)
        if frame is not None:
            return frame
        message = _text(raw if isinstance(raw, bytes) else raw[0]).strip() or "the server sent an error event"
        return ErrorFrame(ErrorDetail(message=message), self._sse._public(raw))


# --- writing ---------------------------------------------------------------------------------------

# --- splitting raw bytes at event boundaries (for those that pass events on untouched) -------------------

# Two line ends in a row end an event; the lookbehind keeps them with the event before.
_EVENT_END: re.Pattern[bytes] = re.compile(rb"(?<=\n\n)|(?<=\r\r)|(?<=\n\r\n)")
_BOUNDARIES = (b"\n\n", b"\r\r", b"\n\r\n")


def complete_events_end(data: bytes) -> int:
    """The index just past the last complete event in ``data`` (its ending blank line), or -1 if none ends there.

    A proxy that forwards raw bytes cuts them here, so that a half event waits for its end. (An
    :class:`SSEDecoder` parses events but keeps no byte offsets, so it cannot say where to cut.)
    """
    end = -1
    for boundary in _BOUNDARIES:
        found = data.rfind(boundary)
        if found >= 0:
            end = max(end, found + len(boundary))
    return end


def event_blocks(data: bytes) -> list[bytes]:
    """``data`` cut after each blank line: every block but the last ends with the blank line that ended it."""
    return _EVENT_END.split(data)


#: The sentinel that ends an OpenAI-style stream.
DONE = b"data: [DONE]\n\n"

_json_encoder = msgspec.json.Encoder()


def _single_line(name: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"SSE {name} must not contain a line break: {value!r}")
    return value


def encode_event(data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None) -> bytes:
    """One event; multi-line ``data`` becomes several ``data:`` lines, as the spec requires."""
    parts: list[str] = []
    if event is not None:
        parts.append(f"event: {_single_line('event', event)}\n")
    if id is not None:
        if "\x00" in id:
            raise ValueError("SSE id must not contain NUL")
        parts.append(f"id: {_single_line('id', id)}\n")
    if retry is not None:
        if retry < 0:
            raise ValueError("SSE retry must not be negative")
        parts.append(f"retry: {retry}\n")
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()


def encode_comment(text: str = "") -> bytes:
    """A comment line; clients ignore it, proxies see traffic. Used for keep-alives."""
    if not text:
        return b":\n\n"
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f": {line}\n" for line in lines).encode() + b"\n"


def encode_json(value: msgspec.Struct) -> bytes:
    """``data: <compact JSON>`` for a chunk or any other wire value. JSON never holds a raw line break."""
    return b"data: " + _json_encoder.encode(value) + b"\n\n"


def encode_error(error: ErrorDetail) -> bytes:
    """An in-band error frame, ``data: {"error": {...}}``, as vLLM, TGI and LiteLLM send it."""
    return encode_json(ErrorResponse(error=error))
