"""Dialect benchmark: the Responses API and Anthropic Messages against chat completions, in one run.

One command::

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_dialects.py

(a) ``chunkwise serve`` on the bundled model: the same greedy request streamed as chat, as a Responses
    request and as a Messages request, the three taking turns run after run so that a shared machine's
    changing load falls on each alike. Reported: decode tokens/s (first text delta to last) and time to
    first text delta. Targets: each dialect >= 0.97x chat's tokens/s, <= 1 ms added TTFT.
(b) ``chunkwise gateway`` in front of bench_gateway.py's replaying upstream (no model: what is measured is
    the gateway): chat passed through against Responses and Messages translated, each request after a
    10 ms pause, taking turns. Reported: TTFT p50/p99 and one stream's deltas/s. Target: translation adds
    <= 1.5 ms p50 TTFT over the pass-through.
(c) The same translation, Messages in and chat upstream, through the gateway and through LiteLLM's proxy
    (bench_gateway.py's setup: one worker, a master key, no database; the replaying upstream as an
    ``openai/`` model, its ``/v1/messages`` route set to translate to chat): each first streams one short
    answer, read with the ``anthropic`` SDK, which must be a valid Messages stream with the other's text;
    then 100 concurrent streams through each proxy in turn, the other one stopped. Reported: text
    deltas/s in all and the proxy's CPU seconds per 1,000 deltas (from /proc). LiteLLM streams a tenth of
    the deltas (it is far slower; the rate is what counts). Target: the gateway >= 10x LiteLLM's deltas/s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx

from bench_gateway import (  # bench/ is on sys.path when this file runs as a script
    LITELLM_KEY,
    cpu_seconds,
    create_key,
    free_port,
    gateway_config,
    litellm_proxy,
    litellm_python,
    litellm_version,
    percentile,
    process,
)
from bench_gateway import MODEL as REPLAY_MODEL
from chunkwise.engine import DEFAULT_MODEL_ID

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
N_CTX = 2048


@dataclass(frozen=True)
class Dialect:
    name: str
    path: str
    #: Bytes that open each text delta event in the stream.
    marker: bytes
    #: Bytes that the marker also matches but that carry no text.
    empty: bytes = b"\x00never"

    def body(self, model: str, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "temperature": 0, "stream": True}
        if self.name == "responses":
            return {**body, "input": PROMPT, "max_output_tokens": max_tokens}
        # Chat and Messages ask alike.
        return {**body, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens}


DIALECTS = [
    # A chat chunk with text (the first one carries the role too); an empty opening chunk does not count.
    Dialect("chat", "/v1/chat/completions", b'"content":"', b'"content":""'),
    Dialect("responses", "/v1/responses", b"event: response.output_text.delta"),
    Dialect("messages", "/v1/messages", b"event: content_block_delta"),
]


@dataclass
class Stream:
    ttft: float
    deltas: int
    decode_seconds: float

    @property
    def deltas_per_second(self) -> float:
        return (self.deltas - 1) / self.decode_seconds if self.deltas > 1 and self.decode_seconds > 0 else 0.0


def stream_once(client: httpx.Client, dialect: Dialect, body: dict[str, Any]) -> Stream:
    """One streamed request: seconds to the first text delta, text deltas, first to last delta."""
    started = time.perf_counter()
    first = last = 0.0
    deltas = 0
    with client.stream("POST", dialect.path, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{dialect.name}: {response.status_code} {response.read()[:300]!r}")
        for data in response.iter_raw():
            found = data.count(dialect.marker) - data.count(dialect.empty)
            if found:
                last = time.perf_counter()
                if not deltas:
                    first = last
                deltas += found
    return Stream(first - started, deltas, last - first)


def take_turns(
    client: httpx.Client, bodies: dict[str, dict[str, Any]], runs: int, pause: float
) -> dict[str, list[Stream]]:
    results: dict[str, list[Stream]] = {dialect.name: [] for dialect in DIALECTS}
    for dialect in DIALECTS:  # warm-up
        stream_once(client, dialect, bodies[dialect.name])
    for _ in range(runs):
        for dialect in DIALECTS:
            results[dialect.name].append(stream_once(client, dialect, bodies[dialect.name]))
            if pause:
                time.sleep(pause)
    return results


def serve_phase(args: argparse.Namespace) -> dict[str, list[Stream]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "chunkwise", "serve", "--port", str(port), "--n-ctx", str(N_CTX)]
    command += ["--log-level", "warning", "--no-access-log"]
    print("measuring chunkwise serve, chat against Responses and Messages ...", file=sys.stderr)
    with process(command, f"{url}/health"), httpx.Client(base_url=url, timeout=600) as client:
        bodies = {dialect.name: dialect.body(DEFAULT_MODEL_ID, args.tokens) for dialect in DIALECTS}
        return take_turns(client, bodies, args.runs, pause=0.0)


@dataclass
class Proxy:
    name: str
    url: str
    key: str
    pid: int


@dataclass
class Concurrent:
    """Phase (c) for one proxy: text deltas per second over all streams, its CPU seconds per 1,000 deltas."""

    streams: int
    deltas_each: int
    deltas_per_second: float
    cpu_per_1k: float


@dataclass
class GatewayResults:
    ttft: dict[str, list[Stream]]
    streams: dict[str, list[Stream]]
    concurrent: dict[str, Concurrent]
    litellm_version: str | None


TEXT_DELTA = b"text_delta"
#: A Messages stream's events in order (pings aside): one or more content blocks between start and stop.
MESSAGES_GRAMMAR = re.compile(
    r"message_start( content_block_start( content_block_delta)* content_block_stop)+ message_delta message_stop"
)


def check_messages_stream(proxy: Proxy, deltas: int) -> str:
    """One short Messages stream through ``proxy``, read by the ``anthropic`` SDK: its event order and text."""
    client = anthropic.Anthropic(base_url=proxy.url, api_key=proxy.key, max_retries=0, timeout=60)
    events: list[str] = []
    with client.messages.stream(
        model=REPLAY_MODEL, max_tokens=deltas, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        for event in stream:
            if event.type in {"message_start", "message_delta", "message_stop"} or event.type.startswith("content_"):
                events.append(event.type)
        final = stream.get_final_message()
    if not MESSAGES_GRAMMAR.fullmatch(" ".join(events)):
        raise RuntimeError(f"{proxy.name}: events out of the Messages order: {events}")
    text = "".join(block.text for block in final.content if block.type == "text")
    if final.role != "assistant" or not text:
        raise RuntimeError(f"{proxy.name}: no assistant text in {final}")
    return text


async def messages_stream(client: httpx.AsyncClient, proxy: Proxy, deltas: int) -> int:
    """One streamed Messages request; the text deltas it carried."""
    body = DIALECTS[2].body(REPLAY_MODEL, deltas)
    counted = 0
    tail = b""
    headers = {"x-api-key": proxy.key}
    async with client.stream("POST", f"{proxy.url}/v1/messages", json=body, headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{proxy.name}: {response.status_code} {(await response.aread())[:300]!r}")
        async for data in response.aiter_raw():
            # A marker split between two reads is counted once: the tail is too short to hold a whole one.
            joined = tail + data
            counted += joined.count(TEXT_DELTA)
            tail = joined[-(len(TEXT_DELTA) - 1) :]
    return counted


async def measure_concurrent(proxy: Proxy, streams: int, deltas_each: int) -> Concurrent:
    # Idle connections are not kept past uvicorn's 5 s keep-alive (a reuse would race the server's close).
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10, keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=600, limits=limits, trust_env=False) as client:
        await asyncio.gather(*(messages_stream(client, proxy, 8) for _ in range(streams)))  # warm the connections
        cpu_before = cpu_seconds(proxy.pid)
        started = time.perf_counter()
        counts = await asyncio.gather(*(messages_stream(client, proxy, deltas_each) for _ in range(streams)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(proxy.pid) - cpu_before
    if any(count != deltas_each for count in counts):
        raise RuntimeError(f"{proxy.name}: streams carried {sorted(set(counts))} text deltas, not {deltas_each}")
    received = sum(counts)
    return Concurrent(streams, deltas_each, received / elapsed, cpu / (received / 1000))


def concurrent_phase(proxy: Proxy, args: argparse.Namespace, deltas_each: int) -> tuple[str, Concurrent]:
    text = check_messages_stream(proxy, 5)
    print(f"measuring {args.streams} concurrent Messages streams through {proxy.name} ...", file=sys.stderr)
    return text, asyncio.run(measure_concurrent(proxy, args.streams, deltas_each))


def gateway_phase(args: argparse.Namespace) -> GatewayResults:
    python = None if args.no_litellm else litellm_python()
    with tempfile.TemporaryDirectory() as tmp:
        upstream_port, gateway_port = free_port(), free_port()
        replay = [sys.executable, str(Path(__file__).with_name("bench_gateway.py")), "--replay", str(upstream_port)]
        with process(replay, f"http://127.0.0.1:{upstream_port}/v1/models"):
            config = gateway_config(Path(tmp), upstream_port)
            key = create_key(config)
            command = [sys.executable, "-m", "chunkwise", "gateway", "--config", str(config)]
            command += ["--port", str(gateway_port)]
            url = f"http://127.0.0.1:{gateway_port}"
            print("measuring the gateway: chat passed through against dialects translated ...", file=sys.stderr)
            headers = {"authorization": f"Bearer {key}"}
            with process(command, f"{url}/health") as gateway_pid:
                with httpx.Client(base_url=url, timeout=600, headers=headers) as client:
                    short = {dialect.name: dialect.body(REPLAY_MODEL, 4) for dialect in DIALECTS}
                    ttft = take_turns(client, short, args.gateway_requests, pause=0.01)
                    long = {dialect.name: dialect.body(REPLAY_MODEL, args.chunks) for dialect in DIALECTS}
                    streams = take_turns(client, long, 3, pause=0.0)
                gateway = Proxy("chunkwise gateway", url, key, gateway_pid)
                gateway_text, gateway_run = concurrent_phase(gateway, args, args.messages_deltas)
            concurrent = {gateway.name: gateway_run}
            version = None
            if python is not None:
                version = litellm_version(python)
                with litellm_proxy(python, Path(tmp), upstream_port) as (litellm_pid, litellm_url):
                    litellm = Proxy(f"LiteLLM {version}", litellm_url, LITELLM_KEY, litellm_pid)
                    # LiteLLM is far slower per delta; fewer deltas keep its run short without changing its rate.
                    litellm_text, litellm_run = concurrent_phase(litellm, args, args.messages_deltas // 10)
                if litellm_text != gateway_text:
                    raise RuntimeError(f"the proxies' texts differ: {gateway_text!r} against {litellm_text!r}")
                concurrent[litellm.name] = litellm_run
    return GatewayResults(ttft, streams, concurrent, version)


def report(serve: dict[str, list[Stream]] | None, gateway: GatewayResults) -> str:
    ttft, streams = gateway.ttft, gateway.streams
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"{now}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}",
    ]
    if serve is not None:
        lines += [
            "",
            "| chunkwise serve | tokens/s (median) | TTFT (median) | tokens/s vs chat | added TTFT |",
            "|---|---:|---:|---:|---:|",
        ]
        chat_rate = statistics.median(s.deltas_per_second for s in serve["chat"])
        chat_ttft = statistics.median(s.ttft for s in serve["chat"])
        for name, runs in serve.items():
            rate = statistics.median(s.deltas_per_second for s in runs)
            first = statistics.median(s.ttft for s in runs)
            lines.append(
                f"| {name} | {rate:.1f} | {first * 1000:.2f} ms | {rate / chat_rate:.3f}x "
                f"| {(first - chat_ttft) * 1000:+.2f} ms |"
            )
    lines += [
        "",
        "| gateway (replaying upstream) | TTFT p50 / p99 | added p50 vs pass-through | one stream deltas/s |",
        "|---|---:|---:|---:|",
    ]
    chat_p50 = percentile([s.ttft for s in ttft["chat"]], 0.5)
    for name, runs in ttft.items():
        times = [s.ttft for s in runs]
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        rate = statistics.median(s.deltas_per_second for s in streams[name])
        lines.append(
            f"| {name} | {p50 * 1000:.2f} / {p99 * 1000:.2f} ms | {(p50 - chat_p50) * 1000:+.2f} ms | {rate:,.0f} |"
        )
    lines += [
        "",
        "| Messages in, chat upstream | streams x text deltas | deltas/s, all streams | proxy CPU s / 1k deltas |",
        "|---|---:|---:|---:|",
    ]
    for name, run in gateway.concurrent.items():
        lines.append(
            f"| {name} | {run.streams} x {run.deltas_each:,} | {run.deltas_per_second:,.0f} | {run.cpu_per_1k:.3f} |"
        )
    litellm = gateway.concurrent.get(f"LiteLLM {gateway.litellm_version}")
    if litellm is not None:
        ours = gateway.concurrent["chunkwise gateway"]
        lines += [
            "",
            f"chunkwise gateway / LiteLLM, {ours.streams} streams: "
            f"**{ours.deltas_per_second / litellm.deltas_per_second:.1f}x** deltas/s (target >= 10x); "
            f"LiteLLM / chunkwise gateway, CPU per delta: {litellm.cpu_per_1k / ours.cpu_per_1k:.1f}x "
            "(both streams checked with the anthropic SDK first: Messages event order, the same text)",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="streams per dialect through chunkwise serve")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per stream through chunkwise serve")
    parser.add_argument("--gateway-requests", type=int, default=300, help="short requests per dialect for TTFT")
    parser.add_argument("--chunks", type=int, default=5_000, help="deltas per stream through the gateway")
    parser.add_argument("--streams", type=int, default=100, help="concurrent Messages streams per proxy")
    parser.add_argument(
        "--messages-deltas", type=int, default=1_000, help="text deltas per concurrent stream (LiteLLM: a tenth)"
    )
    parser.add_argument("--no-serve", action="store_true", help="only the gateway phases (no model needed)")
    parser.add_argument("--no-litellm", action="store_true", help="the gateway alone in phase (c) (no install)")
    args = parser.parse_args()
    serve = None if args.no_serve else serve_phase(args)
    print(report(serve, gateway_phase(args)))


if __name__ == "__main__":
    main()
