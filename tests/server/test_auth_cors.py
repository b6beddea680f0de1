"""Optional bearer authentication, and CORS for browser clients (preflight never needs the key)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from chunkwise.engine import LlamaCppEngine
from chunkwise.server import ServerSettings, create_app

from .conftest import MODEL, RunningServer, serve
from .test_errors import assert_error_shape

KEY = "sk-test-4f1c"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def locked_server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    with serve(create_app(engine, ServerSettings(api_key=KEY))) as running:
        yield running


@pytest.fixture
def http(locked_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=locked_server.url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", f"Basic {KEY}", KEY, "Bearer"])
def test_missing_or_wrong_key_is_401(http: httpx.Client, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    response = http.post("/v1/chat/completions", json=BODY, headers=headers)
    assert_error_shape(response, 401, code="invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error_shape(http.get("/v1/models", headers=headers), 401, code="invalid_api_key")
    for path, body in [("/v1/embeddings", {"model": MODEL, "input": "x"}), ("/tokenize", {"content": "x"})]:
        assert_error_shape(http.post(path, json=body, headers=headers), 401, code="invalid_api_key")


def test_the_right_key_works(locked_server: RunningServer) -> None:
    with openai.OpenAI(base_url=f"{locked_server.url}/v1", api_key=KEY, max_retries=0) as client:
        assert client.chat.completions.create(**BODY).choices[0].message.content is not None  # type: ignore[call-overload]
        assert [model.id for model in client.models.list()] == [MODEL]
    tokens = httpx.post(
        f"{locked_server.url}/tokenize", json={"content": "x"}, headers={"authorization": f"Bearer {KEY}"}
    )
    assert tokens.status_code == 200 and tokens.json()["count"] >= 1
    with (
        openai.OpenAI(base_url=f"{locked_server.url}/v1", api_key="nope", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.models.list()


def test_health_metrics_and_openapi_need_no_key(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200
    assert http.get("/metrics").status_code == 200
    spec = http.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}


def test_cors_preflight_needs_no_key(http: httpx.Client) -> None:
    response = http.options(
        "/v1/chat/completions",
        headers={
            "origin": "https://playground.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


def test_cors_headers_on_answers_errors_included(http: httpx.Client) -> None:
    origin = {"origin": "https://playground.example"}
    ok = http.post("/v1/chat/completions", json=BODY, headers={**origin, "authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "*"
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()
    denied = http.post("/v1/chat/completions", json=BODY, headers=origin)
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == "*", "a browser must be able to read the 401"
