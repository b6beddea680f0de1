"""What one decode step of several sequences costs in each KV cache layout: chunkwise's against llama-server's.

chunkwise keeps one KV stream per sequence with keys in q8_0 (engine/_splits.py: every batch shape then gives
the same logits). llama-server keeps f16 keys, in one stream per sequence when ``--parallel`` is given (as in
bench_batching and bench_speculation) and in one unified cache when it is left to choose. This times, on
bare llama.cpp contexts with flash attention and the bundled model, a ``llama_decode`` of one token for each
of 4 and 8 sequences over 200 cached tokens each (the cells removed again after every step), in four
layouts: streams or unified, q8_0 or f16 keys. Best of ``--rounds`` rounds of 20 steps, the layouts in turn.

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/kv_layouts.py
"""

from __future__ import annotations

import time

import click

from chunkwise.engine._llama import prefer_spinning_openmp
from verify_invariance import CACHE_TYPES, SEQUENCES, TEXT, Bench, load_bundled_model, tokenize

CACHED = 200
STEPS = 20
LAYOUTS = {
    "streams, q8_0 keys (chunkwise)": (False, "q8_0"),
    "streams, f16 keys (llama-server --parallel N)": (False, "f16"),
    "unified, f16 keys (llama-server's own choice)": (True, "f16"),
    "unified, q8_0 keys": (True, "q8_0"),
}


class Layout(Bench):
    """A bare context in one layout, with every sequence holding the same ``CACHED`` tokens."""

    def fill(self, tokens: list[int]) -> None:
        for sequence in range(SEQUENCES):
            for start in range(0, CACHED, 100):
                self.decode([(tokens[index], index, sequence, False) for index in range(start, start + 100)])

    def step_seconds(self, tokens: list[int], sequences: int) -> float:
        started = time.perf_counter()
        for step in range(STEPS):
            self.decode([(tokens[step], CACHED, sequence, True) for sequence in range(sequences)])
            for sequence in range(sequences):
                self.lib.llama_memory_seq_rm(self.memory, sequence, CACHED, -1)
        return (time.perf_counter() - started) / STEPS


@click.command()
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True, help="llama.cpp threads")
def main(rounds: int, threads: int) -> None:
    prefer_spinning_openmp()  # as the engine and llama-server's OpenMP build run
    import llama_cpp

    model = load_bundled_model(llama_cpp)
    tokens = (tokenize(llama_cpp, llama_cpp.llama_model_get_vocab(model), TEXT) * 4)[:CACHED]
    layouts = {
        name: Layout(
            llama_cpp,
            model,
            threads=threads,
            flash_attn=True,
            n_ctx=1024,
            cache_types=(CACHE_TYPES[type_k], CACHE_TYPES["f16"]),
            unified=unified,
        )
        for name, (unified, type_k) in LAYOUTS.items()
    }
    try:
        for layout in layouts.values():
            layout.fill(tokens)
        best: dict[tuple[str, int], float] = {}
        for _ in range(rounds):
            for name, layout in layouts.items():
                for sequences in (4, SEQUENCES):
                    seconds = layout.step_seconds(tokens, sequences)
                    best[name, sequences] = min(best.get((name, sequences), float("inf")), seconds)
    finally:
        for layout in layouts.values():
            layout.close()
        llama_cpp.llama_model_free(model)
    print(f"| layout | 4 sequences | {SEQUENCES} sequences |")
    print("|---|---|---|")
    for name in LAYOUTS:
        print(f"| {name} | {best[name, 4] * 1000:.1f} ms | {best[name, SEQUENCES] * 1000:.1f} ms |")
    ours = next(iter(LAYOUTS))
    for reference in list(LAYOUTS)[1:3]:
        ratios = " / ".join(f"{best[reference, count] / best[ours, count]:.2f}×" for count in (4, SEQUENCES))
        print(f"chunkwise's layout against {reference}: {ratios} as fast (4 / {SEQUENCES} sequences)")


if __name__ == "__main__":
    main()
