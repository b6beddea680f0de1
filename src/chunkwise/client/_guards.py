"""Checking (and opening) what a server answered, sans I/O: signatures, the chain, confidential envelopes.

A :class:`ResponseGuard` sees one response: every event of a stream through :meth:`~ResponseGuard.open`
(the :class:`~chunkwise.sse.ChunkStreamDecoder` calls it before decoding) or the whole body of a
non-stream answer, and finally the chunks it let through (:meth:`~ResponseGuard.missing_end`), to catch
chunks missing at the end. Both clients use the same guards; a retry gets a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import msgspec

from .._errors import SignatureError
from ..confidential import ClientSession
from ..signing import ChainVerifier, blake2b256
from ..types import ChatCompletionChunk

__all__ = ["ResponseGuard", "asks_for_usage", "signed_guard_factory"]

logger = logging.getLogger("chunkwise.client")


class _UsageOption(msgspec.Struct):
    include_usage: bool | None = None


class _StreamOptions(msgspec.Struct):
    stream_options: _UsageOption | None = None


def asks_for_usage(request_body: bytes) -> bool:
    """Whether a chat request asks for the final usage chunk (``stream_options.include_usage``)."""
    options = msgspec.json.decode(request_body, type=_StreamOptions).stream_options
    return options is not None and options.include_usage is True


def signed_guard_factory(request_body: bytes, public_key: bytes) -> Callable[[], ResponseGuard]:
    """New guards for the answers to ``request_body`` from the server that holds ``public_key``."""
    root = blake2b256(request_body)
    expect_usage = asks_for_usage(request_body)
    return lambda: ResponseGuard(ChainVerifier(root, public_key, require_chain=True), None, expect_usage=expect_usage)


class ResponseGuard:
    """The checks for one response.

    * Plain answers from a pinned server (``session`` is ``None``): every body must carry a valid
      signature by the pinned key, and the chain must hold.
    * Confidential answers: every envelope must decrypt, its ``response_hash`` must be the plaintext's
      hash, its signature (with a pinned key) must verify, and the chain inside the plaintext must hold.
    """

    __slots__ = ("_expect_usage", "_nonces", "_session", "_verifier")

    def __init__(self, verifier: ChainVerifier, session: ClientSession | None, *, expect_usage: bool) -> None:
        self._verifier = verifier
        self._session = session
        self._expect_usage = expect_usage
        self._nonces: set[str] | None = set()

    def open(self, data: bytes) -> bytes:
        """The JSON of one chunk (or of the whole answer), checked; raises a :class:`~chunkwise.VerificationError`."""
        if self._session is None:
            self._verifier.check_signed_json(data)
            return data
        plaintext, envelope = self._session.open_response(data)
        self._note_nonce(envelope.nonce)
        if envelope.response_hash is None:
            raise SignatureError(f"confidential body {self._verifier.count} carries no response_hash")
        self._verifier.check(plaintext, envelope.response_hash, envelope.signature)
        return plaintext

    def _note_nonce(self, nonce: str) -> None:
        # An Atoma node encrypts every chunk of a stream under one nonce (ATOMA_WIRE.md section 4.4). That
        # still decrypts, so it is not refused, but whoever reads the traffic learns the XOR of the chunks.
        if self._nonces is None:
            return
        if nonce in self._nonces:
            logger.warning(
                "the server reuses one AES-GCM nonce across the chunks of this confidential stream (as Atoma "
                "nodes do): an eavesdropper can XOR chunks together and learn their content"
            )
            self._nonces = None  # once per stream
            return
        self._nonces.add(nonce)

    def missing_end(self, chunks: Sequence[ChatCompletionChunk]) -> str | None:
        """At the end of a stream that looked finished: why its last chunks are missing, if they are.

        ``[DONE]`` and the end of input are not signed, so a stream counts as whole only when every
        choice that appeared has finished and, when usage was asked for, the usage chunk came last.
        """
        if not chunks:
            return "the stream ended without a single verified chunk"
        open_choices: set[int] = set()
        for chunk in chunks:
            for choice in chunk.choices:
                if choice.finish_reason is None:
                    open_choices.add(choice.index)
                else:
                    open_choices.discard(choice.index)
        if open_choices:
            listed = ", ".join(str(index) for index in sorted(open_choices))
            return f"the stream ended before choice {listed} finished: its last chunks are missing"
        if self._expect_usage and chunks[-1].usage is None:
            return "the stream ended without its final usage chunk: its last chunk is missing"
        return None
