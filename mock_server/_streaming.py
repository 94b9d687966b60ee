"""A streamed answer (chat, or a plain request's such as legacy completions): its chunks
paced by ``ttft`` and ``token_delay``, and how a stream fault (``stream_cut``,
``stream_error``, ``stream_stall``...) breaks it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import trio
from quart import Response

from ._answers import stream_events
from ._config import MockConfig
from ._content import ChatRequest, Reply
from ._determinism import unit
from ._plain import EventStream
from ._responses import dumps, linger
from ._transport import Connection

__all__ = ["plain_stream_response", "stream_response"]

_STREAM_ERROR: Final = {
    "error": {
        "message": "The server had an error while streaming the response "
        "(injected by mock_server).",
        "type": "server_error",
        "param": None,
        "code": "stream_error",
    }
}


def _sse(value: Any) -> bytes:
    return b"data: " + dumps(value) + b"\n\n"


def _inject_stream_fault(
    kind: str,
    events: list[bytes],
    pieces: list[int],
    lead: int,
    tokens: int,
    stall_after: int | None,
    stream_id: str,
) -> tuple[list[bytes], int, str]:
    """``(events to send, completion tokens among them, ending)`` of a stream drawing
    ``kind``; ``pieces``: the content chunks of each choice (a token each), ``lead``: the
    chunks before them (a chat's role chunks); ``tokens``: the completion's.

    The ending is ``"end"`` (a clean end of the response), ``"close"`` (the connection
    is closed after the events) or ``"stall"`` (nothing more is sent, ever).  For ``n`` > 1
    the cut falls after the lead chunks and half the content chunks of the choices.
    """
    cut = lead + (sum(pieces) // 2 if len(pieces) > 1 else pieces[0] // 2)
    if kind in ("stream_cut", "truncated"):
        return events[:cut], cut - lead, "close"
    if kind == "stream_error":
        return [*events[:cut], b"event: error\n" + _sse(_STREAM_ERROR)], cut - lead, "end"
    if kind == "stream_no_done":
        return events[:-1], tokens, "end"
    if kind == "stream_stall":
        sent = min(cut if stall_after is None else stall_after, len(events) - 1)
        return events[:sent], max(0, min(sent - lead, tokens)), "stall"
    if kind == "malformed":
        broken = b'data: {"id": "' + stream_id.encode() + b'", "choices": [\n\n'
        return [*events[:cut], broken, *events[cut:]], tokens, "end"
    return events, tokens, "end"


def _paced(
    conn: Connection, config: MockConfig, events: list[bytes], ending: str, headers: dict[str, str]
) -> Response:
    """``events`` sent after ``ttft``, ``token_delay`` apart, then the ``ending``."""
    entry = conn.entry
    assert entry is not None
    ttft = config.ttft.sample(unit(config.seed, entry.key, entry.attempt, "ttft"))
    token_delay = config.token_delay

    async def body() -> AsyncIterator[bytes]:
        if ttft > 0:
            await trio.sleep(ttft)
        for index, event in enumerate(events):
            if index and token_delay > 0:
                await trio.sleep(token_delay)
            yield event
        if ending == "close":
            conn.close()
            await linger()
        elif ending == "stall":
            await trio.sleep_forever()

    response = Response(body(), headers=headers, content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.timeout = None
    return response


def plain_stream_response(
    conn: Connection,
    config: MockConfig,
    stream: EventStream,
    kind: str,
    headers: dict[str, str],
    stall_after: int | None,
) -> Response:
    """A plain request's streamed answer (legacy completions), broken as ``kind`` says."""
    entry = conn.entry
    assert entry is not None
    events, entry.completion_tokens, ending = _inject_stream_fault(
        kind,
        list(stream.events),
        list(stream.pieces),
        0,
        sum(stream.pieces),
        stall_after,
        stream.stream_id,
    )
    return _paced(conn, config, events, ending, headers)


def stream_response(
    conn: Connection,
    config: MockConfig,
    chat: ChatRequest,
    replies: list[Reply],
    kind: str,
    ids: tuple[str, int],
    headers: dict[str, str],
    stall_after: int | None,
) -> Response:
    """The ``text/event-stream`` answer of ``replies``, broken as ``kind`` says."""
    entry = conn.entry
    assert entry is not None
    completion_id, _created = ids
    events = stream_events(chat, replies, ids, config.seed, kind)
    pieces = [len(reply.pieces) for reply in replies]
    tokens = sum(reply.completion_tokens for reply in replies)
    events, entry.completion_tokens, ending = _inject_stream_fault(
        kind, events, pieces, len(replies), tokens, stall_after, completion_id
    )
    return _paced(conn, config, events, ending, headers)
