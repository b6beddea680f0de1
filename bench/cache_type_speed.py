"""What one ``llama_decode`` costs with each key cache type: a prompt, and k tokens of one sequence alone.

The engine keeps keys in q8_0 (engine/_splits.py): with f16 keys a lone token over a KV view of 512 cells
takes flash attention's split-KV path, and the step loop pays one guessed token more (k=2) to avoid it.
This script times, on the engine's context settings (one KV stream per sequence, flash attention on), a
512-token prompt read in pieces of 64 and of 256, then decodes of k = 1, 2 and 4 tokens of one sequence
over 300, 700 and 1200 cached tokens (each decode's cells removed again), best of rounds, key types in turn.

    python bench/cache_type_speed.py
"""

from __future__ import annotations

import time
from typing import Any

import click

from verify_invariance import CACHE_TYPES, TEXT, Bench, load_bundled_model, tokenize

CACHED = (300, 700, 1200)
DECODES = 30


def best_of(rounds: int, run: Any) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def lone_decode_seconds(
    lib: Any, bench: Bench, tokens: list[int], cached: int, k: int, rounds: int, decodes: int
) -> float:
    """Seconds per ``llama_decode`` of ``k`` tokens of one sequence over its ``cached`` tokens, best of rounds.

    Each decode's cells are removed again, so every one sees the same cache.
    """

    def run() -> None:
        for index in range(decodes):
            bench.decode([(tokens[index], cached + offset, 0, True) for offset in range(k)])
            lib.llama_memory_seq_rm(bench.memory, 0, cached, -1)

    return best_of(rounds, run) / decodes


def measure(lib: Any, bench: Bench, tokens: list[int], type_k: str, rounds: int) -> None:
    def prompt(piece: int) -> None:
        lib.llama_memory_clear(bench.memory, True)
        for start in range(0, 512, piece):
            bench.decode([(tokens[index], index, 0, index == 511) for index in range(start, start + piece)])

    pieces = {piece: best_of(rounds, lambda piece=piece: prompt(piece)) for piece in (64, 256)}
    shown = ", ".join(f"in pieces of {piece}: {seconds * 1000:.0f} ms" for piece, seconds in pieces.items())
    print(f"keys {type_k:4}: 512-token prompt {shown}")
    for cached in CACHED:
        lib.llama_memory_clear(bench.memory, True)
        bench.prompt(tokens[:cached])
        times = {k: lone_decode_seconds(lib, bench, tokens, cached, k, rounds, DECODES) for k in (1, 2, 4)}
        shown = ", ".join(f"k={k} {seconds * 1000:.2f} ms" for k, seconds in times.items())
        print(f"keys {type_k:4}: {cached:4} cached, {shown}")


@click.command()
@click.option("--type-k", "types", type=click.Choice(list(CACHE_TYPES)), multiple=True, default=["f16", "q8_0"])
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--rounds", type=int, default=3, show_default=True)
def main(types: tuple[str, ...], threads: int, rounds: int) -> None:
    import llama_cpp as lib

    model = load_bundled_model(lib)
    tokens = tokenize(lib, lib.llama_model_get_vocab(model), TEXT * 60)
    print(f"threads={threads}, values f16, best of {rounds}; decodes: ms per llama_decode of k tokens")
    for type_k in types:
        bench = Bench(lib, model, threads=threads, flash_attn=True, n_ctx=2048, cache_types=(CACHE_TYPES[type_k], 1))
        measure(lib, bench, tokens, type_k, rounds)
        bench.close()
    lib.llama_model_free(model)


if __name__ == "__main__":
    main()
