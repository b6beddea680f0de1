"""Core benchmark: bytes → typed chunks → one reassembled ChatCompletion.

One run measures, on the same recorded stream of realistic chunks:

* chunkwise: ``ChunkStreamDecoder`` (full SSE rules) + ``ChatCompletionAccumulator``, fed 16 KiB pieces;
* openai-python: its ``Stream`` over an httpx mock transport that hands out the same 16 KiB pieces, both
  iterating the stream alone and with its own reassembly (``ChatCompletionStreamState``);
* a bare limit loop: ``bytes.split(b"\\n\\n")`` plus one msgspec decode per event, no SSE rules, no reassembly.

Run: ``.venv/bin/python bench/bench_core.py`` (``--chunks N`` to change the stream length).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import time
from collections.abc import Callable, Iterator

import msgspec

from chunkwise.accumulate import ChatCompletionAccumulator
from chunkwise.sse import ChunkStreamDecoder
from chunkwise.types import ChatCompletionChunk

PIECE = 16 * 1024

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so what out up said about into than them can "
    "only other time new some could these two may first then do any like my now over such our man me even most "
    "made after also did many before must through back years where much your way well down should because each "
    "naïve café résumé 東京 数据 🙂 🚀 — “quoted” `code` **bold** \\n"
).split()


def record_stream(chunk_count: int, seed: int = 7) -> tuple[bytes, str]:
    """A stream shaped like OpenAI's: role chunk, content chunks with nulls, finish, usage, [DONE]."""
    rng = random.Random(seed)
    base = {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1732881234,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_0aa8d3e20b",
    }
    events: list[bytes] = []
    text: list[str] = []

    def emit(choice: dict[str, object] | None, usage: object = None) -> None:
        body = {**base, "choices": [choice] if choice else [], "usage": usage}
        if choice is not None:
            body["obfuscation"] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9)))
        events.append(b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n")

    emit(
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
    )
    for _ in range(chunk_count - 3):
        piece = (" " if rng.random() < 0.8 else "") + rng.choice(WORDS)
        text.append(piece)
        emit({"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None})
    emit({"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"})
    emit(
        None,
        {
            "prompt_tokens": 31,
            "completion_tokens": chunk_count - 3,
            "total_tokens": chunk_count + 28,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    )
    events.append(b"data: [DONE]\n\n")
    return b"".join(events), "".join(text)


def pieces(data: bytes) -> list[bytes]:
    return [data[i : i + PIECE] for i in range(0, len(data), PIECE)]


def run_chunkwise(wire_pieces: list[bytes]) -> str:
    decoder: ChunkStreamDecoder[ChatCompletionChunk] = ChunkStreamDecoder()
    accumulator = ChatCompletionAccumulator()
    add = accumulator.add
    for piece in wire_pieces:
        for item in decoder.feed(piece):
            if type(item) is ChatCompletionChunk:
                add(item)
    decoder.close()
    assert decoder.finished_properly
    return accumulator.result().choices[0].message.content or ""


def run_bare(wire: bytes) -> int:
    decode = msgspec.json.Decoder(ChatCompletionChunk).decode
    count = 0
    for event in wire.split(b"\n\n"):
        if event.startswith(b"data: {"):
            decode(event[6:])
            count += 1
    return count


def openai_client(wire_pieces: list[bytes]) -> object:
    import httpx2  # openai-python 3.x talks through httpx2
    import openai

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(wire_pieces))

    http_client = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(api_key="bench", base_url="http://bench.invalid/v1", http_client=http_client, max_retries=0)


def run_openai_stream(client: object) -> int:
    stream = client.chat.completions.create(  # type: ignore[attr-defined]
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    count = 0
    for _ in stream:
        count += 1
    return count


def run_openai_reassembly(client: object) -> str:
    from openai.lib.streaming.chat import ChatCompletionStreamState

    state: ChatCompletionStreamState[object] = ChatCompletionStreamState()
    stream = client.chat.completions.create(  # type: ignore[attr-defined]
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    for chunk in stream:
        state.handle_chunk(chunk)
    return state.get_final_completion().choices[0].message.content or ""


def best_time(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: Iterator[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--openai-repeats", type=int, default=2)
    args = parser.parse_args(list(argv) if argv is not None else None)

    import openai

    wire, expected_text = record_stream(args.chunks)
    wire_pieces = pieces(wire)
    count = wire.count(b"\ndata: {") + 1
    print(f"machine: {machine()}")
    print(f"stream: {count} chunks, {len(wire) / 1e6:.1f} MB, {len(wire_pieces)} pieces of {PIECE} bytes")
    print(f"openai-python {openai.__version__}, msgspec {msgspec.__version__}")

    # Correctness first: every path must agree on the reassembled text.
    assert run_chunkwise(wire_pieces) == expected_text
    client = openai_client(wire_pieces)
    assert run_openai_reassembly(client) == expected_text
    assert run_bare(wire) == count

    results = {
        "chunkwise (SSE rules + reassembly)": best_time(lambda: run_chunkwise(wire_pieces), args.repeats),
        "bare loop (split + msgspec, no SSE, no reassembly)": best_time(lambda: run_bare(wire), args.repeats),
        "openai-python Stream": best_time(lambda: run_openai_stream(client), args.openai_repeats),
        "openai-python Stream + ChatCompletionStreamState": best_time(
            lambda: run_openai_reassembly(client), args.openai_repeats
        ),
    }
    rates = {name: count / seconds for name, seconds in results.items()}
    width = max(map(len, rates))
    print()
    print(f"{'path':<{width}}  {'chunks/s':>12}  {'µs/chunk':>9}")
    for name, rate in rates.items():
        print(f"{name:<{width}}  {rate:>12,.0f}  {1e6 / rate:>9.2f}")
    ours = rates["chunkwise (SSE rules + reassembly)"]
    print()
    versus_stream = ours / rates["openai-python Stream"]
    print(f"chunkwise / openai-python Stream:                  {versus_stream:6.1f}x  (target >= 30x)")
    print(
        f"chunkwise / openai-python Stream + reassembly:     "
        f"{ours / rates['openai-python Stream + ChatCompletionStreamState']:6.1f}x"
    )
    bare = rates["bare loop (split + msgspec, no SSE, no reassembly)"]
    print(f"chunkwise / bare loop:                             {ours / bare:6.2f}   (target >= 0.50)")


if __name__ == "__main__":
    main()
