"""Bad input and engine failures get the OpenAI error shape, never a traceback, crash or hang."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from chunkwise import EngineError
from chunkwise.engine import Generation, LlamaCppEngine, TextGeneration
from chunkwise.server import ServerSettings, create_app
from chunkwise.types import ChatCompletionChunk, ChatCompletionRequest, CompletionRequest
from tests.conftest import N_CTX

from .conftest import MODEL, RunningServer, serve
from .test_stream_shape import data_payloads

HELLO: list[Any] = [{"role": "user", "content": "Say hello."}]


def assert_error_shape(
    response: httpx.Response, status: int, *, param: str | None = None, code: str | None = None
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "x-request-id" in response.headers
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert body["error"]["type"]
    assert body["error"]["param"] == param
    assert body["error"]["code"] == code
    assert "Traceback" not in response.text


def post_raw(http: httpx.Client, content: bytes, content_type: str = "application/json") -> httpx.Response:
    return http.post("/v1/chat/completions", content=content, headers={"content-type": content_type})


@pytest.mark.parametrize("body", [b"{not json", b"", b'{"model": "x", "messages": [', b"\xff\xfe"])
def test_malformed_json_is_400(http: httpx.Client, body: bytes) -> None:
    assert_error_shape(post_raw(http, body), 400, code="invalid_json")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": MODEL, "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"messages": HELLO}, "model"),
        ({"model": MODEL, "messages": HELLO, "temperature": 3}, "temperature"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": HELLO, "n": "two"}, "n"),
        ({"model": MODEL, "messages": HELLO, "logit_bias": {"42": 500}}, "logit_bias"),
        ({"model": MODEL, "messages": HELLO, "stop": [""]}, "stop[0]"),
        ([HELLO], None),
    ],
)
def test_schema_violation_is_400_naming_the_param(http: httpx.Client, body: Any, param: str | None) -> None:
    assert_error_shape(http.post("/v1/chat/completions", json=body), 400, param=param)


def test_unknown_model_is_404(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "gpt-17", "messages": HELLO})
    assert_error_shape(response, 404, param="model", code="model_not_found")
    response = http.post("/v1/completions", json={"model": "gpt-17", "prompt": "hi"})
    assert_error_shape(response, 404, param="model", code="model_not_found")


def test_prompt_over_the_context_is_400(http: httpx.Client) -> None:
    long_prompt = "hello " * (N_CTX + 100)
    response = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": long_prompt}], "stream": True},
    )
    assert_error_shape(response, 400, param="messages", code="context_length_exceeded")
    response = http.post("/v1/completions", json={"model": MODEL, "prompt": long_prompt})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    # Past 64 KiB the prompt is prepared off the event loop; errors come back the same way.
    huge = {"model": MODEL, "messages": [{"role": "user", "content": "hello " * 15_000}]}
    assert_error_shape(
        http.post("/v1/chat/completions", json=huge), 400, param="messages", code="context_length_exceeded"
    )


def test_wrong_content_type_is_415(http: httpx.Client) -> None:
    response = post_raw(http, b"model=x", "application/x-www-form-urlencoded")
    assert_error_shape(response, 415, code="unsupported_media_type")


def test_wrong_method_is_405(http: httpx.Client) -> None:
    response = http.get("/v1/chat/completions")
    assert_error_shape(response, 405)
    assert "POST" in response.headers["allow"]


def test_unknown_path_is_404(http: httpx.Client) -> None:
    assert_error_shape(http.post("/v1/embeddings", json={}), 404)


@pytest.fixture(scope="module")
def small_body_server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    with serve(create_app(engine, ServerSettings(max_body_size=1024))) as running:
        yield running


def test_oversized_body_is_413(small_body_server: RunningServer) -> None:
    big = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 2000}]}).encode()
    with httpx.Client(base_url=small_body_server.url, timeout=60) as http:
        assert_error_shape(post_raw(http, big), 413, code="request_too_large")

        # Without Content-Length (chunked upload) the limit holds while reading, too.
        def pieces() -> Iterator[bytes]:
            for start in range(0, len(big), 256):
                yield big[start : start + 256]

        response = http.post("/v1/chat/completions", content=pieces(), headers={"content-type": "application/json"})
        assert_error_shape(response, 413, code="request_too_large")
        small = http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 2})
        assert small.status_code == 200


# The real engine cannot be made to fail on demand, so this wrapper runs the real generation and raises
# EngineError after a few chunks, as a crashed llama.cpp call would.
class _FailingGeneration:
    def __init__(self, inner: Generation[ChatCompletionChunk], fail_after: int) -> None:
        self._inner = inner
        self._fail_after = fail_after
        self._chunks: AsyncGenerator[ChatCompletionChunk, None] | None = None

    @property
    def prompt_tokens(self) -> int:
        return self._inner.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self._inner.completion_tokens

    def stream(self) -> AsyncIterator[ChatCompletionChunk]:
        self._chunks = self._failing()
        return self._chunks

    async def _failing(self) -> AsyncGenerator[ChatCompletionChunk, None]:
        count = 0
        async for chunk in self._inner.stream():
            if count == self._fail_after:
                raise EngineError("llama_decode returned -3")
            count += 1
            yield chunk

    async def aclose(self) -> None:
        if self._chunks is not None:
            await self._chunks.aclose()
        await self._inner.aclose()


class _FailingEngine:
    def __init__(self, inner: LlamaCppEngine, fail_after: int) -> None:
        self._inner = inner
        self._fail_after = fail_after

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def context_length(self) -> int:
        return self._inner.context_length

    def prepare_chat(
        self, request: ChatCompletionRequest, *, request_id: str, created: int
    ) -> Generation[ChatCompletionChunk]:
        inner = self._inner.prepare_chat(request, request_id=request_id, created=created)
        return _FailingGeneration(inner, self._fail_after)

    def prepare_completion(self, request: CompletionRequest, *, request_id: str, created: int) -> TextGeneration:
        return self._inner.prepare_completion(request, request_id=request_id, created=created)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def failing_server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    with serve(create_app(_FailingEngine(engine, fail_after=2))) as running:
        yield running


def test_engine_failure_mid_stream_sends_an_error_frame_then_done(failing_server: RunningServer) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 16, "stream": True}
    with httpx.Client(base_url=failing_server.url, timeout=60) as http:
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
        payloads = data_payloads(response.text)
        assert payloads[-1] == "[DONE]"
        assert len(payloads) == 4, "two chunks, the error frame, [DONE]"
        error = json.loads(payloads[-2])["error"]
        assert error["type"] == "server_error"
        assert error["code"] == "engine_error"
        assert "llama_decode" in error["message"]

        response = http.post("/v1/chat/completions", json={**body, "stream": False})
        assert_error_shape(response, 500, code="engine_error")

        # The server is still healthy and the engine free for the next request.
        ok = http.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 2})
        assert ok.status_code == 200
    assert failing_server.metric("chunkwise_engine_errors_total", endpoint="chat") == 2


class _BuggyEngine(_FailingEngine):
    """An engine whose ``prepare_chat`` has a bug: the exception must come out as a JSON 500, not a crash."""

    def prepare_chat(
        self, request: ChatCompletionRequest, *, request_id: str, created: int
    ) -> Generation[ChatCompletionChunk]:
        raise RuntimeError("a bug in a handler")


def test_an_exception_in_a_handler_is_a_json_500(engine: LlamaCppEngine) -> None:
    with serve(create_app(_BuggyEngine(engine, fail_after=0))) as running, httpx.Client(base_url=running.url) as http:
        response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
        assert_error_shape(response, 500)
        assert response.json()["error"]["type"] == "server_error"
        assert response.json()["error"]["message"] == "The server had an internal error."
