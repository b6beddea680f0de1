"""Server benchmark: chunkwise over HTTP against llama-cpp-python in process and against its own server.

One command runs everything on the same GGUF, the same chat prompt and greedy settings::

    .venv/bin/python bench/bench_server.py --write BENCHMARKS.md

(a) llama-cpp-python's tightest loop (``Llama.generate``, greedy, no chat wrapper, no detokenization) on the
    chat-templated prompt, against a chunkwise server streaming the same request over HTTP: decode
    tokens/s (target ratio >= 0.95) and the time to first token chunkwise adds (target <= 10 ms).
(b) ``python -m llama_cpp.server`` against ``chunkwise serve``: one stream (tokens/s, time to first token)
    and 4 concurrent streams (how many complete, p50/p99 time to first token, aggregate tokens/s).

Every measurement runs ``--runs`` times after a warm-up, the contenders taking turns run after run so that
a shared machine's changing load falls on each alike, and the whole comparison runs ``--passes`` times, so
the remaining noise shows. All three use chunkwise's default thread count (one per core, for generation
and prompts) and the same context size; all three reuse the KV cache of the previous
identical prompt, so the time to first token is one decode step plus overhead.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chunkwise.engine import DEFAULT_MODEL_ID, default_model_path
from running import at_once, stop  # bench/ is on sys.path when this file runs as a script
from sections import write_section

#: ``Any``: llama-cpp-python types its message dicts as TypedDicts of its own.
PROMPT: Any = [
    {
        "role": "user",
        "content": "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle.",
    }
]
N_CTX = 2048
#: chunkwise's default: one thread per core for generation and prompts (llama-cpp-python's is half for generation).
THREADS = os.cpu_count() or 1
CONCURRENT = 4
SECTION = "## Server"


# --- measurements ---------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    """One streamed generation as the client saw it."""

    ttft: float  # seconds from sending the request to the first token
    tokens: int
    decode_seconds: float  # first token to last token
    text: str
    complete: bool  # ended with a finish_reason and [DONE], not cut off

    @property
    def tokens_per_second(self) -> float:
        return (self.tokens - 1) / self.decode_seconds if self.tokens > 1 and self.decode_seconds > 0 else 0.0


@dataclass
class ConcurrentResult:
    streams: list[StreamResult]
    wall_seconds: float

    @property
    def completed(self) -> int:
        return sum(stream.complete for stream in self.streams)

    @property
    def aggregate_tokens_per_second(self) -> float:
        return sum(stream.tokens for stream in self.streams) / self.wall_seconds


@dataclass
class PassResult:
    in_process: list[StreamResult] = field(default_factory=list)
    chunkwise: list[StreamResult] = field(default_factory=list)
    llama_server: list[StreamResult] = field(default_factory=list)
    chunkwise_concurrent: list[ConcurrentResult] = field(default_factory=list)
    llama_server_concurrent: list[ConcurrentResult] = field(default_factory=list)
    prompt_tokens: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- (a) the in-process baseline ------------------------------------------------------------------------


class InProcess:
    """llama-cpp-python's tightest loop: ``Llama.generate`` on the chat-templated prompt tokens, greedy."""

    def __init__(self, model_path: Path, max_tokens: int) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._lib = llama_cpp
        self._max_tokens = max_tokens
        self._llm = llama_cpp.Llama(
            str(model_path), n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS, verbose=False
        )
        llm = self._llm
        template = llm.metadata["tokenizer.chat_template"]
        eos = llm.detokenize([llm.token_eos()], special=True).decode()
        bos = llm.detokenize([llm.token_bos()], special=True).decode()
        prompt = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)(messages=PROMPT).prompt
        self.prompt_tokens: list[int] = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)

    def once(self) -> StreamResult:
        llm, is_end, vocab = self._llm, self._lib.llama_vocab_is_eog, self._vocab
        tokens: list[int] = []
        started = time.perf_counter()
        first = last = started
        for token in llm.generate(self.prompt_tokens, temp=0.0, repeat_penalty=1.0):
            now = time.perf_counter()
            if is_end(vocab, token):  # the end test the engines use
                break
            if not tokens:
                first = now
            last = now
            tokens.append(token)
            if len(tokens) == self._max_tokens:
                break
        text = llm.detokenize(tokens).decode(errors="replace")
        return StreamResult(first - started, len(tokens), last - first, text, True)

    def close(self) -> None:
        self._llm.close()


