"""HTTP/1.1 messages (``_wire``): request heads and the response reader, without I/O."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paradigm_trio._transport._wire import ProtocolError, ResponseReader, check_header, request_head

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-Id: r1\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"
)


def read(*pieces: bytes, eof: bool = False) -> ResponseReader:
    reader = ResponseReader()
    for piece in pieces:
        reader.feed(piece)
    if eof:
        reader.feed_eof()
    return reader


def body_of(reader: ResponseReader) -> bytes:
    return reader.take_body()


def test_a_request_head() -> None:
    head = request_head(b"POST", b"/v2/x?q=1", [(b"Host", b"h:1"), (b"Content-Length", b"2")])
    assert head == b"POST /v2/x?q=1 HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\n\r\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"X-A", b"1\r\nX-Injected: 2"),  # request smuggling through a value
        (b"X-A", b"a\nb"),
        (b"X-A", b"nul\x00"),
        (b"X A", b"1"),
        (b"X-A:", b"1"),
        (b"", b"1"),
    ],
)
def test_headers_that_would_break_the_request_are_refused(name: bytes, value: bytes) -> None:
    with pytest.raises(ProtocolError):
        check_header(name, value)
    with pytest.raises(ProtocolError):
        request_head(b"GET", b"/", [(name, value)])


@pytest.mark.parametrize(
    ("method", "target"), [(b"GET", b"/a b"), (b"GET", b"/a\r\nX: 1"), (b"G T", b"/")]
)
def test_a_bad_request_line_is_refused(method: bytes, target: bytes) -> None:
    with pytest.raises(ProtocolError):
        request_head(method, target, [])


def test_a_response_with_content_length() -> None:
    reader = read(RESPONSE)
    assert (reader.head, reader.complete, reader.reusable) == (True, True, True)
    assert (reader.status, reader.reason) == (200, b"OK")
    assert reader.headers == [(b"Content-Length", b"5"), (b"X-Request-Id", b"r1")]
    assert body_of(reader) == b"hello"
    assert body_of(reader) == b""  # taken once


@given(cuts=st.lists(st.integers(min_value=1, max_value=len(CHUNKED) - 1), max_size=8))
def test_a_response_cut_anywhere_reads_the_same(cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(CHUNKED)]
    reader = ResponseReader()
    body = b""
    for a, b in itertools.pairwise(points):
        reader.feed(CHUNKED[a:b])
        body += reader.take_body()
    assert (reader.status, reader.reason, body) == (201, b"Created", b"hello")
    assert reader.reusable


def test_interim_responses_are_skipped() -> None:
    reader = read(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n" + RESPONSE)
    assert reader.status == 200
    assert (b"X-Interim", b"1") not in reader.headers
    assert body_of(reader) == b"hello"


def test_a_body_read_until_the_close() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\n\r\nuntil the ", b"end")
    assert (reader.head, reader.complete) == (True, False)
    reader.feed_eof()
    assert reader.complete
    assert not reader.reusable
    assert body_of(reader) == b"until the end"


def test_a_close_before_the_end_of_the_body_is_an_error() -> None:
    reader = read(RESPONSE[:-2])
    with pytest.raises(ProtocolError, match="before the end of the body"):
        reader.feed_eof()
    with pytest.raises(ProtocolError, match="without sending a response"):
        read(b"HTTP/1.1 2", eof=True)


def test_connection_close_and_bytes_after_the_response_end_reuse() -> None:
    assert not read(RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")).reusable
    assert not read(RESPONSE + b"HTTP/1.1 200 OK\r\n").reusable
    assert not read(RESPONSE, b"garbage").reusable
    assert not read(RESPONSE + b"\x00garbage").reusable


def test_bytes_that_are_not_http_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"not valid HTTP/1\.1"):
        read(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ProtocolError):
        read(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n")


def test_the_answer_to_a_head_request_has_no_body() -> None:
    reader = ResponseReader()
    reader.start(no_body=True)
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert reader.complete
    assert not reader.reusable  # the parser cannot tell where the next response starts
    assert body_of(reader) == b""


def test_a_reader_serves_one_response_after_another() -> None:
    reader = read(RESPONSE)
    assert body_of(reader) == b"hello"
    reader.start()
    assert not reader.head
    reader.feed(CHUNKED)
    assert (reader.status, body_of(reader), reader.reusable) == (201, b"hello", True)


def test_each_response_has_its_own_headers() -> None:
    # The headers handed out with a response stay as they were when the connection's reader
    # goes on to the next response (its lists come with each response's first byte).
    reader = read(RESPONSE)
    first = reader.headers
    body_of(reader)
    reader.start()
    assert (len(reader.headers), body_of(reader)) == (0, b"")  # (nothing received yet)
    reader.feed(CHUNKED)
    assert first == [(b"Content-Length", b"5"), (b"X-Request-Id", b"r1")]
    assert reader.headers is not first
    assert (reader.status, body_of(reader)) == (201, b"hello")


def test_a_second_response_in_the_same_bytes_is_not_taken_for_more_body() -> None:
    # A server that sends a response we did not ask for right after the one we did: its
    # body is not appended to ours, and the connection is not used again.
    reader = read(RESPONSE + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert (reader.status, body_of(reader), reader.extra, reader.reusable) == (
        200,
        b"hello",
        True,
        False,
    )
