"""The SSE codec: WHATWG parsing rules, any fragmentation, bounds, and the encoder."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkwise import EventTooLargeError
from chunkwise.sse import (
    DONE,
    ServerSentEvent,
    SSEDecoder,
    encode_comment,
    encode_error,
    encode_event,
    encode_json,
)
from chunkwise.types import ChatCompletionChunk, ErrorDetail


def decode_all(pieces: list[bytes], **options: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(**options)
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.flush())
    return events


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


# --- a model of valid streams, written out by hand (not by our encoder) ------------------------------

line_text = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=12)


@dataclass
class EventSpec:
    data_lines: list[str]
    event: str | None
    id: str | None
    retry: int | None
    comment_before: str | None


event_specs = st.builds(
    EventSpec,
    data_lines=st.lists(line_text, min_size=1, max_size=3),
    event=st.none()
    | st.text(st.characters(blacklist_characters="\r\n:", codec="utf-8"), min_size=1, max_size=6).filter(
        lambda s: not s.startswith(" ")
    ),
    id=st.none() | line_text.filter(lambda s: "\x00" not in s),
    retry=st.none() | st.integers(min_value=0, max_value=10**6),
    comment_before=st.none() | line_text,
)


def write_stream(specs: list[EventSpec], newline: str, bom: bool) -> tuple[bytes, list[ServerSentEvent]]:
    lines: list[str] = []
    expected: list[ServerSentEvent] = []
    last_id, retry = "", None
    for spec in specs:
        if spec.comment_before is not None:
            lines.append(":" + spec.comment_before)
        if spec.event is not None:
            lines.append("event: " + spec.event)
        if spec.id is not None:
            lines.append("id: " + spec.id)
            last_id = spec.id
        if spec.retry is not None:
            lines.append(f"retry: {spec.retry}")
            retry = spec.retry
        lines.extend("data: " + line for line in spec.data_lines)
        lines.append("")
        expected.append(ServerSentEvent("\n".join(spec.data_lines), spec.event or "message", last_id, retry))
    text = "".join(line + newline for line in lines)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(), expected


@settings(max_examples=300, deadline=None)
@given(
    specs=st.lists(event_specs, max_size=6),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_any_split_of_a_valid_stream_yields_the_same_events(
    specs: list[EventSpec], newline: str, bom: bool, cuts: list[int]
) -> None:
    data, expected = write_stream(specs, newline, bom)
    assert decode_all([data]) == expected
    assert decode_all(split_at(data, cuts)) == expected


@settings(max_examples=100, deadline=None)
@given(specs=st.lists(event_specs, min_size=1, max_size=4), newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_byte_at_a_time(specs: list[EventSpec], newline: str) -> None:
    data, expected = write_stream(specs, newline, bom=False)
    assert decode_all([data[i : i + 1] for i in range(len(data))]) == expected


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40), cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_encoder_output_decodes_to_the_same_data(text: str, cuts: list[int]) -> None:
    # Line breaks inside data are normalised to LF by the encoder, as the receiving side would see them.
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    wire = encode_event(text, event="e", id="7")
    assert decode_all(split_at(wire, cuts)) == [ServerSentEvent(expected, "e", "7")]


# --- the parsing rules one by one ----------------------------------------------------------------------


def test_multiline_data_is_joined_with_lf() -> None:
    assert decode_all([b"data: a\ndata:b\ndata\ndata:  c\n\n"]) == [ServerSentEvent("a\nb\n\n c")]


def test_field_without_value_and_unknown_fields() -> None:
    assert decode_all([b"data\n\n"]) == [ServerSentEvent("")]
    assert decode_all([b"foo: bar\ndata: x\nbaz\n\n"]) == [ServerSentEvent("x")]


def test_event_without_data_is_not_dispatched_and_resets_the_type() -> None:
    assert decode_all([b"event: a\n\ndata: x\n\n"]) == [ServerSentEvent("x")]


def test_id_persists_and_nul_ids_are_ignored() -> None:
    events = decode_all([b"id: 1\ndata: a\n\ndata: b\n\nid: x\x00y\ndata: c\n\nid\ndata: d\n\n"])
    assert [event.id for event in events] == ["1", "1", "1", ""]


def test_retry_only_accepts_digits() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 1500\n\nretry: 2x\n\nretry: -1\n\n")
    assert decoder.retry == 1500


def test_bom_only_at_the_start_and_split_across_reads() -> None:
    assert decode_all([b"\xef", b"\xbb", b"\xbfdata: a\n\n"]) == [ServerSentEvent("a")]
    # A second BOM is content: the field name is then not "data".
    assert decode_all([b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n"]) == []


def test_short_stream_that_looks_like_a_bom_prefix() -> None:
    assert decode_all([b"\xef"]) == []
    assert decode_all([b"\xef\xbb", b"data: x\n\n"]) == []  # not a BOM: the bytes belong to the field name


def test_flush_dispatches_an_unterminated_last_event() -> None:
    assert decode_all([b"data: a\n\ndata: [DONE]"]) == [ServerSentEvent("a"), ServerSentEvent("[DONE]")]
    assert decode_all([b"data: a\n"]) == [ServerSentEvent("a")]


def test_multibyte_utf8_split_across_reads_is_not_garbled() -> None:
    wire = "data: héllo 😀 世界\n\n".encode()
    for cut in range(len(wire) + 1):
        assert decode_all([wire[:cut], wire[cut:]]) == [ServerSentEvent("héllo 😀 世界")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode_all([b"data: a\xffb\n\n"]) == [ServerSentEvent("a\ufffdb")]


def test_event_size_limit_on_data() -> None:
    with pytest.raises(EventTooLargeError) as info:
        decode_all([b"data: " + b"x" * 600 + b"\n"], max_event_size=512)
    assert info.value.limit == 512


@pytest.mark.parametrize("before", [b"", b"data: small\n\n"])
def test_event_size_limit_on_whole_events_in_one_read(before: bytes) -> None:
    with pytest.raises(EventTooLargeError):
        decode_all([before + b"data: " + b"x" * 600 + b"\n\n"], max_event_size=512)


def test_event_size_limit_on_a_line_that_never_ends() -> None:
    decoder = SSEDecoder(max_event_size=1024)
    decoder.feed(b"data: ")
    with pytest.raises(EventTooLargeError):
        for _ in range(100):
            decoder.feed(b"y" * 100)


def test_event_size_limit_across_many_data_lines() -> None:
    with pytest.raises(EventTooLargeError):
        decode_all([b"data: 0123456789\n" * 100], max_event_size=512)


def test_events_under_the_limit_pass_and_the_limit_resets_between_events() -> None:
    wire = (b"data: " + b"x" * 400 + b"\n\n") * 5
    assert len(decode_all([wire], max_event_size=512)) == 5


def test_long_line_in_small_pieces_is_linear() -> None:
    # 4 MiB in 1 KiB pieces: a decoder that re-copies its buffer per piece would need ~8 GB of copying.
    decoder = SSEDecoder()
    decoder.feed(b"data: ")
    piece = b"z" * 1024
    for _ in range(4096):
        assert decoder.feed(piece) == []
    (event,) = decoder.feed(b"\n\n")
    assert len(event.data) == 4 * 1024 * 1024


def test_max_event_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SSEDecoder(max_event_size=0)


# --- encoder ---------------------------------------------------------------------------------------------


def test_encode_json_chunk_and_done() -> None:
    chunk = ChatCompletionChunk(id="c", created=1, model="m")
    wire = encode_json(chunk)
    assert wire == b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}\n\n'
    assert DONE == b"data: [DONE]\n\n"


def test_encode_comment_and_error() -> None:
    assert encode_comment() == b":\n\n"
    assert encode_comment("keep-alive") == b": keep-alive\n\n"
    assert encode_comment("a\nb") == b": a\n: b\n\n"
    assert decode_all([encode_comment("ping") + b"data: x\n\n"]) == [ServerSentEvent("x")]
    wire = encode_error(ErrorDetail(message="boom", type="server_error"))
    assert wire == b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'


def test_encode_event_fields() -> None:
    assert encode_event("a\nb", event="x", id="1", retry=5) == b"event: x\nid: 1\nretry: 5\ndata: a\ndata: b\n\n"
    with pytest.raises(ValueError):
        encode_event("x", event="a\nb")
    with pytest.raises(ValueError):
        encode_event("x", id="a\x00")
    with pytest.raises(ValueError):
        encode_event("x", retry=-1)
