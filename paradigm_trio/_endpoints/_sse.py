"""An incremental parser of Server-Sent Events (``text/event-stream``): no I/O at all.

Feed it bytes as they arrive with :meth:`SSEDecoder.feed`; it returns the events each piece
completes.  Our own parser because it works on bytes, so events may be split anywhere,
even inside a multi-byte UTF-8 character, and because it knows when the stream ended in the
middle of an event, which ``httpx2``'s event source silently drops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecodeError", "SSEDecoder", "ServerSentEvent"]

DEFAULT_MAX_EVENT_SIZE: Final = 16 * 1024 * 1024
"""The largest event (or unterminated line) the decoder buffers, in bytes."""

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM: Final = "\ufeff"
_BOM_BYTES: Final = _BOM.encode()


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched server-sent event."""

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None


class SSEDecodeError(ValueError):
    """The event stream cannot be parsed (an event larger than the limit)."""


class SSEDecoder:
    """An incremental parser of ``text/event-stream`` bytes (the WHATWG algorithm).

    Feed it the body in pieces of any size with :meth:`feed`; it returns the events each
    piece completes.  Lines end with CRLF, LF or CR (a CRLF split between two pieces counts
    once); lines are decoded as UTF-8 only once complete, so a piece may end inside a
    multi-byte character.  A leading byte order mark is ignored, ``:`` lines are comments,
    ``data:`` lines of one event are joined with ``\\n``.  An event is dispatched at a blank
    line when it has a ``data`` line or an ``event`` name (the standard asks for data only;
    an ``event: error`` without data is still worth reporting).

    At the end of the body, :attr:`mid_event` tells whether the stream stopped inside an
    event (bytes of an unterminated line, or fields not yet followed by a blank line): a
    truncated stream, whose last event the standard says to drop.
    """

    __slots__ = (
        "_buffer",
        "_data",
        "_event",
        "_event_size",
        "_in_event",
        "_last_id",
        "_max_event_size",
        "_retry",
        "_skip_lf",
        "_started",
        "bytes_received",
    )

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._max_event_size = max_event_size
        self._buffer = bytearray()
        self._skip_lf = False
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._last_id = ""
        self._retry: int | None = None
        self._in_event = False
        self._event_size = 0
        self.bytes_received = 0
        """Bytes fed so far."""

    @property
    def mid_event(self) -> bool:
        """Whether the bytes fed so far stop inside an event (or an unterminated line)."""
        if not self._started and _BOM_BYTES.startswith(self._buffer):
            return False  # nothing, or (part of) the byte order mark
        return bool(self._buffer) or self._in_event

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Parse the next piece of the body; return the events it completes, in order.

        Raises:
            SSEDecodeError: an event or line exceeds ``max_event_size`` bytes.
        """
        self.bytes_received += len(data)
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
        if not data:
            return []
        buffer = self._buffer
        buffer += data
        events: list[ServerSentEvent] = []
        start = 0
        for match in _EOL.finditer(buffer):
            self._line(bytes(buffer[start : match.start()]), events)
            start = match.end()
        if start:
            # A lone CR at the very end may be the first half of a CRLF.
            self._skip_lf = start == len(buffer) and buffer[-1] == 0x0D
            del buffer[:start]
        if len(buffer) + self._event_size > self._max_event_size:
            raise SSEDecodeError(
                f"a server-sent event exceeds the {self._max_event_size}-byte limit"
            )
        return events

    def _line(self, raw: bytes, events: list[ServerSentEvent]) -> None:
        line = raw.decode("utf-8", "replace")
        if not self._started:
            self._started = True
            if line.startswith(_BOM):
                line = line[1:]
        if not line:
            if self._data or self._event:
                events.append(
                    ServerSentEvent(
                        self._event or "message", "\n".join(self._data), self._last_id, self._retry
                    )
                )
            self._event = ""
            self._data = []
            self._retry = None
            self._in_event = False
            self._event_size = 0
            return
        if line[0] == ":":
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        self._in_event = True
        self._event_size += len(raw) + 1
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
