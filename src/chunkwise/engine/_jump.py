"""Jump-forward for grammars: the text a grammar forces next, guessed as the tokens that write it.

Where a grammar admits exactly one next character (the keys, colons and brackets of a ``json_schema``
object), the characters up to its next choice are certain. They are found by offering the grammar every
single-byte token of the vocabulary: a grammar that allows exactly one of them (and not the end of text)
forces that byte. A copy of the grammar then takes the byte, and the next one is looked for, up to the first
choice.

Only the text is forced, not its tokens: the model may write ``"decisions":`` as ``dec|isions|":`` or as
``d|ec|isions|"|:``, and which it writes depends on its logits. (The grammar allows every token that is a
prefix of the forced text; with a byte-level BPE vocabulary that is nearly always several tokens, so a token
that could be appended without sampling hardly ever exists.) So the forced text is tokenized and its tokens
are guessed, as speculative decoding guesses: decoded in the next step's batch with the sequence's next
token, and kept while the token sampled at each position equals the guess. The output is exactly what
sampling token by token gives, and each forced token the model writes as guessed saves a decode step.
Sampling a position the grammar forces costs an argmax and a check of one token (:mod:`._sampling`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._sampling import Candidates

__all__ = ["MAX_FORCED_BYTES", "JumpForward"]

#: The longest forced text looked for in one step.
MAX_FORCED_BYTES = 64


class JumpForward:
    """Finds the text a grammar forces next; used by the engine's worker thread only."""

    __slots__ = ("_bytes", "_candidates", "_end", "_lib", "_n_vocab", "_piece", "_probe", "_token_of", "_tokenize")

    def __init__(
        self, lib: Any, *, n_vocab: int, end: int, piece: Callable[[int], bytes], tokenize: Callable[[str], list[int]]
    ) -> None:
        self._lib = lib
        self._n_vocab = n_vocab
        #: A token that ends the text (-1: none): a grammar that allows it forces nothing.
        self._end = end
        self._piece = piece
        self._tokenize = tokenize
        #: The bytes that have a token of their own, those tokens, and the tokens offered to a grammar: the
        #: byte tokens followed by ``end`` (found on first use).
        self._bytes: list[int] = []
        self._token_of: dict[int, int] = {}
        self._probe: list[int] = []
        self._candidates: Candidates | None = None

    def replace(self, grammar: Any, guessed: list[int], limit: int) -> list[int] | None:
        """Up to ``limit`` tokens writing the text that ``grammar`` (a sampler, unchanged) forces next, to be
        guessed instead of ``guessed`` (speculation's guess); None to keep ``guessed``.

        A guess from the sequence's own output knows how the model tokenizes (it often writes forced text
        in other pieces than the tokenizer would), so it is kept where it agrees with the forced text.
        """
        if limit <= 0 or self._forced_byte(grammar) is None:
            return None
        lib = self._lib
        walker = lib.llama_sampler_clone(grammar)
        if not walker:
            return None
        forced = bytearray()
        try:
            while len(forced) < MAX_FORCED_BYTES and (byte := self._forced_byte(walker)) is not None:
                forced.append(byte)
                lib.llama_sampler_accept(walker, self._token_of[byte])
        finally:
            lib.llama_sampler_free(walker)
        if guessed:
            text = b"".join(self._piece(token) for token in guessed)
            if text.startswith(forced) or forced.startswith(text):
                return None
        # A forced character cut short at the limit is left for the next step.
        return self._tokenize(forced.decode("utf-8", errors="ignore"))[:limit]

    def _forced_byte(self, grammar: Any) -> int | None:
        """The one byte ``grammar`` allows next, or None if it allows several, none, or the end of text."""
        if self._candidates is None:
            self._index_bytes()
        assert self._candidates is not None
        allowed = self._candidates.allowed(grammar, self._probe)
        if self._end >= 0 and allowed[-1]:
            return None
        (positions,) = np.nonzero(allowed[: len(self._bytes)])
        return self._bytes[int(positions[0])] if len(positions) == 1 else None

    def _index_bytes(self) -> None:
        tokens: dict[int, int] = {}
        for token in range(self._n_vocab):
            piece = self._piece(token)
            if len(piece) == 1:
                tokens.setdefault(piece[0], token)
        self._bytes = sorted(tokens)
        self._token_of = tokens
        self._probe = [tokens[byte] for byte in self._bytes] + ([self._end] if self._end >= 0 else [])
        self._candidates = Candidates(len(self._probe))
