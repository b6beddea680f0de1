"""Drafting policies on the real engine: guesses priced by measured step costs against the doubling rule.

``bench/simulate_drafts.py`` replays policies without timing noise but with a fixed table of step costs;
this measures them as the engine runs. One engine (the bundled model, default options) serves
bench_speculation's tasks (200 greedy tokens, end of text banned, each task's instances 1 to 3), and before
each request its ``DraftBudget`` is swapped for the policy's, so the policies alternate on the same
threads, weights and cache, in a rotating order. The shared cache of earlier outputs is reset to what the
warm-up requests (instance 0 of each task) left in it before every request, so no request is guessed from
an answer to the same instance. Reported per task: tokens/s over the instances' best times (prompt
included) and the guesses made and kept, per policy, and the ratio of the priced policy to the doubling
rule. Texts are the same under both (speculation changes no output), and the script checks it.

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/draft_policies.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click

from chunkwise.engine import LlamaCppEngine, _batching
from chunkwise.engine._drafts import DraftBudget, StepCosts
from chunkwise.types import ChatCompletionRequest
from simulate_drafts import TASKS, DoublingBudget, task_request

INSTANCES = (1, 2, 3)


class Doubling(DoublingBudget):
    """The doubling rule with the engine's budget interface (it ignores step costs)."""

    def __init__(self, maximum: int, costs: StepCosts) -> None:
        super().__init__(maximum)
        self.maximum = maximum


POLICIES: dict[str, Any] = {"priced": DraftBudget, "doubling": Doubling}


async def timed(engine: LlamaCppEngine, body: ChatCompletionRequest) -> tuple[float, str]:
    started = time.perf_counter()
    pieces = [
        choice.delta.content or ""
        async for chunk in engine.prepare_chat(body, request_id="chatcmpl-bench", created=0).stream()
        for choice in chunk.choices
    ]
    return time.perf_counter() - started, "".join(pieces)


async def measure(tasks: tuple[str, ...], rounds: int) -> None:
    engine = LlamaCppEngine()
    loop = engine._loop
    assert loop is not None
    stats = engine.batching_stats()
    for task in tasks:
        await timed(engine, task_request(task, 0))
    warm = loop._outputs._lookup.copy()
    best: dict[tuple[str, int, str], float] = {}
    texts: dict[tuple[str, int], set[str]] = {}
    guesses: dict[tuple[str, str], list[int]] = {}
    names = list(POLICIES)
    for round_ in range(rounds):
        for task in tasks:
            for instance in INSTANCES:
                turn = (round_ + instance) % len(names)
                for name in names[turn:] + names[:turn]:
                    _batching.DraftBudget = POLICIES[name]  # type: ignore[attr-defined]
                    loop._outputs._lookup = warm.copy()
                    drafted, accepted = stats.drafted_tokens, stats.accepted_tokens
                    seconds, text = await timed(engine, task_request(task, instance))
                    key = (task, instance, name)
                    best[key] = min(best.get(key, float("inf")), seconds)
                    texts.setdefault((task, instance), set()).add(text)
                    counts = guesses.setdefault((task, name), [0, 0])
                    counts[0] += stats.drafted_tokens - drafted
                    counts[1] += stats.accepted_tokens - accepted
    _batching.DraftBudget = DraftBudget  # type: ignore[attr-defined]
    engine.close()
    print("| task | " + " | ".join(names) + " | priced / doubling | same texts |")
    print("|---|" + "---|" * (len(names) + 2))
    for task in tasks:
        totals = {name: sum(best[task, instance, name] for instance in INSTANCES) for name in names}
        cells = []
        for name in names:
            drafted, accepted = guesses[task, name]
            kept = f"{100 * accepted / drafted:.0f}% of {drafted}" if drafted else "none"
            cells.append(f"{200 * len(INSTANCES) / totals[name]:.1f} tok/s (kept {kept})")
        same = all(len(texts[task, instance]) == 1 for instance in INSTANCES)
        ratio = totals["doubling"] / totals["priced"]
        print(f"| {task} | " + " | ".join(cells) + f" | **{ratio:.2f}×** | {'yes' if same else 'NO'} |")
    estimate = loop._step_costs.estimate(9)
    print(
        "step costs the engine estimated at the end, ms by tokens: "
        + ", ".join(f"{tokens}: {seconds * 1000:.1f}" for tokens, seconds in enumerate(estimate, start=1))
    )


@click.command()
@click.option("--task", "tasks", type=click.Choice(TASKS), multiple=True, help="a task to run (default: all)")
@click.option("--rounds", type=int, default=3, show_default=True, help="requests per task, instance and policy")
def main(tasks: tuple[str, ...], rounds: int) -> None:
    asyncio.run(measure(tasks or TASKS, rounds))


if __name__ == "__main__":
    main()
