"""Embedding requests, sans I/O: the inputs checked and tokenized, and the vectors written as the answer.

Every check that can fail happens in :func:`plan_embeddings`, before anything is queued: the input's form
(one of OpenAI's four), the number of inputs, each input's length against the embedding context (the error
names the input's index), token ids against the vocabulary, ``dimensions`` against the model.
"""

from __future__ import annotations

import base64
import math
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..types import Embedding, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from ._protocol import InvalidRequestError

__all__ = ["MAX_EMBEDDING_INPUTS", "EmbeddingPlan", "embedding_response", "normalized", "plan_embeddings"]

#: OpenAI's limit on the inputs of one request.
MAX_EMBEDDING_INPUTS = 2048


@dataclass(frozen=True, slots=True)
class EmbeddingPlan:
    """The token ids of each input, in order, and how the answer is written."""

    inputs: tuple[tuple[int, ...], ...]
    base64: bool

    @property
    def prompt_tokens(self) -> int:
        return sum(len(tokens) for tokens in self.inputs)


def plan_embeddings(
    request: EmbeddingRequest,
    *,
    tokenize: Callable[[str], list[int]],
    n_vocab: int,
    context_length: int,
    dimensions: int,
) -> EmbeddingPlan:
    """Check ``request`` and tokenize its inputs; raise :class:`InvalidRequestError` naming what is wrong."""
    if request.dimensions is not None and request.dimensions != dimensions:
        raise InvalidRequestError(
            f"This model makes {dimensions}-dimensional embeddings and cannot shorten them (it is not trained "
            f"for it); `dimensions` must be {dimensions} or left out.",
            param="dimensions",
        )
    items = _input_items(request.input)
    if not items:
        raise InvalidRequestError("`input` must not be an empty list.", param="input")
    if len(items) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequestError(
            f"`input` holds {len(items)} inputs; at most {MAX_EMBEDDING_INPUTS} are allowed per request.",
            param="input",
        )
    inputs: list[tuple[int, ...]] = []
    for index, item in enumerate(items):
        tokens = tokenize(item) if isinstance(item, str) else item
        where = "`input`" if isinstance(request.input, str) or _is_token_list(request.input) else f"input {index}"
        if not tokens:
            raise InvalidRequestError(f"{where} is empty.", param="input")
        if any(not 0 <= token < n_vocab for token in tokens):
            raise InvalidRequestError(f"{where} holds token ids outside 0..{n_vocab - 1}.", param="input")
        if len(tokens) > context_length:
            raise InvalidRequestError(
                f"This model's maximum context length is {context_length} tokens, however {where} has "
                f"{len(tokens)} tokens. Please reduce the length of the input.",
                param="input",
                code="context_length_exceeded",
            )
        inputs.append(tuple(tokens))
    return EmbeddingPlan(inputs=tuple(inputs), base64=request.encoding_format == "base64")


def _is_token_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, int) for item in value)


def _input_items(value: str | list[str | int | list[int]]) -> list[str | list[int]]:
    """The inputs, each a text or a token-id list; one form per request, as OpenAI requires."""
    if isinstance(value, str):
        return [value]
    if _is_token_list(value):
        return [[item for item in value if isinstance(item, int)]]
    if all(isinstance(item, str) for item in value):
        return [item for item in value if isinstance(item, str)]
    if all(isinstance(item, list) for item in value):
        return [item for item in value if isinstance(item, list)]
    raise InvalidRequestError(
        "`input` must be a string, a list of strings, a list of token ids or a list of token-id lists, not a mixture.",
        param="input",
    )


def normalized(values: Iterable[float]) -> array[float]:
    """``values`` scaled to unit Euclidean length (summed in double precision), as float32."""
    vector = list(values)
    norm = math.sqrt(math.fsum(value * value for value in vector))
    scale = 1.0 / norm if norm > 0.0 else 0.0
    return array("f", (value * scale for value in vector))


def embedding_response(plan: EmbeddingPlan, vectors: Sequence[array[float]], *, model: str) -> EmbeddingResponse:
    """The answer for ``plan``: each vector as numbers, or as base64 of its little-endian float32 bytes."""
    data: list[Embedding] = []
    for index, vector in enumerate(vectors):
        if plan.base64:
            raw = vector if _LITTLE_ENDIAN else _swapped(vector)
            data.append(Embedding(embedding=base64.b64encode(raw.tobytes()).decode("ascii"), index=index))
        else:
            data.append(Embedding(embedding=vector.tolist(), index=index))
    tokens = plan.prompt_tokens
    return EmbeddingResponse(model=model, data=data, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))


_LITTLE_ENDIAN = array("H", [1]).tobytes() == b"\x01\x00"


def _swapped(vector: array[float]) -> array[float]:
    copy = array("f", vector)
    copy.byteswap()
    return copy
