"""The gateway behind the shared HTTP edge: bad bodies and handler bugs answer in the OpenAI error shape."""

from __future__ import annotations

from typing import Any, NoReturn

import httpx
import pytest

from tests.server.conftest import MODEL, RunningServer

from .conftest import create_key, make_config, run_gateway

# Nothing listens here: these requests never reach an upstream (the models are configured, so no health check).
_UNREACHABLE = "http://127.0.0.1:9/v1"


def _assert_openai_error(response: httpx.Response, status: int, code: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] and body["error"]["type"]
    assert body["error"]["code"] == code
    assert "Traceback" not in response.text


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_a_400_not_a_500(sqlite_url: str, depth: int) -> None:
    config = make_config(sqlite_url, [("a", _UNREACHABLE, [MODEL])])
    key = create_key(config)
    body = b'{"model": "%s", "junk": %s%s}' % (MODEL.encode(), b"[" * depth, b"]" * depth)
    with run_gateway(config) as gateway:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            content=body,
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            timeout=30,
        )
        if response.status_code == 502 and depth == 1_000:  # decoded, so sent on to the upstream
            pytest.skip("this process runs with a raised recursion limit, so 1,000 levels decode")
        _assert_openai_error(response, 400, "invalid_json")


def _boom(*args: Any, **kwargs: Any) -> NoReturn:
    raise RuntimeError("a bug in a handler")


def test_an_exception_in_a_handler_is_a_json_500(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(sqlite_url, [("a", _UNREACHABLE, [MODEL])])
    key = create_key(config)
    headers = {"authorization": f"Bearer {key}"}
    with run_gateway(config) as gateway:
        # A proxied route (called directly, outside Starlette) and a Starlette route.
        monkeypatch.setattr(gateway.gateway.forwarder, "forward", _boom)
        monkeypatch.setattr(gateway.gateway.admission, "listing_key", _boom)
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        proxied = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
        _assert_openai_error(proxied, 500, None)
        assert proxied.json()["error"]["type"] == "server_error"
        listed = httpx.get(f"{gateway.url}/v1/models", headers=headers, timeout=30)
        _assert_openai_error(listed, 500, None)


def test_a_key_may_come_as_x_api_key_or_as_a_bearer_token_in_any_case(sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", _UNREACHABLE, [MODEL])])
    key = create_key(config)
    with run_gateway(config) as gateway:
        # Anthropic's SDKs send `x-api-key`; every route takes it, whatever its dialect.
        response = httpx.get(f"{gateway.url}/v1/models", headers={"x-api-key": key}, timeout=30)
        assert response.status_code == 200
        wrong = httpx.get(f"{gateway.url}/v1/models", headers={"x-api-key": key + "x"}, timeout=30)
        _assert_openai_error(wrong, 401, "invalid_api_key")
        lower = httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"bearer {key}"}, timeout=30)
        assert lower.status_code == 200 and [entry["id"] for entry in lower.json()["data"]] == [MODEL]


def test_unknown_paths_and_methods_get_the_error_shape(sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", _UNREACHABLE, [MODEL])])
    with run_gateway(config) as gateway:
        _assert_openai_error(httpx.get(f"{gateway.url}/v1/nothing", timeout=30), 404, None)
        wrong_method = httpx.get(f"{gateway.url}/v1/chat/completions", timeout=30)
        _assert_openai_error(wrong_method, 405, None)
        assert wrong_method.headers["allow"] == "POST"


def test_a_stream_start_is_never_shared_between_responses(upstream: RunningServer, sqlite_url: str) -> None:
    # The server's middleware adds its request id to a stream's start message in place; the gateway, in the
    # same process here, must not send that id (or any other response's header) with its own streams.
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}
    with run_gateway(config) as gateway:
        direct = httpx.post(f"{upstream.url}/v1/chat/completions", json=body, timeout=60)
        assert direct.status_code == 200 and "x-request-id" in direct.headers
        through = httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60
        )
        assert through.status_code == 200
        assert "x-request-id" not in through.headers
        assert through.headers["content-type"] == "text/event-stream"
