"""Sampling parameters and the llama.cpp sampler chains that apply them, in C.

A chain is ``logit_bias → penalties → (greedy | top_k → temperature → top_p → dist)``. Temperature comes
before top-p, as in OpenAI's API: the nucleus is taken over the temperature-scaled distribution. Each stage is
added only when it changes something, so a greedy request pays for an argmax and nothing else; without
penalties the engine takes that argmax itself, over the row of logits where llama.cpp left it
(:meth:`Candidates.argmax`, biases added as llama.cpp adds them).

A grammar is a sampler of its own beside the chain. Applying it means matching every token of the vocabulary
against the grammar's state, which costs far more than a decode step's share of the weights, so it is
applied only when needed: the chain samples from the unconstrained logits first and the grammar checks that
one token; only if it rejects it are the logits masked by the grammar and sampled again (a greedy chain
without penalties first offers the grammar its likeliest few tokens, best first, in widening tiers). For
greedy sampling the result is the same token (the argmax of the allowed tokens); for plain temperature
sampling the same distribution (a draw from ``p``, kept if allowed and otherwise redrawn from ``p``
restricted to the allowed set, is a draw from that restriction). Top-k and top-p cut the distribution before
the draw, where the cut would differ without the grammar, and penalties remember every token the chain
samples, so chains with either apply the grammar first, every time.
"""

from __future__ import annotations

import ctypes
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._grammar_check import default_checker
from ._protocol import InvalidRequestError

__all__ = [
    "Candidates",
    "LogitBias",
    "SamplerChain",
    "SamplingConfig",
    "check_grammar",
    "parse_logit_bias",
    "sequence_seed",
]

#: How many of the likeliest tokens a greedy chain offers its grammar, in turn, before masking the whole
#: vocabulary.
_LIKELIEST: tuple[int, ...] = (64, 2048)
_RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: "pick a random seed"


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    #: Keep only the ``top_k`` likeliest tokens; 0 keeps all (Anthropic's and vLLM's meaning).
    top_k: int = 0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    #: How many generated tokens the penalties look back over (the whole output).
    penalty_window: int = 0


def parse_logit_bias(logit_bias: Mapping[str, float] | None, n_vocab: int) -> dict[int, float]:
    """OpenAI sends token ids as JSON object keys; each must name a token of this model's vocabulary."""
    if not logit_bias:
        return {}
    parsed: dict[int, float] = {}
    for key, bias in logit_bias.items():
        # Plain ASCII digits only: int() would also take " 1", "1_0" and "١".
        token = int(key) if key.isascii() and key.isdigit() else -1
        if not 0 <= token < n_vocab:
            raise InvalidRequestError(
                f"logit_bias: {key!r} is not a token id of this model (0 to {n_vocab - 1})", param="logit_bias"
            )
        parsed[token] = float(bias)
    return parsed


