"""A third-party peer: llama-cpp-python's own OpenAI-compatible server on the bundled GGUF.

Its streams differ from ours (``: ping`` comments, ``charset`` in the content type, no usage chunk),
which is the point: the client must read any compatible server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import chunkwise
from chunkwise.engine import default_model_path

from .servers import free_port, subprocess_server

pytestmark = pytest.mark.engine

MESSAGES = [{"role": "user", "content": "Name a colour."}]
#: Deterministic and short: the model is small, the machine shared.
GREEDY: dict[str, Any] = {"max_tokens": 8, "temperature": 0.0, "seed": 1}


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    port = free_port()
    args = ["-m", "llama_cpp.server", "--model", str(default_model_path()), "--host", "127.0.0.1", "--port", str(port)]
    args += ["--n_ctx", "512", "--n_threads", "1", "--verbose", "False"]
    with subprocess_server(args, port=port, health_path="/v1/models") as url:
        yield url + "/v1"


def test_models_list(llama_server: str) -> None:
    with chunkwise.Client(base_url=llama_server) as client:
        models = client.models.list()

    assert len(models.data) == 1
    assert models.data[0].id.endswith(".gguf")


def test_stream_text_and_final_completion(llama_server: str) -> None:
    with chunkwise.Client(base_url=llama_server) as client:
        stream = client.chat.completions.create(model="smollm2", messages=MESSAGES, stream=True, **GREEDY)
        with stream:
            chunks = list(stream)
        completion = stream.final_completion()

    assert stream.request_id  # llama-cpp-python sends x-request-id
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text and completion.choices[0].message.content == text
    assert completion.choices[0].finish_reason in {"stop", "length"}
    assert completion.id.startswith("chatcmpl-")


def test_sync_and_async_streams_agree(llama_server: str) -> None:
    with chunkwise.Client(base_url=llama_server) as client:
        stream = client.chat.completions.create(model="smollm2", messages=MESSAGES, stream=True, **GREEDY)
        sync_text = "".join(stream.iter_text())

    async def main() -> str:
        async with chunkwise.AsyncClient(base_url=llama_server) as client:
            stream = await client.chat.completions.create(model="smollm2", messages=MESSAGES, stream=True, **GREEDY)
            return "".join([text async for text in stream.iter_text()])

    assert sync_text and anyio.run(main) == sync_text


def test_unstreamed_completion_has_usage(llama_server: str) -> None:
    with chunkwise.Client(base_url=llama_server) as client:
        completion = client.chat.completions.create(model="smollm2", messages=MESSAGES, **GREEDY)

    assert completion.choices[0].message.content
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 8


@pytest.mark.anyio
async def test_async_unstreamed_and_final_completion_agree(llama_server: str) -> None:
    async with chunkwise.AsyncClient(base_url=llama_server) as client:
        completion = await client.chat.completions.create(model="smollm2", messages=MESSAGES, **GREEDY)
        stream = await client.chat.completions.create(model="smollm2", messages=MESSAGES, stream=True, **GREEDY)
        reassembled = await stream.final_completion()

    assert reassembled.choices[0].message.content == completion.choices[0].message.content


def test_validation_error_keeps_the_servers_message(llama_server: str) -> None:
    # llama-cpp-python answers a body that fails validation with 500 (not 422) and a text message.
    with (
        chunkwise.Client(base_url=llama_server, max_retries=0) as client,
        pytest.raises(chunkwise.InternalServerError) as info,
    ):
        client.chat.completions.create(model="smollm2", messages=MESSAGES, extra_body={"max_tokens": "many"})

    assert info.value.status_code == 500
    assert info.value.error is not None and "max_tokens" in info.value.error.message
    assert info.value.request_id


def test_unknown_path_is_not_found(llama_server: str) -> None:
    with (
        chunkwise.Client(base_url=llama_server.replace("/v1", "/v9")) as client,
        pytest.raises(chunkwise.NotFoundError) as info,
    ):
        client.models.list()

    assert info.value.error is not None and info.value.error.message == "Not Found"
