"""Properties of SSE parsing and streaming (hypothesis).

* Any split of a valid event stream into pieces parses to the same events, and to the
  events it was built from (whatever the line endings, comments and byte order mark).
* Any truncation of a stream that ends with ``[DONE]`` is detected: by the decoder (cut
  inside an event) or by the missing ``[DONE]``; through ``Client.chat_stream`` it raises
  :class:`IncompleteStreamError` and is never reported as a complete answer.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

import paradigm_trio as pt
from paradigm_trio._endpoints._sse import ServerSentEvent, SSEDecoder

# Field values: any text without line breaks (surrogates cannot be encoded).
values = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=12)
ids = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0"), min_size=1, max_size=6
)
eols = st.sampled_from([b"\n", b"\r\n", b"\r"])


@dataclass(frozen=True)
class Spec:
    event: str | None
    data: tuple[str, ...]
    id: str | None
    comment: str | None


specs = st.builds(
    Spec,
    event=st.none() | values.filter(lambda v: v != ""),
    data=st.lists(values, min_size=1, max_size=3).map(tuple),
    id=st.none() | ids,
    comment=st.none() | values,
)


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent]]:
    """A valid event stream and the events it must parse to."""
    items = draw(st.lists(specs, max_size=6))
    out = bytearray(b"\xef\xbb\xbf" if draw(st.booleans()) else b"")
    expected: list[ServerSentEvent] = []
    last_id = ""

    def line(text: str) -> None:
        eol = draw(eols)
        if not text and eol == b"\n" and out.endswith(b"\r"):
            eol = b"\r\n"  # CR then LF would be one CRLF: a different stream
        out.extend(text.encode() + eol)

    for spec in items:
        if spec.comment is not None:
            line(":" + spec.comment)
        if spec.event is not None:
            line("event: " + spec.event)
        if spec.id is not None:
            line("id: " + spec.id)
            last_id = spec.id
        for value in spec.data:
            line("data: " + value)
        line("")
        expected.append(ServerSentEvent(spec.event or "message", "\n".join(spec.data), last_id))
    return bytes(out), expected


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def parse(pieces: list[bytes]) -> tuple[list[ServerSentEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events, decoder


@given(event_streams(), st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_any_split_parses_to_the_same_events(
    stream: tuple[bytes, list[ServerSentEvent]], cuts: list[int]
) -> None:
    data, expected = stream
    whole, _ = parse([data])
    assert whole == expected
    events, decoder = parse(split(data, cuts))
    assert events == expected
    assert not decoder.mid_event


@given(event_streams())
def test_byte_by_byte_is_the_same(stream: tuple[bytes, list[ServerSentEvent]]) -> None:
    data, expected = stream
    events, decoder = parse([data[i : i + 1] for i in range(len(data))])
    assert events == expected
    assert not decoder.mid_event


def _complete(data: bytes, k: int) -> bool:
    """Cutting ``data`` at ``k`` loses nothing: only the LF of a final CRLF is missing."""
    return data[k:] == b"\n" and data[:k].endswith(b"\r")


@given(event_streams(), eols, st.data())
def test_any_truncation_is_detected(
    stream: tuple[bytes, list[ServerSentEvent]], eol: bytes, draw: st.DataObject
) -> None:
    body, expected = stream
    data = body + b"data: [DONE]" + eol + eol
    expected = [
        *expected,
        ServerSentEvent("message", "[DONE]", expected[-1].id if expected else ""),
    ]
    k = draw.draw(st.integers(min_value=0, max_value=len(data) - 1), label="cut")
    cuts = draw.draw(st.lists(st.integers(min_value=0, max_value=k)), label="splits")
    events, decoder = parse(split(data[:k], cuts))
    assert events == expected[: len(events)]  # what arrived is right, as far as it goes
    detected = decoder.mid_event or len(events) < len(expected)
    assert detected or _complete(data, k)


# --------------------------------------------------------------------------- through the client


def _answer(words: list[str], eol: bytes) -> bytes:
    out = bytearray()
    for i, word in enumerate(words):
        chunk = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": word}}]}
        if i == 0:
            chunk["choices"][0]["delta"]["role"] = "assistant"  # type: ignore[index]
        out += b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + eol + eol
    return bytes(out + b"data: [DONE]" + eol + eol)


async def _stream_text(pieces: list[bytes]) -> str:
    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    client = pt.Client(
        api_key="test-key",
        base_url="http://test/api/v2",
        transport=httpx2.MockTransport(handler),
        retry=pt.RetryPolicy.no_retries(),
    )
    async with client, client.chat_stream([{"role": "user", "content": "x"}]) as stream:
        async for _ in stream:
            pass
    return stream.completion.text


words = st.lists(values, min_size=1, max_size=5)


@pytest.mark.anyio
@given(words, eols, st.lists(st.integers(min_value=0, max_value=2000), max_size=20))
async def test_the_client_assembles_any_split_stream(
    parts: list[str], eol: bytes, cuts: list[int]
) -> None:
    data = _answer(parts, eol)
    assert await _stream_text(split(data, cuts)) == "".join(parts)


@pytest.mark.anyio
@given(words, eols, st.data())
async def test_the_client_never_reports_a_truncated_stream_as_complete(
    parts: list[str], eol: bytes, draw: st.DataObject
) -> None:
    data = _answer(parts, eol)
    k = draw.draw(st.integers(min_value=0, max_value=len(data) - 1), label="cut")
    cuts = draw.draw(st.lists(st.integers(min_value=0, max_value=k)), label="splits")
    if _complete(data, k):
        assert await _stream_text(split(data[:k], cuts)) == "".join(parts)
        return
    with pytest.raises(pt.IncompleteStreamError) as info:
        await _stream_text(split(data[:k], cuts))
    assert "".join(parts).startswith(info.value.text)
