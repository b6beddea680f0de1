"""Continuous batching through the real server: several requests in flight share the engine's decode steps.

Every test compares what a request gets in company with what the same request gets alone: greedy output
and seeded sampling must not depend on the other sequences in the batch, nor on the prefix cache.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx

from chunkwise.engine import LlamaCppEngine
from chunkwise.server import ServerSettings, create_app

from .conftest import KEEPALIVE_INTERVAL, MODEL, RunningServer, serve
from .test_concurrency import NO_EOS, data_lines, eventually
from .test_errors import assert_error_shape

TOPICS = [
    "Name a color.",
    "Write one line about the sea.",
    "What is two plus two?",
    "Say hello to a friend.",
    "Describe a cat in a few words.",
    "Name a fruit and say why you like it.",
    "Give me a word that rhymes with moon.",
    "What do bees make?",
]


def body(content: str, max_tokens: int | None = 12, **fields: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **fields,
    }


def answer(url: str, request: dict[str, Any]) -> list[str]:
    """Every choice's content of one non-streaming request."""
    response = httpx.post(f"{url}/v1/chat/completions", json=request, timeout=120)
    assert response.status_code == 200, response.text
    choices = sorted(response.json()["choices"], key=lambda choice: choice["index"])
    return [choice["message"]["content"] or "" for choice in choices]


def all_at_once(url: str, requests: list[dict[str, Any]], *, stagger: float = 0.0) -> list[list[str]]:
    """Send every request on its own thread (``stagger`` seconds apart) and collect the answers in order."""
    results: list[list[str] | BaseException] = [RuntimeError("no answer")] * len(requests)

    def run(index: int) -> None:
        try:
            results[index] = answer(url, requests[index])
        except BaseException as exc:  # reported below, with the request that failed
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
        time.sleep(stagger)
    for thread in threads:
        thread.join(120)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if not isinstance(result, BaseException)]


def test_eight_greedy_requests_together_answer_as_they_do_alone(server: RunningServer) -> None:
    requests = [body(topic) for topic in TOPICS]
    alone = [answer(server.url, request) for request in requests]
    steps_before = server.metric("chunkwise_batch_size_count")
    lone_steps_before = server.metric("chunkwise_batch_size_bucket", le="1.0")
    together = all_at_once(server.url, requests)
    assert together == alone
    shared_steps = (server.metric("chunkwise_batch_size_count") - steps_before) - (
        server.metric("chunkwise_batch_size_bucket", le="1.0") - lone_steps_before
    )
    assert shared_steps > 0, "some decode steps carried several requests"
    assert server.metric("chunkwise_prefix_cache_hits_total") > 0, "the repeated prompts reused their cache"


def test_requests_join_and_leave_a_running_batch(server: RunningServer) -> None:
    # Different lengths, started one after another: each joins while others run and leaves on its own.
    requests = [body(topic, max_tokens=4 + 3 * index, logit_bias=NO_EOS) for index, topic in enumerate(TOPICS[:5])]
    alone = [answer(server.url, request) for request in requests]
    assert all_at_once(server.url, requests, stagger=0.15) == alone
    assert eventually(lambda: server.metric("chunkwise_running_sequences") == 0)


def test_cancelling_one_stream_leaves_the_others_untouched(server: RunningServer) -> None:
    keep = [body(topic, max_tokens=20, logit_bias=NO_EOS) for topic in TOPICS[:3]]
    alone = [answer(server.url, request) for request in keep]
    results: list[list[str]] = []

    def others() -> None:
        results.extend(all_at_once(server.url, keep))

    cancelled_before = server.metric("chunkwise_cancelled_requests_total", endpoint="chat", stage="generating")
    thread = threading.Thread(target=others)
    with (
        httpx.Client(base_url=server.url, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=body(TOPICS[4], 200, stream=True, logit_bias=NO_EOS)) as r,
    ):
        lines = r.iter_lines()
        assert data_lines(lines, 2)
        thread.start()
        assert data_lines(lines, 3), "the doomed stream runs beside the others for a few steps"
    thread.join(120)
    assert results == alone
    assert eventually(
        lambda: (
            server.metric("chunkwise_cancelled_requests_total", endpoint="chat", stage="generating")
            == cancelled_before + 1
        )
    )


def test_n_grammar_seeds_and_free_text_side_by_side(server: RunningServer) -> None:
    requests = [
        body(TOPICS[0], max_tokens=10, n=3, temperature=1.0, seed=7),
        body(TOPICS[1], max_tokens=10),
        # Greedy, it closes its object well within max_tokens: the whole answer must parse.
        body(
            "Describe a cat as a JSON object with its name and age.",
            max_tokens=64,
            response_format={"type": "json_object"},
        ),
        body(TOPICS[2], max_tokens=10, temperature=1.0, seed=11),
        body(TOPICS[2], max_tokens=10, temperature=1.0, seed=12),
    ]
    alone = [answer(server.url, request) for request in requests]
    together = all_at_once(server.url, requests)
    assert together == alone
    assert len(together[0]) == 3 and len(set(together[0])) > 1, "n=3 samples three different choices"
    assert together[3] != together[4], "each request samples with its own seed"
    assert isinstance(json.loads(together[2][0]), dict)


def test_a_small_kv_cache_runs_everyone_to_the_end_and_refuses_what_cannot_fit(small_engine: LlamaCppEngine) -> None:
    settings = ServerSettings(queue_size=8, keepalive_interval=KEEPALIVE_INTERVAL)
    with serve(create_app(small_engine, settings)) as running:
        # No max_tokens: each request may fill its whole sequence; four of them share two sequences.
        padding = " Please." * 100
        requests = [body(topic + padding, max_tokens=None, logit_bias=NO_EOS) for topic in TOPICS[:4]]
        finished: list[str] = []

        def run(request: dict[str, Any]) -> None:
            response = httpx.post(f"{running.url}/v1/chat/completions", json=request, timeout=120)
            finished.append(response.json()["choices"][0]["finish_reason"])

        threads = [threading.Thread(target=run, args=(request,)) for request in requests]
        for thread in threads:
            thread.start()
        too_long = httpx.post(f"{running.url}/v1/chat/completions", json=body("word " * 300), timeout=60)
        assert_error_shape(too_long, 400, param="messages", code="context_length_exceeded")
        too_many = httpx.post(f"{running.url}/v1/chat/completions", json=body(TOPICS[0], n=3), timeout=60)
        assert_error_shape(too_many, 400, param="n")
        assert "n=3" in too_many.json()["error"]["message"]
        for thread in threads:
            thread.join(120)
        assert finished == ["length"] * 4, "every sequence filled its own context and stopped there"
        assert running.metric("chunkwise_kv_cells") == 2 * small_engine.context_length
        assert running.metric("chunkwise_kv_cells_used") <= 2 * small_engine.context_length
