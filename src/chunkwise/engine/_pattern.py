"""JSON Schema ``pattern`` regular expressions to GBNF, for the subset whose every match we can guarantee.

The grammar generates the *raw* characters of a JSON string, so it may only produce characters that need
no escaping (no ``"``, ``\\`` or control characters): then the decoded string is exactly the generated
text, and that text matches the pattern in full, so ``re.search`` (what JSON Schema means by ``pattern``)
finds it. Every character class is therefore intersected with the safe characters, and classes that
Python's :mod:`re` reads as Unicode-wide (``\\w``, ``\\d``, ``\\s`` and negations) are narrowed to ASCII
in the direction that keeps each generated character a match. Anything outside the supported subset
(look-arounds, back-references, word boundaries, flags, anchors in the middle) is an error, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["PatternError", "pattern_rule"]

_MAX_CODE_POINT = 0x10FFFF
_Ranges = list[tuple[int, int]]

#: Characters a raw JSON string may hold without escaping.
_SAFE: _Ranges = [(0x20, 0x21), (0x23, 0x5B), (0x5D, 0x7E), (0x80, _MAX_CODE_POINT)]
#: Printable ASCII: the universe of negated classes, so a negation never admits a Unicode letter or digit
#: that Python's ``\w``/``\d`` would count as excluded.
_PRINTABLE_ASCII: _Ranges = [(0x20, 0x7E)]
_DIGIT: _Ranges = [(0x30, 0x39)]
_WORD: _Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE: _Ranges = [(0x20, 0x20)]  # \t \n \r \f \v are control characters, never generated raw


class PatternError(ValueError):
    """The pattern uses something this translation cannot guarantee."""


def _normalise(ranges: _Ranges) -> _Ranges:
    merged: _Ranges = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _intersect(first: _Ranges, second: _Ranges) -> _Ranges:
    result: _Ranges = []
    for low_a, high_a in first:
        for low_b, high_b in second:
            low, high = max(low_a, low_b), min(high_a, high_b)
            if low <= high:
                result.append((low, high))
    return _normalise(result)


def _complement(ranges: _Ranges, universe: _Ranges) -> _Ranges:
    result: _Ranges = []
    for low, high in universe:
        cursor = low
        for excluded_low, excluded_high in _normalise(ranges):
            if excluded_high < cursor or excluded_low > high:
                continue
            if excluded_low > cursor:
                result.append((cursor, excluded_low - 1))
            cursor = max(cursor, excluded_high + 1)
        if cursor <= high:
            result.append((cursor, high))
    return _normalise(result)


def _class_char(code: int) -> str:
    if chr(code).isascii() and chr(code).isalnum():
        return chr(code)
    return f"\\U{code:08X}" if code > 0xFFFF else f"\\u{code:04X}"


def _char_class(ranges: _Ranges) -> str:
    safe = _intersect(ranges, _SAFE)
    if not safe:
        raise PatternError("a part of the pattern can only match characters that a JSON string must escape")
    body = "".join(_class_char(low) if low == high else f"{_class_char(low)}-{_class_char(high)}" for low, high in safe)
    return f"[{body}]"


class _Parser:
    """A recursive-descent reader of one regular expression, writing GBNF as it goes."""

    def __init__(self, pattern: str, max_repeat: int) -> None:
        self.pattern = pattern
        self.position = 0
        self.max_repeat = max_repeat

    def fail(self, what: str) -> PatternError:
        return PatternError(f"{what} (at offset {self.position} of the pattern) is not supported")

    def peek(self) -> str | None:
        return self.pattern[self.position] if self.position < len(self.pattern) else None

    def take(self) -> str:
        char = self.pattern[self.position]
        self.position += 1
        return char

    def alternation(self, depth: int) -> str:
        if depth > 32:
            raise self.fail("nesting groups deeper than 32")
        branches = [self.sequence(depth)]
        while self.peek() == "|":
            self.take()
            branches.append(self.sequence(depth))
        return branches[0] if len(branches) == 1 else "(" + " | ".join(branches) + ")"

    def sequence(self, depth: int) -> str:
        items: list[str] = []
        while (char := self.peek()) is not None and char not in "|)":
            if char == "$":
                self.take()
                if self.peek() is not None:
                    raise self.fail("`$` before the end")
                break
            if char == "^":
                raise self.fail("`^` after the start")
            atom = self.atom(depth)
            items.append(self.quantified(atom))
        return "(" + " ".join(items) + ")" if items else '""'

    def atom(self, depth: int) -> str:
        char = self.take()
        if char == "(":
            if self.peek() == "?":
                self.take()
                if self.peek() != ":":
                    raise self.fail("a `(?...)` group other than `(?:...)`")
                self.take()
            inner = self.alternation(depth + 1)
            if self.peek() != ")":
                raise self.fail("an unclosed group")
            self.take()
            return inner
        if char == "[":
            return _char_class(self.bracket())
        if char == ".":
            return _char_class([(0x00, 0x09), (0x0B, _MAX_CODE_POINT)])
        if char == "\\":
            return _char_class(self.escape(in_class=False))
        if char in "*+?{":
            raise self.fail(f"a quantifier `{char}` with nothing to repeat")
        if char == ")":
            raise self.fail("an unbalanced `)`")
        return _char_class([(ord(char), ord(char))])

    def escape(self, *, in_class: bool) -> _Ranges:
        if self.peek() is None:
            raise self.fail("a trailing backslash")
        char = self.take()
        classes: dict[str, Callable[[], _Ranges]] = {
            "d": lambda: _DIGIT,
            "w": lambda: _WORD,
            "s": lambda: _SPACE,
            "D": lambda: _complement(_DIGIT, _PRINTABLE_ASCII),
            "W": lambda: _complement(_WORD, _PRINTABLE_ASCII),
            "S": lambda: _complement([(0x20, 0x20)], _PRINTABLE_ASCII),
        }
        if char in classes:
            return classes[char]()
        if char in "nrtfv0":
            return [(0x0A, 0x0A)]  # a control character: _char_class rejects it
        if char == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.pattern[self.position : self.position + 4]):
            code = int(self.pattern[self.position : self.position + 4], 16)
            self.position += 4
            return [(code, code)]
        if char == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", self.pattern[self.position : self.position + 2]):
            code = int(self.pattern[self.position : self.position + 2], 16)
            self.position += 2
            return [(code, code)]
        if char.isalnum():  # \b \B \A \Z \1 \p ...: boundaries, back-references and the like
            raise self.fail(f"the escape `\\{char}`")
        return [(ord(char), ord(char))]

    def bracket(self) -> _Ranges:
        negated = self.peek() == "^"
        if negated:
            self.take()
        ranges: _Ranges = []
        first = True
        while True:
            if self.peek() is None:
                raise self.fail("an unclosed `[`")
            char = self.take()
            if char == "]" and not first:
                break
            first = False
            if char == "\\":
                item = self.escape(in_class=True)
            elif char == "[" and self.peek() == ":":
                raise self.fail("a POSIX class")
            else:
                item = [(ord(char), ord(char))]
            if len(item) == 1 and item[0][0] == item[0][1] and self.peek() == "-":
                following = self.pattern[self.position + 1 : self.position + 2]
                if following and following != "]":
                    self.take()
                    end_char = self.take()
                    end = self.escape(in_class=True) if end_char == "\\" else [(ord(end_char), ord(end_char))]
                    if len(end) != 1 or end[0][0] != end[0][1] or end[0][0] < item[0][0]:
                        raise self.fail("a bad range in a class")
                    item = [(item[0][0], end[0][0])]
            ranges += item
        return _complement(ranges, _PRINTABLE_ASCII) if negated else _normalise(ranges)

    def quantified(self, atom: str) -> str:
        char = self.peek()
        if char is None:
            return atom
        if char in "*+?":
            self.take()
            suffix = char
        elif char == "{" and (match := re.match(r"\{(\d+)(,(\d*))?\}", self.pattern[self.position :])):
            self.position += match.end()
            low = int(match[1])
            high = low if match[2] is None else (int(match[3]) if match[3] else None)
            if high is not None and high < low:
                raise self.fail("a repetition whose maximum is below its minimum")
            if max(low, high or 0) > self.max_repeat:
                raise self.fail(f"a repetition bound over {self.max_repeat}")
            suffix = f"{{{low},{'' if high is None else high}}}"
        else:
            return atom
        if self.peek() in ("?", "+"):  # lazy or possessive: the same set of matches
            self.take()
        following = self.peek()
        if following is not None and following in "*+?{":
            raise self.fail("a repeated quantifier")
        return f"{atom}{suffix}"


def pattern_rule(pattern: str, *, max_repeat: int) -> str:
    """A GBNF expression for raw JSON-string characters that ``re.search(pattern, ...)`` always matches."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PatternError(f"the pattern is not a valid regular expression: {exc}") from None
    parser = _Parser(pattern.removeprefix("^"), max_repeat)
    expression = parser.alternation(0)
    if parser.peek() is not None:
        raise parser.fail("an unbalanced `)`")
    return expression
