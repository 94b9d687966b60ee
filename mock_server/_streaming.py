"""A streamed answer (chat, or a plain request's such as legacy completions): its chunks
paced by ``ttft`` and ``token_delay``, and how a stream fault (``stream_cut``,
``stream_error``, ``stream_stall``...) breaks it, at a chosen event (:class:`Where`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import trio
from quart import Response

from ._answers import stream_events
from ._config import MockConfig
from ._content import ChatRequest, Reply
from ._determinism import unit
from ._faults import Fault
from ._plain import EventStream
from ._responses import dumps, linger
from ._transport import Connection

__all__ = ["Where", "plain_stream_response", "stream_response"]

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


@dataclass(frozen=True, slots=True)
class Where:
    """Where a stream fault strikes: after ``at`` events (``None``: the lead chunks and
    half the content chunks), and, for a stall, for how long (``None``: for good)."""

    at: int | None = None
    stall_for: float | None = None

    @classmethod
    def of(cls, config: MockConfig, fault: Fault | None, kind: str) -> Where:
        """The position of ``kind``: the script's ``fault`` first, then ``config`` (for a
        stall, its ``stall_after`` before ``at``, in each)."""
        script = fault or Fault("ok")
        found: tuple[int | None, ...] = (script.at, config.fault_at)
        if kind == "stream_stall":
            found = (script.stall_after, script.at, config.stall_after, config.fault_at)
        at = next((value for value in found if value is not None), None)
        stall_for = config.stall_for if script.stall_for is None else script.stall_for
        return cls(at, stall_for)


def _inject_stream_fault(
    kind: str,
    events: list[bytes],
    pieces: list[int],
    lead: int,
    tokens: int,
    where: Where,
    stream_id: str,
) -> tuple[list[bytes], int, str, int | None]:
    """``(events to send, completion tokens among them, ending, pause)`` of a stream
    drawing ``kind``; ``pieces``: the content chunks of each choice (a token each),
    ``lead``: the chunks before them (a chat's role chunks); ``tokens``: the completion's.

    The ending is ``"end"`` (a clean end of the response), ``"close"`` (the connection
    is closed after the events) or ``"stall"`` (nothing more is sent, ever); ``pause`` is
    the index of the event before which the stream is silent for ``where.stall_for``
    seconds (a stall that ends), or ``None``.  By default the fault strikes after the
    lead chunks and half the content chunks (of the choices, for ``n`` > 1); ``where.at``
    events otherwise (at most every event but ``[DONE]``).
    """
    if where.at is None:
        cut = lead + (sum(pieces) // 2 if len(pieces) > 1 else pieces[0] // 2)
    else:
        cut = min(where.at, len(events) - 1)
    sent_tokens = max(0, min(cut - lead, tokens))
    if kind in ("stream_cut", "truncated"):
        return events[:cut], sent_tokens, "close", None
    if kind == "stream_error":
        return [*events[:cut], b"event: error\n" + _sse(_STREAM_ERROR)], sent_tokens, "end", None
    if kind == "stream_no_done":
        return events[:-1], tokens, "end", None
    if kind == "stream_stall":
        if where.stall_for is not None:
            return events, tokens, "end", cut
        return events[:cut], sent_tokens, "stall", None
    if kind == "malformed":
        broken = b'data: {"id": "' + stream_id.encode() + b'", "choices": [\n\n'
        return [*events[:cut], broken, *events[cut:]], tokens, "end", None
    return events, tokens, "end", None


def _paced(
    conn: Connection,
    config: MockConfig,
    events: list[bytes],
    ending: str,
    headers: dict[str, str],
    pause: int | None = None,
    stall_for: float | None = None,
) -> Response:
    """``events`` sent after ``ttft``, ``token_delay`` apart (``stall_for`` seconds before
    the event ``pause``), then the ``ending``."""
    entry = conn.entry
    assert entry is not None
    ttft = config.ttft.sample(unit(config.seed, entry.key, entry.attempt, "ttft"))
    token_delay = config.token_delay
    silence = stall_for or 0.0

    async def body() -> AsyncIterator[bytes]:
        if ttft > 0:
            await trio.sleep(ttft)
        for index, event in enumerate(events):
            if index == pause:
                await trio.sleep(silence)
            elif index and token_delay > 0:
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
    where: Where,
) -> Response:
    """A plain request's streamed answer (legacy completions), broken as ``kind`` says."""
    entry = conn.entry
    assert entry is not None
    pieces = list(stream.pieces)
    events, entry.completion_tokens, ending, pause = _inject_stream_fault(
        kind, list(stream.events), pieces, 0, sum(pieces), where, stream.stream_id
    )
    return _paced(conn, config, events, ending, headers, pause, where.stall_for)


def stream_response(
    conn: Connection,
    config: MockConfig,
    chat: ChatRequest,
    replies: list[Reply],
    kind: str,
    ids: tuple[str, int],
    headers: dict[str, str],
    where: Where,
) -> Response:
    """The ``text/event-stream`` answer of ``replies``, broken as ``kind`` says."""
    entry = conn.entry
    assert entry is not None
    completion_id, _created = ids
    events = stream_events(chat, replies, ids, config.seed, kind)
    pieces = [len(reply.pieces) for reply in replies]
    tokens = sum(reply.completion_tokens for reply in replies)
    events, entry.completion_tokens, ending, pause = _inject_stream_fault(
        kind, events, pieces, len(replies), tokens, where, completion_id
    )
    return _paced(conn, config, events, ending, headers, pause, where.stall_for)
