"""Queueing, 429, keep-alives, disconnects and cancellation, on the real engine over real sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from chunkwise.engine import LlamaCppEngine
from chunkwise.server import ServerSettings, create_app

from .conftest import KEEPALIVE_INTERVAL, MODEL, RunningServer, serve
from .test_errors import assert_error_shape

# SmolLM2's end-of-text and end-of-turn tokens; banning them makes a generation run to max_tokens, which a
# cancellation test needs (a model that stops on its own would prove nothing).
NO_EOS = {"0": -100, "2": -100}


def long_request(max_tokens: int = 400, **fields: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}],
        "max_tokens": max_tokens,
        "logit_bias": NO_EOS,
        "temperature": 0,
        "stream": True,
        **fields,
    }


def data_lines(lines: Iterator[str], count: int) -> list[str]:
    """The next ``count`` data lines. Keep a reference to ``lines`` while the stream should go on: httpcore
    closes the connection when a half-read iterator is garbage-collected."""
    found: list[str] = []
    for line in lines:
        if line.startswith("data: "):
            found.append(line)
            if len(found) == count:
                break
    return found


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def time_to_first_chunk(url: str, body: dict[str, Any]) -> tuple[float, str]:
    """Seconds until the first data event of a streaming request, and the whole body."""
    started = time.monotonic()
    first: float | None = None
    text: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as http, http.stream("POST", "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if first is None and line.startswith("data: "):
                first = time.monotonic() - started
            text.append(line)
    assert first is not None
    return first, "\n".join(text)


@pytest.fixture
def queue_server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    """One running sequence and one waiting request at most, so that a second request queues."""
    settings = ServerSettings(queue_size=1, max_running=1, keepalive_interval=KEEPALIVE_INTERVAL, retry_after=2)
    with serve(create_app(engine, settings)) as running:
        yield running


@pytest.fixture
def serial_server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    settings = ServerSettings(max_running=1, keepalive_interval=KEEPALIVE_INTERVAL)
    with serve(create_app(engine, settings)) as running:
        yield running


def test_full_queue_is_429_and_a_queued_client_that_leaves_frees_its_place(queue_server: RunningServer) -> None:
    url = queue_server.url
    with (
        httpx.Client(base_url=url, timeout=60) as a,
        httpx.Client(base_url=url, timeout=60) as b,
        httpx.Client(base_url=url, timeout=60) as c,
        a.stream("POST", "/v1/chat/completions", json=long_request()) as generating,
    ):
        generating_lines = generating.iter_lines()
        assert data_lines(generating_lines, 1)
        with b.stream("POST", "/v1/chat/completions", json=long_request(4)) as queued:
            assert queued.status_code == 200
            queued_lines = queued.iter_lines()
            assert next(queued_lines) == ": keep-alive"
            assert queue_server.metric("chunkwise_queue_depth") == 1
            refused = c.post("/v1/chat/completions", json=long_request(4, stream=False))
            assert_error_shape(refused, 429, code="queue_full")
            assert refused.headers["retry-after"] == "2"
        # The queued client went away: its place is free at once, and it never generated.
        assert eventually(lambda: queue_server.metric("chunkwise_queue_depth") == 0)
        assert eventually(
            lambda: queue_server.metric("chunkwise_cancelled_requests_total", endpoint="chat", stage="queued") == 1
        )
        with c.stream("POST", "/v1/chat/completions", json=long_request(2)) as admitted:
            assert admitted.status_code == 200, "the queue has room again"
            assert next(admitted.iter_lines()) == ": keep-alive"
    assert eventually(
        lambda: queue_server.metric("chunkwise_cancelled_requests_total", endpoint="chat", stage="generating") == 1
    )


def test_a_waiting_stream_gets_keepalives_then_its_chunks(queue_server: RunningServer) -> None:
    with (
        httpx.Client(base_url=queue_server.url, timeout=60) as a,
        httpx.Client(base_url=queue_server.url, timeout=60) as b,
        # Long enough that it is still generating when the second request arrives, even on a fast machine
        # with the prompt cached (30 tokens were once over before the second request was read).
        a.stream("POST", "/v1/chat/completions", json=long_request(150)) as first,
    ):
        first_lines = first.iter_lines()
        assert data_lines(first_lines, 1)
        with b.stream("POST", "/v1/chat/completions", json=long_request(3)) as second:
            events = [line for line in second.iter_lines() if line]
        assert [line for line in first_lines if line][-1] == "data: [DONE]"
    keepalives = [event for event in events if event == ": keep-alive"]
    first_data = next(i for i, event in enumerate(events) if event.startswith("data: "))
    assert len(keepalives) >= 1
    assert all(event == ": keep-alive" for event in events[:first_data])
    assert events[-1] == "data: [DONE]"
    assert ": keep-alive" not in events[first_data:], "keep-alives only while waiting"


def test_disconnect_mid_stream_stops_generation_and_frees_the_engine(server: RunningServer) -> None:
    tokens_before = server.metric("chunkwise_generated_tokens_total", endpoint="chat")
    cancelled_before = server.metric("chunkwise_cancelled_requests_total", endpoint="chat", stage="generating")
    with (
        httpx.Client(base_url=server.url, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=long_request(400)) as response,
    ):
        lines = response.iter_lines()
        received = len(data_lines(lines, 5))
    # The connection is closed here, with about 395 tokens (10 s at this machine's speed) still to go.
    seconds, body = time_to_first_chunk(server.url, long_request(2))
    assert seconds < 5.0, f"the next request waited {seconds:.1f} s: the cancelled generation kept the engine"
    assert body.rstrip().endswith("data: [DONE]")
    assert eventually(
        lambda: (
            server.metric("chunkwise_cancelled_requests_total", endpoint="chat", stage="generating")
            == cancelled_before + 1
        )
    )
    made = server.metric("chunkwise_generated_tokens_total", endpoint="chat") - tokens_before - 2
    assert received - 1 <= made <= received + 8, f"{made} tokens made for {received} chunks received"


def test_disconnect_while_waiting_for_a_non_streaming_answer_cancels_it(server: RunningServer) -> None:
    cancelled_before = server.metric("chunkwise_cancelled_requests_total", endpoint="chat", stage="generating")
    with (
        httpx.Client(base_url=server.url, timeout=httpx.Timeout(60, read=1.0)) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.post("/v1/chat/completions", json=long_request(400, stream=False))
    assert eventually(
        lambda: (
            server.metric("chunkwise_cancelled_requests_total", endpoint="chat", stage="generating")
            == cancelled_before + 1
        )
    )
    seconds, _ = time_to_first_chunk(server.url, long_request(2))
    assert seconds < 5.0


def test_the_event_loop_stays_responsive_while_the_model_runs(server: RunningServer) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=long_request(120)) as response,
    ):
        lines = response.iter_lines()
        assert data_lines(lines, 1)
        for _ in range(5):
            started = time.monotonic()
            assert http.get("/health").status_code == 200
            assert time.monotonic() - started < 1.0
        assert server.metric("chunkwise_active_streams") == 1


def test_with_one_running_sequence_requests_are_served_in_arrival_order(serial_server: RunningServer) -> None:
    server = serial_server
    finished: list[tuple[int, int]] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            response = http.post("/v1/chat/completions", json=long_request(6, stream=False))
            with lock:
                finished.append((index, response.status_code))

    threads = [threading.Thread(target=run, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.15)  # arrival order
    for thread in threads:
        thread.join(60)
    assert finished == [(0, 200), (1, 200), (2, 200)]