# --- HTTP clients -----------------------------------------------------------------------------------------


def request_body(max_tokens: int, *, usage: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": DEFAULT_MODEL_ID,
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        # llama_cpp.server defaults to 1.1; 1.0 is off, as in the in-process loop and chunkwise.
        "repeat_penalty": 1.0,
        "stream": True,
    }
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


def stream_once(client: httpx.Client, body: dict[str, Any]) -> tuple[StreamResult, int]:
    """Stream one chat completion; tokens from the usage chunk when there is one, else one per chunk."""
    started = time.perf_counter()
    first: float | None = None
    last = started
    pieces: list[str] = []
    chunks_with_text = 0
    finish: str | None = None
    done = False
    usage: dict[str, int] | None = None
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            if payload == "[DONE]":
                done = True
                break
            chunk = json.loads(payload)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    last = now
                    chunks_with_text += 1
                    pieces.append(content)
                finish = choice.get("finish_reason") or finish
    tokens = usage["completion_tokens"] if usage else chunks_with_text
    first = first if first is not None else last
    result = StreamResult(first - started, tokens, last - first, "".join(pieces), done and finish is not None)
    return result, (usage["prompt_tokens"] if usage else 0)


def concurrent_streams(url: str, bodies: list[dict[str, Any]]) -> ConcurrentResult:
    """One round: every body streamed at the same moment on its own connection."""
    count = len(bodies)
    # A failed stream stays counted as not completed.
    results = [StreamResult(float("nan"), 0, 0.0, "", False)] * count
    clients = [httpx.Client(base_url=url, timeout=600) for _ in range(count)]
    for client in clients:  # connect first, so that the streams start together
        client.get("/v1/models").raise_for_status()
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        with contextlib.suppress(httpx.HTTPError):
            results[index] = stream_once(clients[index], bodies[index])[0]

    wall = at_once(count, run)
    for client in clients:
        client.close()
    return ConcurrentResult(results, wall)


# --- servers ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running(command: list[str], url: str, log: Path) -> Iterator[None]:
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[2]} exited with {process.returncode}; see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[2]} did not come up; see {log}")
                time.sleep(0.2)
            yield
        finally:
            stop(process, 30)


def chunkwise_command(url: str, n_ctx: int = N_CTX) -> list[str]:
    port = url.rsplit(":", 1)[1]
    return [
        sys.executable,
        "-m",
        "chunkwise",
        "serve",
        "--port",
        port,
        "--n-ctx",
        str(n_ctx),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def llama_server_command(url: str, model_path: Path) -> list[str]:
    port = url.rsplit(":", 1)[1]
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--model_alias",
        DEFAULT_MODEL_ID,
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--n_ctx",
        str(N_CTX),
        "--n_threads",
        str(THREADS),
        "--n_threads_batch",
        str(THREADS),
        "--verbose",
        "False",
    ]


# --- one pass ---------------------------------------------------------------------------------------------


def run_pass(model_path: Path, max_tokens: int, runs: int, logs: Path) -> PassResult:
    """All three contenders up at once (an idle server costs nothing) and measured in turn, run after run,
    so that a shared machine's changing load falls on each of them alike."""
    result = PassResult()
    chunkwise_url = f"http://127.0.0.1:{free_port()}"
    llama_server_url = f"http://127.0.0.1:{free_port()}"
    with (
        running(chunkwise_command(chunkwise_url), chunkwise_url, logs / "chunkwise.log"),
        running(llama_server_command(llama_server_url, model_path), llama_server_url, logs / "llama_cpp_server.log"),
        httpx.Client(base_url=chunkwise_url, timeout=300) as chunkwise,
        httpx.Client(base_url=llama_server_url, timeout=300) as llama_server,
    ):
        in_process = InProcess(model_path, max_tokens)
        try:
            result.prompt_tokens["in-process"] = len(in_process.prompt_tokens)
            # Warm-up: weights into the CPU caches, the prompt into each KV cache, connections kept alive.
            in_process.once()
            _, result.prompt_tokens["chunkwise"] = stream_once(chunkwise, request_body(max_tokens, usage=True))
            stream_once(llama_server, request_body(max_tokens, usage=False))
            print(f"  {runs} single streams each, interleaved ...", flush=True)
            for _ in range(runs):
                result.in_process.append(in_process.once())
                result.chunkwise.append(stream_once(chunkwise, request_body(max_tokens, usage=True))[0])
                result.llama_server.append(stream_once(llama_server, request_body(max_tokens, usage=False))[0])
        finally:
            in_process.close()
        print(f"  {CONCURRENT} concurrent streams, 2 rounds each, interleaved ...", flush=True)
        for _ in range(2):
            bodies = [request_body(max_tokens, usage=True)] * CONCURRENT
            result.chunkwise_concurrent.append(concurrent_streams(chunkwise_url, bodies))
            bodies = [request_body(max_tokens, usage=False)] * CONCURRENT
            result.llama_server_concurrent.append(concurrent_streams(llama_server_url, bodies))
    return result


