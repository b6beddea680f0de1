"""Through the gateway to a real ``chunkwise serve``: the OpenAI client, pass-through, usage, ledger, metrics."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from chunkwise.engine._protocol import Engine
from chunkwise.gateway import load_config
from chunkwise.server import ServerSettings, create_app
from chunkwise.sse import SSEDecoder
from tests.client.fault_server import FaultServer
from tests.server.conftest import MODEL, RunningServer, serve

from .conftest import create_key, make_config, run_gateway

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


def test_openai_client_streams_through_the_gateway_and_the_ledger_bills_the_upstream_usage(
    upstream: RunningServer, sqlite_url: str
) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config, "alice")
    with run_gateway(config) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60)
        direct = openai.OpenAI(base_url=f"{upstream.url}/v1", api_key="unused", max_retries=0, timeout=60)
        request: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 12, "temperature": 0, "seed": 1}
        usage_please: Any = {"include_usage": True}
        chunks = list(client.chat.completions.create(**request, stream=True, stream_options=usage_please))
        expected = list(direct.chat.completions.create(**request, stream=True, stream_options=usage_please))
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert text == "".join(chunk.choices[0].delta.content or "" for chunk in expected if chunk.choices)
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens == 12
        whole = client.chat.completions.create(**request)
        assert whole.choices[0].message.content == text
        rows = gateway.usage_rows(2)
    assert [row["status"] for row in rows] == [200, 200]
    assert all(row["outcome"] == "ok" and not row["cancelled"] for row in rows)
    assert [(row["prompt_tokens"], row["completion_tokens"]) for row in rows] == [
        (usage.prompt_tokens, 12),
        (whole.usage.prompt_tokens if whole.usage else -1, 12),
    ]
    assert rows[0]["upstream"] == "a" and rows[0]["model"] == MODEL
    assert rows[0]["ttft_ms"] is not None and 0 < rows[0]["ttft_ms"] <= rows[0]["duration_ms"]


def test_embeddings_pass_through_the_gateway_and_are_billed_by_their_prompt_tokens(
    upstream: RunningServer, sqlite_url: str
) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config, "alice")
    texts = ["one sentence", "and another one"]
    with run_gateway(config) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60)
        direct = openai.OpenAI(base_url=f"{upstream.url}/v1", api_key="unused", max_retries=0, timeout=60)
        through = client.embeddings.create(model=MODEL, input=texts)
        assert [item.embedding for item in through.data] == [
            item.embedding for item in direct.embeddings.create(model=MODEL, input=texts).data
        ]
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model=MODEL, input=texts, dimensions=3)
        rows = gateway.usage_rows(2)
    assert [(row["status"], row["prompt_tokens"], row["completion_tokens"]) for row in rows] == [
        (200, through.usage.prompt_tokens, 0),
        (400, 0, 0),
    ]


def test_atoma_sdks_embeddings_through_the_gateway(upstream: RunningServer, sqlite_url: str) -> None:
    """The Atoma Python and TypeScript SDKs' ``embeddings.create``, through the gateway with a gateway key."""
    from tests.secure.test_atoma_sdks import ATOMA_PYTHON, TS_DIR, missing, run_driver

    node = shutil.which("node")
    if not ATOMA_PYTHON.exists() or node is None or not (TS_DIR / "node_modules" / "atoma-sdk").exists():
        missing("the Atoma SDKs are not installed: run scripts/setup --test")
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config)
    python_driver = [str(ATOMA_PYTHON), str(Path(__file__).parents[1] / "secure" / "atoma_py" / "drive.py")]
    ts_driver = [node, str(TS_DIR / "drive.js")]
    with run_gateway(config) as gateway:
        through_python = run_driver([*python_driver, gateway.url, MODEL, "embeddings", key])
        through_ts = run_driver([*ts_driver, gateway.url, MODEL, "embeddings", key])
    direct = run_driver([*python_driver, upstream.url, MODEL, "embeddings"])
    assert through_python == direct and len(direct["embeddings"]) == 2
    assert through_ts["embeddings"] == direct["embeddings"]


