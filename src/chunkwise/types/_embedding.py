"""``POST /v1/embeddings``: texts or token ids in, one vector per input out."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from ._fields import always, always_empty_list

__all__ = ["Embedding", "EmbeddingInput", "EmbeddingRequest", "EmbeddingResponse", "EmbeddingUsage"]

#: A string, a list of strings, a list of token ids, or a list of token-id lists (OpenAI's four forms).
EmbeddingInput = str | list[str | int | list[int]]


class EmbeddingRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    input: EmbeddingInput
    #: ``base64`` is the little-endian float32 bytes of each vector, as OpenAI sends them.
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None


class EmbeddingUsage(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    prompt_tokens: int = always(0)
    total_tokens: int = always(0)


class Embedding(msgspec.Struct, kw_only=True, omit_defaults=True):
    #: The vector's numbers, or with ``encoding_format: base64`` their float32 bytes in base64.
    embedding: list[float] | str
    index: int = always(0)
    object: str = always("embedding")


class EmbeddingResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    data: list[Embedding] = always_empty_list()
    object: str = always("list")
    usage: EmbeddingUsage = msgspec.field(default_factory=EmbeddingUsage)
