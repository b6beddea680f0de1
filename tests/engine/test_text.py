"""The pure text layer: UTF-8-safe token decoding, stop-string holdback and tool-call argument streaming."""

from __future__ import annotations

import codecs
import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chunkwise.engine._text import (
    StopMatcher,
    TokenTextDecoder,
    ToolCallArgumentStream,
    ToolCallEvent,
    tool_call_prefix,
)

#: Shared CI machines stall now and then; these tests check correctness, not speed.
no_deadline = settings(deadline=None)


def split_at(data: Any, cuts: list[int]) -> list[Any]:
    """``data`` cut at the given positions (duplicates and out-of-range cuts are fine)."""
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=40)
multilingual = st.text(
    alphabet=st.sampled_from(list('ab {}"\\\n') + ["é", "ß", "你", "好", "世", "界", "🐉", "🔥", "👩‍🚀", "\u0301"]),
    max_size=60,
)


# --- TokenTextDecoder -------------------------------------------------------------------------------


@no_deadline
@given(text=st.text(max_size=80), cuts=cuts)
@example(text="🐉", cuts=[1, 2, 3])
@example(text="你好", cuts=[1, 4])
def test_any_split_of_valid_utf8_decodes_to_the_same_text_with_no_replacement_characters(text, cuts):
    decoder = TokenTextDecoder()
    parts = [decoder.decode(piece) for piece in split_at(text.encode(), cuts)]
    parts.append(decoder.flush())
    assert "".join(parts) == text
    if "\ufffd" not in text:
        assert all("\ufffd" not in part for part in parts)


@no_deadline
@given(data=st.binary(max_size=60), cuts=cuts)
def test_any_split_of_arbitrary_bytes_matches_a_one_shot_lenient_decode_without_a_cut_tail(data, cuts):
    decoder = TokenTextDecoder()
    decoded = "".join(decoder.decode(piece) for piece in split_at(data, cuts)) + decoder.flush()
    # Invalid bytes become U+FFFD; an incomplete character at the very end (the output was cut) is dropped.
    assert decoded == codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data)


def test_a_code_point_split_across_tokens_is_held_until_complete():
    dragon = "🐉".encode()
    decoder = TokenTextDecoder()
    assert decoder.decode(dragon[:1]) == ""
    assert decoder.decode(dragon[1:3]) == ""
    assert decoder.decode(dragon[3:] + "好".encode()[:2]) == "🐉"
    assert decoder.decode("好".encode()[2:]) == "好"


def test_an_incomplete_sequence_at_the_end_is_dropped_not_shown_as_a_replacement_character():
    decoder = TokenTextDecoder()
    assert decoder.decode("🐉".encode()[:2]) == ""
    assert decoder.flush() == ""


# --- StopMatcher ------------------------------------------------------------------------------------


def reference_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """Brute force: the stop string that completes first (longest on a tie) ends the text before it."""
    best: tuple[int, int, str] | None = None
    for stop in stops:
        start = text.find(stop)
        if start >= 0:
            key = (start + len(stop), -len(stop), stop)
            best = key if best is None or key < best else best
    if best is None:
        return text, None
    end, negative_length, stop = best
    return text[: end + negative_length], stop


def run_matcher(stops: list[str], pieces: list[str]) -> tuple[str, str | None]:
    matcher = StopMatcher(stops)
    shown, stop = [], None
    for piece in pieces:
        result = matcher.feed(piece)
        shown.append(result.text)
        if result.stop is not None:
            stop = result.stop
            break
    if stop is None:
        shown.append(matcher.flush())
    return "".join(shown), stop


stop_lists = st.lists(st.text(alphabet="abc🐉", min_size=1, max_size=5), min_size=1, max_size=4)


@no_deadline
@given(text=st.text(alphabet="abc🐉x", max_size=60), stops=stop_lists, cuts=cuts)
@example(text="xxabcxx", stops=["abc"], cuts=[3, 4])
@example(text="abab", stops=["bab", "ab"], cuts=[1])
@example(text="aab", stops=["ab", "aab"], cuts=[])
def test_any_segmentation_gives_the_reference_result_and_never_shows_stop_text(text, stops, cuts):
    shown, stop = run_matcher(stops, split_at(text, cuts))
    assert (shown, stop) == reference_stop(text, stops)
    if stop is not None:
        assert stop not in shown