def test_usage_asked_for_on_behalf_of_the_client_is_removed_but_still_billed(
    upstream: RunningServer, sqlite_url: str
) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config)
    with run_gateway(config) as gateway:
        body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 5, "stream": True}
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60
        )
        assert response.status_code == 200
        events = SSEDecoder().feed(response.content)
        assert events[-1].data == "[DONE]"
        chunks = [event.json() for event in events[:-1]]
        assert all("usage" not in chunk or chunk["usage"] is None for chunk in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        [row] = gateway.usage_rows(1)
    assert row["completion_tokens"] == 5 and row["prompt_tokens"] > 0


def test_models_is_the_union_of_the_upstreams_models(
    upstream: RunningServer, fault: FaultServer, sqlite_url: str
) -> None:
    config = make_config(
        sqlite_url,
        [("a", f"{upstream.url}/v1", [MODEL]), ("b", fault.base_url("ok"), [])],
        health_check_interval=30.0,
    )
    key = create_key(config)
    limited = create_key(config, "limited", models=["fault-model"])
    with run_gateway(config) as gateway:
        listed = httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {key}"}).json()
        assert sorted(entry["id"] for entry in listed["data"]) == sorted([MODEL, "fault-model"])
        only = httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {limited}"}).json()
        assert [entry["id"] for entry in only["data"]] == ["fault-model"]
        assert httpx.get(f"{gateway.url}/v1/models").status_code == 401


def test_keep_alives_and_bytes_pass_through_unchanged(fault: FaultServer, sqlite_url: str) -> None:
    # Scripted upstream: a real server sends keep-alives only while a request waits in its queue, which a
    # test cannot arrange without depending on timing; the scripted one sends one before its chunks.
    base = fault.base_url("no_done")
    config = make_config(sqlite_url, [("f", base, ["fault-model"])])
    key = create_key(config)
    body = {"model": "fault-model", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    direct = httpx.post(f"{base}/chat/completions", json=body, timeout=30).content
    with run_gateway(config) as gateway:
        through = httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
        ).content
        [row] = gateway.usage_rows(1)
    assert through.startswith(b": keep-alive\n\n")
    assert through == direct
    assert (row["prompt_tokens"], row["completion_tokens"], row["outcome"]) == (5, 3, "ok")


def test_client_disconnect_closes_the_upstream_request_at_once(fault: FaultServer, sqlite_url: str) -> None:
    # Scripted upstream: it records the moment its connection closes, which is what this test checks.
    base = fault.base_url("endless")
    config = make_config(sqlite_url, [("f", base, ["fault-model"])])
    key = create_key(config, "bob")
    with run_gateway(config) as gateway:
        body = {"model": "fault-model", "messages": MESSAGES, "stream": True}
        with httpx.stream(
            "POST", f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        ) as response:
            received = 0
            for data in response.iter_raw():
                received += data.count(b"data: ")
                if received >= 3:
                    break
        assert fault.state(base).disconnected.wait(5), "the upstream connection stayed open"
        [row] = gateway.usage_rows(1)
        assert gateway.metric("chunkwise_gateway_cancelled_requests_total", upstream="f", key="bob") == 1
    assert row["cancelled"] and row["outcome"] == "cancelled"
    assert row["completion_tokens"] >= 3


def test_real_upstream_stops_generating_when_the_client_goes_away(upstream: RunningServer, sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config)
    cancelled_before = upstream.metric("chunkwise_cancelled_requests_total", stage="generating")
    with run_gateway(config) as gateway:
        body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 400, "stream": True}
        with httpx.stream(
            "POST", f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        ) as response:
            for data in response.iter_raw():
                if b'"content"' in data:
                    break
        [row] = gateway.usage_rows(1)
    assert row["cancelled"] and row["completion_tokens"] < 400
    deadline = time.monotonic() + 10
    while upstream.metric("chunkwise_cancelled_requests_total", stage="generating") < cancelled_before + 1:
        assert time.monotonic() < deadline, "the upstream kept generating after the client went away"
        time.sleep(0.05)


