"""Ray benchmark: ``chunkwise serve --ray`` against plain ``chunkwise serve``, in one run.

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_ray.py --write BENCHMARKS.md

Every server uses one llama.cpp thread per engine and the bundled model; the Ray cluster is a private local
one (``--ray local``). Measured:

(a) time to first token of one stream at a time, plain server vs 2 Ray replicas, the two taking turns
    (the same prompt each time, so both reuse their KV cache and the difference is Ray's overhead;
    target: <= 15 ms added at p50);
(b) aggregate tokens/s of 8 concurrent streams: 2 replicas x 1 thread vs 1 engine x 1 thread (target
    >= 1.7x). The plain server batches all 8 streams into each decode step, and on one thread llama.cpp's
    step costs less per sequence at 8 sequences than at 4, so this ratio is capped below 2x before Ray
    costs anything: the ceiling is measured first, in this process, as 2 x (engine alone, 4 streams) over
    (engine alone, 8 streams), with no HTTP and no Ray;
(b, as worded) the same 8 streams on one Ray replica against two, the one-replica application joining
    the same cluster, so that Ray's own processes share the machine in both;
(b2) the same load per replica: 2 replicas with 8 streams vs the plain server with 4, where 2x is the
    ceiling and the shortfall is what Ray and the ingress cost;
(c) prefix affinity: requests that alternate between two long system prompts, sent one at a time, time to
    first token with the prefix-affinity router vs Ray Serve's default power-of-two router (a second
    application on the same cluster). With affinity each prompt stays on one replica and its KV cache.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec

from chunkwise.engine import DEFAULT_MODEL_ID, LlamaCppEngine
from chunkwise.types import ChatCompletionRequest
from running import at_once, stop  # bench/ is on sys.path when this file runs as a script
from sections import write_section

N_CTX = 2048
CONCURRENT = 8
SECTION = "## Ray"
NO_EOS = {"0": -100, "2": -100}
SERVING = re.compile(r"chunkwise is serving \S+ at (http://127\.0\.0\.1:\d+)")
CLUSTER = re.compile(r"on the cluster at (\S+)")
PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
#: Ray turns on token authentication for the cluster `--ray local` starts (the token is in ~/.ray/auth_token);
#: a process that joins it must be told to present it.
JOIN_ENV = {"RAY_AUTH_MODE": "token"}
#: Two system prompts of a few hundred tokens that differ from their first word, for (c).
SYSTEM_PROMPTS = [
    f"You are assistant {name}. "
    + " ".join(f"Rule {i}: answer {name} questions with care and precision." for i in range(40))
    for name in ("Alpha", "Bravo")
]


@dataclass
class Stream:
    ttft: float
    tokens: int


def stream_once(url: str, body: dict[str, Any]) -> Stream:
    started = time.perf_counter()
    ttft: float | None = None
    tokens = 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(event["error"])
            if ttft is None and any(choice["delta"].get("content") for choice in event["choices"]):
                ttft = time.perf_counter() - started
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    assert ttft is not None
    return Stream(ttft, tokens)


def chat(max_tokens: int, messages: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "model": DEFAULT_MODEL_ID,
        "messages": messages or [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "logit_bias": NO_EOS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def story(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Story number {index}: {PROMPT}"}]


def aggregate_rate(url: str, max_tokens: int, streams: int = CONCURRENT) -> float:
    results: list[Stream] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        result = stream_once(url, chat(max_tokens, story(index)))
        with lock:
            results.append(result)

    wall = at_once(streams, run)
    assert len(results) == streams, "a stream failed"
    return sum(result.tokens for result in results) / wall


def engine_rates(max_tokens: int, rounds: int) -> dict[int, float]:
    """Tokens/s of one engine on one thread, in this process (no HTTP, no Ray), at 4 and 8 streams."""

    async def one(engine: LlamaCppEngine, index: int) -> int:
        body = {k: v for k, v in chat(max_tokens, story(index)).items() if k != "stream_options"}
        request = msgspec.convert(body, type=ChatCompletionRequest)
        generation = engine.prepare_chat(request, request_id=f"bench-{index}", created=0)
        async for _ in generation.stream():
            pass
        return generation.completion_tokens

    async def rate(engine: LlamaCppEngine, streams: int) -> float:
        started = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(engine, index) for index in range(streams))))
        return tokens / (time.perf_counter() - started)

    async def measure() -> dict[int, float]:
        with LlamaCppEngine(n_ctx=N_CTX, n_threads=1) as engine:
            await rate(engine, 2)  # warm-up
            rates = {}
            for streams in (4, 8):
                rates[streams] = statistics.median([await rate(engine, streams) for _ in range(rounds)])
            return rates

    return asyncio.run(measure())


@contextlib.contextmanager
def server(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """``chunkwise serve ARGS`` until the block ends; yields its URL and (with --ray) its cluster address."""
    command = [sys.executable, "-m", "chunkwise", "serve", "--port", "0", "--n-ctx", str(N_CTX), "--n-threads", "1"]
    command += ["--log-level", "warning", "--no-access-log", *args]
    environment = {**os.environ, "COLUMNS": "250", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    with log.open("w") as output:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
        )
        assert process.stdout is not None
        url = cluster = ""
        found = threading.Event()

        def drain() -> None:
            nonlocal url, cluster
            assert process.stdout is not None
            for line in process.stdout:
                output.write(line)
                if match := CLUSTER.search(line):
                    cluster = match.group(1)
                if match := SERVING.search(line):
                    url = match.group(1)
                    found.set()
            found.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            found.wait(300)
            if not url:
                raise RuntimeError(f"chunkwise serve {' '.join(args)} did not start; see {log}")
            yield url, cluster
        finally:
            stop(process, 60)
            reader.join(30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def affinity_ttfts(url: str, rounds: int) -> list[float]:
    ttfts = []
    for index in range(rounds):
        system = SYSTEM_PROMPTS[index % 2]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": f"Question {index}?"}]
        ttfts.append(stream_once(url, chat(4, messages)).ttft)
    return ttfts


def join_cluster(cluster: str, app: str, replicas: str) -> list[str]:
    """Arguments for a second ``chunkwise serve`` with its own application on the benchmark's cluster."""
    return ["--ray", cluster, "--ray-app", app, "--replicas", replicas, "--replica-cpus", "0.5"]


