"""The incremental SSE parser (``paradigm_trio._endpoints._sse.SSEDecoder``)."""

from __future__ import annotations

import pytest

from paradigm_trio._endpoints._sse import ServerSentEvent, SSEDecodeError, SSEDecoder


def parse(*pieces: bytes) -> tuple[list[ServerSentEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events, decoder


def test_one_event() -> None:
    events, decoder = parse(b"data: hello\n\n")
    assert events == [ServerSentEvent("message", "hello")]
    assert not decoder.mid_event
    assert decoder.bytes_received == 13


def test_events_come_out_as_soon_as_their_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.mid_event
    assert decoder.feed(b"\ndata: b") == [ServerSentEvent(data="a")]
    assert decoder.mid_event
    assert decoder.feed(b"\n\n") == [ServerSentEvent(data="b")]
    assert not decoder.mid_event


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    stream = eol.join([b"event: update", b"data: x", b"", b"data: y", b"", b""])
    events, decoder = parse(stream)
    assert events == [ServerSentEvent("update", "x"), ServerSentEvent("message", "y")]
    assert not decoder.mid_event


def test_mixed_line_endings() -> None:
    events, _ = parse(b"data: a\r\n\ndata: b\r\r\ndata: c\n\r")
    assert [e.data for e in events] == ["a", "b", "c"]


def test_crlf_split_between_pieces_is_one_line_end() -> None:
    # If the LF after a CR were a second line end, "data: a" would be dispatched, then
    # "data: b" would be a new event; it must be one event with two data lines.
    events, decoder = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert events == [ServerSentEvent(data="a\nb")]
    assert not decoder.mid_event


def test_lone_cr_at_the_end_of_a_piece_then_data() -> None:
    events, _ = parse(b"data: a\r", b"\r", b"data: b\n\n")
    assert [e.data for e in events] == ["a", "b"]


def test_multibyte_characters_split_anywhere() -> None:
    payload = "data: héllo wörld 🎉 日本語\n\n".encode()
    for size in (1, 2, 3, 5):
        pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
        events, decoder = parse(*pieces)
        assert events == [ServerSentEvent(data="héllo wörld 🎉 日本語")], size
        assert not decoder.mid_event


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    events, _ = parse(b"data: a\xffb\n\n")
    assert events == [ServerSentEvent(data="a\ufffdb")]


def test_comments_are_ignored_and_do_not_start_an_event() -> None:
    events, decoder = parse(b": keep-alive\n\n: another\ndata: x\n: inside\n\n: trailing\n")
    assert events == [ServerSentEvent(data="x")]
    assert not decoder.mid_event


def test_multiline_data_is_joined_with_newlines() -> None:
    events, _ = parse(b'data: {"a":\ndata: 1}\n\n')
    assert events == [ServerSentEvent(data='{"a":\n1}')]


def test_field_parsing_rules() -> None:
    events, _ = parse(
        b"data:no-space\n\ndata:  two spaces\n\ndata\n\ndata:\n\nunknown: field\ndata: z\n\n"
    )
    assert [e.data for e in events] == ["no-space", " two spaces", "", "", "z"]


def test_id_and_retry() -> None:
    events, _ = parse(
        b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nid: bad\0id\nretry: x\ndata: c\n\n"
    )
    assert events[0] == ServerSentEvent("message", "a", "7", 1500)
    # The last event id persists; retry does not.
    assert events[1] == ServerSentEvent("message", "b", "7", None)
    assert events[2] == ServerSentEvent("message", "c", "7", None)


def test_event_without_data() -> None:
    # Dispatched (the standard would drop it) so that `event: error` alone is reported.
    events, _ = parse(b"event: error\n\nid: 1\n\n")
    assert events == [ServerSentEvent("error", "", "")]


def test_byte_order_mark_is_ignored_once() -> None:
    events, _ = parse(b"\xef\xbb", b"\xbfdata: a\n\n")
    assert events == [ServerSentEvent(data="a")]
    events, _ = parse("\ufeffdata: a\n\n\ufeffdata: b\n\n".encode())
    # Only the leading BOM of the stream is special: the second line's field is unknown.
    assert [e.data for e in events] == ["a"]


@pytest.mark.parametrize(
    ("body", "mid_event"),
    [
        (b"", False),
        (b"data: a\n\n", False),
        (b"data: a\n\ndata: b", True),  # an unterminated line
        (b"data: a\n\ndata: b\n", True),  # fields without the blank line
        (b"data: a\n\nid: 1\n", True),
        (b"data: a\n\n: comment", True),  # a partial line, even a comment
        (b"data: a\n\n: comment\n", False),
        (b"data: a\r", True),
    ],
)
def test_mid_event_detects_truncation(body: bytes, mid_event: bool) -> None:
    _, decoder = parse(body)
    assert decoder.mid_event is mid_event


def test_event_size_limit() -> None:
    decoder = SSEDecoder(max_event_size=100)
    decoder.feed(b"data: " + b"x" * 50 + b"\n")
    with pytest.raises(SSEDecodeError, match="100-byte limit"):
        decoder.feed(b"data: " + b"y" * 50)
    # A line that never ends is caught too.
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"data: " + b"z" * 200)


def test_events_after_a_size_reset_are_fine() -> None:
    decoder = SSEDecoder(max_event_size=100)
    for _ in range(10):
        assert decoder.feed(b"data: " + b"x" * 60 + b"\n\n") == [ServerSentEvent(data="x" * 60)]
