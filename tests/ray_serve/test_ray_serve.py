"""``chunkwise serve --ray``: the plain server's API, served from Ray Serve replicas on a real local cluster."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai

from chunkwise.engine import DEFAULT_MODEL_ID

from .conftest import RayServer, eventually, start_server

MODEL = DEFAULT_MODEL_ID
HELLO: list[Any] = [{"role": "user", "content": "Say hello to the world."}]
# SmolLM2's end tokens; banned, a generation runs to max_tokens, which failure and cancel tests need.
NO_EOS = {"0": -100, "2": -100}


def long_request(max_tokens: int, content: str = "Tell me a long story about a lighthouse keeper.") -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "logit_bias": NO_EOS,
        "temperature": 0,
        "stream": True,
    }


def data_events(lines: Iterator[str], count: int | None = None) -> list[str]:
    """The next ``count`` data payloads (all of them when None)."""
    found: list[str] = []
    for line in lines:
        if line.startswith("data: "):
            found.append(line.removeprefix("data: "))
            if count is not None and len(found) == count:
                break
    return found


def running_replicas(server: RayServer) -> float:
    return server.metric("chunkwise_ray_replicas", state="RUNNING")


def busy_replica(server: RayServer) -> str:
    [replica] = [name for name, value in server.replica_samples("chunkwise_ray_replica_in_flight").items() if value]
    return replica


def test_the_private_cluster_lives_on_the_loopback_interface(ray_server: RayServer) -> None:
    # Ray would otherwise advertise the machine's network address and talk over it.
    assert ray_server.cluster.startswith("127.0.0.1:"), ray_server.cluster


def test_the_openai_client_streams_and_reassembles_through_ray(ray_server: RayServer) -> None:
    with openai.OpenAI(base_url=f"{ray_server.url}/v1", api_key="unused", max_retries=0, timeout=120) as client:
        request: dict[str, Any] = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0}
        whole = client.chat.completions.create(**request)
        chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
        text = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=5, temperature=0)
        models = client.models.list()
    streamed = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)
    assert whole.choices[0].message.content
    assert streamed == whole.choices[0].message.content
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert text.choices[0].text and text.usage is not None and 0 < text.usage.completion_tokens <= 5
    assert [model.id for model in models.data] == [MODEL]


def test_errors_and_limits_are_the_plain_servers(ray_server: RayServer) -> None:
    with httpx.Client(base_url=ray_server.url, timeout=60) as http:
        missing = http.post("/v1/chat/completions", json={"model": "gpt-4", "messages": HELLO})
        too_long = http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "word " * 3000}]}
        )
        malformed = http.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        health = http.get("/health")
        playground = http.get("/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    # The ingress validates with its own tokenizer: a 400 before any replica is involved.
    assert too_long.status_code == 400 and "context" in too_long.json()["error"]["message"]
    assert malformed.status_code == 400 and set(malformed.json()["error"]) >= {"message", "type", "param", "code"}
    assert health.status_code == 200
    assert playground.status_code == 200 and "<html" in playground.text.lower()
    assert running_replicas(ray_server) == 2


def test_concurrent_streams_spread_over_both_replicas(ray_server: RayServer) -> None:
    before = ray_server.replica_samples("chunkwise_ray_replica_requests_total")

    def one_stream(index: int) -> str:
        body = long_request(24, content=f"Count to ten, attempt {index}.")
        with httpx.stream("POST", f"{ray_server.url}/v1/chat/completions", json=body, timeout=120) as response:
            events = data_events(response.iter_lines())
        assert events[-1] == "[DONE]"
        return "".join(
            choice["delta"].get("content", "") for event in events[:-1] for choice in json.loads(event)["choices"]
        )

    with ThreadPoolExecutor(6) as pool:
        texts = list(pool.map(one_stream, range(6)))
    assert all(texts)
    after = ray_server.replica_samples("chunkwise_ray_replica_requests_total")
    served = {replica: after[replica] - before.get(replica, 0) for replica in after}
    assert sum(served.values()) == 6
    assert len([count for count in served.values() if count > 0]) == 2, served


def test_requests_that_share_a_prompt_prefix_stay_on_one_replica(ray_server: RayServer) -> None:
    systems = [f"You are assistant {name}. Answer in one word. " * 8 for name in ("Alpha", "Bravo")]
    placements: dict[str, set[str]] = {system: set() for system in systems}
    for index in range(6):
        system = systems[index % 2]
        before = ray_server.replica_samples("chunkwise_ray_replica_requests_total")
        body = {
            "model": MODEL,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": f"Question {index}?"}],
            "max_tokens": 2,
        }
        assert httpx.post(f"{ray_server.url}/v1/chat/completions", json=body, timeout=60).status_code == 200
        after = ray_server.replica_samples("chunkwise_ray_replica_requests_total")
        [replica] = [name for name in after if after[name] != before.get(name, 0)]
        placements[system].add(replica)
    # Each prefix kept its replica, and the two went to different ones (a new prefix takes the least recently used).
    assert [len(replicas) for replicas in placements.values()] == [1, 1]
    assert placements[systems[0]] != placements[systems[1]]


def test_a_disconnect_cancels_the_generation_on_its_replica(ray_server: RayServer) -> None:
    with httpx.stream("POST", f"{ray_server.url}/v1/chat/completions", json=long_request(600), timeout=120) as response:
        lines = response.iter_lines()
        assert len(data_events(lines, 3)) == 3
        replica = busy_replica(ray_server)

    # The stream is closed: the replica must have stopped long before 600 tokens. Its own counters arrive
    # with its next answer, so send it tiny requests (different prefixes reach different replicas).
    def cancelled_there() -> bool:
        return ray_server.replica_samples("chunkwise_ray_replica_cancelled_total").get(replica, 0) >= 1

    probes = 0
    while not cancelled_there() and probes < 40:
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"Probe {probes}"}], "max_tokens": 1}
        assert httpx.post(f"{ray_server.url}/v1/chat/completions", json=body, timeout=60).status_code == 200
        probes += 1
    assert cancelled_there()
    generated = ray_server.replica_samples("chunkwise_ray_replica_generated_tokens_total")[replica]
    # Every token this replica ever made, the short tests before included, is far below the 600 asked for.
    assert generated < 300
    assert ray_server.metric("chunkwise_cancelled_requests_total", endpoint="chat", stage="generating") >= 1


def test_a_replica_killed_mid_stream_ends_that_stream_with_an_error_frame(ray_server: RayServer) -> None:
    with httpx.stream("POST", f"{ray_server.url}/v1/chat/completions", json=long_request(600), timeout=120) as response:
        lines = response.iter_lines()
        assert len(data_events(lines, 2)) == 2
        os.kill(ray_server.replica_pid(busy_replica(ray_server)), signal.SIGKILL)
        rest = data_events(lines)
    assert rest[-1] == "[DONE]"
    error = json.loads(rest[-2])["error"]
    assert error["type"] and "failed" in error["message"]
    assert ray_server.metric("chunkwise_ray_replica_failures_total") >= 1
    # Later requests are served meanwhile (by the other replica, or retried there) ...
    with openai.OpenAI(base_url=f"{ray_server.url}/v1", api_key="unused", max_retries=0, timeout=120) as client:
        for attempt in range(4):
            answer = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Hi {attempt}"}], max_tokens=3
            )
            assert answer.choices[0].message.content is not None
    # ... and Ray Serve replaces the dead replica.
    assert eventually(lambda: running_replicas(ray_server) == 2, timeout=120), ray_server.metrics()


def test_autoscaling_goes_from_one_replica_to_two_under_load_and_back(ray_server: RayServer) -> None:
    autoscaled = start_server(
        "--ray",
        ray_server.cluster,
        "--ray-app",
        "autoscaled",
        "--min-replicas",
        "1",
        "--max-replicas",
        "2",
        # Short delays, so that the test sees both directions in seconds.
        "--autoscaling-option",
        "upscale_delay_s=0.5",
        "--autoscaling-option",
        "downscale_delay_s=2",
        "--autoscaling-option",
        "metrics_interval_s=0.5",
        "--autoscaling-option",
        "look_back_period_s=1",
        # Ray turns on token authentication for the cluster `--ray local` started (the token is in
        # ~/.ray/auth_token); a process that joins it has to be told to present it.
        env={"RAY_AUTH_MODE": "token"},
    )
    try:
        assert eventually(lambda: running_replicas(autoscaled) == 1, timeout=30), autoscaled.metrics()
        stop_load = threading.Event()

        def load(index: int) -> None:
            while not stop_load.is_set():
                body = long_request(60, content=f"Story {index}")
                with httpx.stream("POST", f"{autoscaled.url}/v1/chat/completions", json=body, timeout=120) as answer:
                    data_events(answer.iter_lines())

        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(load, index) for index in range(3)]
            try:
                scaled_up = eventually(lambda: running_replicas(autoscaled) == 2, timeout=120)
            finally:
                stop_load.set()
            for future in futures:
                future.result()
        assert scaled_up, autoscaled.metrics()
        assert eventually(lambda: running_replicas(autoscaled) == 1, timeout=120), autoscaled.metrics()
    finally:
        autoscaled.stop()
