"""Dialect events on the wire: ``event: <type>`` plus ``data: <json>``, written and read.

Both dialects name every event twice, in the SSE ``event:`` field and in the JSON's ``type``; the
decoders read the JSON (the SSE name is only a hint some proxies drop). Event types a decoder does not
know (OpenAI adds new ones for its hosted tools) are skipped, as the official SDKs skip them.
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

import msgspec

from ..sse import DEFAULT_MAX_EVENT_SIZE, InvalidChunkError, SSEDecoder
from ._messages_types import MessagesStreamEvent
from ._responses_types import ResponseStreamEvent

__all__ = ["MessagesStreamDecoder", "ResponsesStreamDecoder", "encode_dialect_event"]

_encoder = msgspec.json.Encoder()
_prefixes: dict[type[Any], bytes] = {}


def encode_dialect_event(event: msgspec.Struct) -> bytes:
    """One Responses or Messages event as SSE bytes: ``event: <type>\\ndata: <json>\\n\\n``."""
    cls = type(event)
    prefix = _prefixes.get(cls)
    if prefix is None:
        tag = cls.__struct_config__.tag
        prefix = _prefixes[cls] = b"event: " + str(tag).encode() + b"\ndata: "
    return prefix + _encoder.encode(event) + b"\n\n"


class _Typed(msgspec.Struct):
    type: str = ""


_typed = msgspec.json.Decoder(_Typed)
_UNKNOWN_KIND = re.compile(r"^Invalid value '[^']*' - at `\$\.(item|part|content_block|delta)\.type`$")

E = TypeVar("E")


class _EventDecoder(Generic[E]):
    __slots__ = ("_decode", "_known", "_sse", "_terminal", "finished")

    def __init__(self, event_type: Any, terminal: frozenset[str], max_event_size: int) -> None:
        self._sse = SSEDecoder(max_event_size=max_event_size)
        self._decode = msgspec.json.Decoder(event_type).decode
        members = event_type.__args__
        self._known = frozenset(str(member.__struct_config__.tag) for member in members)
        self._terminal = frozenset(member for member in members if member.__struct_config__.tag in terminal)
        #: A terminal event arrived (the stream ended properly, or with an error event).
        self.finished = False

    def feed(self, data: bytes) -> list[E]:
        return self._interpret(self._sse.feed_raw(data))

    def close(self) -> list[E]:
        """The last events at end of input. Check :attr:`finished` to tell a whole stream from a cut one."""
        return self._interpret(self._sse.flush_raw())

    def _interpret(self, raws: list[Any]) -> list[E]:
        events: list[E] = []
        for raw in raws:
            data = raw if isinstance(raw, bytes) else raw[0]
            if data[:1] != b"{":
                continue  # `[DONE]` from chat-minded proxies, or an empty event
            try:
                event = self._decode(data)
            except msgspec.ValidationError as exc:
                kind = _typed.decode(data).type
                # An unknown event, or a known one around an unknown kind of item, part or delta (a hosted
                # tool's item in `response.output_item.added`): skipped. Anything else is malformed.
                if kind in self._known and not _UNKNOWN_KIND.match(str(exc)):
                    raise InvalidChunkError(f"malformed {kind!r} event ({exc}): {data[:200]!r}") from None
                continue
            except msgspec.DecodeError as exc:
                raise InvalidChunkError(f"undecodable event ({exc}): {data[:200]!r}") from None
            if type(event) in self._terminal:
                self.finished = True
            events.append(event)
        return events


class ResponsesStreamDecoder(_EventDecoder[ResponseStreamEvent]):
    """Bytes of a ``POST /v1/responses`` stream in, typed events out (sans I/O)."""

    __slots__ = ()

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        super().__init__(
            ResponseStreamEvent,
            frozenset({"response.completed", "response.incomplete", "response.failed", "error"}),
            max_event_size,
        )


class MessagesStreamDecoder(_EventDecoder[MessagesStreamEvent]):
    """Bytes of a ``POST /v1/messages`` stream in, typed events out (sans I/O)."""

    __slots__ = ()

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        super().__init__(MessagesStreamEvent, frozenset({"message_stop", "error"}), max_event_size)
