"""Embeddings from the real model: unit vectors, the same bits alone and in any company, and the checks.

The checks of :func:`plan_embeddings` run on the real tokenizer too; only the model run needs the engine.
"""

from __future__ import annotations

import asyncio
import base64
import math
from array import array

import pytest

from chunkwise.engine import MAX_EMBEDDING_INPUTS, InvalidRequestError, LlamaEmbedder
from chunkwise.types import EmbeddingRequest, EmbeddingResponse

from ..conftest import EMBEDDING_CTX

pytestmark = pytest.mark.engine

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "embeddings",
    "Paris is the capital of France.",
]


def embed(embedder: LlamaEmbedder, **fields: object) -> EmbeddingResponse:
    async def run() -> EmbeddingResponse:
        return await embedder.embed(embedder.prepare(EmbeddingRequest(model=MODEL, **fields)))  # type: ignore[arg-type]

    return asyncio.run(run())


def vectors(response: EmbeddingResponse) -> list[list[float]]:
    return [item.embedding for item in response.data]  # type: ignore[misc]


def test_vectors_have_unit_length_and_the_model_size(embedder: LlamaEmbedder) -> None:
    response = embed(embedder, input=TEXTS)
    assert [item.index for item in response.data] == [0, 1, 2, 3]
    for vector in vectors(response):
        assert len(vector) == embedder.dimensions == 576
        assert math.fsum(value * value for value in vector) == pytest.approx(1.0, abs=1e-6)
    assert len({tuple(vector) for vector in vectors(response)}) == len(TEXTS)
    assert response.usage.prompt_tokens == response.usage.total_tokens == sum(len(embedder.tokenize(t)) for t in TEXTS)


def test_the_same_bits_alone_in_a_batch_and_beside_other_requests(embedder: LlamaEmbedder) -> None:
    alone = [vectors(embed(embedder, input=text))[0] for text in TEXTS]
    batched = vectors(embed(embedder, input=[*TEXTS, *reversed(TEXTS)]))
    assert batched == [*alone, *reversed(alone)]

    async def concurrently() -> list[EmbeddingResponse]:
        requests = [EmbeddingRequest(model=MODEL, input=[text, TEXTS[0]]) for text in TEXTS * 3]
        return await asyncio.gather(*(embedder.embed(embedder.prepare(request)) for request in requests))

    for index, response in enumerate(asyncio.run(concurrently())):
        assert vectors(response) == [alone[index % len(TEXTS)], alone[0]]


def test_inputs_decoded_together_keep_their_bits_across_micro_batches(embedder: LlamaEmbedder) -> None:
    # Long inputs of different lengths: decoded together they fill several micro-batches, and llama.cpp
    # cuts them at other places than when each is alone.
    texts = [
        "A lighthouse keeper counted the ships. " * 40,
        "short",
        "The night train crossed the bridge slowly. " * 40,
        "Bread rises in a warm kitchen. " * 60,
        *TEXTS,
    ]
    assert embedder.max_sequences >= len(texts)
    assert sum(len(embedder.tokenize(text)) for text in texts) > 2 * EMBEDDING_CTX
    alone = [vectors(embed(embedder, input=text))[0] for text in texts]
    assert vectors(embed(embedder, input=texts)) == alone
    assert vectors(embed(embedder, input=texts[::-1])) == alone[::-1]


def test_requests_take_turns_so_a_small_one_does_not_wait_for_a_big_one(embedder: LlamaEmbedder) -> None:
    finished: list[str] = []

    async def run(name: str, inputs: list[str | int | list[int]]) -> None:
        await embedder.embed(embedder.prepare(EmbeddingRequest(model=MODEL, input=inputs)))
        finished.append(name)

    async def both() -> None:
        big = asyncio.create_task(run("big", [f"sentence number {index}" for index in range(24)]))
        await asyncio.sleep(0)  # the big request is queued first
        await asyncio.gather(run("small", ["just one"]), big)

    asyncio.run(both())
    assert finished == ["small", "big"]


def test_token_ids_give_the_vector_of_their_text(embedder: LlamaEmbedder) -> None:
    tokens = embedder.tokenize(TEXTS[3])
    by_text = vectors(embed(embedder, input=TEXTS[3]))
    assert vectors(embed(embedder, input=tokens)) == by_text
    assert vectors(embed(embedder, input=[tokens, tokens])) == by_text * 2


def test_base64_is_the_float32_bytes_of_the_same_vector(embedder: LlamaEmbedder) -> None:
    floats = vectors(embed(embedder, input=TEXTS[:2]))
    encoded = embed(embedder, input=TEXTS[:2], encoding_format="base64")
    for item, vector in zip(encoded.data, floats, strict=True):
        assert isinstance(item.embedding, str)
        decoded = array("f", base64.b64decode(item.embedding))
        assert decoded.tolist() == vector


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        ({"input": []}, "input", "must not be an empty list"),
        ({"input": [""]}, "input", "input 0 is empty"),
        ({"input": ["a", 5]}, "input", "not a mixture"),
        ({"input": [[1, 2], [99_999_999]]}, "input", "input 1 holds token ids outside"),
        ({"input": [-1]}, "input", "`input` holds token ids outside"),
        ({"input": ["ok", "word " * (EMBEDDING_CTX + 10)]}, "input", "input 1 has"),
        ({"input": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}, "input", f"at most {MAX_EMBEDDING_INPUTS}"),
        ({"input": "x", "dimensions": 64}, "dimensions", "must be 576"),
    ],
)
def test_what_cannot_be_embedded_is_refused_with_its_param(
    embedder: LlamaEmbedder, fields: dict[str, object], param: str, fragment: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        embedder.prepare(EmbeddingRequest(model=MODEL, **fields))  # type: ignore[arg-type]
    assert caught.value.status == 400
    assert caught.value.param == param
    assert fragment in caught.value.message


def test_dimensions_equal_to_the_model_size_are_accepted(embedder: LlamaEmbedder) -> None:
    assert len(vectors(embed(embedder, input="x", dimensions=576))[0]) == 576


def test_the_longest_input_the_context_holds_is_served(embedder: LlamaEmbedder) -> None:
    tokens = (embedder.tokenize("word " * EMBEDDING_CTX))[:EMBEDDING_CTX]
    assert len(vectors(embed(embedder, input=tokens))[0]) == 576
