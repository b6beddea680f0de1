"""Guessed tokens for speculative decoding: prompt lookup, and how many guesses a sequence has earned.

A :class:`PromptLookup` keeps, for every short run of tokens (an n-gram) seen in a sequence's prompt and
output, where it last occurred; the guess after the latest tokens is what followed their previous
occurrence. Text that quotes its prompt or repeats itself (extraction, code edits, JSON) is guessed well;
other text rarely matches and costs nothing then. Updating and looking up is O(1) per token.

An :class:`OutputCache` is the same index over the outputs of finished requests, shared by all: it guesses
for a sequence whose own tokens give no guess (answers that repeat earlier answers, a template's fixed
parts). It keeps the latest outputs up to a bound.

A :class:`DraftBudget` decides how many of its guesses a sequence decodes per step. It weighs what they
would bring against what they would cost: each guess is kept with the probability that the sequence's
guesses have been kept so far (a guess is only worth anything if every one before it was kept too), and a
step of ``n`` tokens costs what :class:`StepCosts` has measured such steps to cost on this machine. It
decodes the number of guesses that brings the most expected tokens per second, none if no number beats
decoding the next token alone. Where a step's extra tokens cost little (a GPU) it guesses freely; on a
CPU, where each costs most of a token, it guesses only what is likely kept, and it takes the shape of the
costs into account (on 2 threads a step of 4 tokens costs hardly more than one of 3). A sequence that has
stopped guessing tries one guess now and then, so text that turns to quoting is noticed.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DraftBudget", "OutputCache", "PromptLookup", "StepCosts"]

#: The n-gram lengths looked up, longest first: a longer match is the more reliable guess.
NGRAM_SIZES = (4, 3, 2)
#: A new sequence's guesses are taken to be kept as if 4 had been kept before and 1 missed.
PRIOR_KEPT = 4.0
PRIOR_MISSED = 1.0
#: Each step's evidence counts for this much less in the next, so a sequence's recent guesses weigh most.
FORGET = 0.95
#: After this many steps without a guess that was worth making, a sequence guesses one token anyway.
PROBE_AFTER = 4
#: How far one measured step moves the machine's pace, and the shape of its size (see ``StepCosts``).
PACE_SMOOTHING = 0.2
SHAPE_SMOOTHING = 0.05
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


class StepCosts:
    """What decoding ``n`` tokens of one sequence alone costs on this machine, as measured (shared by all).

    A cost is kept as two factors: the size's shape (what it costs relative to the other sizes, a property
    of the model and the hardware) and the pace of the machine now (which other processes change from one
    moment to the next). Each measured step moves the pace a lot and its size's shape a little, so a change
    of load seen at the one size being decoded reprices every size at once. Kept as plain seconds per size,
    a size last measured while the machine was busy would look dear long after, be chosen no more, and so
    never be measured again. A size not yet measured takes its shape from the measured sizes around it (a
    straight line between them, or the largest one's beyond it), so the first guesses are generous and the
    shapes then settle where steps are actually taken. Only the shapes decide how many guesses pay.
    """

    __slots__ = ("_pace", "_shape")

    def __init__(self) -> None:
        self._shape: dict[int, float] = {}
        #: Seconds per unit of shape now; 0 until a step is timed.
        self._pace = 0.0

    def observe(self, tokens: int, seconds: float) -> None:
        if seconds <= 0.0:  # a clock that did not move says nothing (and a zero shape would divide by zero)
            return
        if not self._pace:
            self._pace = seconds
            self._shape[tokens] = 1.0
            return
        shape = self._shape.get(tokens)
        if shape is None:
            self._shape[tokens] = seconds / self._pace
            return
        # A stall (another process, a page fault) counts for at most twice what was expected.
        error = min(seconds / (self._pace * shape), 2.0) - 1.0
        self._pace *= 1.0 + PACE_SMOOTHING * error
        self._shape[tokens] = shape * (1.0 + SHAPE_SMOOTHING * error)

    def estimate(self, largest: int) -> list[float]:
        """Estimated seconds of a step of 1 to ``largest`` tokens, at index ``n - 1``; 1.0 each if none is known."""
        known = sorted(self._shape.items())
        if not known:
            return [1.0] * largest
        pace = self._pace
        estimates: list[float] = []
        index = 0
        for tokens in range(1, largest + 1):
            while index < len(known) and known[index][0] < tokens:
                index += 1
            if index < len(known) and known[index][0] == tokens:
                shape = known[index][1]
            elif index == 0:
                shape = known[0][1]
            elif index == len(known):
                shape = known[-1][1]
            else:
                (low, low_shape), (high, high_shape) = known[index - 1], known[index]
                shape = low_shape + (high_shape - low_shape) * (tokens - low) / (high - low)
            estimates.append(pace * shape)
        return estimates


class DraftBudget:
    """How many guesses one sequence decodes per step: those that bring the most expected tokens per second."""

    __slots__ = ("_costs", "_idle", "_kept", "_maximum", "_missed")

    def __init__(self, maximum: int, costs: StepCosts) -> None:
        self._maximum = maximum
        self._costs = costs
        self._kept = PRIOR_KEPT
        self._missed = PRIOR_MISSED
        self._idle = 0

    @property
    def maximum(self) -> int:
        return self._maximum

    def allowance(self, available: int) -> int:
        """How many of ``available`` guesses to decode this step (0: none)."""
        available = min(available, self._maximum)
        if available <= 0:
            return 0
        kept = self._kept / (self._kept + self._missed)
        seconds = self._costs.estimate(available + 1)
        best, best_rate = 0, 1.0 / seconds[0]
        expected = probability = 1.0
        for guesses in range(1, available + 1):
            probability *= kept
            expected += probability
            rate = expected / seconds[guesses]
            if rate > best_rate:
                best, best_rate = guesses, rate
        if best == 0:
            self._idle += 1
            if self._idle < PROBE_AFTER:
                return 0
            best = 1
        self._idle = 0
        return best

    def record(self, drafted: int, accepted: int) -> None:
        """``drafted`` guesses were decoded and the first ``accepted`` of them kept."""
        if not drafted:
            return
        self._kept = FORGET * self._kept + accepted
        self._missed = FORGET * self._missed + (1.0 if accepted < drafted else 0.0)
