"""``POST /v1/embeddings`` on a real server, called by the official clients: openai-python, LangChain, LlamaIndex.

LangChain's ``OpenAIEmbeddings`` is told ``check_embedding_ctx_length=False``: otherwise it tokenizes with
OpenAI's tiktoken vocabulary and sends those ids, which mean nothing to another model (its documented
setting for servers that are not OpenAI).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from chunkwise.engine import DEFAULT_MODEL_ID, Engine, LlamaEmbedder, default_model_path
from chunkwise.server import ServerSettings, create_app

from .conftest import MODEL, RunningServer, serve
from .test_errors import assert_error_shape

pytestmark = pytest.mark.engine

TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply today.", "A kitten rested on the rug."]


def cosine(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def test_openai_client_float_and_base64_agree(client: openai.OpenAI) -> None:
    as_floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    # openai-python asks for base64 by default and decodes it itself.
    as_base64 = client.embeddings.create(model=MODEL, input=TEXTS)
    assert as_floats.object == "list" and as_floats.model == MODEL
    assert [item.index for item in as_floats.data] == [0, 1, 2]
    assert [item.embedding for item in as_base64.data] == [item.embedding for item in as_floats.data]
    assert as_floats.usage.prompt_tokens == as_floats.usage.total_tokens > len(TEXTS)
    cat, stocks, kitten = (item.embedding for item in as_floats.data)
    assert len(cat) == 576
    assert cosine(cat, cat) == pytest.approx(1.0, abs=1e-6)
    assert cosine(cat, kitten) > cosine(cat, stocks)


def test_every_input_form(client: openai.OpenAI, http: httpx.Client) -> None:
    tokens = http.post("/tokenize", json={"content": TEXTS[0]}).json()["tokens"]
    by_text = client.embeddings.create(model=MODEL, input=TEXTS[0]).data[0].embedding
    assert client.embeddings.create(model=MODEL, input=tokens).data[0].embedding == by_text
    batch = client.embeddings.create(model=MODEL, input=[tokens, tokens[:3]])
    assert batch.data[0].embedding == by_text and batch.data[1].embedding != by_text


def test_concurrent_requests_get_the_vectors_they_get_alone(server: RunningServer, client: openai.OpenAI) -> None:
    alone = {text: client.embeddings.create(model=MODEL, input=text).data[0].embedding for text in TEXTS}

    async def together() -> list[list[float]]:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as async_client:
            answers = await asyncio.gather(
                *(async_client.embeddings.create(model=MODEL, input=[text] * 4) for text in TEXTS * 2)
            )
        return [item.embedding for answer in answers for item in answer.data]

    assert asyncio.run(together()) == [alone[text] for text in TEXTS * 2 for _ in range(4)]


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": MODEL, "input": ["fine", "word " * 600]}, 400, "input", "context_length_exceeded"),
        ({"model": MODEL, "input": "x", "dimensions": 8}, 400, "dimensions", None),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, 400, "encoding_format", None),
        ({"model": MODEL, "input": []}, 400, "input", None),
        ({"model": MODEL, "input": [1.5]}, 400, "input[0]", None),
        ({"model": MODEL}, 400, "input", None),
        ({"model": "nope", "input": "x"}, 404, "model", "model_not_found"),
    ],
)
def test_refusals_are_openai_errors(
    http: httpx.Client, body: dict[str, object], status: int, param: str, code: str
) -> None:
    response = http.post("/v1/embeddings", json=body)
    assert_error_shape(response, status, param=param, code=code)
    if code == "context_length_exceeded":
        assert "input 1" in response.json()["error"]["message"]


def test_a_large_body_is_checked_too(http: httpx.Client) -> None:
    """Over 64 KiB, inputs are tokenized off the event loop; the checks are the same."""
    inputs = ["word " * 80] * 200 + ["word " * 600]
    response = http.post("/v1/embeddings", json={"model": MODEL, "input": inputs})
    assert_error_shape(response, 400, param="input", code="context_length_exceeded")
    assert "input 200 has" in response.json()["error"]["message"]


def test_openai_client_raises_its_own_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input="x", dimensions=32)
    assert caught.value.body["param"] == "dimensions"  # type: ignore[index]


def test_langchain_openai_embeddings(server: RunningServer) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    embeddings = langchain_openai.OpenAIEmbeddings(
        model=MODEL, base_url=f"{server.url}/v1", api_key="x", check_embedding_ctx_length=False, max_retries=0
    )
    documents = embeddings.embed_documents(TEXTS)
    query = embeddings.embed_query(TEXTS[0])
    assert len(documents) == 3 and len(query) == 576
    assert query == pytest.approx(documents[0], abs=1e-6)
    assert asyncio.run(embeddings.aembed_query(TEXTS[2])) == pytest.approx(documents[2], abs=1e-6)


def test_llama_index_openai_like_embedding(server: RunningServer) -> None:
    openai_like = pytest.importorskip("llama_index.embeddings.openai_like")
    model = openai_like.OpenAILikeEmbedding(model_name=MODEL, api_base=f"{server.url}/v1", api_key="x", max_retries=0)
    documents = model.get_text_embedding_batch(TEXTS)
    query = model.get_query_embedding(TEXTS[1])
    assert len(documents) == 3 and len(query) == 576
    assert query == pytest.approx(documents[1], abs=1e-6)


@pytest.fixture(scope="module")
def separate_model_server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``--embedding-model``: a second GGUF file (here a copy of the bundled one), served under its own id."""
    path: Path = tmp_path_factory.mktemp("models") / "my-embedder.gguf"
    path.symlink_to(default_model_path())
    with (
        LlamaEmbedder(path, model_id="my-embedder", n_ctx=256, n_threads=1) as embedder,
        serve(create_app(engine, ServerSettings(), embedder=embedder)) as running,
    ):
        yield running


def test_a_separate_embedding_model_has_its_own_id(separate_model_server: RunningServer) -> None:
    with httpx.Client(base_url=separate_model_server.url, timeout=60) as http:
        models = [model["id"] for model in http.get("/v1/models").json()["data"]]
        assert models == [DEFAULT_MODEL_ID, "my-embedder"]
        assert http.get("/v1/models/my-embedder").json()["id"] == "my-embedder"
        answer = http.post("/v1/embeddings", json={"model": "my-embedder", "input": "hi"})
        assert answer.status_code == 200 and answer.json()["model"] == "my-embedder"
        wrong = http.post("/v1/embeddings", json={"model": DEFAULT_MODEL_ID, "input": "hi"})
        assert_error_shape(wrong, 404, param="model", code="model_not_found")


def test_without_an_embedder_embeddings_are_a_404(engine: Engine) -> None:
    with serve(create_app(engine)) as running:
        answer = httpx.post(f"{running.url}/v1/embeddings", json={"model": MODEL, "input": "x"})
        assert_error_shape(answer, 404, param="model", code="model_not_found")