def test_metrics_by_upstream_model_and_key(upstream: RunningServer, sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config, "carol")
    with run_gateway(config) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60)
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
        gateway.usage_rows(1)
        labels = {"upstream": "a", "model": MODEL, "key": "carol"}
        assert gateway.metric("chunkwise_gateway_requests_total", status="200", **labels) == 1
        assert gateway.metric("chunkwise_gateway_tokens_total", kind="completion", **labels) == 3
        assert completion.usage is not None
        prompt = gateway.metric("chunkwise_gateway_tokens_total", kind="prompt", **labels)
        assert prompt == completion.usage.prompt_tokens
        assert gateway.metric("chunkwise_gateway_time_to_first_token_seconds_count", upstream="a", model=MODEL) == 1
        assert gateway.metric("chunkwise_gateway_outstanding_requests", upstream="a") == 0
        assert gateway.metric("chunkwise_gateway_upstream_healthy", upstream="a") == 1


def test_legacy_completions_stream_through_and_are_billed(upstream: RunningServer, sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config)
    with run_gateway(config) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60)
        pieces = list(client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, stream=True))
        assert "".join(piece.choices[0].text for piece in pieces if piece.choices)
        assert all(piece.usage is None for piece in pieces)
        [row] = gateway.usage_rows(1)
    assert row["completion_tokens"] == 4 and row["prompt_tokens"] > 0 and row["outcome"] == "ok"


def test_an_upstream_refusal_is_passed_on_unchanged(upstream: RunningServer, sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config)
    body = {"model": MODEL, "messages": [], "stream": True}
    direct = httpx.post(f"{upstream.url}/v1/chat/completions", json=body, timeout=30)
    with run_gateway(config) as gateway:
        through = httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
        )
        assert (through.status_code, through.json()["error"]["message"]) == (
            direct.status_code,
            direct.json()["error"]["message"],
        )
        assert through.status_code == 400
        bad = httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{", headers={"authorization": f"Bearer {key}"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
        [row] = gateway.usage_rows(1)
    assert (row["status"], row["outcome"], row["prompt_tokens"], row["completion_tokens"]) == (
        400,
        "upstream_error",
        0,
        0,
    )


def test_an_oversized_body_gets_413(upstream: RunningServer, sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])], max_body_size=1000)
    key = create_key(config)
    with run_gateway(config) as gateway:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 2000}]}
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
        )
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

        def chunked() -> Iterator[bytes]:
            yield b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "'
            yield b"y" * 2000
            yield b'"}]}'

        streamed = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            content=chunked(),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            timeout=30,
        )
        assert streamed.status_code == 413


def test_the_upstream_key_comes_from_the_environment(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A second app on the session's engine: safe here, as this test's requests never overlap.
    with serve(create_app(engine, ServerSettings(api_key="upstream-secret"))) as locked:
        path = tmp_path / "gateway.toml"
        path.write_text(
            f"""[database]
url = "sqlite:///gateway.db"
[gateway]
health_check_interval = 30.0
[[upstreams]]
name = "locked"
url = "{locked.url}/v1"
api_key_env = "CHUNKWISE_TEST_UPSTREAM_KEY"
"""
        )
        monkeypatch.setenv("CHUNKWISE_TEST_UPSTREAM_KEY", "upstream-secret")
        config = load_config(path)
        key = create_key(config)
        with run_gateway(config) as gateway:
            # The models came from the upstream's own GET /models, which needs the key too.
            assert gateway.gateway.router.models() == [MODEL]
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60)
            assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1).choices
