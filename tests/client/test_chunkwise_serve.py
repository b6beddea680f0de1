"""The client against ``chunkwise serve`` on loopback: the two halves of chunkwise talking to each other."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import chunkwise

from .servers import free_port, subprocess_server

pytestmark = pytest.mark.engine

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
API_KEY = "test-key"
MESSAGES = [{"role": "user", "content": "Name a colour."}]
GREEDY: dict[str, Any] = {"max_tokens": 8, "temperature": 0.0, "seed": 1}
#: Holds the engine for a while: SmolLM2's end tokens (<|endoftext|> 0, <|im_end|> 2) are banned.
LONG: dict[str, Any] = {"max_tokens": 400, "logit_bias": {"0": -100, "2": -100}}


@pytest.fixture(scope="module")
def chunkwise_server() -> Iterator[str]:
    port = free_port()
    args = ["-m", "chunkwise", "serve", "--host", "127.0.0.1", "--port", str(port), "--api-key", API_KEY]
    # One running sequence and a queue of one make a third concurrent request a 429; keep-alives every 50 ms
    # while queued.
    args += ["--n-ctx", "512", "--n-threads", "1", "--max-running", "1", "--queue-size", "1"]
    args += ["--keepalive-interval", "0.05"]
    args += ["--log-level", "warning", "--no-access-log"]
    with subprocess_server(args, port=port, health_path="/health") as url:
        yield url + "/v1"


def client(base_url: str, **options: object) -> chunkwise.Client:
    return chunkwise.Client(base_url=base_url, api_key=API_KEY, **options)  # type: ignore[arg-type]


def test_models_list(chunkwise_server: str) -> None:
    with client(chunkwise_server) as c:
        assert MODEL in [model.id for model in c.models.list().data]


def test_api_key_from_environment(chunkwise_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMASDK_BEARER_AUTH", API_KEY)
    with chunkwise.Client(base_url=chunkwise_server) as c:
        assert c.models.list().data


def test_wrong_api_key(chunkwise_server: str) -> None:
    with (
        chunkwise.Client(base_url=chunkwise_server, api_key="wrong") as c,
        pytest.raises(chunkwise.AuthenticationError) as info,
    ):
        c.models.list()

    assert info.value.status_code == 401
    assert info.value.request_id  # the server names every request


def test_stream_with_usage(chunkwise_server: str) -> None:
    with client(chunkwise_server) as c:
        stream = c.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, **GREEDY
        )
        with stream:
            texts = list(stream.iter_text())
        completion = stream.final_completion()

    assert stream.request_id
    assert texts and completion.choices[0].message.content == "".join(texts)
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 8
    assert stream.chunks[-1].choices == []  # the usage chunk


def test_unstreamed_equals_streamed(chunkwise_server: str) -> None:
    with client(chunkwise_server) as c:
        completion = c.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
        stream = c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **GREEDY)
        reassembled = stream.final_completion()

    assert completion.choices[0].message.content == reassembled.choices[0].message.content
    assert completion.choices[0].finish_reason == reassembled.choices[0].finish_reason


def test_async_client(chunkwise_server: str) -> None:
    async def main() -> tuple[str, str]:
        async with chunkwise.AsyncClient(base_url=chunkwise_server, api_key=API_KEY) as c:
            stream = await c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **GREEDY)
            async with stream:
                text = "".join([piece async for piece in stream.iter_text()])
            completion = await c.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
            return text, completion.choices[0].message.content or ""

    streamed, unstreamed = anyio.run(main)
    assert streamed and streamed == unstreamed


def test_unknown_model_is_not_found(chunkwise_server: str) -> None:
    with client(chunkwise_server) as c, pytest.raises(chunkwise.NotFoundError) as info:
        c.chat.completions.create(model="no-such-model", messages=MESSAGES, max_tokens=2)

    assert info.value.error is not None and info.value.error.code == "model_not_found"


def test_invalid_field_is_a_bad_request_naming_it(chunkwise_server: str) -> None:
    with client(chunkwise_server) as c, pytest.raises(chunkwise.BadRequestError) as info:
        c.chat.completions.create(model=MODEL, messages=MESSAGES, extra_body={"temperature": "hot"})

    assert info.value.error is not None and info.value.error.param == "temperature"


def test_queued_stream_hits_first_chunk_deadline_despite_keepalives(chunkwise_server: str) -> None:
    # While one long generation holds the engine, a second stream waits in the queue and receives
    # keep-alive comments every 50 ms. They must not count as chunks.
    with client(chunkwise_server) as c:
        busy = c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **LONG)
        with busy, pytest.raises(chunkwise.FirstChunkTimeoutError) as info:
            c.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, max_tokens=2, timeout=chunkwise.Timeouts(first_chunk=0.5)
            )
    assert info.value.request_id


def test_full_queue_is_a_rate_limit_error_with_retry_after(chunkwise_server: str) -> None:
    async def queued(c: chunkwise.AsyncClient) -> None:
        # Waits in the queue (the only place) until cancelled: its first chunk never comes.
        await c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, max_tokens=2)

    async def main() -> chunkwise.RateLimitError:
        async with chunkwise.AsyncClient(base_url=chunkwise_server, api_key=API_KEY, max_retries=0) as c:
            busy = await c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **LONG)
            async with busy, anyio.create_task_group() as group:
                group.start_soon(queued, c)
                await anyio.sleep(0.5)
                with pytest.raises(chunkwise.RateLimitError) as info:
                    await c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
                group.cancel_scope.cancel()
            return info.value

    error = anyio.run(main)
    assert error.status_code == 429
    assert error.response.headers.get("retry-after")
