"""Does keeping the KV cache's keys in q8_0 instead of f16 change what the model predicts?

The engine keeps keys in q8_0 (values in f16) because that keeps flash attention on one path in every batch
shape (engine/_splits.py). This script measures what that costs in quality: the model's perplexity and top-1
accuracy over the project's README and docs/*.md, evaluated in pieces of 64 tokens with each key cache type,
same GGUF, same settings otherwise.

    python bench/cache_type_quality.py
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from verify_invariance import CACHE_TYPES, Bench, load_bundled_model, tokenize

ROOT = Path(__file__).parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PIECE = 64


@click.command()
@click.option("--tokens", type=int, default=1500, show_default=True, help="Tokens read from each document.")
@click.option("--threads", type=int, default=2, show_default=True)
def main(tokens: int, threads: int) -> None:
    import llama_cpp as lib

    model = load_bundled_model(lib)
    vocab = lib.llama_model_get_vocab(model)
    texts = [tokenize(lib, vocab, path.read_text())[:tokens] for path in DOCUMENTS]
    for type_k in ("f16", "q8_0"):
        bench = Bench(
            lib, model, threads=threads, flash_attn=True, n_ctx=tokens + PIECE, cache_types=(CACHE_TYPES[type_k], 1)
        )
        total, count, right = 0.0, 0, 0
        for text in texts:
            lib.llama_memory_clear(bench.memory, True)
            for start in range(0, len(text) - 1, PIECE):
                positions = range(start, min(start + PIECE, len(text) - 1))
                bench.decode([(text[index], index, 0, True) for index in positions])
                for row, index in enumerate(positions):
                    logits = bench.logits(row).astype(np.float64)
                    peak = logits.max()
                    total += peak + np.log(np.exp(logits - peak).sum()) - logits[text[index + 1]]
                    count += 1
                    right += int(np.argmax(logits) == text[index + 1])
        bench.close()
        print(f"keys {type_k:4}: {count} tokens, perplexity {np.exp(total / count):.4f}, top-1 {right / count:.4f}")
    lib.llama_model_free(model)


if __name__ == "__main__":
    main()
