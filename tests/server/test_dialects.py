"""The Responses API and Anthropic Messages on the real server: what the SDK checks do not reach.

Engine failures in each dialect's events, ``ping`` while a Messages request waits, metrics by dialect, keys
in ``x-api-key``, the Responses store (bounded, in memory or in a SQLite file), and a tool call cut by the
token limit on the chat path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkwise.dialects import (
    MessageDeltaEvent,
    MessagesErrorEvent,
    MessagesStreamDecoder,
    MessageStartEvent,
    PingEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseObject,
    ResponsesStreamDecoder,
)
from chunkwise.edge import MemoryResponseStore, SQLiteResponseStore, StoredResponse
from chunkwise.engine import LlamaCppEngine
from chunkwise.server import ServerSettings, create_app

from .conftest import KEEPALIVE_INTERVAL, MODEL, RunningServer, serve
from .test_concurrency import data_lines, long_request
from .test_errors import _FailingEngine

HELLO: Any = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def failing_server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    with serve(create_app(_FailingEngine(engine, fail_after=2))) as running:
        yield running


def test_an_engine_failure_mid_stream_is_the_error_event_then_response_failed(failing_server: RunningServer) -> None:
    body = {"model": MODEL, "input": "Say hello.", "max_output_tokens": 16, "stream": True}
    with httpx.Client(base_url=failing_server.url, timeout=60) as http:
        response = http.post("/v1/responses", json=body)
        assert response.status_code == 200
        decoder = ResponsesStreamDecoder()
        events = [*decoder.feed(response.content), *decoder.close()]
        error, failed = events[-2:]
        assert isinstance(error, ResponseErrorEvent) and "model engine failed" in error.message
        assert isinstance(failed, ResponseFailedEvent) and failed.response.status == "failed"
        assert failed.response.error is not None and failed.response.error.code == "engine_error"
        assert [event.sequence_number for event in events] == list(range(len(events)))
        # Whole, the same failure is a 500 in the OpenAI shape.
        whole = http.post("/v1/responses", json={**body, "stream": False})
        assert whole.status_code == 500 and whole.json()["error"]["code"] == "engine_error"


def test_an_engine_failure_in_messages_is_anthropics_error_event_or_shape(failing_server: RunningServer) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 16, "stream": True}
    with httpx.Client(base_url=failing_server.url, timeout=60) as http:
        response = http.post("/v1/messages", json=body)
        assert response.status_code == 200
        decoder = MessagesStreamDecoder()
        events = [*decoder.feed(response.content), *decoder.close()]
        assert isinstance(events[0], MessageStartEvent)
        assert isinstance(events[-1], MessagesErrorEvent) and events[-1].error.type == "api_error"
        whole = http.post("/v1/messages", json={**body, "stream": False})
        assert whole.status_code == 500
        assert whole.json()["type"] == "error" and whole.json()["error"]["type"] == "api_error"


@pytest.fixture
def queue_server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    settings = ServerSettings(queue_size=1, max_running=1, keepalive_interval=KEEPALIVE_INTERVAL)
    with serve(create_app(engine, settings)) as running:
        yield running


def test_a_waiting_messages_stream_gets_message_start_then_pings(queue_server: RunningServer) -> None:
    waiting = {"model": MODEL, "messages": HELLO, "max_tokens": 3, "stream": True}
    with (
        httpx.Client(base_url=queue_server.url, timeout=60) as a,
        httpx.Client(base_url=queue_server.url, timeout=60) as b,
        a.stream("POST", "/v1/chat/completions", json=long_request(150)) as first,
    ):
        first_lines = first.iter_lines()
        assert data_lines(first_lines, 1)
        second = b.post("/v1/messages", json=waiting)
        assert [line for line in first_lines if line][-1] == "data: [DONE]"
    decoder = MessagesStreamDecoder()
    events = [*decoder.feed(second.content), *decoder.close()]
    assert isinstance(events[0], MessageStartEvent)
    pings = [index for index, event in enumerate(events) if isinstance(event, PingEvent)]
    assert pings and pings == list(range(1, len(pings) + 1)), "pings right after message_start, while waiting"
    assert isinstance(events[-2], MessageDeltaEvent)
    assert b"keep-alive" not in second.content


def test_metrics_count_each_dialect_under_its_own_labels(server: RunningServer, http: httpx.Client) -> None:
    before = {
        endpoint: server.metric("chunkwise_generated_tokens_total", endpoint=endpoint)
        for endpoint in ("responses", "messages")
    }
    assert http.post("/v1/responses", json={"model": MODEL, "input": "Hi", "max_output_tokens": 2}).status_code == 200
    message = {"model": MODEL, "messages": HELLO, "max_tokens": 2}
    assert http.post("/v1/messages", json=message).status_code == 200
    assert server.metric("chunkwise_generated_tokens_total", endpoint="responses") == before["responses"] + 2
    assert server.metric("chunkwise_generated_tokens_total", endpoint="messages") == before["messages"] + 2
    assert server.metric("chunkwise_requests_total", route="/v1/responses", status="200") >= 1
    assert server.metric("chunkwise_requests_total", route="/v1/messages", status="200") >= 1


def test_openapi_describes_both_dialects(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    messages = spec["paths"]["/v1/messages"]["post"]
    assert messages["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/MessagesRequest")
    assert messages["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/MessagesErrorResponse"
    )
    events = messages["responses"]["200"]["content"]["text/event-stream"]["schema"]["oneOf"]
    assert any(event["$ref"].endswith("/PingEvent") for event in events)
    responses = spec["paths"]["/v1/responses"]["post"]
    assert responses["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ResponseObject")
    assert {"get", "delete"} <= set(spec["paths"]["/v1/responses/{response_id}"])
    assert "/v1/messages/count_tokens" in spec["paths"]


def test_x_api_key_unlocks_every_route_and_refusals_take_the_dialects_shape(engine: LlamaCppEngine) -> None:
    with (
        serve(create_app(engine, ServerSettings(api_key="sesame"))) as running,
        httpx.Client(base_url=running.url, timeout=60) as http,
    ):
        message = {"model": MODEL, "messages": HELLO, "max_tokens": 1}
        assert http.post("/v1/messages", json=message, headers={"x-api-key": "sesame"}).status_code == 200
        refused = http.post("/v1/messages", json=message, headers={"x-api-key": "wrong"})
        assert refused.status_code == 401
        assert refused.json()["type"] == "error"
        assert refused.json()["error"]["type"] == "authentication_error"
        responses = http.post("/v1/responses", json={"model": MODEL, "input": "Hi"})
        assert responses.status_code == 401 and responses.json()["error"]["code"] == "invalid_api_key"
        chat = {"model": MODEL, "messages": HELLO, "max_tokens": 1}
        assert http.post("/v1/chat/completions", json=chat, headers={"x-api-key": "sesame"}).status_code == 200


def test_a_chat_tool_call_cut_by_the_token_limit_ends_with_length(http: httpx.Client) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    body = {"model": MODEL, "messages": HELLO, "tools": [tool], "tool_choice": "required", "max_tokens": 3}
    choice = http.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "length"


def _stored(response_id: str) -> StoredResponse:
    return StoredResponse(response=ResponseObject(id=response_id, status="completed"), input=[{"content": "hi"}])


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_response_store_keeps_the_most_recently_used(kind: str, tmp_path: Path) -> None:
    store = MemoryResponseStore(2) if kind == "memory" else SQLiteResponseStore(str(tmp_path / "r.db"), 2)
    store.put(_stored("a"))
    store.put(_stored("b"))
    assert store.get("a") is not None  # a is now more recent than b
    store.put(_stored("c"))
    assert store.get("b") is None
    found = store.get("a")
    assert found is not None and found.input == [{"content": "hi"}] and found.response.status == "completed"
    assert store.delete("c") and not store.delete("c")
    store.close()


def test_the_memory_store_keeps_to_its_byte_budget_too() -> None:
    store = MemoryResponseStore(100, max_bytes=300)
    big = [{"content": "x" * 100}]
    for name in "abc":
        store.put(StoredResponse(response=ResponseObject(id=name), input=big))
    # Each entry is over 100 bytes of JSON: the oldest went to keep the rest under 300.
    assert store.get("a") is None and store.get("c") is not None
    store.put(StoredResponse(response=ResponseObject(id="huge"), input=[{"content": "x" * 1000}]))
    assert store.get("huge") is not None, "the newest stays even alone over the budget"
    assert store.get("b") is None and store.get("c") is None


def test_stored_responses_outlive_the_server_with_a_sqlite_store(engine: LlamaCppEngine, tmp_path: Path) -> None:
    settings = ServerSettings(response_store=str(tmp_path / "responses.db"))
    body = {"model": MODEL, "input": "Hi", "max_output_tokens": 2}
    with serve(create_app(engine, settings)) as running, httpx.Client(base_url=running.url, timeout=60) as http:
        made = http.post("/v1/responses", json=body).json()
    with serve(create_app(engine, settings)) as running, httpx.Client(base_url=running.url, timeout=60) as http:
        again = http.get(f"/v1/responses/{made['id']}")
        assert again.status_code == 200 and again.json() == made
        follow_up = http.post("/v1/responses", json={**body, "previous_response_id": made["id"]})
        assert follow_up.status_code == 200
        assert http.delete(f"/v1/responses/{made['id']}").json() == {
            "id": made["id"],
            "object": "response",
            "deleted": True,
        }
        assert http.get(f"/v1/responses/{made['id']}").status_code == 404


def test_the_routers_own_refusals_under_v1_messages_are_in_anthropics_shape(http: httpx.Client) -> None:
    for response, status in [(http.get("/v1/messages"), 405), (http.post("/v1/messages/nothing", json={}), 404)]:
        assert response.status_code == status
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    # Elsewhere they stay OpenAI's.
    assert set(http.get("/v1/responses").json()["error"]) == {"message", "type", "param", "code"}


def test_responses_json_object_format_gives_json(http: httpx.Client) -> None:
    body = {
        "model": MODEL,
        "input": "Describe a cat as a JSON object with its name and age.",
        "text": {"format": {"type": "json_object"}},
        "max_output_tokens": 64,
        "temperature": 0,
    }
    response = http.post("/v1/responses", json=body).json()
    [message] = [item for item in response["output"] if item["type"] == "message"]
    text = message["content"][0]["text"]
    # Greedy decoding of this prompt closes its object well within the limit.
    assert response["status"] == "completed"
    assert isinstance(json.loads(text), dict)
