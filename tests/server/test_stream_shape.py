"""The raw SSE bytes and headers, read with httpx, as a browser or curl sees them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from .conftest import MODEL

HELLO: list[Any] = [{"role": "user", "content": "Say hello."}]


def raw_events(body: str) -> list[str]:
    """The events of an SSE body, each without its trailing blank line; comments included."""
    assert body.endswith("\n\n"), body[-50:]
    return body[:-2].split("\n\n")


def data_payloads(body: str) -> list[str]:
    events = raw_events(body)
    assert all(event.startswith(("data: ", ":")) for event in events), events
    return [event.removeprefix("data: ") for event in events if event.startswith("data: ")]


def stream(http: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 6, "temperature": 0, "stream": True, **fields}
    return http.post("/v1/chat/completions", json=body)


def test_headers(http: httpx.Client) -> None:
    response = stream(http)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert len(response.headers["x-request-id"]) >= 16


def test_chunks_share_id_and_created_and_end_with_done(http: httpx.Client) -> None:
    response = stream(http)
    payloads = data_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert chunks
    assert {chunk["id"] for chunk in chunks} == {f"chatcmpl-{response.headers['x-request-id']}"}
    assert len({chunk["created"] for chunk in chunks}) == 1
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["model"] == MODEL for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["delta"] for chunk in chunks[1:] for c in chunk["choices"])
    finishes = [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c.get("finish_reason")]
    assert finishes in (["length"], ["stop"])
    assert all(c.get("finish_reason") is None for chunk in chunks[:-1] for c in chunk["choices"]), (
        "only the last chunk finishes"
    )
    assert "usage" not in chunks[-1] or chunks[-1]["usage"] is None


@pytest.mark.parametrize("options", [None, {}, {"include_usage": False}])
def test_no_usage_chunk_unless_asked(http: httpx.Client, options: dict[str, Any] | None) -> None:
    fields: dict[str, Any] = {} if options is None else {"stream_options": options}
    chunks = [json.loads(p) for p in data_payloads(stream(http, **fields).text)[:-1]]
    assert all(chunk["choices"] for chunk in chunks)
    assert all(chunk.get("usage") is None for chunk in chunks)


def test_usage_chunk_when_asked(http: httpx.Client) -> None:
    # End-of-text is banned, so the answer runs to max_tokens and the count is known exactly.
    no_eos = {"0": -100, "2": -100}
    payloads = data_payloads(stream(http, stream_options={"include_usage": True}, logit_bias=no_eos).text)
    assert payloads[-1] == "[DONE]"
    usage_chunk = json.loads(payloads[-2])
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    content_chunks = [json.loads(p) for p in payloads[:-2]]
    assert content_chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert usage["completion_tokens"] == 6 and usage["prompt_tokens"] > 0


def test_non_streaming_response_is_json_with_usage(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 4}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    completion = response.json()
    assert completion["id"] == f"chatcmpl-{response.headers['x-request-id']}"
    assert completion["usage"]["completion_tokens"] <= 4


def test_unknown_fields_are_ignored(http: httpx.Client) -> None:
    response = stream(http, some_future_option={"nested": [1, 2]}, metadata={"k": "v"})
    assert response.status_code == 200
    assert data_payloads(response.text)[-1] == "[DONE]"


def test_text_parts_and_every_role_are_accepted(http: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a":2,"b":2}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "4"},
    ]
    response = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": messages, "max_tokens": 4, "max_completion_tokens": 3},
    )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= 3, "max_completion_tokens wins over max_tokens"


def test_a_large_body_streams_too(http: httpx.Client) -> None:
    # Whitespace makes the body larger than the inline-prepare limit (64 KiB) while the prompt stays small,
    # so this request is prepared in a worker thread.
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 3, "stream": True}
    content = json.dumps(body).encode() + b" " * 70_000
    response = http.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert data_payloads(response.text)[-1] == "[DONE]"
