"""How llama.cpp splits a decode with one KV stream per sequence, and the one shape that must not occur.

With separate streams, ``llama_decode`` cuts its batch into micro-batches that hold the same number of
tokens of every sequence in them, for a run of consecutive sequence ids (``split_equal``): first one token
of each sequence, then the rest of those that have more, and so on. A sequence that carries guessed tokens
beside others that carry one is therefore verified in a later micro-batch of its own.

Each micro-batch is computed as a whole, and one shape takes a different path through flash attention:
a single token of a single sequence over a KV view of 512 cells or more, when more than one thread runs.
Its attention is then split across the threads and the partial sums are merged, which changes the last
bits of the logits compared with the same token in any other shape (``bench/verify_invariance.py`` shows
it). Every other shape, 1 to 48 tokens per sequence alone or among others, gives bitwise the same
logits per token. So with f16 keys the step loop never lets that shape occur: a sequence that would end
up alone with one token carries one guessed token more, which costs nearly a second token's decode.

Both that split path and the tiled one (64 query rows or more) are taken only when keys and values have
the same type. The engine's default keeps keys in q8_0 beside f16 values: flash attention then computes
every query row alone over the cells in order, in every shape, and no guard is needed
(``bench/verify_invariance.py --type-k q8_0`` shows every row equal, one token alone included).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["lone_single_tokens"]


def lone_single_tokens(counts: Sequence[tuple[int, int]]) -> list[int]:
    """The sequence ids that llama.cpp would decode alone as a single token.

    ``counts`` is (sequence id, tokens in the batch) for each sequence, in the batch's order (by id).
    Mirrors ``llama_batch_allocr::split_equal`` with ``sequential`` set, for batches within ``n_ubatch``.
    """
    remaining = dict(counts)
    order = [seq_id for seq_id, _ in counts]
    lone: list[int] = []
    while any(remaining.values()):
        run: list[int] = []
        for seq_id in order:
            if not remaining[seq_id]:
                continue
            if run and seq_id != run[-1] + 1:
                continue
            run.append(seq_id)
        size = min(remaining[seq_id] for seq_id in run)
        if len(run) == 1 and size == 1:
            lone.append(run[0])
        for seq_id in run:
            remaining[seq_id] -= size
    return lone
