"""Keys and limits: 401, 403, 429 with Retry-After in the OpenAI error shape; no over-admission."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest

from chunkwise.gateway import GatewayConfig
from tests.server.conftest import MODEL, RunningServer

from .conftest import RunningGateway, create_key, make_config, run_gateway, with_store

MESSAGES: Any = [{"role": "user", "content": "Hi"}]


def post(gateway: RunningGateway, key: str | None, **body: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    payload = {"model": MODEL, "messages": MESSAGES, "max_tokens": 1, **body}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=payload, headers=headers, timeout=60)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"]
    return error


@pytest.fixture
def config(upstream: RunningServer, sqlite_url: str) -> GatewayConfig:
    return make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])


def test_a_request_without_a_valid_key_gets_401(config: GatewayConfig) -> None:
    key = create_key(config, "revoked")
    with run_gateway(config) as gateway:
        assert post(gateway, key).status_code == 200
        assert with_store(config, lambda store: store.revoke_key("revoked")) == 1
        assert_error(post(gateway, key), 401, "invalid_api_key")
        assert_error(post(gateway, None), 401, "invalid_api_key")
        assert_error(post(gateway, "cwk-not-a-key"), 401, "invalid_api_key")
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)


def test_keys_are_stored_only_as_hashes(config: GatewayConfig, tmp_path: Any) -> None:
    key = create_key(config, "secret-keeper")
    database = config.database.url[len("sqlite:///") :]
    with open(database, "rb") as file:
        assert key.encode() not in file.read()


def test_a_model_the_key_may_not_use_gets_403(config: GatewayConfig) -> None:
    key = create_key(config, models=["some-other-model"])
    with run_gateway(config) as gateway:
        assert_error(post(gateway, key), 403, "model_not_allowed")
        assert_error(post(gateway, key, model="some-other-model"), 404, "model_not_found")


def test_requests_per_minute(config: GatewayConfig) -> None:
    key = create_key(config, rpm=2)
    with run_gateway(config) as gateway:
        assert [post(gateway, key).status_code for _ in range(2)] == [200, 200]
        refused = post(gateway, key)
        error = assert_error(refused, 429, "rate_limit_exceeded")
        assert error["type"] == "requests"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)


def test_tokens_per_minute(config: GatewayConfig) -> None:
    key = create_key(config, tpm=5)
    with run_gateway(config) as gateway:
        assert post(gateway, key, max_tokens=8).status_code == 200
        gateway.usage_rows(1)
        refused = post(gateway, key)
        assert assert_error(refused, 429, "rate_limit_exceeded")["type"] == "tokens"
        assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_token_budget(config: GatewayConfig) -> None:
    key = create_key(config, budget_tokens=600)
    with run_gateway(config) as gateway:
        statuses: list[int] = []
        while not statuses or statuses[-1] == 200:
            statuses.append(post(gateway, key, max_tokens=4).status_code)
            gateway.usage_rows(len(statuses))
        refused = post(gateway, key)
        assert_error(refused, 429, "insufficient_quota")
        assert "retry-after" not in refused.headers
        rows = gateway.usage_rows(len(statuses) - 1)
    assert len(rows) >= 2 and statuses[-1] == 429
    [record] = with_store(config, lambda store: store.list_keys())
    assert record.tokens_used == sum(row["prompt_tokens"] + row["completion_tokens"] for row in rows)
    assert record.tokens_used <= 600 and record.reserved_tokens == 0


async def _burst(gateway: RunningGateway, key: str, count: int, **body: Any) -> list[int]:
    async with httpx.AsyncClient(timeout=120) as client:
        payload = {"model": MODEL, "messages": MESSAGES, "max_tokens": 1, **body}
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{gateway.url}/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}
                )
                for _ in range(count)
            )
        )
    return sorted(response.status_code for response in responses)


def test_concurrent_requests_never_exceed_the_request_limit(config: GatewayConfig) -> None:
    key = create_key(config, rpm=3)
    with run_gateway(config) as gateway:
        assert asyncio.run(_burst(gateway, key, 16)) == [200] * 3 + [429] * 13


#: About 870 tokens of prompt (the test engine's context is 1,024), in about 3,800 bytes.
LONG_PROMPT = "Tell me about the weather. " * 140


@pytest.mark.parametrize(("budget", "limit"), [(50, None), (50, 1), (12_000, 1)])
def test_concurrent_requests_never_spend_past_the_budget(
    upstream: RunningServer, database_url: str, budget: int, limit: int | None
) -> None:
    # A reservation covers the prompt and the completion bound (the model's room without max_tokens), and a
    # request is admitted only while used + reserved + its reservation fits the budget.
    config = make_config(database_url, [("a", f"{upstream.url}/v1", [MODEL])], model_context_tokens=512)
    key = create_key(config, budget_tokens=budget)
    fields: dict[str, Any] = {"messages": [{"role": "user", "content": LONG_PROMPT}]}
    fields["max_tokens"] = limit
    with run_gateway(config) as gateway:
        statuses = asyncio.run(_burst(gateway, key, 40, **fields))
        rows = gateway.usage_rows(statuses.count(200))
    [record] = with_store(config, lambda store: store.list_keys())
    assert record.reserved_tokens == 0 and record.tokens_used <= budget
    assert record.tokens_used == sum(row["prompt_tokens"] + row["completion_tokens"] for row in rows)
    if budget == 50:
        assert statuses == [429] * 40
    else:
        assert 1 <= statuses.count(200) <= 3  # each reserves the body's size, about 3,800 tokens
        assert all(row["prompt_tokens"] > 800 for row in rows)  # the upstream's count of the long prompt
