"""Guesses from a sequence's own tokens, how many it may make, and the micro-batch shape the loop avoids."""

from __future__ import annotations

from chunkwise.engine._drafts import OUTPUT_CACHE_TOKENS, DraftBudget, OutputCache, PromptLookup
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


def test_the_budget_grows_with_right_guesses_and_rests_longer_after_each_miss_in_a_row() -> None:
    budget = DraftBudget(16)
    assert budget.allowance() == 4
    budget.record(4, 4)
    assert budget.allowance() == 8
    budget.record(8, 3)
    assert budget.allowance() == 3
    budget.record(3, 0)
    assert [budget.allowance() for _ in range(2)] == [0, 1]
    budget.record(1, 0)
    assert [budget.allowance() for _ in range(3)] == [0, 0, 1]
    budget.record(1, 1)
    budget.record(2, 0)
    assert [budget.allowance() for _ in range(2)] == [0, 1]


def test_llama_cpp_splits_uneven_sequences_into_equal_micro_batches() -> None:
    # One token each first, then the rest of those that have more, per run of consecutive ids.
    assert lone_single_tokens([(0, 1), (1, 1), (2, 1)]) == []
    assert lone_single_tokens([(0, 1)]) == [0]
    assert lone_single_tokens([(0, 2), (1, 1)]) == [0]
    assert lone_single_tokens([(0, 3), (1, 1)]) == []
    assert lone_single_tokens([(0, 3), (1, 2), (2, 1)]) == [0]
    assert lone_single_tokens([(0, 2), (1, 1), (2, 2)]) == [0, 2]
    assert lone_single_tokens([(0, 2), (2, 2)]) == []
