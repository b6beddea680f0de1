"""How many guesses per step pay: drafting policies replayed over real greedy outputs and measured step costs.

Speculation never changes greedy text, so one recorded output per request is enough to replay any drafting
policy exactly: at each step the policy guesses from the tokens so far, a guess is kept while it equals the
recorded output, and the step costs what a ``llama_decode`` of that many tokens of one sequence costs. The
script records the outputs of bench_speculation's four tasks (three instances each, end of text banned as
that benchmark bans it), measures the cost of decoding 1 to 17 tokens of one sequence alone over 300 cached
tokens, then replays the engine's own ``PromptLookup``, ``OutputCache`` and ``DraftBudget`` (which prices
guesses with those step costs) with each ``--draft-max``, and beside it the rule the engine used before
(``DoublingBudget``: double after a step whose guesses were all kept, cut to what was kept, rest after a step
that kept none), and prints the replayed decode tokens/s per task (prompt time left out). Only the step
costs are measured; the replay itself has no timing noise.

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/simulate_drafts.py
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import click
import msgspec

from bench_speculation import task_bodies  # bench/ is on sys.path when this file runs as a script
from cache_type_speed import lone_decode_seconds
from chunkwise.engine import LlamaCppEngine
from chunkwise.engine._drafts import DraftBudget, OutputCache, PromptLookup, StepCosts
from chunkwise.types import ChatCompletionRequest
from verify_invariance import CACHE_TYPES, TEXT, Bench, load_bundled_model, tokenize

TASKS = ("copy", "json", "story", "multi-turn")
RUNS = (1, 2, 3)
#: The end-of-text tokens of the bundled model, banned as bench_speculation bans them.
NO_EOS = {"0": -100, "2": -100}
LARGEST = 17
CACHED = 300
DECODES = 20

Recorded = dict[tuple[str, int], tuple[list[int], list[int]]]


def task_request(task: str, instance: int) -> ChatCompletionRequest:
    """bench_speculation's request for ``task`` (200 tokens, end of text banned), as the engine takes it."""
    return msgspec.convert({**task_bodies(200, instance)[task], "logit_bias": NO_EOS}, type=ChatCompletionRequest)


def record_outputs() -> Recorded:
    """(task, run) -> (prompt tokens, output tokens), as the engine's own prompt lookup saw them."""
    seen: list[tuple[int, PromptLookup]] = []
    original = PromptLookup.__init__

    def remember(self: PromptLookup, tokens: Any) -> None:
        original(self, tokens)
        seen.append((len(self), self))

    async def run_all() -> Recorded:
        outputs: Recorded = {}
        with LlamaCppEngine() as engine:
            for task in TASKS:
                for run in RUNS:
                    seen.clear()
                    generation = engine.prepare_chat(task_request(task, run), request_id="chatcmpl-sim", created=0)
                    async for _ in generation.stream():
                        pass
                    prompt_length, lookup = next((length, lookup) for length, lookup in seen if length)
                    tokens = lookup.since(0)
                    outputs[task, run] = (tokens[:prompt_length], tokens[prompt_length:])
        return outputs

    PromptLookup.__init__ = remember  # type: ignore[method-assign]
    try:
        return asyncio.run(run_all())
    finally:
        PromptLookup.__init__ = original  # type: ignore[method-assign]


def step_costs(rounds: int) -> list[float]:
    """Seconds per ``llama_decode`` of 1 to LARGEST tokens of one sequence (index 0 unused), best of rounds."""
    import llama_cpp as lib

    model = load_bundled_model(lib)
    tokens = tokenize(lib, lib.llama_model_get_vocab(model), TEXT * 20)
    bench = Bench(lib, model, threads=2, flash_attn=True, n_ctx=1024, cache_types=(CACHE_TYPES["q8_0"], 1))
    bench.prompt(tokens[:CACHED])
    costs = [0.0] + [lone_decode_seconds(lib, bench, tokens, CACHED, k, rounds, DECODES) for k in range(1, LARGEST + 1)]
    bench.close()
    lib.llama_model_free(model)
    return costs


class DoublingBudget:
    """The engine's former rule: double after all were kept, cut to what was kept, rest longer after each miss."""

    def __init__(self, maximum: int) -> None:
        self._maximum = maximum
        self._limit = min(4, maximum)
        self._rest = 1
        self._resting = 0

    def allowance(self, available: int) -> int:
        if self._resting:
            self._resting -= 1
            return 0
        return min(self._limit, available)

    def record(self, drafted: int, accepted: int) -> None:
        if not drafted:
            return
        if accepted == drafted:
            self._limit = min(self._maximum, 2 * self._limit)
            self._rest = 1
        elif accepted:
            self._limit = max(1, accepted)
            self._rest = 1
        else:
            self._limit = 1
            self._resting = self._rest
            self._rest = min(32, 2 * self._rest)


def measured(costs: list[float]) -> StepCosts:
    """The engine's step-cost estimate, as it stands once every size has been timed."""
    estimate = StepCosts()
    for tokens in range(1, LARGEST + 1):
        estimate.observe(tokens, costs[tokens])
    return estimate


def replay(
    prompt: list[int], output: list[int], budget: DraftBudget | DoublingBudget, shared: OutputCache, costs: list[float]
) -> float:
    """Seconds the step loop's decodes take to write ``output`` with this budget (the first token is free)."""
    lookup = PromptLookup(prompt)
    lookup.append(output[0])
    seconds = 0.0
    position = 0  # output[position] is sampled and decoded in the next step
    while position < len(output) - 1:
        # As the engine's step loop: the longest guess there is, then as many of it as the budget allows.
        guess = lookup.guess(LARGEST - 1) or shared.guess(lookup, LARGEST - 1)
        draft = guess[: budget.allowance(len(guess))]
        seconds += costs[1 + len(draft)]
        kept = 0
        while kept < len(draft) and position + 1 + kept < len(output) and draft[kept] == output[position + 1 + kept]:
            kept += 1
        budget.record(len(draft), kept)
        for token in output[position + 1 : position + 2 + kept]:
            lookup.append(token)
        position += kept + 1
    return seconds


@click.command()
@click.option("--draft-max", "limits", type=int, multiple=True, default=[0, 4, 8, 12, 16], show_default=True)
@click.option("--rounds", type=int, default=3, show_default=True)
def main(limits: tuple[int, ...], rounds: int) -> None:
    outputs = record_outputs()
    costs = step_costs(rounds)
    print("ms per decode of k tokens: " + ", ".join(f"{k}: {costs[k] * 1000:.1f}" for k in range(1, LARGEST + 1)))
    policies: list[tuple[str, Callable[[int], DraftBudget | DoublingBudget]]] = [
        ("priced", lambda limit: DraftBudget(limit, measured(costs))),
        ("doubling", DoublingBudget),
    ]
    for limit in limits:
        for name, budget in policies if limit else policies[:1]:
            cells = []
            for task in TASKS:
                shared = OutputCache()
                seconds = tokens = 0.0
                for run in RUNS:
                    prompt, output = outputs[task, run]
                    if limit:
                        seconds += replay(prompt, output, budget(limit), shared, costs)
                    else:
                        seconds += costs[1] * (len(output) - 1)
                    tokens += len(output) - 1
                    shared.add(output)
                cells.append(f"{task} {tokens / seconds:6.1f}")
            label = f"{name:8}" if limit else "none    "
            print(f"--draft-max {limit:2} {label} (0: no speculation): decode tokens/s " + " | ".join(cells))


if __name__ == "__main__":
    main()
