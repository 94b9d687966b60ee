"""A streamed chat answer: its chunks paced by ``ttft`` and ``token_delay``, and how a
stream fault (``stream_cut``, ``stream_error``, ``stream_stall``...) breaks it."""

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
from ._responses import dumps, linger
from ._transport import Connection

__all__ = ["Where", "stream_response"]

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
    """Where a stream fault strikes: after ``at`` events (``None``: the role chunks and
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
    replies: list[Reply],
    where: Where,
    completion_id: str,
) -> tuple[list[bytes], int, str, int | None]:
    """``(events to send, completion tokens among them, ending, pause)`` of a stream
    drawing ``kind``.

    The ending is ``"end"`` (a clean end of the response), ``"close"`` (the connection
    is closed after the events) or ``"stall"`` (nothing more is sent, ever); ``pause`` is
    the index of the event before which the stream is silent for ``where.stall_for``
    seconds (a stall that ends), or ``None``.  By default the fault strikes after the
    role chunks and half the content chunks (of the choices, for ``n`` > 1); ``where.at``
    events otherwise (at most every event but ``[DONE]``).
    """
    choices = len(replies)
    tokens = sum(reply.completion_tokens for reply in replies)
    if where.at is None:
        # events[:cut] = the role chunks + half the pieces (of one choice when n = 1)
        half = sum(len(reply.pieces) for reply in replies) // 2 if choices > 1 else None
        cut = choices + (len(replies[0].pieces) // 2 if half is None else half)
    else:
        cut = min(where.at, len(events) - 1)
    sent_tokens = max(0, min(cut - choices, tokens))
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
        broken = b'data: {"id": "' + completion_id.encode() + b'", "choices": [\n\n'
        return [*events[:cut], broken, *events[cut:]], tokens, "end", None
    return events, tokens, "end", None


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
    events, entry.completion_tokens, ending, pause = _inject_stream_fault(
        kind, events, replies, where, completion_id
    )
    ttft = config.ttft.sample(unit(config.seed, entry.key, entry.attempt, "ttft"))
    token_delay = config.token_delay
    stall_for = where.stall_for or 0.0

    async def body() -> AsyncIterator[bytes]:
        if ttft > 0:
            await trio.sleep(ttft)
        for index, event in enumerate(events):
            if index == pause:
                await trio.sleep(stall_for)
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
