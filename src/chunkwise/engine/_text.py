"""Pure text streaming: token bytes to text, stop-string holdback and tool-call argument streaming.

Nothing here knows about llama.cpp, threads or the event loop. Every class consumes its input piece by
piece and costs amortized O(1) per input character, independent of how much text came before: nothing
re-decodes or rescans the whole output.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "StopMatcher",
    "StopResult",
    "TokenTextDecoder",
    "ToolCallArgumentStream",
    "ToolCallEvent",
    "tool_call_prefix",
]


class TokenTextDecoder:
    """Turns token byte pieces into text without ever splitting a UTF-8 code point.

    A token may end in the middle of a multi-byte character (byte-level BPE does this for emoji and CJK);
    the incomplete tail is kept until the next piece completes it. Invalid bytes become U+FFFD rather than
    raising, because a model can produce any byte sequence; but a character the output was cut inside (by
    ``max_tokens``, a stop or the end of generation) is dropped, never shown as a U+FFFD at the end.
    """

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        """The text still pending at the end of the stream: nothing, as only an incomplete character can be."""
        self._decoder.reset()
        return ""


@dataclass(frozen=True, slots=True)
class StopResult:
    """What may be shown after feeding one piece: ``text``, and ``stop`` if a stop string just completed."""

    text: str
    stop: str | None = None


_NO_OUTPUT = StopResult("")


class StopMatcher:
    """Finds stop strings in streamed text and holds back only what could still become one.

    This is an Aho-Corasick automaton over the stop strings. Its state after each character is the longest
    suffix of the text so far that is a prefix of some stop string, which is exactly the text that must be
    held back: everything before it can never be part of a match. The first stop string to *complete*
    ends the text; when several complete on the same character the longest wins (it starts earliest).
    The result therefore does not depend on how the text was split into pieces.
    """

    __slots__ = ("_children", "_depth", "_fail", "_held", "_match", "_state", "_stopped")

    def __init__(self, stops: Iterable[str]) -> None:
        patterns = sorted({stop for stop in stops if stop})
        if not patterns:
            raise ValueError("StopMatcher needs at least one non-empty stop string")
        self._children: list[dict[str, int]] = [{}]
        self._depth: list[int] = [0]
        #: The stop string that ends at this state (the longest, via failure links), or None.
        self._match: list[str | None] = [None]
        for pattern in patterns:
            state = 0
            for char in pattern:
                child = self._children[state].get(char)
                if child is None:
                    child = len(self._children)
                    self._children[state][char] = child
                    self._children.append({})
                    self._depth.append(self._depth[state] + 1)
                    self._match.append(None)
                state = child
            self._match[state] = pattern
        self._fail = [0] * len(self._children)
        queue = list(self._children[0].values())
        for state in queue:  # breadth-first: a state's failure target is always shallower
            for char, child in self._children[state].items():
                fallback = self._fail[state]
                while fallback and char not in self._children[fallback]:
                    fallback = self._fail[fallback]
                target = self._children[fallback].get(char, 0)
                self._fail[child] = target if target != child else 0
                if self._match[child] is None:
                    self._match[child] = self._match[self._fail[child]]
                queue.append(child)
        self._state = 0
        self._held = ""
        self._stopped = False

    @property
    def held(self) -> str:
        """Text received but not yet released because it could be the start of a stop string."""
        return self._held

    def feed(self, text: str) -> StopResult:
        if self._stopped:
            return _NO_OUTPUT
        children, fail, depth, match = self._children, self._fail, self._depth, self._match
        state = self._state
        for offset, char in enumerate(text):
            while True:
                nxt = children[state].get(char)
                if nxt is not None:
                    state = nxt
                    break
                if state == 0:
                    break
                state = fail[state]
            stop = match[state]
            if stop is not None:
                self._stopped = True
                # The match ends at this character; it started inside ``held + text`` because the
                # held text is at least as long as any prefix still being matched.
                pending = self._held + text[: offset + 1]
                self._held = ""
                return StopResult(pending[: len(pending) - len(stop)], stop)
        self._state = state
        keep = depth[state]
        pending = self._held + text
        if keep == 0:
            self._held = ""
            return StopResult(pending)
        self._held = pending[-keep:]
        return StopResult(pending[:-keep])

    def flush(self) -> str:
        """Release the held text once no more text will come (it turned out not to be a stop string)."""
        held, self._held = self._held, ""
        return "" if self._stopped else held


def tool_call_prefix(name: str) -> str:
    """The exact text a tool call starts with; the grammar forces it and the argument stream expects it."""
    return '{"name": "' + name + '", "arguments": '


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """``name`` is set once, when the call's name is known; ``arguments`` is the next argument fragment."""

    name: str | None = None
    arguments: str = ""


_CLOSING = frozenset("} \t\r\n")


class ToolCallArgumentStream:
    """Splits the text of ``{"name": "<name>", "arguments": <json>}`` into a name and argument fragments.

    The grammar guarantees the shape, so the name is known as soon as the text matches one of the expected
    prefixes; from then on everything is argument text except the wrapper's closing brace. Since the
    arguments themselves end in ``}``, a trailing run of ``}`` and whitespace is held back until either more
    argument text arrives or the call ends, when exactly the wrapper's brace is dropped.
    """

    __slots__ = ("_buffer", "_longest_prefix", "_name", "_prefixes", "_tail", "_unparsed")

    def __init__(self, names: Iterable[str]) -> None:
        self._prefixes: Mapping[str, str] = {tool_call_prefix(name): name for name in names}
        self._longest_prefix = max(map(len, self._prefixes), default=0)
        self._buffer = ""
        #: Text after it became clear that no expected prefix can match (the grammar prevents this).
        self._unparsed: list[str] = []
        self._name: str | None = None
        self._tail = ""

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def started(self) -> bool:
        return self._name is not None

    def feed(self, text: str) -> ToolCallEvent | None:
        if self._name is not None:
            released = self._release(text)
            return ToolCallEvent(arguments=released) if released else None
        if self._unparsed:
            self._unparsed.append(text)
            return None
        self._buffer += text
        for prefix, name in self._prefixes.items():
            if self._buffer.startswith(prefix):
                self._name = name
                rest, self._buffer = self._buffer[len(prefix) :], ""
                return ToolCallEvent(name=name, arguments=self._release(rest))
        if len(self._buffer) >= self._longest_prefix:
            self._unparsed.append(self._buffer)
            self._buffer = ""
        return None

    def _release(self, text: str) -> str:
        """Everything up to the trailing run of braces and whitespace, which is held (amortized O(len(text)))."""
        cut = len(text)
        while cut and text[cut - 1] in _CLOSING:
            cut -= 1
        if cut == 0:
            self._tail += text
            return ""
        released, self._tail = self._tail + text[:cut], text[cut:]
        return released

    def finish(self, complete: bool) -> tuple[str | None, str]:
        """End the call; returns ``(unparsed_text, last_arguments)``.

        ``complete`` says the whole wrapper was generated, so its closing brace is dropped; otherwise (the
        output was cut short) the held text is all argument text. If the name was never recognised the
        raw text comes back as ``unparsed_text`` so it is not lost.
        """
        if self._name is None:
            raw = "".join(self._unparsed) + self._buffer
            self._unparsed, self._buffer = [], ""
            return (raw or None), ""
        tail, self._tail = self._tail, ""
        if complete:
            tail = tail.rstrip()
            if tail.endswith("}"):
                tail = tail[:-1].rstrip()
        return None, tail
