"""Guesses from a sequence's own tokens, how many it may make, and the micro-batch shape the loop avoids."""

from __future__ import annotations

import pytest

from chunkwise.engine._drafts import (
    OUTPUT_CACHE_TOKENS,
    PACE_SMOOTHING,
    PROBE_AFTER,
    SHAPE_SMOOTHING,
    DraftBudget,
    OutputCache,
    PromptLookup,
    StepCosts,
)
from chunkwise.engine._splits import lone_single_tokens


def test_the_guess_is_what_followed_the_latest_earlier_occurrence() -> None:
    lookup = PromptLookup([1, 2, 3, 4, 5, 9, 2, 3, 4, 6, 7])
    lookup.append(2)
    lookup.append(3)
    # 2 3 was last followed by 4 6 7 (the longer match 7 2 3 never occurred before).
    assert lookup.guess(3) == [4, 6, 7]
    assert lookup.guess(1) == [4]


def test_a_guess_may_run_into_the_tokens_it_repeats() -> None:
    lookup = PromptLookup([5, 6, 5, 6])
    assert lookup.guess(4) == [5, 6]


def test_nothing_is_guessed_without_a_match() -> None:
    assert PromptLookup([1, 2, 3, 4]).guess(4) == []


def test_a_copy_guesses_on_its_own() -> None:
    lookup = PromptLookup([1, 2, 3, 1, 2])
    twin = lookup.copy()
    twin.append(7)
    assert lookup.guess(2) == [3, 1]
    assert twin.guess(2) == []


def test_the_shared_cache_guesses_what_followed_in_an_earlier_output() -> None:
    cache = OutputCache()
    cache.add([10, 11, 12, 13, 14])
    assert cache.guess(PromptLookup([1, 2, 11, 12]), 2) == [13, 14]
    assert cache.guess(PromptLookup([1, 2, 3]), 2) == []


def test_the_shared_cache_keeps_the_latest_outputs() -> None:
    cache = OutputCache()
    cache.add([10, 11, 12])
    cache.add(range(100, 100 + OUTPUT_CACHE_TOKENS))
    assert cache.guess(PromptLookup([10, 11]), 1) == []
    assert cache.guess(PromptLookup([101 + OUTPUT_CACHE_TOKENS // 2, 102 + OUTPUT_CACHE_TOKENS // 2]), 1) == [
        103 + OUTPUT_CACHE_TOKENS // 2
    ]


def costs(*seconds: float) -> StepCosts:
    """Step costs measured for 1, 2, ... tokens."""
    measured = StepCosts()
    for tokens, cost in enumerate(seconds, start=1):
        measured.observe(tokens, cost)
    return measured


def test_guesses_are_free_where_a_step_of_more_tokens_costs_no_more() -> None:
    budget = DraftBudget(8, costs(1.0, 1.0, 1.0))
    assert budget.allowance(5) == 5  # sizes beyond those measured are priced as the largest one
    assert budget.allowance(20) == 8


def test_where_guesses_are_dear_only_likely_ones_are_decoded() -> None:
    # Each token more costs 70% of a step alone: a guess pays only if kept more than 70% of the time.
    linear = [1.0 + 0.7 * extra for extra in range(9)]
    budget = DraftBudget(8, costs(*linear))
    assert 1 <= budget.allowance(8) <= 3  # the prior: 4 of 5 kept
    for _ in range(20):
        budget.record(4, 4)
    assert budget.allowance(8) == 8
    for _ in range(3):
        budget.record(4, 0)
    assert budget.allowance(8) < 8


def test_the_shape_of_the_costs_decides_between_sizes() -> None:
    # A step of 4 tokens costs hardly more than one of 3, as on 2 threads: 3 guesses rather than 2.
    budget = DraftBudget(8, costs(1.0, 1.8, 2.4, 2.5, 3.3, 3.4, 4.3, 4.4, 5.3))
    for _ in range(10):
        budget.record(4, 3)
    assert budget.allowance(8) % 2 == 1


def test_a_sequence_that_stopped_guessing_tries_one_guess_now_and_then() -> None:
    budget = DraftBudget(8, costs(1.0, 1.9, 2.8))
    for _ in range(10):
        budget.record(1, 0)
    assert [budget.allowance(4) for _ in range(PROBE_AFTER)] == [0] * (PROBE_AFTER - 1) + [1]
    assert budget.allowance(0) == 0  # no guess to make: nothing counted
    assert [budget.allowance(4) for _ in range(PROBE_AFTER)] == [0] * (PROBE_AFTER - 1) + [1]


def test_step_costs_are_interpolated_and_proof_against_one_stall() -> None:
    measured = costs(1.0)
    measured.observe(5, 3.0)
    assert measured.estimate(6) == [1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    measured.observe(1, 100.0)  # a stall counts as twice the expected cost at most
    assert measured.estimate(1)[0] == pytest.approx((1.0 + PACE_SMOOTHING) * (1.0 + SHAPE_SMOOTHING))
    assert StepCosts().estimate(2) == [1.0, 1.0]
    unmoved = StepCosts()
    unmoved.observe(1, 0.0)
    unmoved.observe(2, 2.0)
    unmoved.observe(1, 0.0)
    assert unmoved.estimate(2) == [2.0, 2.0]


def test_a_change_of_pace_seen_at_one_size_reprices_every_size() -> None:
    # Sizes timed while the machine was idle; then it gets busy and only lone tokens are decoded.
    idle = [1.0, 1.8, 2.4, 2.5, 3.3, 3.4, 4.3, 4.4, 5.3]
    measured = costs(*idle)
    for _ in range(30):
        measured.observe(1, 2.0)
    busy = measured.estimate(9)
    assert busy[0] == pytest.approx(2.0, rel=0.05)
    assert [seconds / busy[0] for seconds in busy] == pytest.approx(idle, rel=0.25)
    # Guesses that paid before still pay: the sizes kept their shape.
    budget = DraftBudget(8, measured)
    for _ in range(10):
        budget.record(4, 3)
    assert budget.allowance(8) == 3


def test_llama_cpp_splits_uneven_sequences_into_equal_micro_batches() -> None:
    # One token each first, then the rest of those that have more, per run of consecutive ids.
    assert lone_single_tokens([(0, 1), (1, 1), (2, 1)]) == []
    assert lone_single_tokens([(0, 1)]) == [0]
    assert lone_single_tokens([(0, 2), (1, 1)]) == [0]
    assert lone_single_tokens([(0, 3), (1, 1)]) == []
    assert lone_single_tokens([(0, 3), (1, 2), (2, 1)]) == [0]
    assert lone_single_tokens([(0, 2), (1, 1), (2, 2)]) == [0, 2]
    assert lone_single_tokens([(0, 2), (2, 2)]) == []
