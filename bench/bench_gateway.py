"""Gateway benchmark: direct access to an upstream, chunkwise gateway and the LiteLLM proxy, in one run.

One command::

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_gateway.py

The upstream is a fast replaying server (a subprocess of this script, ``--replay PORT``): it answers every
streamed chat completion at once with a recorded OpenAI-shaped chunk, repeated ``max_tokens`` times, each
event its own write and HTTP chunk as a token server sends them, then a usage chunk and ``[DONE]``. So
what is measured is the proxies, not a model. The chunkwise gateway runs as ``chunkwise gateway`` with a
SQLite ledger and a key (so every request is authenticated, admitted against limits and billed); LiteLLM
(``litellm[proxy]``, installed on first use into bench/data/litellm-venv) runs its proxy with the same
upstream as an ``openai/`` model, with a master key but without a database (its fastest configuration;
it refuses to start without a key).

Reported: added time to first token (p50, p99) over direct, each request after a 10 ms pause (every
process idle) and back to back (processes busy); chunks/s for one stream and for 100 concurrent streams;
proxy CPU seconds per 1,000 chunks (from /proc, the proxy process alone). As a control, a TCP relay
(``--relay``, a process that copies bytes both ways and parses nothing) is measured beside the gateway: the
time any proxy process adds on this machine, whatever its code. The proxies run one at a time, each in its
own phase with direct access measured again beside it (two servers at once disturb each other on 2 cores):
first the relay and the gateway, then LiteLLM.
Targets: <= 1 ms added TTFT at p50; >= 0.5x direct chunks/s for one stream; >= 10x LiteLLM at 100 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from running import stop  # bench/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / "bench" / "data" / "litellm-venv"
MODEL = "bench-model"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: LiteLLM refuses to start without a master key; with it, and no database, it checks keys in memory.
LITELLM_KEY = "sk-bench-" + os.urandom(16).hex()

# --- the replaying upstream -------------------------------------------------------------------------------

_CHUNK = {
    "id": "chatcmpl-replay",
    "object": "chat.completion.chunk",
    "created": 1764547200,
    "model": MODEL,
    "system_fingerprint": "fp_replay",
    "choices": [{"index": 0, "delta": {"content": " token"}, "logprobs": None, "finish_reason": None}],
}


def _event(payload: Any) -> bytes:
    data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    event = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


async def _replay_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    content = _event(_CHUNK)
    first = _event({**_CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length)) if length else {}
            if method == "GET":
                models = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "x"}]})
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(models), models.encode())
                )
                await writer.drain()
                continue
            count = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"transfer-encoding: chunked\r\n\r\n" + first
            )
            for index in range(count):
                writer.write(content)
                if index % 16 == 15:
                    await writer.drain()
            stop = {**_CHUNK, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]}
            totals = {"prompt_tokens": 9, "completion_tokens": count, "total_tokens": 9 + count}
            usage = {**_CHUNK, "choices": [], "usage": totals}
            writer.write(_event(stop) + _event(usage) + _event(b"[DONE]") + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _replay_server(port: int) -> None:
    server = await asyncio.start_server(_replay_connection, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# --- the relay: the floor under any proxy ----------------------------------------------------------------


async def _copy(source: asyncio.StreamReader, destination: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(1 << 16):
            destination.write(data)
            await destination.drain()
    except ConnectionError:
        pass
    finally:
        destination.close()


async def _relay_server(port: int, upstream_port: int) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(_copy(reader, upstream_writer), _copy(upstream_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# --- processes --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextmanager
def process(
    args: list[str], ready_url: str, *, env: dict[str, str] | None = None, startup: float = 180
) -> Iterator[int]:
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + startup
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{args[0]} exited: {log.read().decode()[-3000:]}")
                try:
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{args} did not start in {startup} s")
                time.sleep(0.2)
            yield proc.pid
        finally:
            stop(proc, 10)


def litellm_python() -> Path:
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        print("installing litellm[proxy] into bench/data/litellm-venv (first run only) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "litellm[proxy]"], check=True)
    return python


def litellm_version(python: Path) -> str:
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


# --- measurements -----------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    base_url: str
    headers: dict[str, str]
    pid: int | None = None
    results: dict[str, Any] = field(default_factory=dict)


async def stream_once(client: httpx.AsyncClient, target: Target, count: int) -> tuple[float, int, float]:
    """One streamed request: (seconds to the first content chunk, chunks received, seconds in all)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": count, "stream": True}
    started = time.perf_counter()
    ttft = 0.0
    chunks = 0
    async with client.stream(
        "POST", f"{target.base_url}/chat/completions", json=body, headers=target.headers
    ) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{target.name}: {response.status_code} {(await response.aread())[:300]!r}")
        async for data in response.aiter_raw():
            if not ttft and b'"content":" token"' in data:
                ttft = time.perf_counter() - started
            chunks += data.count(b"data: ")
    return ttft, chunks, time.perf_counter() - started


