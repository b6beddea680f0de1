"""What confidential and signed streaming cost, against plain streaming on the same server, in one run::

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_secure.py

One server process loads the model once and serves it twice, on two ports: as is, and with a signing key.
The chunkwise client streams the same greedy request four ways, taking turns run after run so that a shared
machine's load falls on each alike:

* plain: ``client.chat.completions`` on the unsigned app (the baseline), and the same again through a second
  client ("plain again"), whose ratio to plain shows how far two identical variants drift apart in this run;
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
from typing import Any

import httpx

import chunkwise
from bench_server import free_port, load, machine

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MESSAGES = [{"role": "user", "content": "Write a long, detailed story about a lighthouse keeper."}]
#: SmolLM2's end tokens (<|endoftext|> 0, <|im_end|> 2) banned: every stream runs to max_tokens.
NO_END = {"0": -100, "2": -100}
#: "plain again" is plain once more, through a second client: its ratio to plain is the run's noise floor.
VARIANTS = ["plain", "plain again", "signed", "confidential", "confidential + signed"]


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
                    lifespan="on",
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
            "plain again": chunkwise.Client(base_url=f"{plain_url}/v1"),
            "signed": chunkwise.Client(base_url=f"{signed_url}/v1", verify_key=key),
            "confidential": chunkwise.Client(base_url=f"{plain_url}/v1"),
            "confidential + signed": chunkwise.Client(base_url=f"{signed_url}/v1", verify_key=key),
        }
        try:
            for variant in VARIANTS:  # warm-up: caches, connections, the prompt's KV cache
                stream_once(clients[variant], variant, max_tokens)
            for number in range(runs):
                turn = number % len(VARIANTS)
                order = VARIANTS[turn:] + VARIANTS[:turn]  # nobody always goes first
                for variant in order:
                    results[variant].append(stream_once(clients[variant], variant, max_tokens))
        finally:
            for client in clients.values():
                client.close()
    return results


def per_chunk_cost(chunks: int = 2000) -> dict[str, float]:
    """Microseconds of CPU per chunk that each variant adds, server and client together, without the network.

    The same chunk goes through the server's framer and the client's guard and decoder (plain: the decoder
    only), ``chunks`` times: a figure the machine's load barely moves, unlike the streaming rates.
    """
    import msgspec

    from chunkwise.client._guards import ResponseGuard
    from chunkwise.confidential import (
        ClientSession,
        ConfidentialComputeRequest,
        NodeKey,
        NodesCreateLockResponse,
        open_request,
    )
    from chunkwise.server._framing import ConfidentialFramer, SignedFramer
    from chunkwise.signing import ChainSealer, ChainVerifier, Signer, blake2b256
    from chunkwise.types import ChatCompletionChunk

    fields = {
        "id": "chatcmpl-0123456789abcdef0123456789abcdef",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": " lighthouse"}}],
    }
    chunk = msgspec.json.encode(msgspec.convert(fields, ChatCompletionChunk))
    decode = msgspec.json.Decoder(ChatCompletionChunk).decode
    request = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
    root = blake2b256(request)
    signer = Signer()
    node = NodeKey()

    def timed(make: Any) -> float:
        payload, open_ = make()
        started = time.perf_counter()
        for _ in range(chunks):
            decode(open_(payload(chunk)))
        return (time.perf_counter() - started) / chunks * 1e6

    def plain() -> tuple[Any, Any]:
        return (lambda data: data), (lambda data: data)

    def signed() -> tuple[Any, Any]:
        guard = ResponseGuard(ChainVerifier(root, signer.public_key), None, expect_usage=False)
        return SignedFramer(ChainSealer(root, signer)).payload, guard.open

    def confidential(with_signer: Signer | None) -> tuple[Any, Any]:
        lock = NodesCreateLockResponse(public_key=node.public_key_base64, node_small_id=0, stack_small_id=1)
        session = ClientSession(lock)
        sealed = session.seal_request(request, model="m", stream=True)
        envelope = msgspec.json.decode(sealed, type=ConfidentialComputeRequest)
        opened = open_request(envelope, node)
        framer = ConfidentialFramer(ChainSealer(opened.plaintext_hash, with_signer), opened.sealer)
        key = None if with_signer is None else with_signer.public_key
        guard = ResponseGuard(ChainVerifier(session.request_hash, key), session, expect_usage=False)
        return framer.payload, guard.open

    base = min(timed(plain) for _ in range(3))
    return {
        "plain": base,
        "plain again": base,
        "signed": min(timed(signed) for _ in range(3)),
        "confidential": min(timed(lambda: confidential(None)) for _ in range(3)),
        "confidential + signed": min(timed(lambda: confidential(signer)) for _ in range(3)),
    }


def report(results: dict[str, list[Run]], cpu: dict[str, float]) -> str:
    base_ttft = statistics.median(run.ttft for run in results["plain"])
    base_rate = statistics.median(run.tokens_per_second for run in results["plain"])
    lines = [
        "| variant | TTFT (median) | TTFT added | tokens/s (median) | tokens/s / plain, paired (median) | "
        "CPU µs per chunk (server + client) | share of a plain token's time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        ttft = statistics.median(run.ttft for run in results[variant])
        rate = statistics.median(run.tokens_per_second for run in results[variant])
        paired = statistics.median(
            run.tokens_per_second / plain.tokens_per_second
            for run, plain in zip(results[variant], results["plain"], strict=True)
        )
        added = cpu[variant] - cpu["plain"]
        lines.append(
            f"| {variant} | {ttft * 1000:.1f} ms | {(ttft - base_ttft) * 1000:+.1f} ms | {rate:.1f} | "
            f"{paired:.3f} | {cpu[variant]:.1f} ({added:+.1f}) | {added / (1e6 / base_rate) * 100:.2f}% |"
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
    cpu = per_chunk_cost()
    print(f"- load average at end {load()}\n")
    print(report(results, cpu))


if __name__ == "__main__":
    main()
