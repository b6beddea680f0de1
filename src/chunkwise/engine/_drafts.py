"""Guessed tokens for speculative decoding: prompt lookup, and how many guesses a sequence has earned.

A :class:`PromptLookup` keeps, for every short run of tokens (an n-gram) seen in a sequence's prompt and
output, where it last occurred; the guess after the latest tokens is what followed their previous
occurrence. Text that quotes its prompt or repeats itself (extraction, code edits, JSON) is guessed well;
other text rarely matches and costs nothing then. Updating and looking up is O(1) per token.

An :class:`OutputCache` is the same index over the outputs of finished requests, shared by all: it guesses
for a sequence whose own tokens give no guess (answers that repeat earlier answers, a template's fixed
parts). It keeps the latest outputs up to a bound.

A :class:`DraftBudget` decides how many guesses a sequence makes per step: it doubles after a step whose
guesses were all right, drops to what was right otherwise, and after a step that got nothing right it
rests for a while, longer each time in a row, so text that cannot be guessed soon stops paying for it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DraftBudget", "OutputCache", "PromptLookup"]

#: The n-gram lengths looked up, longest first: a longer match is the more reliable guess.
NGRAM_SIZES = (4, 3, 2)
#: The longest rest, in steps, after guesses that got nothing right.
MAX_REST = 32
#: Output tokens the shared cache indexes at most; past that it keeps the latest half.
OUTPUT_CACHE_TOKENS = 1 << 16


class PromptLookup:
    """Where each n-gram of a sequence's tokens last occurred, and the guesses that follow from it."""

    __slots__ = ("_follower", "_tokens")

    def __init__(self, tokens: Sequence[int]) -> None:
        self._tokens: list[int] = []
        #: (n-gram) -> index in ``_tokens`` of the token that followed its latest occurrence.
        self._follower: dict[tuple[int, ...], int] = {}
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        tokens = self._tokens
        end = len(tokens)
        for size in NGRAM_SIZES:
            if end >= size:
                self._follower[tuple(tokens[end - size : end])] = end
        tokens.append(token)

    def guess(self, limit: int, after: Sequence[int] | None = None) -> list[int]:
        """Up to ``limit`` tokens that followed the latest earlier occurrence of the last few tokens.

        ``after``: the tokens to continue instead of this index's own (for a shared index).
        """
        tokens = self._tokens
        tail = tokens if after is None else after
        minimum = 1 if after is None else 0  # an own n-gram needs an earlier occurrence than its current one
        for size in NGRAM_SIZES:
            if len(tail) >= size + minimum:
                follower = self._follower.get(tuple(tail[-size:]))
                if follower is not None:
                    return tokens[follower : follower + limit]
        return []

    def __len__(self) -> int:
        return len(self._tokens)

    def since(self, start: int) -> list[int]:
        """The tokens from index ``start`` on (from the first if ``start`` is negative)."""
        return self._tokens[max(start, 0) :]

    def copy(self) -> PromptLookup:
        twin = PromptLookup(())
        twin._tokens = list(self._tokens)
        twin._follower = dict(self._follower)
        return twin


class OutputCache:
    """The outputs of finished sequences, indexed for guessing; shared by every sequence of the engine."""

    __slots__ = ("_lookup",)

    def __init__(self) -> None:
        self._lookup = PromptLookup(())

    def add(self, output: Sequence[int]) -> None:
        lookup = self._lookup
        for token in output:
            lookup.append(token)
        if len(lookup) > OUTPUT_CACHE_TOKENS:
            self._lookup = PromptLookup(lookup.since(len(lookup) - OUTPUT_CACHE_TOKENS // 2))

    def guess(self, lookup: PromptLookup, limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed ``lookup``'s last few tokens in an earlier output."""
        return self._lookup.guess(limit, after=lookup.since(len(lookup) - max(NGRAM_SIZES)))


class DraftBudget:
    """How many guesses one sequence makes per step, from how its recent guesses fared."""

    __slots__ = ("_limit", "_maximum", "_rest", "_resting")

    def __init__(self, maximum: int) -> None:
        self._maximum = maximum
        self._limit = min(4, maximum)
        self._rest = 1
        self._resting = 0

    def allowance(self) -> int:
        """Guesses allowed this step (0 while resting)."""
        if self._resting:
            self._resting -= 1
            return 0
        return self._limit

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
            self._rest = min(MAX_REST, 2 * self._rest)
