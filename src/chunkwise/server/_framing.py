"""Re-framing a finished plain answer: signing it, or sealing it for a confidential client.

Signing and encryption sit outside generation: the routes answer in the clear as always, and a
:class:`ReframedResponse` (or the signing middleware) passes their ASGI messages through a :class:`Framer`
that rewrites each JSON payload. A streamed answer is cut into events at the blank line that ends each
one (the server's events are single-line ``data:`` JSON, keep-alive comments or ``[DONE]``), however
the body is split into messages; a JSON answer is buffered and rewritten whole. Error answers (any status
other than 200) and in-band error frames go through :meth:`Framer.error`: a signed answer passes them
unchanged, a sealed one withholds their message (it may quote the decrypted request) and keeps the rest.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..confidential import ResponseSealer
from ..signing import ChainSealer
from ..types import CompletionUsage, ErrorDetail, ErrorResponse

__all__ = ["ConfidentialFramer", "Framer", "ReframedResponse", "SignedFramer", "reframing", "withheld_error"]

_DATA = b"data: "
_DONE = b"[DONE]"
_ERROR_FRAME = b'{"error"'
_EVENT_END = b"\n\n"


class Framer(Protocol):
    """How one answer's JSON payloads are rewritten."""

    def payload(self, data: bytes) -> bytes:
        """A chunk, or a whole non-stream body."""
        ...

    def done(self) -> bytes:
        """What replaces the ``data: [DONE]`` event (possibly nothing)."""
        ...

    def error(self, data: bytes) -> bytes:
        """An error body or in-band error frame (``{"error": ...}``)."""
        ...


class SignedFramer:
    """Plain answers, each payload chained and signed (the Atoma keys appended last)."""

    __slots__ = ("_sealer",)

    def __init__(self, sealer: ChainSealer) -> None:
        self._sealer = sealer

    def payload(self, data: bytes) -> bytes:
        return self._sealer.seal(data)

    def done(self) -> bytes:
        return _DATA + _DONE + _EVENT_END

    def error(self, data: bytes) -> bytes:
        return data


def withheld_error(detail: ErrorDetail) -> ErrorResponse:
    """``detail`` with nothing that may come from a decrypted request: its status, type and code stay."""
    message = (
        f"The confidential request failed ({detail.code or detail.type}); the details are withheld, as they may "
        "quote the encrypted request."
    )
    return ErrorResponse(error=ErrorDetail(message=message, type=detail.type, code=detail.code))


class _Error(msgspec.Struct):
    error: ErrorDetail


_error_decoder = msgspec.json.Decoder(_Error)
_encoder = msgspec.json.Encoder()


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

    def error(self, data: bytes) -> bytes:
        try:
            detail = _error_decoder.decode(data).error
        except msgspec.DecodeError:
            detail = ErrorDetail(message="", type="server_error")
        return _encoder.encode(withheld_error(detail))


def _event(event: bytes, framer: Framer) -> bytes:
    if not event.startswith(_DATA):
        return event + _EVENT_END  # a comment (keep-alive)
    data = event[len(_DATA) :]
    if data == _DONE:
        return framer.done()
    if data.startswith(_ERROR_FRAME):
        return _DATA + framer.error(data) + _EVENT_END
    return _DATA + framer.payload(data) + _EVENT_END


def reframing(send: Send, framer: Framer) -> Send:
    """``send`` for an answer whose 200 stream or 200 JSON body is rewritten by ``framer``."""
    mode = "pass"
    start: Message | None = None
    pending = bytearray()

    async def reframed_send(message: Message) -> None:
        nonlocal mode, start
        if message["type"] == "http.response.start":
            content_type = b""
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    content_type = value.split(b";", 1)[0].strip().lower()
            if message["status"] == 200 and content_type == b"text/event-stream":
                mode = "stream"
            elif content_type == b"application/json":
                mode = "json" if message["status"] == 200 else "error"
                start = message  # its content-length changes: sent with the body
                return
            await send(message)
            return
        if message["type"] != "http.response.body" or mode == "pass":
            await send(message)
            return
        pending.extend(message.get("body", b""))
        more = message.get("more_body", False)
        if mode in ("json", "error"):
            if more:
                return
            body = framer.payload(bytes(pending)) if mode == "json" else framer.error(bytes(pending))
            pending.clear()
            assert start is not None
            headers = [(n, v) for n, v in start.get("headers", []) if n.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        out: list[bytes] = []
        end = pending.rfind(_EVENT_END)
        if end >= 0:
            complete = bytes(pending[:end])
            del pending[: end + len(_EVENT_END)]
            out.extend(_event(event, framer) for event in complete.split(_EVENT_END))
        if not more and pending:
            out.append(_event(bytes(pending).rstrip(b"\n"), framer))
            pending.clear()
        if out or not more:
            await send({"type": "http.response.body", "body": b"".join(out), "more_body": more})

    return reframed_send


class ReframedResponse(Response):
    """``inner``, answered through a :class:`Framer`."""

    def __init__(self, inner: Response, framer: Framer) -> None:
        self.status_code = inner.status_code
        self.background = None
        self._inner = inner
        self._framer = framer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner(scope, receive, reframing(send, self._framer))
