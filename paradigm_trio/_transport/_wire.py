"""HTTP/1.1 messages for :class:`~paradigm_trio.TrioTransport`: no I/O here.

Requests are written by hand: a request line, the headers (checked once, where they come
from: a header name must be a token and no value may hold CR, LF or NUL) and a
``Content-Length`` body.  Responses are parsed by llhttp, the C parser of Node.js, through
``httptools`` (MagicStack's binding, as used by uvicorn).  Against h11, which did both
before, one request and response cycle costs about a twentieth of the CPU (2.6 against 69
microseconds on the benchmark machine, ``docs/performance.md``), and llhttp is as strict
about what it accepts.

A :class:`ResponseReader` follows the responses of one connection: interim ``1xx``
responses are skipped, the body is kept as it arrives (``Content-Length``, chunked, or
until the connection closes), and :attr:`ResponseReader.reusable` says whether the
connection may carry another request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

import httptools

__all__ = ["ProtocolError", "ResponseReader", "check_header", "request_head"]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_NOT_YET = cast("list[Any]", ())
"""A response's headers and body before its first byte: empty, and never appended to
(a tuple: ``on_message_begin`` gives the response its own lists first)."""


class ProtocolError(Exception):
    """The server's bytes are not HTTP/1.1, or a header we would send is malformed."""


def check_header(name: bytes, value: bytes) -> None:
    """Refuse a header that would break the request (or smuggle another one)."""
    if _TOKEN.fullmatch(name) is None:
        raise ProtocolError(f"invalid header name {name!r}")
    if _BAD_VALUE.search(value) is not None:
        raise ProtocolError(f"invalid value for header {name.decode('latin-1')!r}")


def request_head(
    method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], *, checked: bool = False
) -> bytes:
    """The request line and headers, ending with the blank line.

    ``headers`` must hold ``Host`` and the framing (``Content-Length`` or
    ``Transfer-Encoding``); with ``checked=False`` each is checked by :func:`check_header`.
    """
    if _TOKEN.fullmatch(method) is None or _BAD_VALUE.search(target) or b" " in target:
        raise ProtocolError(f"invalid request line {method!r} {target!r}")
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if not checked:
            check_header(name, value)
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class ResponseReader:
    """The responses of one connection, one at a time, parsed as their bytes arrive.

    After :meth:`start` (a request was sent), :meth:`feed` the bytes received: once
    :attr:`head` is set, :attr:`status`, :attr:`reason` and :attr:`headers` hold the final
    response's head; :meth:`take_body` returns the body received so far; :attr:`complete`
    turns true at the end of the body.  :meth:`feed_eof` is the connection closing.
    """

    __slots__ = (
        "_body",
        "_no_body",
        "_parser",
        "_until_eof",
        "complete",
        "extra",
        "head",
        "headers",
        "keep_alive",
        "reason",
        "status",
    )

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.start()

    def start(self, *, no_body: bool = False) -> None:
        """Expect a new response (``no_body``: to a ``HEAD`` request)."""
        self.head = False
        self.complete = False
        self.extra = False  # bytes after the end of the response
        self.status = 0
        self.reason = b""
        # Their lists come with the response's first byte (``on_message_begin``), not
        # here: the connection's reader holds them while the request waits for its answer.
        self.headers: list[tuple[bytes, bytes]] = _NOT_YET
        self.keep_alive = False
        self._body: list[bytes] = _NOT_YET
        self._until_eof = False
        self._no_body = no_body

    @property
    def reusable(self) -> bool:
        """Whether the connection may carry another request after this response."""
        return self.complete and self.keep_alive and not self.extra and not self._no_body

    def feed(self, data: bytes) -> None:
        """Parse bytes received (raises :class:`ProtocolError` on bytes that are not HTTP)."""
        if self.complete:
            if data:
                self.extra = True  # nothing may follow a response we did not ask for
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self._ended():  # (the callbacks may have ended the response meanwhile)
                raise ProtocolError(f"the server's response is not valid HTTP/1.1: {exc}") from None
            self.extra = True

    def _ended(self) -> bool:
        return self.complete

    def feed_eof(self) -> None:
        """The server closed the connection: the end of a body read until the close, or
        else a response cut short (:class:`ProtocolError`)."""
        if self.complete:
            return
        if self.head and self._until_eof:
            self.complete = True
            self.keep_alive = False
            return
        if self.head:
            raise ProtocolError("the server closed the connection before the end of the body")
        raise ProtocolError("the server closed the connection without sending a response")

    def take_body(self) -> bytes:
        """The body bytes received since the last call."""
        body = self._body
        if not body:
            return b""
        self._body = []
        return body[0] if len(body) == 1 else b"".join(body)

    # ---------------------------------------------------------------- llhttp callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True
        else:
            self.headers = []
            self._body = []

    def on_status(self, status: bytes) -> None:
        if not self.head:
            self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self.reason = b""  # an interim response: its headers are not the response's
            self.headers = []
            return
        self.status = status
        self.head = True
        self.keep_alive = self._parser.should_keep_alive()
        lowered = {name.lower() for name, _ in self.headers}
        self._until_eof = (
            b"content-length" not in lowered
            and b"transfer-encoding" not in lowered
            and status not in (204, 304)
        )
        if self._no_body:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if self._no_body or self.complete:
            # After a CONNECT's answer: the tunnel's first bytes; after the end of the
            # response: another's body, which must not be taken for more of this one.
            self.extra = True
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self.head:
            self.complete = True
