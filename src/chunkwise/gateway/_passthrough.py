"""Reading an upstream's SSE stream while its bytes pass through unchanged (no I/O here).

:class:`StreamInspector` is fed the upstream's reads and returns the bytes to send on: the same bytes,
cut only at event boundaries (a half event waits for its end, which the client could not use anyway).
It parses just enough of each event to know the usage, the tokens delivered, error frames and the end.
The one change it ever makes: when the gateway asked for ``include_usage`` on the client's behalf, the
usage-only chunk is taken out (from bytes that, at the end of a stream, usually hold just it and
``[DONE]``).
"""

from __future__ import annotations

import msgspec

from ..sse import SSEDecoder, complete_events_end, event_blocks

__all__ = ["BodyProbe", "StreamInspector", "UsageProbe"]


class UsageProbe(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _DeltaProbe(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    # Raw, not decoded: only its presence matters. (msgspec allows Raw only alone, so empty means absent.)
    tool_calls: msgspec.Raw = msgspec.Raw()
    refusal: str | None = None


class _ChoiceProbe(msgspec.Struct):
    delta: _DeltaProbe | None = None
    #: Legacy /v1/completions chunks carry ``text`` instead of a delta.
    text: str | None = None
    finish_reason: str | None = None


class _ChunkProbe(msgspec.Struct):
    choices: list[_ChoiceProbe] | None = None
    usage: UsageProbe | None = None
    error: msgspec.Raw = msgspec.Raw()


class BodyProbe(msgspec.Struct):
    """What the gateway reads of an unstreamed answer."""

    usage: UsageProbe | None = None


_chunk_decoder = msgspec.json.Decoder(_ChunkProbe)


class StreamInspector:
    __slots__ = (
        "_decoder",
        "_held",
        "_strip_usage",
        "delivered_tokens",
        "done",
        "error",
        "finished",
        "usage",
    )

    def __init__(self, *, strip_usage: bool) -> None:
        self._decoder = SSEDecoder()
        self._held = b""
        self._strip_usage = strip_usage
        #: The upstream's usage chunk, once seen.
        self.usage: UsageProbe | None = None
        #: Chunks with output sent on: the completion tokens of a stream that ends without usage.
        self.delivered_tokens = 0
        self.done = False
        #: Some choice reported a finish_reason (streams from the Atoma proxy end without ``[DONE]``).
        self.finished = False
        #: The raw JSON of an in-band error frame from the upstream.
        self.error: bytes | None = None

    def feed(self, data: bytes) -> bytes:
        """Upstream bytes in; the bytes to send to the client now out (maybe empty)."""
        if self._held:
            data = self._held + data
            self._held = b""
        if not data.endswith(b"\n\n"):
            end = complete_events_end(data)
            if end < 0:
                self._held = data
                return b""
            data, self._held = data[:end], data[end:]
        strip = None
        for raw in self._decoder.feed_raw(data):
            if isinstance(raw, bytes):
                payload = raw
            else:
                payload = raw[0]
                if raw[1] == b"error":
                    self.error = payload
                    continue
            if self._inspect(payload):
                strip = payload
        return data if strip is None else _without_event(data, strip)

    def close(self) -> bytes:
        """End of the upstream's input: an unterminated last event still goes out (and counts)."""
        data, self._held = self._held, b""
        if data:
            self._decoder.feed_raw(data)
        for raw in self._decoder.flush_raw():
            payload = raw if isinstance(raw, bytes) else raw[0]
            if self._inspect(payload):
                return b""
        return data

    @property
    def finished_properly(self) -> bool:
        return self.done or self.finished or self.usage is not None

    def _inspect(self, payload: bytes) -> bool:
        """Records what ``payload`` says; True if it is a usage chunk the client must not see."""
        if payload == b"[DONE]":
            self.done = True
            return False
        try:
            chunk = _chunk_decoder.decode(payload)
        except msgspec.DecodeError:
            return False
        if chunk.error:
            self.error = bytes(chunk.error)
            return False
        if chunk.choices:
            for choice in chunk.choices:
                delta = choice.delta
                if (
                    choice.text
                    or delta is not None
                    and (
                        delta.content or delta.reasoning_content or delta.reasoning or delta.refusal or delta.tool_calls
                    )
                ):
                    self.delivered_tokens += 1
                if choice.finish_reason is not None:
                    self.finished = True
        if chunk.usage is not None:
            self.usage = chunk.usage
            return self._strip_usage and not chunk.choices
        return False


def _without_event(data: bytes, payload: bytes) -> bytes:
    """``data`` less the one event whose data is ``payload``; comments and other events stay as they were."""
    blocks = event_blocks(data)
    for index, block in enumerate(blocks):
        if payload in block:
            del blocks[index]
            break
    return b"".join(blocks)