def run(args: argparse.Namespace) -> str:
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    load_before = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    started = datetime.datetime.now(datetime.UTC)
    alone = engine_rates(args.max_tokens, args.rounds)
    ceiling = 2 * alone[4] / alone[8]
    with (
        server([], logs / "plain.log") as (plain, _),
        server(["--ray", "local", "--replicas", "2", "--replica-cpus", "0.5"], logs / "ray.log") as (ray, cluster),
    ):
        for url in (plain, ray):  # warm-up: caches, connections, Ray's router
            for _ in range(3):
                stream_once(url, chat(4))
        plain_ttft, ray_ttft = [], []
        for _ in range(args.runs):
            plain_ttft.append(stream_once(plain, chat(4)).ttft)
            ray_ttft.append(stream_once(ray, chat(4)).ttft)
        added = [r - p for r, p in zip(ray_ttft, plain_ttft, strict=True)]

        for url in (plain, ray):  # warm-up: the stories' prompts in every engine's cache, as for the ceiling
            aggregate_rate(url, args.max_tokens)
        plain_rates, ray_rates = [], []
        for _ in range(args.rounds):
            plain_rates.append(aggregate_rate(plain, args.max_tokens))
            ray_rates.append(aggregate_rate(ray, args.max_tokens))
        ratios = [r / p for r, p in zip(ray_rates, plain_rates, strict=True)]
        half_rates, full_rates = [], []
        for _ in range(args.rounds):
            half_rates.append(aggregate_rate(plain, args.max_tokens, CONCURRENT // 2))
            full_rates.append(aggregate_rate(ray, args.max_tokens))
        scaling = [r / p for r, p in zip(full_rates, half_rates, strict=True)]

        # (b) as the issue words it, one Ray replica against two: a second application on the same cluster.
        # Ray's own processes then share the machine in both, where the plain server above has none.
        one_rates, two_rates = [], []
        one_app = join_cluster(cluster, "one-replica", "1")
        with server(one_app, logs / "ray-one-replica.log", JOIN_ENV) as (one_replica, _):
            aggregate_rate(one_replica, args.max_tokens)  # warm-up: the stories' prompts cached, as elsewhere
            for _ in range(args.rounds):
                one_rates.append(aggregate_rate(one_replica, args.max_tokens))
                two_rates.append(aggregate_rate(ray, args.max_tokens))
        replica_ratios = [r / o for r, o in zip(two_rates, one_rates, strict=True)]

        with_affinity = affinity_ttfts(ray, args.affinity_runs)
        join = join_cluster(cluster, "no-affinity", "2") + ["--no-prefix-affinity"]
        with server(join, logs / "ray-no-affinity.log", JOIN_ENV) as (no_affinity, _):
            affinity_ttfts(no_affinity, 4)
            without_affinity = affinity_ttfts(no_affinity, args.affinity_runs)

    cpu = platform.processor() or platform.machine()
    lines = [
        SECTION,
        "",
        "`chunkwise serve --ray local` (Ray Serve replicas, one llama.cpp thread each) against plain `chunkwise serve`"
        " (one engine, one thread), all on the bundled model in one run.",
        "",
        f"- Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}; shared with other work, so compare ratios within this run",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; load average at start {load_before}",
        "- Command: `flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_ray.py --write BENCHMARKS.md`",
        f"- n_ctx {N_CTX}; greedy; end tokens banned so every stream runs to max_tokens",
        "",
        "| measurement | plain | Ray | result |",
        "|---|---|---|---|",
        f"| (a) time to first token, one stream at a time, p50 of {args.runs} (2 replicas)"
        f" | {ms(statistics.median(plain_ttft))} | {ms(statistics.median(ray_ttft))}"
        f" | +{ms(statistics.median(added))} added at p50 of the pairs"
        f" (p90 {ms(percentile(added, 0.9))}; target <= 15 ms) |",
        f"| (b) aggregate tokens/s, {CONCURRENT} concurrent streams of {args.max_tokens} tokens,"
        f" median of {args.rounds} | {statistics.median(plain_rates):.1f} (1 x 1 thread)"
        f" | {statistics.median(ray_rates):.1f} (2 x 1 thread)"
        f" | x{statistics.median(ratios):.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)}; target >= 1.7;"
        f" ceiling without Ray x{ceiling:.2f}: one engine alone makes {alone[4]:.1f} tok/s at 4 streams and"
        f" {alone[8]:.1f} at 8) |",
        f"| (b) as worded, one Ray replica against two: {CONCURRENT} concurrent streams, median of {args.rounds}"
        f" | {statistics.median(one_rates):.1f} (1 Ray replica x 1 thread) | {statistics.median(two_rates):.1f}"
        f" (2 x 1 thread) | x{statistics.median(replica_ratios):.2f}"
        f" (rounds {', '.join(f'{r:.2f}' for r in replica_ratios)}; target >= 1.7; same ceiling) |",
        f"| (b2) aggregate tokens/s, the same load per replica: {CONCURRENT // 2} streams on plain,"
        f" {CONCURRENT} on Ray, median of {args.rounds} | {statistics.median(half_rates):.1f} (1 x 1 thread)"
        f" | {statistics.median(full_rates):.1f} (2 x 1 thread)"
        f" | x{statistics.median(scaling):.2f} (rounds {', '.join(f'{r:.2f}' for r in scaling)}; ceiling x2) |",
        f"| (c) time to first token, two alternating ~400-token system prompts, p50 of {args.affinity_runs}"
        f" | {ms(statistics.median(without_affinity))} (power of two) | {ms(statistics.median(with_affinity))}"
        f" (prefix affinity) | x{statistics.median(without_affinity) / statistics.median(with_affinity):.2f} faster"
        f" with affinity (p90 {ms(percentile(without_affinity, 0.9))} vs {ms(percentile(with_affinity, 0.9))}) |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="streams per contender for (a)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of concurrent streams for (b)")
    parser.add_argument("--max-tokens", type=int, default=96, help="tokens per stream in (b)")
    parser.add_argument("--affinity-runs", type=int, default=20, help="requests per router for (c)")
    parser.add_argument("--logs", default="artifacts/bench-ray", help="where the servers' output goes")
    parser.add_argument("--write", type=Path, default=None, help=f"update the '{SECTION}' section of this file")
    args = parser.parse_args()
    section = run(args)
    print(section)
    if args.write is not None:
        write_section(args.write, SECTION, section)


if __name__ == "__main__":
    main()