# --- report -----------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def rate(value: float) -> str:
    return f"{value:.1f} tok/s"


def concurrent_summary(rounds: list[ConcurrentResult]) -> dict[str, str]:
    # Every stream that got a token counts, cut off or not: it is what its client waited.
    ttfts = [stream.ttft for round_ in rounds for stream in round_.streams if stream.tokens > 0]
    return {
        "completed": " + ".join(f"{round_.completed}/{CONCURRENT}" for round_ in rounds),
        "p50": ms(percentile(ttfts, 0.5)) if ttfts else "n/a",
        "p99": ms(percentile(ttfts, 0.99)) if ttfts else "n/a",
        "aggregate": rate(median([round_.aggregate_tokens_per_second for round_ in rounds])),
    }


def paired(baseline: list[StreamResult], contender: list[StreamResult]) -> tuple[list[float], list[float]]:
    """Per-run tokens/s ratios and time-to-first-token differences of runs made back to back.

    Neighbouring runs see the same machine load, so their ratio is steadier than a ratio of medians.
    """
    ratios = [c.tokens_per_second / b.tokens_per_second for b, c in zip(baseline, contender, strict=True)]
    added = [c.ttft - b.ttft for b, c in zip(baseline, contender, strict=True)]
    return ratios, added


def spread(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    return f"{min(values) * scale:.{digits}f} to {max(values) * scale:.{digits}f}"


def report(result: PassResult, max_tokens: int) -> tuple[str, list[str]]:
    """A markdown table of one pass, and the checks against the targets.

    Speeds and times are medians over the runs; the comparison column is the median of the per-run pairs.
    """
    base_rate = median([r.tokens_per_second for r in result.in_process])
    cw_rate = median([r.tokens_per_second for r in result.chunkwise])
    lcs_rate = median([r.tokens_per_second for r in result.llama_server])
    base_ttft = median([r.ttft for r in result.in_process])
    cw_ttft = median([r.ttft for r in result.chunkwise])
    lcs_ttft = median([r.ttft for r in result.llama_server])
    a_ratios, a_added = paired(result.in_process, result.chunkwise)
    b_ratios, b_added = paired(result.llama_server, result.chunkwise)
    a_ratio, a_ttft = median(a_ratios), median(a_added)
    cw_conc = concurrent_summary(result.chunkwise_concurrent)
    lcs_conc = concurrent_summary(result.llama_server_concurrent)
    cw_agg = median([r.aggregate_tokens_per_second for r in result.chunkwise_concurrent])
    lcs_agg = median([r.aggregate_tokens_per_second for r in result.llama_server_concurrent])

    rows = [
        "| measurement | baseline | chunkwise | chunkwise vs baseline (median of run pairs; range) |",
        "|---|---|---|---|",
        f"| (a) decode speed, Llama.generate in process vs chunkwise HTTP stream | {rate(base_rate)} | "
        f"{rate(cw_rate)} | ×{a_ratio:.3f} ({spread(a_ratios)}; target ≥ 0.95) |",
        f"| (a) time to first token, same | {ms(base_ttft)} | {ms(cw_ttft)} | "
        f"{a_ttft * 1000:+.1f} ms ({spread(a_added, 1000, 1)} ms; target ≤ +10 ms) |",
        f"| (b) one stream: decode speed, llama_cpp.server vs chunkwise | {rate(lcs_rate)} | {rate(cw_rate)} | "
        f"×{median(b_ratios):.3f} ({spread(b_ratios)}) |",
        f"| (b) one stream: time to first token | {ms(lcs_ttft)} | {ms(cw_ttft)} | "
        f"{median(b_added) * 1000:+.1f} ms ({spread(b_added, 1000, 1)} ms) |",
        f"| (b) {CONCURRENT} concurrent streams: completed (2 rounds) | {lcs_conc['completed']} | "
        f"{cw_conc['completed']} | |",
        f"| (b) {CONCURRENT} concurrent: p50 time to first token | {lcs_conc['p50']} | {cw_conc['p50']} | |",
        f"| (b) {CONCURRENT} concurrent: p99 time to first token | {lcs_conc['p99']} | {cw_conc['p99']} | |",
        f"| (b) {CONCURRENT} concurrent: aggregate tokens/s (all tokens / wall time) | {lcs_conc['aggregate']} | "
        f"{cw_conc['aggregate']} | ×{cw_agg / lcs_agg:.3f} |",
    ]
    base_text = result.in_process[-1].text
    notes = [
        f"tokens per stream: in-process {result.in_process[-1].tokens}, chunkwise {result.chunkwise[-1].tokens}, "
        f"llama_cpp.server {result.llama_server[-1].tokens} (max_tokens {max_tokens}); prompt tokens: "
        f"in-process {result.prompt_tokens.get('in-process')}, chunkwise {result.prompt_tokens.get('chunkwise')}",
        f"same greedy text as the in-process loop: chunkwise {result.chunkwise[-1].text == base_text}, "
        f"llama_cpp.server {result.llama_server[-1].text == base_text}",
    ]
    checks = [
        f"(a) tokens/s ratio {a_ratio:.3f} {'meets' if a_ratio >= 0.95 else 'MISSES'} ≥ 0.95",
        f"(a) added time to first token {a_ttft * 1000:+.1f} ms {'meets' if a_ttft <= 0.010 else 'MISSES'} ≤ +10 ms",
    ]
    return "\n".join(rows), notes + checks


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        found = re.search(r"^Model name:\s*(.+)$", lscpu, re.MULTILINE)
        if found:
            model = found.group(1).strip()
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the bundled SmolLM2)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=7, help="streams per measurement, after one warm-up")
    parser.add_argument("--passes", type=int, default=2, help="times the whole comparison runs")
    parser.add_argument("--write", type=Path, default=None, help=f"update the '{SECTION}' section of this file")
    args = parser.parse_args()
    model_path: Path = args.model or default_model_path()

    started = datetime.datetime.now(datetime.UTC)
    command = "python bench/bench_server.py " + " ".join(sys.argv[1:])
    header = [
        f"- Machine: {machine()}",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; load average at start {load()}",
        f"- Command: `{command.strip()}`",
        f"- Model: `{model_path.name}`; prompt: one user message; greedy (temperature 0, repeat penalty 1.0); "
        f"max_tokens {args.max_tokens}; n_ctx {N_CTX}; llama-cpp-python's default threads; "
        f"medians of {args.runs} streams each after a warm-up, the three taking turns",
    ]
    print("\n".join(header), flush=True)
    sections: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-server-") as logs:
        for number in range(1, args.passes + 1):
            print(f"pass {number}/{args.passes} (load {load()})", flush=True)
            result = run_pass(model_path, args.max_tokens, args.runs, Path(logs))
            table, notes = report(result, args.max_tokens)
            block = f"### Pass {number} (load average before: {load()})\n\n{table}\n\n" + "".join(
                f"- {note}\n" for note in notes
            )
            print("\n" + block, flush=True)
            sections.append(block)
    if args.write is not None:
        body = (
            f"{SECTION}\n\n"
            "chunkwise serving the bundled model over HTTP, against llama-cpp-python's in-process generation loop "
            "(a) and against `python -m llama_cpp.server` on the same GGUF (b). In (b), llama_cpp.server "
            "interrupts a running stream when another request arrives (its default `interrupt_requests`), so "
            "cut-off streams do not count as completed; chunkwise decodes all of them together (continuous "
            "batching).\n\n" + "\n".join(header) + "\n\n" + "\n".join(sections)
        )
        write_section(args.write, SECTION, body)
        print(f"wrote the '{SECTION}' section of {args.write}")


if __name__ == "__main__":
    main()
