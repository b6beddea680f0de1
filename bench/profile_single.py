"""Where one request's time goes, in process: inside ``llama_decode`` or in the step loop's own work.

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/profile_single.py --task story --task multi-turn

For each task of bench/bench_speculation.py (one request alone, greedy, ``--max-tokens``), with speculation
off and on, best of ``--runs``: the request's wall time, split into prompt pieces (number of decodes, time
inside them), decode steps (number, time inside them per step) and the rest per step (sampling, text,
chunks, handing them to the event loop: the loop's Python work). The engine's own counters
(``BatchingStats``) measure it. Then the same prompt evaluated by llama.cpp in one ``llama_decode`` (as
llama-server does for a prompt under its batch size), alternated with the engine's pieces, best of rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from bench_speculation import task_bodies  # bench/ is on sys.path when this file runs as a script
from chunkwise.engine import LlamaCppEngine, default_model_path
from chunkwise.types import ChatCompletionRequest


@dataclass
class Profile:
    wall: float
    prompt_tokens: int
    prompt_decodes: int
    prompt_seconds: float
    step_decodes: int
    step_seconds: float

    def line(self) -> str:
        steps = max(self.step_decodes, 1)
        outside = self.wall - self.prompt_seconds - self.step_seconds
        return (
            f"wall {self.wall * 1000:.0f} ms; prompt {self.prompt_tokens} tokens in {self.prompt_decodes} decodes, "
            f"{self.prompt_seconds * 1000:.0f} ms; {self.step_decodes} steps, "
            f"{self.step_seconds / steps * 1000:.2f} ms per step in llama_decode, "
            f"{outside / steps * 1000:.2f} ms per step outside it"
        )


async def answer(engine: LlamaCppEngine, body: dict[str, Any]) -> tuple[float, int]:
    request = msgspec.convert(body, type=ChatCompletionRequest)
    generation = engine.prepare_chat(request, request_id="chatcmpl-profile", created=0)
    started = time.perf_counter()
    async for _ in generation.stream():
        pass
    return time.perf_counter() - started, generation.prompt_tokens


def profile(engine: LlamaCppEngine, body: dict[str, Any]) -> Profile:
    stats = engine.batching_stats()
    before = (stats.prompt_decodes, stats.prompt_decode_seconds, stats.step_decodes, stats.step_decode_seconds)
    wall, prompt_tokens = asyncio.run(answer(engine, body))
    return Profile(
        wall,
        prompt_tokens,
        stats.prompt_decodes - before[0],
        stats.prompt_decode_seconds - before[1],
        stats.step_decodes - before[2],
        stats.step_decode_seconds - before[3],
    )


class OneDecode:
    """A bare llama.cpp context with the engine's settings, evaluating a whole prompt in one decode."""

    def __init__(self, lib: Any, model: Any, threads: int) -> None:
        self.lib = lib
        params = lib.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = 2048
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.ctx = lib.llama_init_from_model(model, params)
        self.memory = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(2048, 0, 1)

    def seconds(self, tokens: list[int]) -> float:
        self.lib.llama_memory_seq_rm(self.memory, 0, -1, -1)
        batch = self.batch
        for index, token in enumerate(tokens):
            batch.token[index] = token
            batch.pos[index] = index
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = 0
            batch.logits[index] = index == len(tokens) - 1
        batch.n_tokens = len(tokens)
        started = time.perf_counter()
        if self.lib.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - started

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", action="append", default=None, help="a task to profile, repeatable (default: all)")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="requests per task and setting (after a warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: one per core)")
    args = parser.parse_args()
    tasks = args.task or list(task_bodies(args.max_tokens, 0))
    threads = args.threads or os.cpu_count() or 1
    engines = {speculation: LlamaCppEngine(n_threads=threads, speculation=speculation) for speculation in (False, True)}
    import llama_cpp  # after the engines, which set llama.cpp's OpenMP up before its first import

    model = llama_cpp.llama_model_load_from_file(
        str(default_model_path()).encode(), llama_cpp.llama_model_default_params()
    )
    bare = OneDecode(llama_cpp, model, threads)
    try:
        for task in tasks:
            for speculation, engine in engines.items():
                profile(engine, task_bodies(args.max_tokens, 0)[task])  # warm-up
                runs = [profile(engine, task_bodies(args.max_tokens, run % 4 + 1)[task]) for run in range(args.runs)]
                best = min(runs, key=lambda result: result.wall)
                print(f"{task}, speculation {'on' if speculation else 'off'}: {best.line()}", flush=True)
            pieces, whole = [], []
            for run in range(args.runs):
                # A tag in front of the first message keeps the engine's prefix cache from serving the prompt.
                body = task_bodies(args.max_tokens, run % 4 + 1)[task]
                messages = [dict(message) for message in body["messages"]]
                messages[0]["content"] = f"(profile {run} {time.time()}) {messages[0]['content']}"
                engine = engines[False]
                result = profile(engine, {**body, "messages": messages, "max_tokens": 1})
                pieces.append((result.prompt_seconds, result.prompt_decodes, result.prompt_tokens))
                whole.append(bare.seconds(engine.tokenize_prompt(engine.render_chat(messages))))
            seconds, decodes, length = min(pieces)
            print(
                f"{task}, prompt of about {length} tokens: the engine's pieces {seconds * 1000:.0f} ms in {decodes} "
                f"decodes, one llama_decode {min(whole) * 1000:.0f} ms",
                flush=True,
            )
    finally:
        bare.close()
        llama_cpp.llama_model_free(model)
        for engine in engines.values():
            engine.close()


if __name__ == "__main__":
    main()