def sequence_seed(seed: int | None, sequence: int) -> int:
    """A 32-bit seed for one of the ``n`` sequences: reproducible for a given request seed, distinct per sequence."""
    if seed is None:
        value = secrets.randbits(32)
    else:
        # splitmix64 finaliser: nearby seeds and sequence numbers give unrelated streams.
        value = (seed * 0x9E3779B97F4A7C15 + sequence * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        value = (value ^ (value >> 31)) & 0xFFFFFFFF
    return value if value != _RANDOM_SEED else 0


def check_grammar(vocab: Any, grammar: str, *, param: str) -> None:
    """Parse ``grammar`` once so that a bad one is a 400 at prepare time, not a failure mid-stream.

    The parse runs in a child process (:mod:`._grammar_check`), so even a grammar that crashes llama.cpp's
    parser only fails this request. ``vocab`` is not needed for that: grammars built here name no tokens.
    """
    problem = default_checker.problem(grammar)
    if problem is not None:
        raise InvalidRequestError(f"{problem[0].upper()}{problem[1:]}.", param=param)


@dataclass(frozen=True, slots=True)
class LogitBias:
    """A request's ``logit_bias`` as arrays, to add to a row of logits as llama.cpp's logit-bias sampler does."""

    #: In ascending order, so that the first of equal biased logits is the lowest id, as in llama.cpp's argmax.
    tokens: NDArray[np.int32]
    values: NDArray[np.float32]
    members: frozenset[int]

    @classmethod
    def of(cls, logit_bias: Mapping[int, float]) -> LogitBias:
        ordered = sorted(logit_bias.items())
        return cls(
            np.fromiter((token for token, _ in ordered), dtype=np.int32, count=len(ordered)),
            np.fromiter((bias for _, bias in ordered), dtype=np.float32, count=len(ordered)),
            frozenset(logit_bias),
        )


#: Views of rows of logits the worker keeps (by address) before it lets them all go.
_ROW_VIEWS = 1024


class Candidates:
    """A scratch token array for applying samplers by hand, with room for ``size`` tokens (the vocabulary's
    size for :meth:`sample`); owned by one thread (the engine's worker)."""

    __slots__ = ("_array", "_data", "_ids", "_lib", "_n_vocab", "_rows", "_view")

    def __init__(self, size: int) -> None:
        import llama_cpp

        self._lib: Any = llama_cpp
        self._n_vocab = size
        self._data = (llama_cpp.llama_token_data * size)()
        self._array = llama_cpp.llama_token_data_array(self._data, size, -1, False)
        self._view: Any = np.ctypeslib.as_array(self._data)
        self._ids = np.arange(size, dtype=np.int32)
        #: Rows of logits by address: llama.cpp's logits buffer stays where it is from one decode to the next
        #: (unless a larger batch makes it grow), so the view of each row is made once, not every step.
        self._rows: dict[int, NDArray[np.float32]] = {}

    def sample(self, chain: Any, grammar: Any, ctx: Any, row: int) -> int:
        """The token ``chain`` selects from row ``row``'s logits masked by ``grammar`` (nothing accepted yet)."""
        lib = self._lib
        view = self._view
        view["id"] = self._ids
        view["logit"] = self.logits(ctx, row)
        view["p"] = 0.0
        array = self._array
        array.data, array.size, array.selected, array.sorted = self._data, self._n_vocab, -1, False
        reference = ctypes.byref(array)
        lib.llama_sampler_apply(grammar, reference)
        lib.llama_sampler_apply(chain, reference)
        if not 0 <= array.selected < array.size:
            raise RuntimeError("llama.cpp's sampler chain selected no token")
        return int(array.data[array.selected].id)

    def logits(self, ctx: Any, row: int) -> NDArray[np.float32]:
        """Row ``row`` of the last decode's logits, read where llama.cpp left it (valid until the next decode)."""
        address = ctypes.addressof(self._lib.llama_get_logits_ith(ctx, row).contents)
        view = self._rows.get(address)
        if view is None:
            if len(self._rows) >= _ROW_VIEWS:
                self._rows.clear()
            view = self._rows[address] = np.ctypeslib.as_array((ctypes.c_float * self._n_vocab).from_address(address))
        return view

    @staticmethod
    def _biased(logits: NDArray[np.float32], bias: LogitBias | None) -> NDArray[np.float32]:
        if bias is not None:
            # The same float32 additions llama.cpp's logit-bias sampler makes in place.
            logits = logits.copy()
            logits[bias.tokens] += bias.values
        return logits

    def argmax(self, ctx: Any, row: int, bias: LogitBias | None = None) -> int:
        """What a greedy chain with nothing before its argmax but ``bias`` selects from row ``row``.

        The first of equal maxima, as llama.cpp's greedy sampler takes; numpy's argmax reads the row where
        it lies, and ``llama_sampler_sample`` first copies the whole vocabulary into a candidate array.
        """
        logits = self.logits(ctx, row)
        best = int(logits.argmax())
        if bias is None:
            return best
        if best in bias.members:  # the favourite's own logit moves: compare the whole biased row
            return int(self._biased(logits, bias).argmax())
        # Only a biased token can overtake the favourite (without copying the row to find out).
        biased = logits[bias.tokens] + bias.values
        top = int(biased.argmax())
        rival, value, favourite = int(bias.tokens[top]), biased[top], logits[best]
        return rival if value > favourite or (value == favourite and rival < best) else best

    def best_allowed(self, grammar: Any, ctx: Any, row: int, bias: LogitBias | None = None) -> int | None:
        """The highest-logit token of row ``row`` that ``grammar`` allows, if it is among the likeliest few.

        What a greedy chain with nothing before its argmax but ``bias`` selects from the masked logits (ties
        go to the lower id, as llama.cpp's argmax does); None where the likeliest few are all rejected. The few
        are offered in widening tiers, each whole (offering a tier's first part again is cheap beside the
        rest): a grammar that rejects the model's favourites usually allows something a little further down.
        """
        logits = self._biased(self.logits(ctx, row), bias)
        for tier in _LIKELIEST:
            few = min(tier, self._n_vocab)
            likeliest = np.argpartition(logits, -few)[-few:]
            likeliest = likeliest[np.lexsort((likeliest, -logits[likeliest]))]
            (found,) = np.nonzero(self.allowed(grammar, likeliest.tolist()))
            if len(found):
                token = int(likeliest[found[0]])
                # A token outside the few with the same logit as the least of them might have the lower id.
                if few == self._n_vocab or logits[token] > logits[likeliest[-1]]:
                    return token
        return None

    def allowed(self, grammar: Any, tokens: Sequence[int]) -> NDArray[np.bool_]:
        """Whether ``grammar``'s current state allows each of ``tokens`` next (its state is not changed)."""
        count = len(tokens)
        view = self._view
        view["id"][:count] = tokens
        view["logit"][:count] = 0.0
        array = self._array
        array.data, array.size, array.selected, array.sorted = self._data, count, -1, False
        self._lib.llama_sampler_apply(grammar, ctypes.byref(array))
        allowed: NDArray[np.bool_] = np.isfinite(view["logit"][:count])
        return allowed


class SamplerChain:
    """One llama.cpp sampler chain and its grammar, owned by one sequence of one generation; ``close`` frees them."""

    __slots__ = ("_argmax_bias", "_check_after", "_lib", "_plain_argmax", "grammar", "pointer")

    def __init__(self, vocab: Any, n_vocab: int, config: SamplingConfig, *, seed: int, grammar: str | None) -> None:
        import llama_cpp

        self._lib: Any = llama_cpp
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        self.pointer: Any = llama_cpp.llama_sampler_chain_init(params)
        #: The grammar's own sampler (None: no grammar), applied apart from the chain (see the module docstring).
        self.grammar: Any = None
        penalties = bool(config.presence_penalty or config.frequency_penalty)
        greedy = config.temperature <= 0.0
        #: Whether sampling first and checking the sampled token gives what applying the grammar first gives.
        self._check_after = not penalties and (greedy or (config.top_k <= 0 and config.top_p >= 1.0))
        #: Whether the chain is an argmax of the logits with nothing before it but ``_argmax_bias``.
        self._plain_argmax = greedy and not penalties
        self._argmax_bias = LogitBias.of(config.logit_bias) if config.logit_bias else None
        try:
            if config.logit_bias:
                biases = (llama_cpp.llama_logit_bias * len(config.logit_bias))()
                for slot, (token, bias) in zip(biases, config.logit_bias.items(), strict=True):
                    slot.token = token
                    slot.bias = bias
                self._add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(config.logit_bias), biases))
            if penalties:
                self._add(
                    llama_cpp.llama_sampler_init_penalties(
                        n_vocab,
                        max(config.penalty_window, 1),
                        1.0,
                        config.frequency_penalty,
                        config.presence_penalty,
                    )
                )
            if greedy:
                self._add(llama_cpp.llama_sampler_init_greedy())
            else:
                if config.top_k > 0:
                    self._add(llama_cpp.llama_sampler_init_top_k(config.top_k))
                self._add(llama_cpp.llama_sampler_init_temp(config.temperature))
                if config.top_p < 1.0:
                    self._add(llama_cpp.llama_sampler_init_top_p(config.top_p, 1))
                self._add(llama_cpp.llama_sampler_init_dist(seed))
            if grammar is not None:
                self.grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
                if not self.grammar:
                    raise RuntimeError("llama.cpp could not create a sampler")
        except BaseException:
            self.close()
            raise

    def _add(self, sampler: Any) -> None:
        if not sampler:
            raise RuntimeError("llama.cpp could not create a sampler")
        self._lib.llama_sampler_chain_add(self.pointer, sampler)

    def sample(self, ctx: Any, row: int, candidates: Candidates) -> int:
        """Sample from row ``row`` of the last decode's logits, and record the token (as the next one)."""
        lib = self._lib
        if self.grammar is None:
            if self._plain_argmax:
                return candidates.argmax(ctx, row, self._argmax_bias)
            return int(lib.llama_sampler_sample(self.pointer, ctx, row))
        if self._check_after:
            # No stage of such a chain remembers the tokens it is told about, so a rejected token leaves no trace.
            if self._plain_argmax:
                token = candidates.argmax(ctx, row, self._argmax_bias)
            else:
                token = int(lib.llama_sampler_sample(self.pointer, ctx, row))
            if candidates.allowed(self.grammar, (token,))[0]:
                lib.llama_sampler_accept(self.grammar, token)
                return token
            if self._plain_argmax:
                best = candidates.best_allowed(self.grammar, ctx, row, self._argmax_bias)
                if best is not None:
                    lib.llama_sampler_accept(self.grammar, best)
                    return best
        token = candidates.sample(self.pointer, self.grammar, ctx, row)
        lib.llama_sampler_accept(self.pointer, token)
        lib.llama_sampler_accept(self.grammar, token)
        return token

    def accept(self, token: int) -> None:
        """Record a token that another chain sampled (keeps penalties in step after a chain switch)."""
        self._lib.llama_sampler_accept(self.pointer, token)
        if self.grammar is not None:
            self._lib.llama_sampler_accept(self.grammar, token)

    def close(self) -> None:
        if self.pointer:
            self._lib.llama_sampler_free(self.pointer)
            self.pointer = None
        if self.grammar:
            self._lib.llama_sampler_free(self.grammar)
            self.grammar = None
