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
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench_gateway import MODEL as REPLAY_MODEL  # bench/ is on sys.path when this file runs as a script
from bench_gateway import create_key, free_port, gateway_config, percentile, process
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


def gateway_phase(args: argparse.Namespace) -> tuple[dict[str, list[Stream]], dict[str, list[Stream]]]:
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
            with process(command, f"{url}/health"), httpx.Client(base_url=url, timeout=600, headers=headers) as client:
                short = {dialect.name: dialect.body(REPLAY_MODEL, 4) for dialect in DIALECTS}
                ttft = take_turns(client, short, args.gateway_requests, pause=0.01)
                long = {dialect.name: dialect.body(REPLAY_MODEL, args.chunks) for dialect in DIALECTS}
                streams = take_turns(client, long, 3, pause=0.0)
    return ttft, streams


def report(
    serve: dict[str, list[Stream]] | None, ttft: dict[str, list[Stream]], streams: dict[str, list[Stream]]
) -> str:
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
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="streams per dialect through chunkwise serve")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per stream through chunkwise serve")
    parser.add_argument("--gateway-requests", type=int, default=300, help="short requests per dialect for TTFT")
    parser.add_argument("--chunks", type=int, default=5_000, help="deltas per stream through the gateway")
    parser.add_argument("--no-serve", action="store_true", help="only the gateway phase (no model needed)")
    args = parser.parse_args()
    serve = None if args.no_serve else serve_phase(args)
    ttft, streams = gateway_phase(args)
    print(report(serve, ttft, streams))


if __name__ == "__main__":
    main()
