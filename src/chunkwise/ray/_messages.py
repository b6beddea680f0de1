"""What the ingress and the replicas say to each other: one request in, a stream of msgpack messages out.

The replica answers every request with a :class:`ReplicaHeader` (who it is and how loaded it is) and then
one :class:`ChatPiece` or :class:`TextPiece` per chunk the engine made, each carrying the running
completion-token count so that the ingress can report usage exactly, even for a stream cut short.
Pure data, no I/O: both sides share these definitions.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ..types import ChatCompletionChunk, Completion

__all__ = [
    "ChatPiece",
    "ReplicaHeader",
    "ReplicaMessage",
    "ReplicaRequest",
    "TextPiece",
    "decode_message",
    "encode_message",
]

Endpoint = Literal["chat", "completions"]


class ReplicaRequest(msgspec.Struct, frozen=True):
    """One generation request, already validated by the ingress.

    ``prompt`` is what the prefix-affinity router hashes (the name is the one Ray Serve's routers look
    for); ``body`` is the request as JSON, decoded again on the replica.
    """

    endpoint: Endpoint
    body: bytes
    request_id: str
    created: int
    prompt: str


class ReplicaHeader(msgspec.Struct, frozen=True, tag="header"):
    """The first message of every answer: the replica that took the request and its load at that moment."""

    replica: str
    pid: int
    node: str
    #: Requests this replica is running, this one included.
    ongoing: int
    #: Totals since the replica started.
    served: int
    cancelled: int
    generated_tokens: int


class ChatPiece(msgspec.Struct, frozen=True, tag="chat"):
    chunk: ChatCompletionChunk
    completion_tokens: int


class TextPiece(msgspec.Struct, frozen=True, tag="text"):
    chunk: Completion
    completion_tokens: int


ReplicaMessage = ReplicaHeader | ChatPiece | TextPiece

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[ReplicaMessage] = msgspec.msgpack.Decoder(ReplicaMessage)


def encode_message(message: ReplicaMessage) -> bytes:
    return _encoder.encode(message)


def decode_message(data: bytes) -> ReplicaMessage:
    return _decoder.decode(data)
