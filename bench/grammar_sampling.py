"""Greedy sampling under a grammar on the real engine: the likeliest tokens offered in tiers, against masking.

When a grammar rejects a greedy chain's argmax, the engine offers the grammar the likeliest tokens, best
first: 64, then 2048, and only then masks the whole vocabulary (``engine/_sampling.py``). Before, it offered
64 and no tier after, and a chain with a ``logit_bias`` (bench_speculation bans the end of text) masked the
whole vocabulary at every rejection. This puts the two side by side on one engine (the bundled model,
default options) over bench_speculation's json task, 200 greedy tokens, instances 1 to 3, with the end of
text banned as there and without a bias. The ways alternate request by request in a rotating order, and the
shared cache of earlier outputs is reset before each request to what the warm-up left. The earlier way is
restored by configuration: one tier, and biased chains sent down the masking path. Reported: tokens/s over
the instances' best times (an instance's prompt is in the prefix cache after its first request, so this is
mostly decoding), whole-vocabulary masks per answer, and whether the texts are the same (they must be).

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/grammar_sampling.py
"""

from __future__ import annotations

import asyncio
from typing import Any

import click
import msgspec

from chunkwise.engine import LlamaCppEngine, _sampling
from chunkwise.types import ChatCompletionRequest
from draft_policies import timed
from simulate_drafts import task_request

INSTANCES = (1, 2, 3)
WAYS = ("tiers", "masking")
TIERS = _sampling._LIKELIEST


class Masks:
    """Counts whole-vocabulary masks, and makes new chains sample the earlier way while ``earlier`` is set."""

    def __init__(self) -> None:
        self.count = 0
        self.earlier = False
        masking, starting = _sampling.Candidates.sample, _sampling.SamplerChain.__init__

        def sample(candidates: Any, *args: Any) -> int:
            self.count += 1
            return masking(candidates, *args)

        def start(chain: Any, *args: Any, **kwargs: Any) -> None:
            starting(chain, *args, **kwargs)
            if self.earlier and chain._argmax_bias is not None:
                chain._plain_argmax = False

        _sampling.Candidates.sample = sample  # type: ignore[method-assign,assignment]
        _sampling.SamplerChain.__init__ = start  # type: ignore[method-assign,assignment]

    def use(self, way: str) -> None:
        self.earlier = way == "masking"
        _sampling._LIKELIEST = TIERS[:1] if self.earlier else TIERS


def request(instance: int, biased: bool) -> ChatCompletionRequest:
    body = task_request("json", instance)
    return body if biased else msgspec.structs.replace(body, logit_bias=None)


async def measure(rounds: int) -> None:
    masks = Masks()
    engine = LlamaCppEngine()
    await timed(engine, request(0, True))
    loop = engine._loop
    assert loop is not None
    warm = loop._outputs._lookup.copy()
    best: dict[tuple[bool, int, str], float] = {}
    counted: dict[tuple[bool, str], int] = {}
    texts: dict[tuple[bool, int], set[str]] = {}
    for round_ in range(rounds):
        for biased in (True, False):
            for instance in INSTANCES:
                turn = (round_ + instance) % len(WAYS)
                for way in WAYS[turn:] + WAYS[:turn]:
                    masks.use(way)
                    loop._outputs._lookup = warm.copy()  # no answer guessed from the same instance's
                    before = masks.count
                    seconds, text = await timed(engine, request(instance, biased))
                    key = (biased, instance, way)
                    best[key] = min(best.get(key, float("inf")), seconds)
                    counted[biased, way] = counted.get((biased, way), 0) + masks.count - before
                    texts.setdefault((biased, instance), set()).add(text)
    masks.use("tiers")
    engine.close()
    answers = rounds * len(INSTANCES)
    print("| json | " + " | ".join(WAYS) + " | tiers / masking | same texts |")
    print("|---|" + "---|" * (len(WAYS) + 2))
    for biased in (True, False):
        totals = {way: sum(best[biased, instance, way] for instance in INSTANCES) for way in WAYS}
        cells = [
            f"{200 * len(INSTANCES) / totals[way]:.1f} tok/s ({counted[biased, way] / answers:.1f} masks per answer)"
            for way in WAYS
        ]
        same = all(len(texts[biased, instance]) == 1 for instance in INSTANCES)
        label = "end of text banned" if biased else "no bias"
        ratio = totals["masking"] / totals["tiers"]
        print(f"| {label} | " + " | ".join(cells) + f" | **{ratio:.2f}×** | {'yes' if same else 'NO'} |")


@click.command()
@click.option("--rounds", type=int, default=3, show_default=True, help="requests per instance, bias and way")
def main(rounds: int) -> None:
    asyncio.run(measure(rounds))


if __name__ == "__main__":
    main()
