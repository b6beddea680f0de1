"""Client benchmark: chunkwise ``Client``/``AsyncClient`` against openai-python, over real loopback HTTP.

A server in a separate process (so that its CPU time is not the client's) replays a recorded stream of
realistic chunks (OpenAI's shape: role chunk, content chunks with their nulls, finish chunk, usage
chunk, ``[DONE]``) as fast as the socket takes it. One run measures, for both clients:

1. one stream at a time (sync clients): chunks per second;
2. 100 concurrent streams (async clients): chunks per second and the client process's CPU seconds.

The recording is replayed in 16 KiB HTTP chunks (``replay``), and for (1) also framed the way a token
server writes it, one HTTP chunk per event (``per-event``). In the second framing both clients pay
h11's cost of parsing one HTTP chunk per event (about as much as everything else chunkwise does per
chunk), which no SSE or JSON layer can win back.

Run: ``.venv/bin/python bench/bench_client.py`` (``--write BENCHMARKS.md`` records the result in the
file's ``## Client`` section; ``--passes 2`` measures twice in one run).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

import chunkwise
from sections import write_section  # bench/ is on sys.path when this file runs as a script

SECTION = "## Client"
#: Generous for both clients: with 100 streams on two cores, a busy client accepts its connections late.
TIMEOUT = 600.0
MODEL = "gpt-4o-mini-2024-07-18"
MESSAGES = [{"role": "user", "content": "Tell me a long story."}]
VOCABULARY = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so what out up said about into than them can "
    "dragon castle river morning quietly remembered — “said” café naïve 東京 🙂 **bold** `code`"
).split()

# --- the recorded stream and the server that replays it ---------------------------------------------


def recorded_events(chunk_count: int, seed: int = 3) -> list[bytes]:
    """``chunk_count`` SSE events shaped like an OpenAI stream with ``include_usage``, then ``[DONE]``."""
    rng = random.Random(seed)
    head = {
        "id": "chatcmpl-AqBcKz4WvJ2pTf0uNlXy9RmEhsD1o",
        "object": "chat.completion.chunk",
        "created": 1737000000,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_72ed7ab54c",
    }

    def event(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        body = {**head, "choices": choices, "usage": usage}
        return b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [event(choice({"role": "assistant", "content": "", "refusal": None}))]
    for _ in range(chunk_count - 3):
        events.append(event(choice({"content": (" " if rng.random() < 0.8 else "") + rng.choice(VOCABULARY)})))
    events.append(event(choice({}, "stop")))
    usage = {
        "prompt_tokens": 14,
        "completion_tokens": chunk_count - 3,
        "total_tokens": chunk_count + 11,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    events.append(event([], usage))
    events.append(b"data: [DONE]\n\n")
    return events


#: HTTP chunk size of the ``replay`` framing.
REPLAY_PIECE = 16 * 1024
FRAMINGS = ("replay", "per-event")


def _response_bytes(events: list[bytes], framing: str) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
        b"x-request-id: bench\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    if framing == "per-event":
        pieces = events
    else:
        wire = b"".join(events)
        pieces = [wire[i : i + REPLAY_PIECE] for i in range(0, len(wire), REPLAY_PIECE)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return head + body + b"0\r\n\r\n"


def _serve(ready: Connection, chunk_count: int) -> None:
    """The replay server (runs in its own process). Sends the port through ``ready``, then serves forever.

    The first path segment picks the framing: ``/replay/v1/...`` or ``/per-event/v1/...``.
    """
    events = recorded_events(chunk_count)
    responses = {framing.encode(): _response_bytes(events, framing) for framing in FRAMINGS}

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                path = head.split(b" ", 2)[1]
                writer.write(responses[path.split(b"/")[1]])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(connection, "127.0.0.1", 0, backlog=1024)
        ready.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


# --- the two clients --------------------------------------------------------------------------------


def chunkwise_one(client: chunkwise.Client) -> int:
    count = 0
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            count += 1
    return count


def httpx_floor_one(client: httpx.Client, url: str) -> int:
    """What the HTTP layer alone costs: the same request, its body read and thrown away, nothing parsed."""
    pieces = 0
    with client.stream("POST", f"{url}/chat/completions", json={"model": MODEL, "messages": MESSAGES}) as response:
        for _ in response.iter_raw():
            pieces += 1
    return pieces


def openai_one(client: Any) -> int:
    count = 0
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            count += 1
    return count


async def chunkwise_many(client: chunkwise.AsyncClient, streams: int) -> int:
    async def one() -> int:
        count = 0
        async with await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
            async for _ in stream:
                count += 1
        return count

    return sum(await asyncio.gather(*(one() for _ in range(streams))))


async def openai_many(client: Any, streams: int) -> int:
    async def one() -> int:
        count = 0
        async with await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
            async for _ in stream:
                count += 1
        return count

    return sum(await asyncio.gather(*(one() for _ in range(streams))))


# --- measuring --------------------------------------------------------------------------------------


@dataclass
class Measurement:
    chunks: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.chunks / self.wall


def measure(function: Callable[[], int]) -> Measurement:
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    chunks = function()
    return Measurement(chunks, time.perf_counter() - wall, time.process_time() - cpu)


def best(measurements: list[Measurement]) -> Measurement:
    return max(measurements, key=lambda m: m.rate)


@dataclass
class Pass:
    #: framing -> (chunkwise, openai-python), one stream at a time.
    single: dict[str, tuple[Measurement, Measurement]]
    #: (chunkwise, openai-python), ``streams`` concurrent streams, replay framing.
    concurrent: tuple[Measurement, Measurement]
    #: httpx reading the per-event body without parsing it: one HTTP chunk is one event there.
    floor: Measurement
    load_before: str

    def table(self, streams: int) -> str:
        ours, theirs = self.concurrent
        rows = [
            (f"1 stream, {framing}: chunks/s", one[0].rate, one[1].rate, "{:,.0f}")
            for framing, one in self.single.items()
        ]
        lines_after = [
            f"\nThe HTTP layer alone (httpx reading the per-event body, parsing nothing) manages "
            f"{self.floor.rate:,.0f} HTTP chunks/s, so in that framing no httpx-based client can pass "
            f"{self.floor.rate / self.single['per-event'][1].rate:.1f}x openai-python."
        ]
        rows += [
            (f"{streams} streams, replay: chunks/s", ours.rate, theirs.rate, "{:,.0f}"),
            (f"{streams} streams, replay: client CPU s", ours.cpu, theirs.cpu, "{:.2f}"),
            (f"{streams} streams, replay: wall s", ours.wall, theirs.wall, "{:.2f}"),
        ]
        lines = ["| measurement | chunkwise | openai-python | chunkwise advantage |", "|---|--:|--:|--:|"]
        for name, mine, other, number in rows:
            # For rates more is better; for seconds less is.
            advantage = mine / other if "chunks/s" in name else other / mine
            lines.append(f"| {name} | {number.format(mine)} | {number.format(other)} | {advantage:.1f}x |")
        return "\n".join(lines + lines_after)


def single_streams(base_url: str, repeats: int, expected: int) -> tuple[Measurement, Measurement]:
    import openai

    with (
        chunkwise.Client(base_url=base_url, api_key="bench", max_retries=0, timeout=TIMEOUT) as ours,
        openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=TIMEOUT) as theirs,
    ):
        runs: dict[str, Callable[[], int]] = {
            "chunkwise": lambda: chunkwise_one(ours),
            "openai": lambda: openai_one(theirs),
        }
        results: dict[str, list[Measurement]] = {name: [] for name in runs}
        for _ in range(repeats + 1):  # the first round warms up connections and caches, and is dropped
            for name, run in runs.items():
                result = measure(run)
                assert result.chunks == expected, (name, result.chunks, expected)
                results[name].append(result)
    return best(results["chunkwise"][1:]), best(results["openai"][1:])


def concurrent_streams(base_url: str, streams: int, repeats: int, expected: int) -> tuple[Measurement, Measurement]:
    import openai

    async def main() -> tuple[Measurement, Measurement]:
        async with (
            chunkwise.AsyncClient(base_url=base_url, api_key="bench", max_retries=0, timeout=TIMEOUT) as ours,
            openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=TIMEOUT) as theirs,
        ):
            runs: dict[str, Callable[[], Awaitable[int]]] = {
                "chunkwise": lambda: chunkwise_many(ours, streams),
                "openai": lambda: openai_many(theirs, streams),
            }
            results: dict[str, list[Measurement]] = {name: [] for name in runs}
            for _ in range(repeats + 1):
                for name, run in runs.items():
                    gc.collect()
                    cpu, wall = time.process_time(), time.perf_counter()
                    chunks = await run()
                    results[name].append(Measurement(chunks, time.perf_counter() - wall, time.process_time() - cpu))
                    assert chunks == streams * expected, (name, chunks)
        return best(results["chunkwise"][1:]), best(results["openai"][1:])

    return asyncio.run(main())


def run_pass(root_url: str, chunks: int, streams: int, repeats: int, concurrent_repeats: int) -> Pass:
    load_before = load_average()
    expected = chunks  # role, content..., finish and usage: every event but [DONE]
    single = {framing: single_streams(f"{root_url}/{framing}/v1", repeats, expected) for framing in FRAMINGS}
    with httpx.Client() as client:
        floors = [measure(lambda: httpx_floor_one(client, f"{root_url}/per-event/v1")) for _ in range(repeats + 1)]
    concurrent = concurrent_streams(f"{root_url}/replay/v1", streams, concurrent_repeats, expected)
    return Pass(single=single, concurrent=concurrent, floor=best(floors[1:]), load_before=load_before)


# --- reporting --------------------------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> str:
    model = platform.machine()
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=2000, help="chunks per stream (default 2000)")
    parser.add_argument("--streams", type=int, default=100, help="concurrent async streams (default 100)")
    parser.add_argument("--repeats", type=int, default=10, help="single-stream repeats; the best one counts")
    parser.add_argument("--concurrent-repeats", type=int, default=3, help="repeats of the concurrent streams")
    parser.add_argument("--passes", type=int, default=1, help="measure the whole set this many times")
    parser.add_argument("--write", type=Path, metavar="BENCHMARKS.md", help="record the result in this file")
    args = parser.parse_args(argv)

    import openai

    context = multiprocessing.get_context("spawn")
    ready, ready_child = context.Pipe(duplex=False)
    server = context.Process(target=_serve, args=(ready_child, args.chunks), daemon=True)
    server.start()
    try:
        root_url = f"http://127.0.0.1:{ready.recv()}"
        events = recorded_events(args.chunks)
        wire_size = sum(map(len, events))
        header = [
            f"- machine: {machine()}",
            f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- command: `{' '.join(['.venv/bin/python', 'bench/bench_client.py', *(argv or sys.argv[1:])])}`",
            f"- versions: chunkwise {chunkwise.__version__}, openai-python {openai.__version__}",
            f"- stream: {args.chunks} chunks + [DONE], {wire_size / 1e3:.0f} kB of SSE, replayed at full speed over "
            "loopback by a server in another process, in 16 KiB HTTP chunks (replay) or one HTTP chunk per event",
            f"- single stream: best of {args.repeats}; {args.streams} streams: best of {args.concurrent_repeats}",
        ]
        print("\n".join(header))
        passes = []
        for number in range(1, args.passes + 1):
            result = run_pass(root_url, args.chunks, args.streams, args.repeats, args.concurrent_repeats)
            passes.append(result)
            print(f"\npass {number} (load average before: {result.load_before})\n")
            print(result.table(args.streams))
            if number < args.passes:
                time.sleep(5)
    finally:
        server.terminate()
        server.join(5)

    if args.write is not None:
        blocks = [
            f"### Pass {number} (load average before: {result.load_before})\n\n{result.table(args.streams)}\n"
            for number, result in enumerate(passes, 1)
        ]
        section = f"{SECTION}\n\n" + "\n".join(header) + "\n\n" + "\n".join(blocks)
        write_section(args.write, SECTION, section)
        print(f"\nwritten to {args.write}")


if __name__ == "__main__":
    main()
