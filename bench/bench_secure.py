"""What confidential and signed streaming cost, against plain streaming on the same server, in one run::

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_secure.py

One server process loads the model once and serves it twice, on two ports: as is, and with a signing key.
The chunkwise client streams the same greedy request four ways, taking turns run after run so that a shared
machine's load falls on each alike:

* plain: ``client.chat.completions`` on the unsigned app (the baseline);
* signed: the same on the signed app, every chunk verified against the pinned key and the chain;
* confidential: ``client.confidential.chat.completions`` on the unsigned app (lock, encrypt, then every
  chunk decrypted and its hash and chain checked);
* confidential + signed: the same on the signed app, signatures checked too.

Time to first token runs from the call to the first content chunk (for confidential calls it includes the
lock round trip); tokens/s is decode speed, first to last content chunk. The end tokens are banned so that
every stream runs the full ``--max-tokens``. Targets: tokens/s cost <= 5% for signed and for confidential.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

import chunkwise
from bench_server import free_port, load, machine

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MESSAGES = [{"role": "user", "content": "Write a long, detailed story about a lighthouse keeper."}]
#: SmolLM2's end tokens (<|endoftext|> 0, <|im_end|> 2) banned: every stream runs to max_tokens.
NO_END = {"0": -100, "2": -100}
VARIANTS = ["plain", "signed", "confidential", "confidential + signed"]


def serve_twice(plain_port: int, signed_port: int) -> None:
    """The server process: one engine, two apps (unsigned and signed) under one event loop."""
    import uvicorn

    from chunkwise.engine import LlamaCppEngine
    from chunkwise.server import ServerSettings, create_app
    from chunkwise.signing import Signer

    signer = Signer()
    print(signer.public_key_base64, flush=True)
    with LlamaCppEngine(n_ctx=2048) as engine:
        servers = [
            uvicorn.Server(
                uvicorn.Config(
                    create_app(engine, ServerSettings(signer=s)),
                    host="127.0.0.1",
                    port=port,
                    log_level="warning",
                    access_log=False,
                    lifespan="off",
                    ws="none",
                )
            )
            for port, s in ((plain_port, None), (signed_port, signer))
        ]

        async def both() -> None:
            await asyncio.gather(*(server.serve() for server in servers))

        asyncio.run(both())


@contextmanager
def server_process() -> Iterator[tuple[str, str, str]]:
    """``(plain URL, signed URL, signing public key)`` of a fresh server process."""
    plain_port, signed_port = free_port(), free_port()
    command = [sys.executable, __file__, "--serve", str(plain_port), str(signed_port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        key = process.stdout.readline().strip()
        urls = [f"http://127.0.0.1:{port}" for port in (plain_port, signed_port)]
        deadline = time.monotonic() + 120
        for url in urls:
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the benchmark server did not start")
                time.sleep(0.2)
        yield urls[0], urls[1], key
    finally:
        process.terminate()
        process.wait(30)


@dataclass
class Run:
    ttft: float
    tokens_per_second: float


def stream_once(client: chunkwise.Client, variant: str, max_tokens: int) -> Run:
    api = client.confidential.chat.completions if variant.startswith("confidential") else client.chat.completions
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    with api.create(
        model=MODEL, messages=MESSAGES, stream=True, max_tokens=max_tokens, temperature=0.0, logit_bias=NO_END
    ) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                last = time.perf_counter()
                first = first or last
                tokens += 1
    if tokens < max_tokens * 0.9:
        raise RuntimeError(f"{variant}: only {tokens} content chunks")
    return Run(ttft=first - started, tokens_per_second=(tokens - 1) / (last - first))


def run_all(runs: int, max_tokens: int) -> dict[str, list[Run]]:
    results: dict[str, list[Run]] = {variant: [] for variant in VARIANTS}
    with server_process() as (plain_url, signed_url, key):
        clients = {
            "plain": chunkwise.Client(base_url=f"{plain_url}/v1"),
            "signed": chunkwise.Client(base_url=f"{signed_url}/v1", verify_key=key),
            "confidential": chunkwise.Client(base_url=f"{plain_url}/v1"),
            "confidential + signed": chunkwise.Client(base_url=f"{signed_url}/v1", verify_key=key),
        }
        try:
            for variant in VARIANTS:  # warm-up: caches, connections, the prompt's KV cache
                stream_once(clients[variant], variant, max_tokens)
            for number in range(runs):
                order = VARIANTS[number % 4 :] + VARIANTS[: number % 4]  # nobody always goes first
                for variant in order:
                    results[variant].append(stream_once(clients[variant], variant, max_tokens))
        finally:
            for client in clients.values():
                client.close()
    return results


def report(results: dict[str, list[Run]]) -> str:
    base_ttft = statistics.median(run.ttft for run in results["plain"])
    base_rate = statistics.median(run.tokens_per_second for run in results["plain"])
    lines = [
        "| variant | time to first token (median) | tokens/s (median) | tokens/s vs plain | TTFT added |",
        "|---|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        ttft = statistics.median(run.ttft for run in results[variant])
        rate = statistics.median(run.tokens_per_second for run in results[variant])
        lines.append(
            f"| {variant} | {ttft * 1000:.1f} ms | {rate:.1f} | {rate / base_rate:.3f} "
            f"({(1 - rate / base_rate) * 100:+.1f}% cost) | {(ttft - base_ttft) * 1000:+.1f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="streams per variant, after one warm-up each")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--serve", nargs=2, type=int, metavar=("PLAIN_PORT", "SIGNED_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_twice(*args.serve)
        return
    started = datetime.datetime.now(datetime.UTC)
    print(f"- Machine: {machine()}")
    print(f"- Date: {started:%Y-%m-%d %H:%M} UTC; load average at start {load()}")
    print(f"- Command: `python bench/bench_secure.py {' '.join(sys.argv[1:])}`")
    print(f"- {args.runs} streams per variant of {args.max_tokens} tokens, after a warm-up; medians", flush=True)
    results = run_all(args.runs, args.max_tokens)
    print(f"- load average at end {load()}\n")
    print(report(results))


if __name__ == "__main__":
    main()