async def measure_ttft(targets: list[Target], requests: int, pause: float) -> None:
    """Time to first token of short sequential streams; also the proxies' CPU milliseconds per request.

    With a ``pause``, the targets take turns request by request (a shared machine's changing load falls on
    each alike) and every request finds the processes idle: on this virtual machine a process woken after
    an idle spell costs hundreds of microseconds more, and a proxy's path has two wake-ups more than direct
    access. With no pause the targets take turns in blocks of 20 requests sent back to back (the first of
    each block not counted), so a proxy's work after a response lands on its own next request, not another's.
    """
    times: dict[str, list[float]] = {target.name: [] for target in targets}
    block = 1 if pause else 20
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        for target in targets:
            for _ in range(10):
                await stream_once(client, target, 4)
        cpu_before = {target.name: cpu_seconds(target.pid) for target in targets if target.pid}
        for _ in range(0, requests, block):
            for target in targets:
                if block > 1:
                    await stream_once(client, target, 4)
                for _ in range(block):
                    times[target.name].append((await stream_once(client, target, 4))[0])
                    if pause:
                        # A proxy's work after a response (logging) must not land on the next target's turn.
                        await asyncio.sleep(pause)
        suffix = "" if pause else "_busy"
        for target in targets:
            ttft = times[target.name]
            target.results[f"ttft_p50_ms{suffix}"] = percentile(ttft, 0.5) * 1000
            target.results[f"ttft_p99_ms{suffix}"] = percentile(ttft, 0.99) * 1000
            if target.pid:
                cpu = cpu_seconds(target.pid) - cpu_before[target.name]
                target.results[f"cpu_ms_per_request{suffix}"] = (
                    cpu * 1000 / (len(ttft) + (len(ttft) // block if block > 1 else 0))
                )


async def measure_streams(target: Target, streams: int, chunks_each: int) -> tuple[float, float]:
    """Chunks per second over ``streams`` concurrent streams, and the proxy's CPU seconds per 1,000 chunks."""
    # uvicorn closes connections idle for 5 s; a connection that waited that long for the warm-up to end
    # must not be reused (the reuse would race the close and fail).
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10, keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=300, limits=limits, trust_env=False) as client:
        await asyncio.gather(*(stream_once(client, target, 8) for _ in range(streams)))  # warm the connections
        cpu_before = cpu_seconds(target.pid) if target.pid else 0.0
        started = time.perf_counter()
        results = await asyncio.gather(*(stream_once(client, target, chunks_each) for _ in range(streams)))
        elapsed = time.perf_counter() - started
        cpu = (cpu_seconds(target.pid) - cpu_before) if target.pid else 0.0
    received = sum(result[1] for result in results)
    return received / elapsed, cpu / (received / 1000)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_phase(targets: list[Target], args: argparse.Namespace) -> None:
    names = ", ".join(target.name for target in targets)
    print(f"measuring time to first token of {names}, taking turns ...", file=sys.stderr)
    asyncio.run(measure_ttft(targets, args.ttft_requests, pause=0.01))
    print("measuring time to first token, requests back to back ...", file=sys.stderr)
    asyncio.run(measure_ttft(targets, args.ttft_requests, pause=0.0))


def run_streams(target: Target, args: argparse.Namespace, slow: bool) -> None:
    # LiteLLM is ~50x slower per chunk; fewer chunks keep its run as long as the others' without changing rates.
    scale = 10 if slow else 1
    one, one_cpu = asyncio.run(measure_streams(target, 1, args.chunks // scale))
    target.results["one_stream_chunks_s"] = one
    target.results["one_stream_cpu_per_1k"] = one_cpu
    many, many_cpu = asyncio.run(measure_streams(target, args.streams, args.chunks_per_stream // scale))
    target.results["many_streams_chunks_s"] = many
    target.results["many_streams_cpu_per_1k"] = many_cpu
    print(f"  {target.name}: {json.dumps({k: round(v, 4) for k, v in target.results.items()})}", file=sys.stderr)


def gateway_config(directory: Path, upstream_port: int) -> Path:
    config = directory / "gateway.toml"
    config.write_text(
        f"""[database]
url = "sqlite:///gateway.db"

[gateway]
health_check_interval = 10.0

[[upstreams]]
name = "replay"
url = "http://127.0.0.1:{upstream_port}/v1"
models = ["{MODEL}"]
"""
    )
    return config


def create_key(config: Path) -> str:
    """A new key of the gateway configured in ``config``, made with ``chunkwise keys create``."""
    created = subprocess.run(
        [sys.executable, "-m", "chunkwise", "keys", "create", "--config", str(config), "--name", "bench"],
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.strip().splitlines()[-1]


def litellm_config(directory: Path, upstream_port: int) -> Path:
    config = directory / "litellm.yaml"
    config.write_text(
        f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: unused
litellm_settings:
  drop_params: true
  # Its /v1/messages route (bench_dialects.py) would send an openai/ model to the Responses API otherwise.
  use_chat_completions_url_for_anthropic_messages: true
general_settings:
  master_key: {LITELLM_KEY}
"""
    )
    return config


@contextmanager
def litellm_proxy(python: Path, directory: Path, upstream_port: int) -> Iterator[tuple[int, str]]:
    """LiteLLM's proxy (one worker) serving MODEL from the upstream; yields its pid and base URL."""
    port = free_port()
    command = [str(python.parent / "litellm"), "--config", str(litellm_config(directory, upstream_port))]
    command += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "NO_PROXY": "*"}
    url = f"http://127.0.0.1:{port}"
    with process(command, f"{url}/health/liveliness", env=env) as pid:
        yield pid, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--relay", type=int, nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ttft-requests", type=int, default=300, help="sequential requests for TTFT")
    parser.add_argument("--chunks", type=int, default=20_000, help="chunks in the one-stream run")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--chunks-per-stream", type=int, default=1_000)
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (no install needed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.replay is not None:
        asyncio.run(_replay_server(args.replay))
        return
    if args.relay is not None:
        asyncio.run(_relay_server(*args.relay))
        return

    python = None if args.no_litellm else litellm_python()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        upstream_port, relay_port, gateway_port = free_port(), free_port(), free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        targets: list[Target] = []
        version = None
        with process([sys.executable, __file__, "--replay", str(upstream_port)], f"{upstream_url}/v1/models"):
            direct = Target("direct", f"{upstream_url}/v1", {})
            config = gateway_config(directory, upstream_port)
            key = create_key(config)
            gateway_args = [sys.executable, "-m", "chunkwise", "gateway", "--config", str(config)]
            gateway_args += ["--port", str(gateway_port)]
            relay_args = [sys.executable, __file__, "--relay", str(relay_port), str(upstream_port)]
            with (
                process(relay_args, f"http://127.0.0.1:{relay_port}/v1/models") as relay_pid,
                process(gateway_args, f"http://127.0.0.1:{gateway_port}/health") as gateway_pid,
            ):
                relay = Target("TCP relay (control)", f"http://127.0.0.1:{relay_port}/v1", {}, relay_pid)
                gateway = Target(
                    "chunkwise gateway",
                    f"http://127.0.0.1:{gateway_port}/v1",
                    {"authorization": f"Bearer {key}"},
                    gateway_pid,
                )
                phase = [direct, relay, gateway]
                measure_phase(phase, args)
                for target in (direct, gateway):
                    print(f"measuring streams through {target.name} ...", file=sys.stderr)
                    run_streams(target, args, slow=False)
                targets += phase
            if python is not None:
                version = litellm_version(python)
                with litellm_proxy(python, directory, upstream_port) as (litellm_pid, litellm_url):
                    direct_again = Target("direct (LiteLLM's phase)", f"{upstream_url}/v1", {})
                    litellm = Target(
                        f"LiteLLM {version}",
                        f"{litellm_url}/v1",
                        {"authorization": f"Bearer {LITELLM_KEY}"},
                        litellm_pid,
                    )
                    measure_phase([direct_again, litellm], args)
                    print(f"measuring streams through {litellm.name} ...", file=sys.stderr)
                    run_streams(litellm, args, slow=True)
                    targets += [direct_again, litellm]
    report(targets, args, load_before, version)


def report(targets: list[Target], args: argparse.Namespace, load_before: float, version: str | None) -> None:
    by_name = {target.name: target.results for target in targets}
    direct, relay, gateway = by_name["direct"], by_name["TCP relay (control)"], by_name["chunkwise gateway"]
    litellm = by_name.get(f"LiteLLM {version}")
    direct_again = by_name.get("direct (LiteLLM's phase)")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{now}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(
        f"TTFT over {args.ttft_requests} sequential requests each, interleaved (after a 10 ms pause: one by one; "
        f"back to back: in blocks of 20); one stream of {args.chunks:,} chunks; "
        f"{args.streams} streams x {args.chunks_per_stream:,} chunks (LiteLLM: a tenth of the chunks); "
        "phases: direct, relay and gateway, then direct and LiteLLM\n"
    )
    print(
        "| path | TTFT p50 / p99, after a pause | TTFT p50 / p99, back to back | 1 stream chunks/s "
        "| 100 streams chunks/s | proxy CPU s / 1k chunks (1 / 100 streams) "
        "| proxy CPU ms / request (after a pause / back to back) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for target in targets:
        r = target.results
        streams = "one_stream_chunks_s" in r
        one = f"{r['one_stream_chunks_s']:,.0f}" if streams else "-"
        many = f"{r['many_streams_chunks_s']:,.0f}" if streams else "-"
        cpu = "-"
        if target.pid is not None and streams:
            cpu = f"{r['one_stream_cpu_per_1k']:.3f} / {r['many_streams_cpu_per_1k']:.3f}"
        request_cpu = (
            "-" if target.pid is None else f"{r['cpu_ms_per_request']:.2f} / {r['cpu_ms_per_request_busy']:.2f}"
        )
        print(
            f"| {target.name} | {r['ttft_p50_ms']:.2f} / {r['ttft_p99_ms']:.2f} ms "
            f"| {r['ttft_p50_ms_busy']:.2f} / {r['ttft_p99_ms_busy']:.2f} ms | {one} | {many} | {cpu} | {request_cpu} |"
        )

    def added(proxy: dict[str, Any], base: dict[str, Any], key: str) -> str:
        return f"{proxy[key] - base[key]:+.2f} ms"

    rows = [
        ("chunkwise gateway: added TTFT p50, after a pause", added(gateway, direct, "ttft_p50_ms"), "<= 1 ms"),
        ("chunkwise gateway: added TTFT p99, after a pause", added(gateway, direct, "ttft_p99_ms"), ""),
        ("chunkwise gateway: added TTFT p50, back to back", added(gateway, direct, "ttft_p50_ms_busy"), "<= 1 ms"),
        ("chunkwise gateway: added TTFT p99, back to back", added(gateway, direct, "ttft_p99_ms_busy"), ""),
        ("TCP relay (any proxy's floor): added TTFT p50, after a pause", added(relay, direct, "ttft_p50_ms"), ""),
        ("TCP relay (any proxy's floor): added TTFT p50, back to back", added(relay, direct, "ttft_p50_ms_busy"), ""),
        ("chunkwise gateway over the relay: TTFT p50, after a pause", added(gateway, relay, "ttft_p50_ms"), ""),
        ("chunkwise gateway over the relay: TTFT p50, back to back", added(gateway, relay, "ttft_p50_ms_busy"), ""),
        (
            "chunkwise gateway / direct, 1 stream",
            f"{gateway['one_stream_chunks_s'] / direct['one_stream_chunks_s']:.2f}x",
            ">= 0.5x",
        ),
        (
            "chunkwise gateway / direct, 100 streams",
            f"{gateway['many_streams_chunks_s'] / direct['many_streams_chunks_s']:.2f}x",
            "",
        ),
    ]
    if litellm is not None and direct_again is not None:
        rows += [
            ("LiteLLM: added TTFT p50, after a pause", added(litellm, direct_again, "ttft_p50_ms"), ""),
            ("LiteLLM: added TTFT p99, after a pause", added(litellm, direct_again, "ttft_p99_ms"), ""),
            ("LiteLLM: added TTFT p50, back to back", added(litellm, direct_again, "ttft_p50_ms_busy"), ""),
            (
                "chunkwise gateway / LiteLLM, 1 stream",
                f"{gateway['one_stream_chunks_s'] / litellm['one_stream_chunks_s']:.1f}x",
                "",
            ),
            (
                "chunkwise gateway / LiteLLM, 100 streams",
                f"{gateway['many_streams_chunks_s'] / litellm['many_streams_chunks_s']:.1f}x",
                ">= 10x",
            ),
            (
                "LiteLLM / chunkwise gateway, CPU per chunk (100 streams)",
                f"{litellm['many_streams_cpu_per_1k'] / gateway['many_streams_cpu_per_1k']:.1f}x",
                "",
            ),
        ]
    print("\n| ratio | result | target |\n|---|---:|---:|")
    for name, value, target_text in rows:
        print(f"| {name} | **{value}** | {target_text} |")
    if args.json:
        args.json.write_text(json.dumps({t.name: t.results for t in targets}, indent=2))


if __name__ == "__main__":
    main()
