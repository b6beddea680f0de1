"""Routing: failover before the first byte, an error frame after it, health checks and ejection."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai

from chunkwise.sse import SSEDecoder
from tests.client.fault_server import FaultServer
from tests.server.conftest import MODEL, RunningServer

from .conftest import KillableUpstream, create_key, make_config, run_gateway

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


def test_failover_when_an_upstream_is_killed(
    upstream: RunningServer, killable_upstream: KillableUpstream, sqlite_url: str
) -> None:
    config = make_config(
        sqlite_url,
        [("doomed", f"{killable_upstream.url}/v1", [MODEL]), ("a", f"{upstream.url}/v1", [MODEL])],
        ejection_cooldown=60.0,
    )
    key = create_key(config)
    with run_gateway(config) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60)
        # Both upstreams take turns while both live.
        for _ in range(2):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
        assert {row["upstream"] for row in gateway.usage_rows(2)} == {"doomed", "a"}
        killable_upstream.kill()
        for _ in range(4):
            chunks = client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=2,
                stream=True,
            )
            assert [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
        rows = gateway.usage_rows(6)
        assert [row["upstream"] for row in rows[2:]] == ["a"] * 4
        assert [(row["status"], row["outcome"]) for row in rows] == [(200, "ok")] * 6
        assert gateway.metric("chunkwise_gateway_ejections_total", upstream="doomed") == 1
        assert (
            gateway.metric("chunkwise_gateway_upstream_errors_total", upstream="doomed", model=MODEL, kind="connect")
            == 1
        )
        health = httpx.get(f"{gateway.url}/health").json()
        assert health["upstreams"]["doomed"]["available"] is False and health["upstreams"]["a"]["available"] is True


def test_active_health_checks_mark_a_dead_upstream_unhealthy(
    upstream: RunningServer, killable_upstream: KillableUpstream, sqlite_url: str
) -> None:
    config = make_config(
        sqlite_url,
        [("doomed", f"{killable_upstream.url}/v1", [MODEL]), ("a", f"{upstream.url}/v1", [MODEL])],
        health_check_interval=0.1,
    )
    with run_gateway(config) as gateway:
        assert gateway.metric("chunkwise_gateway_upstream_healthy", upstream="doomed") == 1
        killable_upstream.kill()
        deadline = time.monotonic() + 15
        while gateway.metric("chunkwise_gateway_upstream_healthy", upstream="doomed") != 0:
            assert time.monotonic() < deadline, "the health check never noticed"
            time.sleep(0.05)
        assert gateway.metric("chunkwise_gateway_upstream_healthy", upstream="a") == 1
        # Passive ejection never happened: no request went to the dead upstream.
        assert gateway.metric("chunkwise_gateway_ejections_total", upstream="doomed") == 0


def test_failover_on_5xx_and_429_before_the_first_byte(
    upstream: RunningServer, fault: FaultServer, sqlite_url: str
) -> None:
    # Scripted upstreams: a real chunkwise serve cannot be made to answer 500, and its 429 needs a full queue.
    broken = fault.base_url("server_error_text")
    busy = fault.base_url("retry_after_hour")
    config = make_config(
        sqlite_url,
        [("broken", broken, [MODEL]), ("busy", busy, [MODEL]), ("a", f"{upstream.url}/v1", [MODEL])],
    )
    key = create_key(config)
    with run_gateway(config) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60)
        for _ in range(4):
            stream = client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=1,
                stream=True,
            )
            assert list(stream)
        rows = gateway.usage_rows(4)
        assert all(row["status"] == 200 for row in rows)
        # The 500 ejected "broken" after its one try; the 429 only moved that request on.
        assert len(fault.state(broken).requests) == 1
        assert len(fault.state(busy).requests) >= 1
        assert gateway.metric("chunkwise_gateway_ejections_total", upstream="broken") == 1
        assert gateway.metric("chunkwise_gateway_ejections_total", upstream="busy") == 0
        assert gateway.metric("chunkwise_gateway_upstream_errors_total", upstream="busy", kind="status_429") == 1
    assert {row["upstream"] for row in rows} <= {"busy", "a"}


def test_when_every_upstream_fails_the_last_answer_is_passed_on(fault: FaultServer, sqlite_url: str) -> None:
    # Scripted upstream: see above.
    config = make_config(sqlite_url, [("broken", fault.base_url("server_error_text"), [MODEL])])
    key = create_key(config)
    with run_gateway(config) as gateway:
        body = {"model": MODEL, "messages": MESSAGES, "stream": True}
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )
        assert response.status_code == 500 and response.text == "Internal Server Error"
        [row] = gateway.usage_rows(1)
    assert (row["status"], row["outcome"], row["upstream"]) == (500, "upstream_error", "broken")


def test_a_connection_reset_before_the_first_byte_fails_over(
    upstream: RunningServer, fault: FaultServer, sqlite_url: str
) -> None:
    # Scripted upstream: it accepts the connection and resets it without answering.
    config = make_config(
        sqlite_url, [("reset", fault.base_url("reset_always"), [MODEL]), ("a", f"{upstream.url}/v1", [MODEL])]
    )
    key = create_key(config)
    with run_gateway(config) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60)
        for _ in range(3):
            assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
        assert [row["upstream"] for row in gateway.usage_rows(3)] == ["a"] * 3


def test_an_upstream_failing_mid_stream_ends_the_stream_with_an_error_frame(
    fault: FaultServer, sqlite_url: str
) -> None:
    # Scripted upstream: a real server cannot be made to reset its connection after a chosen chunk.
    config = make_config(
        sqlite_url, [("flaky", fault.base_url("reset_mid_stream"), [MODEL]), ("spare", fault.base_url("ok"), [MODEL])]
    )
    key = create_key(config)
    with run_gateway(config) as gateway:
        rows = []
        # Until the flaky upstream got one (they take turns): no retry once bytes went out.
        for count in range(1, 3):
            body = {"model": MODEL, "messages": MESSAGES, "stream": True}
            response = httpx.post(
                f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            rows = gateway.usage_rows(count)
            if rows[-1]["upstream"] == "flaky":
                break
        assert rows[-1]["upstream"] == "flaky"
        events = SSEDecoder().feed(response.content)
        assert [event.data for event in events[-2:]][1] == "[DONE]"
        error = events[-2].json()["error"]
        assert error["code"] == "upstream_failed" and "mid-stream" in error["message"]
        contents = [event.json()["choices"][0]["delta"].get("content") for event in events[:-2]]
        assert contents == ["", "Hello", ","]
        row = rows[-1]
        assert (row["outcome"], row["completion_tokens"], row["cancelled"]) == ("cut_short", 2, False)
        assert gateway.metric("chunkwise_gateway_upstream_errors_total", upstream="flaky", kind="mid_stream") == 1


def test_openai_client_sees_the_mid_stream_failure_as_an_error(fault: FaultServer, sqlite_url: str) -> None:
    # Scripted upstream: see above.
    config = make_config(sqlite_url, [("flaky", fault.base_url("cut_short"), [MODEL])])
    key = create_key(config)
    with run_gateway(config) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        received = []
        try:
            for chunk in stream:
                received.append(chunk)
        except openai.APIError as exc:
            assert "mid-stream" in str(exc.message)
        else:
            raise AssertionError("the stream ended without the error")
        assert len(received) == 3
