"""How an answer's chunks are written: in the clear, signed, or sealed for a confidential client.

Signing and encryption sit outside generation: the engine and the scheduler know nothing of them. A
:class:`GenerationResponse <chunkwise.server._generation.GenerationResponse>` writes each chunk through
an :class:`AnswerEncoding` as it encodes it: the chunk's JSON goes through a :class:`Framer` (chained
and signed, or sealed in an envelope) before it is framed as an SSE event, and a whole JSON answer goes
through the same framer. Keep-alive comments are written by the encoding too. Error answers (any
status other than 200) and in-band error frames are written in the encoding's :class:`ErrorShape
<chunkwise.edge.ErrorShape>`: plain and signed answers use the OpenAI shape as it is; a sealed answer uses
:data:`WITHHELD_ERRORS`, whose message and ``param`` carry nothing that may quote the decrypted request.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from .. import sse
from ..confidential import ResponseSealer
from ..edge import KEEPALIVE, OPENAI_ERRORS, ErrorShape
from ..signing import ChainSealer, Signer, blake2b256
from ..types import CompletionUsage, ErrorDetail

__all__ = [
    "PLAIN",
    "WITHHELD_ERRORS",
    "AnswerEncoding",
    "ConfidentialFramer",
    "FramedEncoding",
    "Framer",
    "SignedFramer",
    "answer_encoding",
]

_DATA = b"data: "
_EVENT_END = b"\n\n"

_encoder = msgspec.json.Encoder()


class Framer(Protocol):
    """How one answer's JSON payloads are rewritten."""

    def payload(self, data: bytes) -> bytes:
        """A chunk, or a whole non-stream body."""
        ...

    def done(self) -> bytes:
        """What replaces the ``data: [DONE]`` event (possibly nothing)."""
        ...

    @property
    def errors(self) -> ErrorShape:
        """How this answer's errors are written."""
        ...


class _WithheldErrors:
    """OpenAI-shaped errors that keep status, type and code, and withhold what may quote a decrypted request."""

    @staticmethod
    def _withheld(detail: ErrorDetail) -> ErrorDetail:
        message = (
            f"The confidential request failed ({detail.code or detail.type}); the details are withheld, as they "
            "may quote the encrypted request."
        )
        return ErrorDetail(message=message, type=detail.type, code=detail.code)

    def body(self, status: int, detail: ErrorDetail) -> bytes:
        return OPENAI_ERRORS.body(status, self._withheld(detail))

    def event(self, status: int, detail: ErrorDetail) -> bytes:
        return OPENAI_ERRORS.event(status, self._withheld(detail))


#: Errors about a decrypted request, as they go back in the clear.
WITHHELD_ERRORS: ErrorShape = _WithheldErrors()


class SignedFramer:
    """Plain answers, each payload chained and signed (the Atoma keys appended last)."""

    __slots__ = ("_sealer",)

    def __init__(self, sealer: ChainSealer) -> None:
        self._sealer = sealer

    def payload(self, data: bytes) -> bytes:
        return self._sealer.seal(data)

    def done(self) -> bytes:
        return sse.DONE

    @property
    def errors(self) -> ErrorShape:
        return OPENAI_ERRORS


class _Usage(msgspec.Struct):
    usage: CompletionUsage | None = None


_usage_decoder = msgspec.json.Decoder(_Usage)


class ConfidentialFramer:
    """Encrypted answers: each payload chained (and signed, with a signer) inside its envelope.

    ``[DONE]`` is dropped, as the Atoma node does: the Atoma TypeScript SDK reads every event of a
    confidential stream as an envelope and fails on it. Clients see the end at the final usage chunk.
    """

    __slots__ = ("_chain", "_sealer")

    def __init__(self, chain: ChainSealer, sealer: ResponseSealer) -> None:
        self._chain = chain
        self._sealer = sealer

    def payload(self, data: bytes) -> bytes:
        linked, response_hash, signature = self._chain.link(data)
        usage = _usage_decoder.decode(data).usage if b'"usage"' in data else None
        return self._sealer.seal(linked, response_hash=response_hash, signature=signature, usage=usage)

    def done(self) -> bytes:
        return b""

    @property
    def errors(self) -> ErrorShape:
        return WITHHELD_ERRORS


class AnswerEncoding(Protocol):
    """The bytes of an answer: each chunk as an event, the stream's end, or the whole JSON answer.

    A dialect (``chunkwise.edge.ResponsesAnswer``, ``MessagesAnswer``) is an encoding too: it writes the same
    chunks as its own events.
    """

    def opening(self) -> bytes:
        """What a stream sends at once, before the request is let into the engine."""
        ...

    def keepalive(self) -> bytes:
        """What a stream sends every interval while the request waits for the engine."""
        ...

    def event(self, value: msgspec.Struct, /) -> bytes: ...

    def failure(self, status: int, detail: ErrorDetail) -> bytes:
        """The in-stream error once the engine failed mid-stream (the end follows)."""
        ...

    def end(self) -> bytes: ...

    def body(self, value: msgspec.Struct, /) -> bytes: ...

    @property
    def errors(self) -> ErrorShape:
        """The shape of an error answered before anything was sent (a non-stream answer's engine failure)."""
        ...


class _ChatEvents:
    """What chat streams send besides their chunks, plain or framed alike."""

    __slots__ = ()

    @property
    def errors(self) -> ErrorShape:
        raise NotImplementedError

    def opening(self) -> bytes:
        return b""

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def failure(self, status: int, detail: ErrorDetail) -> bytes:
        return self.errors.event(status, detail)


class _PlainEncoding(_ChatEvents):
    __slots__ = ()

    def event(self, value: msgspec.Struct, /) -> bytes:
        return sse.encode_json(value)

    def end(self) -> bytes:
        return sse.DONE

    def body(self, value: msgspec.Struct, /) -> bytes:
        return _encoder.encode(value)

    @property
    def errors(self) -> ErrorShape:
        return OPENAI_ERRORS


#: Answers in the clear.
PLAIN: AnswerEncoding = _PlainEncoding()


class FramedEncoding(_ChatEvents):
    """Answers whose every payload goes through ``framer`` as it is encoded."""

    __slots__ = ("_framer",)

    def __init__(self, framer: Framer) -> None:
        self._framer = framer

    def event(self, value: msgspec.Struct, /) -> bytes:
        return _DATA + self._framer.payload(_encoder.encode(value)) + _EVENT_END

    def end(self) -> bytes:
        return self._framer.done()

    def body(self, value: msgspec.Struct, /) -> bytes:
        return self._framer.payload(_encoder.encode(value))

    @property
    def errors(self) -> ErrorShape:
        return self._framer.errors


def answer_encoding(signer: Signer | None, request_body: bytes) -> AnswerEncoding:
    """Answers in the clear, or, with a signing key, signed and chained from the request body's hash."""
    if signer is None:
        return PLAIN
    return FramedEncoding(SignedFramer(ChainSealer(blake2b256(request_body), signer)))