@no_deadline
@given(text=st.text(alphabet="abc🐉x", max_size=60), stops=stop_lists, cuts=cuts)
def test_only_what_could_still_start_a_stop_string_is_held_back(text, stops, cuts):
    matcher = StopMatcher(stops)
    seen, shown = "", ""
    for piece in split_at(text, cuts):
        seen += piece
        result = matcher.feed(piece)
        shown += result.text
        if result.stop is not None:
            return
        held = matcher.held
        assert shown + held == seen
        # the held text is the longest suffix of what was seen that is a prefix of some stop string
        longest = max(
            (k for k in range(len(seen) + 1) if any(stop.startswith(seen[len(seen) - k :]) for stop in stops)),
        )
        assert len(held) == longest


def test_a_stop_string_split_across_many_pieces_is_caught():
    matcher = StopMatcher(["<|end|>"])
    outputs = [matcher.feed(piece) for piece in ["Hello <", "|e", "nd", "|", "> never shown"]]
    assert "".join(result.text for result in outputs) == "Hello "
    assert outputs[-1].stop == "<|end|>"
    assert [result.stop for result in outputs[:-1]] == [None] * 4
    assert matcher.feed("more").text == ""
    assert matcher.flush() == ""


def test_a_false_start_is_released_as_soon_as_it_cannot_match():
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("ab ST").text == "ab "
    assert matcher.held == "ST"
    assert matcher.feed("AR").text == "STAR"
    assert matcher.held == ""


def test_held_text_is_released_at_the_end():
    matcher = StopMatcher(["###"])
    assert matcher.feed("done ##").text == "done "
    assert matcher.flush() == "##"


def test_a_stop_matcher_needs_a_stop_string():
    with pytest.raises(ValueError):
        StopMatcher([""])


# --- ToolCallArgumentStream -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(alphabet="abc}{ ", max_size=5), json_values, max_size=4)


def stream_call(
    names: list[str], text: str, cuts: list[int], *, complete: bool = True
) -> tuple[list[ToolCallEvent], str | None, str]:
    stream = ToolCallArgumentStream(names)
    events = [event for piece in split_at(text, cuts) if (event := stream.feed(piece)) is not None]
    unparsed, last = stream.finish(complete=complete)
    return events, unparsed, last


@no_deadline
@given(arguments=json_objects, spacing=st.sampled_from(["", " "]), cuts=cuts)
@example(arguments={"a": {"b": {}}}, spacing=" ", cuts=[30, 31, 32])
def test_any_segmentation_reassembles_the_exact_arguments(arguments, spacing, cuts):
    arguments_text = json.dumps(arguments, ensure_ascii=False)
    text = tool_call_prefix("get_weather") + arguments_text + spacing + "}"
    events, unparsed, last = stream_call(["lookup", "get_weather"], text, cuts)
    assert unparsed is None
    assert [event.name for event in events if event.name is not None] == ["get_weather"]
    assert events[0].name == "get_weather"
    assert "".join(event.arguments for event in events) + last == arguments_text
    assert json.loads("".join(event.arguments for event in events) + last) == arguments


def test_argument_text_streams_as_it_arrives_but_trailing_braces_wait():
    stream = ToolCallArgumentStream(["f"])
    assert stream.feed('{"name": "f", "argu') is None
    first = stream.feed('ments": {"x": ')
    assert first is not None and first.name == "f" and first.arguments == '{"x":'
    assert stream.feed("{}") == ToolCallEvent(arguments=" {")  # the closing "}" waits: it may end the call
    assert stream.feed("}") is None
    assert stream.feed("}") is None
    assert stream.finish(complete=True) == (None, "}}")


def test_a_call_cut_short_keeps_all_its_argument_text():
    stream = ToolCallArgumentStream(["f"])
    event = stream.feed('{"name": "f", "arguments": {"x": {}}')
    assert event is not None and event.arguments == '{"x": {'
    assert stream.finish(complete=False) == (None, "}}")


def test_text_that_never_named_a_tool_is_returned_unparsed():
    stream = ToolCallArgumentStream(["f"])
    assert stream.feed('{"na') is None
    assert stream.finish(complete=False) == ('{"na', "")


def test_text_that_cannot_be_a_call_is_kept_whole():
    stream = ToolCallArgumentStream(["f"])
    for piece in ["I would ", "rather not call ", "any tool ", "today."]:
        assert stream.feed(piece) is None
    assert stream.finish(complete=False) == ("I would rather not call any tool today.", "")
