"""Are a sequence's logits the same when its tokens are verified several at a time as when decoded one by one?

Speculative decoding changes no output only if they are, bit for bit: the engine samples each verified
position from its logits and keeps a guessed token only where the sample equals it. This script decodes one
greedy continuation token by token (the reference, as the step loop does without speculation), then the same
tokens again in verify batches of ``k`` tokens per decode, alone and among 7 other sequences (which carry one
token each, or ``k`` each), and compares every row of logits with the reference. It uses the engine's context
settings: one KV stream per sequence, flash attention on (``--no-flash-attn`` to compare).

    python bench/verify_invariance.py --threads 2 --prompt-tokens 60 --prompt-tokens 600
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import click
import numpy as np

from chunkwise.engine import default_model_path

COMPANY = 7
SEQUENCES = COMPANY + 1
PIECE = 32
#: ggml's type numbers for the KV cache (``enum ggml_type``).
CACHE_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}
TEXT = (
    "Copy this list exactly: apples, pears, plums, cherries, grapes, lemons, limes, oranges, peaches, melons. "
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat near the door. "
)


class Bench:
    def __init__(
        self,
        lib: Any,
        model: Any,
        *,
        threads: int,
        flash_attn: bool,
        n_ctx: int,
        cache_types: tuple[int, int],
        unified: bool = False,
    ) -> None:
        """``n_ctx`` cells per sequence, each sequence in its own KV stream unless ``unified``."""
        self.lib = lib
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx * SEQUENCES
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = SEQUENCES
        params.kv_unified = unified
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        params.type_k, params.type_v = cache_types
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = lib.llama_init_from_model(model, params)
        self.memory = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(512, 0, 1)
        self.n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)

    def decode(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        """``items``: (token, position, sequence, wants logits)."""
        batch = self.batch
        for index, (token, position, sequence, logits) in enumerate(items):
            batch.token[index] = token
            batch.pos[index] = position
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = sequence
            batch.logits[index] = logits
        batch.n_tokens = len(items)
        status = self.lib.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode: {status}")

    def logits(self, index: int) -> np.ndarray[Any, Any]:
        row = self.lib.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()

    def prompt(self, tokens: list[int], piece: int = PIECE) -> np.ndarray[Any, Any]:
        """Evaluate ``tokens`` on sequence 0 in fixed pieces, the last token alone; copy it to the company."""
        last = len(tokens) - 1
        for start in range(0, last, piece):
            end = min(start + piece, last)
            self.decode([(tokens[index], index, 0, False) for index in range(start, end)])
        self.decode([(tokens[last], last, 0, True)])
        for sequence in range(1, SEQUENCES):
            self.lib.llama_memory_seq_cp(self.memory, 0, sequence, -1, -1)
        return self.logits(0)


def run(bench: Bench, prompt: list[int], tokens: list[int], k: int, company: int) -> list[np.ndarray[Any, Any]]:
    """Decode ``tokens`` after ``prompt`` on sequence 0, ``k`` per decode; each companion adds ``company`` tokens.

    Returns the logits after each of ``tokens`` (row j predicts the token after ``tokens[j]``).
    """
    rows: list[np.ndarray[Any, Any]] = []
    base = companion_position = len(prompt)
    companion_token = tokens[0]
    for start in range(0, len(tokens), k):
        chunk = tokens[start : start + k]
        items = [(token, base + start + offset, 0, True) for offset, token in enumerate(chunk)]
        for sequence in range(1, COMPANY + 1 if company else 1):
            items += [(companion_token, companion_position + offset, sequence, True) for offset in range(company)]
        companion_position += company
        bench.decode(items)
        rows += [bench.logits(index) for index in range(len(chunk))]
    return rows


def greedy(bench: Bench, prompt: list[int], count: int) -> list[int]:
    first = int(np.argmax(bench.prompt(prompt)))
    tokens = [first]
    for position in range(len(prompt), len(prompt) + count - 1):
        bench.decode([(tokens[-1], position, 0, True)])
        tokens.append(int(np.argmax(bench.logits(0))))
    return tokens


def _ignore(level: int, text: bytes, data: Any) -> None:
    pass


#: llama.cpp's log callback that drops everything (its context logs would drown the table).
_quiet = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(_ignore)


def load_bundled_model(lib: Any) -> Any:
    """The bundled GGUF, loaded with llama.cpp's log silenced (the bench scripts' own tables stay readable)."""
    lib.llama_log_set(_quiet, None)
    lib.llama_backend_init()
    return lib.llama_model_load_from_file(str(default_model_path()).encode(), lib.llama_model_default_params())


def tokenize(lib: Any, vocab: Any, text: str, *, parse_special: bool = False) -> list[int]:
    """``text``'s tokens, the model's BOS first."""
    data = text.encode()
    buffer = (lib.llama_token * (len(data) + 8))()
    return list(buffer[: lib.llama_tokenize(vocab, data, len(data), buffer, len(buffer), True, parse_special)])


@click.command()
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--flash-attn/--no-flash-attn", default=True, show_default=True)
@click.option("--prompt-tokens", "lengths", type=int, multiple=True, default=[60, 600], show_default=True)
@click.option("--tokens", "count", type=int, default=24, show_default=True, help="Continuation tokens compared.")
@click.option("--k", "sizes", type=int, multiple=True, default=[1, 2, 4, 8, 16], show_default=True)
@click.option(
    "--piece",
    "pieces",
    type=int,
    multiple=True,
    default=[],
    help=f"Also evaluate the prompt in pieces of this many tokens (not {PIECE}), then decode one token at a time.",
)
@click.option("--type-k", type=click.Choice(list(CACHE_TYPES)), default="f16", show_default=True)
@click.option("--type-v", type=click.Choice(list(CACHE_TYPES)), default="f16", show_default=True)
def main(
    threads: int,
    flash_attn: bool,
    lengths: tuple[int, ...],
    count: int,
    sizes: tuple[int, ...],
    pieces: tuple[int, ...],
    type_k: str,
    type_v: str,
) -> None:
    import llama_cpp as lib

    model = load_bundled_model(lib)
    all_tokens = tokenize(lib, lib.llama_model_get_vocab(model), TEXT * 40, parse_special=True)
    n_ctx = max(lengths) + count + 64
    cache_types = (CACHE_TYPES[type_k], CACHE_TYPES[type_v])
    print(f"threads={threads} flash_attn={flash_attn} type_k={type_k} type_v={type_v}")
    for length in lengths:
        prompt = list(all_tokens[:length])

        def fresh() -> Bench:
            return Bench(lib, model, threads=threads, flash_attn=flash_attn, n_ctx=n_ctx, cache_types=cache_types)

        bench = fresh()
        continuation = greedy(bench, prompt, count + 1)
        bench.close()
        # The reference decodes token by token among 7 others: the step loop's shared decode step.
        shapes = [("among 7 (1 token each)", 1, 1, PIECE), ("alone", 1, 0, PIECE)]
        shapes += [(f"prompt in pieces of {piece}, alone", 1, 0, piece) for piece in pieces]
        shapes += [(f"k={k} alone", k, 0, PIECE) for k in sizes if k > 1]
        shapes += [(f"k={k} among 7 (1 token each)", k, 1, PIECE) for k in sizes if k > 1]
        shapes += [(f"k={k} among 7 ({k} tokens each)", k, k, PIECE) for k in sizes if k > 1]
        reference: list[np.ndarray[Any, Any]] | None = None
        for name, k, company, piece in shapes:
            bench = fresh()
            bench.prompt(prompt, piece)
            rows = run(bench, prompt, continuation[:count], k, company)
            bench.close()
            if reference is None:
                reference = rows
            equal = sum(np.array_equal(row, ref) for row, ref in zip(rows, reference, strict=True))
            worst = max(float(np.abs(row - ref).max()) for row, ref in zip(rows, reference, strict=True))
            flips = sum(int(np.argmax(row)) != int(np.argmax(ref)) for row, ref in zip(rows, reference, strict=True))
            print(
                f"prompt {length:4} tokens  {name:36} bitwise equal rows {equal:3}/{count}"
                f"  max |diff| {worst:.3g}  argmax flips {flips}"
            )
    lib.llama_model_free(model)


if __name__ == "__main__":
    main()
