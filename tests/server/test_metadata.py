"""``/openapi.json``, ``/metrics``, ``/health`` and ``/v1/models``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
from openapi_spec_validator import validate

from .conftest import MODEL, RunningServer


def test_openapi_is_valid_and_generated_from_the_wire_types(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    spec = response.json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    schemas = spec["components"]["schemas"]
    assert {"ChatCompletionRequest", "ChatCompletionChunk", "ChatCompletion", "CompletionRequest"} <= set(schemas)
    assert "ErrorResponse" in schemas
    assert set(spec["paths"]) >= {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"}
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
    assert chat["responses"]["200"]["content"]["text/event-stream"]["schema"]["$ref"].endswith("/ChatCompletionChunk")
    assert {"400", "404", "413", "429"} <= set(chat["responses"])


def test_real_chunks_and_requests_match_the_published_schemas(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()

    def check(instance: Any, name: str) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        jsonschema.Draft202012Validator(schema).validate(instance)

    request = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True}
    check(request, "ChatCompletionRequest")
    body = http.post(
        "/v1/chat/completions", json={**request, "stream_options": {"include_usage": True}, "logprobs": True}
    ).text
    payloads = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]
    for payload in payloads[:-1]:
        check(json.loads(payload), "ChatCompletionChunk")
    whole = http.post("/v1/chat/completions", json={**request, "stream": False}).json()
    check(whole, "ChatCompletion")
    check(http.post("/v1/chat/completions", json={"model": "unknown", "messages": []}).json(), "ErrorResponse")


def test_metrics_expose_every_documented_family(server: RunningServer, http: httpx.Client) -> None:
    request = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True}
    assert http.post("/v1/chat/completions", json=request).status_code == 200
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for family, kind in [
        ("chunkwise_requests_total", "counter"),
        ("chunkwise_time_to_first_token_seconds", "histogram"),
        ("chunkwise_generated_tokens_total", "counter"),
        ("chunkwise_prompt_tokens_total", "counter"),
        ("chunkwise_active_streams", "gauge"),
        ("chunkwise_queue_depth", "gauge"),
        ("chunkwise_cancelled_requests_total", "counter"),
        ("chunkwise_engine_errors_total", "counter"),
        ("chunkwise_running_sequences", "gauge"),
        ("chunkwise_engine_waiting_requests", "gauge"),
        ("chunkwise_batch_size", "histogram"),
        ("chunkwise_step_seconds", "histogram"),
        ("chunkwise_kv_cells_used", "gauge"),
        ("chunkwise_kv_cells", "gauge"),
        ("chunkwise_prefix_cache_hits_total", "counter"),
        ("chunkwise_prefix_cache_tokens_total", "counter"),
        ("chunkwise_draft_tokens_total", "counter"),
        ("chunkwise_draft_accepted_tokens_total", "counter"),
        ("chunkwise_jump_forward_tokens_total", "counter"),
        ("chunkwise_jump_forward_accepted_tokens_total", "counter"),
    ]:
        assert f"# TYPE {family} {kind}" in text
    assert server.metric("chunkwise_requests_total", route="/v1/chat/completions", status="200") >= 1
    assert server.metric("chunkwise_time_to_first_token_seconds_count", endpoint="chat") >= 1
    assert server.metric("chunkwise_generated_tokens_total", endpoint="chat") >= 1
    assert server.metric("chunkwise_active_streams") == 0
    assert server.metric("chunkwise_queue_depth") == 0
    assert server.metric("chunkwise_step_seconds_count") >= 1
    assert server.metric("chunkwise_kv_cells_used") >= 1


def test_health_and_models(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"message": "ok", "status": "ok", "model": MODEL}
    models = http.get("/v1/models").json()
    assert models["object"] == "list"
    assert [model["id"] for model in models["data"]] == [MODEL]
    assert http.get(f"/v1/models/{MODEL}").json()["id"] == MODEL
    assert http.get("/v1/models/nope").status_code == 404


def test_every_response_has_a_request_id(http: httpx.Client) -> None:
    responses = [http.get("/health"), http.get("/metrics"), http.get("/nowhere"), http.post("/v1/completions")]
    ids = [response.headers["x-request-id"] for response in responses]
    assert len(set(ids)) == len(ids)
