"""The default transport's fast lane: a plain request written as bytes, its answer read raw.

On a client's own :class:`~paradigm_trio.TrioTransport`, ``_http`` sends plain JSON requests
through :meth:`TrioTransport.fetch <paradigm_trio.TrioTransport>` with the bytes a
:class:`FastLane` writes, and reads the answer without building ``httpx2`` requests,
responses or headers: about a third of the client's cost per request before (see
``docs/performance.md``, scenario 8).  Everything else (streams, a user's
``httpx2.AsyncClient``, a transport subclass, origins forwarded to a proxy) takes the
general path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import httpx2

from .._config import Timeouts
from ._exchange import WireTimeouts
from ._transport import Origin, TrioTransport
from ._wire import ProtocolError, check_header

__all__ = ["FastLane", "header_map"]


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Response headers by lower-case name (repeated ones joined, as ``httpx2`` does)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class FastLane:
    """The default transport's fast lane: requests written as bytes, once per request.

    The request line's prefix, the host and the headers every request carries are checked
    and encoded once, when the client opens; each request adds its path, its
    ``Idempotency-Key``, its ``Content-Length`` and its body.  Requests carry the same
    headers as through ``httpx2.Request``.
    """

    __slots__ = ("_common", "_common_no_body", "_prefix", "origin", "transport")

    def __init__(
        self, transport: TrioTransport, origin: Origin, prefix: str, common: list[tuple[str, str]]
    ) -> None:
        self.transport = transport
        self.origin = origin
        self._prefix = prefix
        encoded = [(n.encode("ascii"), v.encode("ascii")) for n, v in common]
        for name, value in encoded:
            check_header(name, value)
        self._common = b"".join(n + b": " + v + b"\r\n" for n, v in encoded)
        self._common_no_body = b"".join(
            n + b": " + v + b"\r\n" for n, v in encoded if n.lower() != b"content-type"
        )

    @classmethod
    def of(cls, direct: object, base_url: str, headers: Mapping[str, str]) -> FastLane | None:
        """The lane for a client's own :class:`TrioTransport`, if it can have one."""
        if type(direct) is not TrioTransport:  # a subclass may do anything
            return None
        try:
            url = httpx2.URL(base_url)
            port = url.port
            scheme = url.scheme
            if scheme not in ("http", "https") or url.query or url.fragment:
                return None
            origin = (scheme, url.host, port or (443 if scheme == "https" else 80))
            if scheme == "http" and direct.forwards(origin):
                return None  # sent to a proxy in absolute form: the general path does it
            # The Host header as httpx2 writes it: IDNA, IPv6 in brackets, a default port
            # left out.
            common = [("Host", url.netloc.decode("ascii")), *headers.items()]
            return cls(direct, origin, url.raw_path.decode("ascii").rstrip("/"), common)
        except (UnicodeError, ProtocolError, ValueError, httpx2.InvalidURL):
            return None  # anything unusual takes the general path, which reports it

    @staticmethod
    def timeouts(timeouts: Timeouts) -> WireTimeouts:
        """``(connect, read, write)`` of the request's :class:`Timeouts`, as the lane's
        exchange applies them (converted here, where they are applied: no cache needed)."""
        connect, read, write = timeouts.connect, timeouts.read, timeouts.write
        return (
            math.inf if connect is None else connect,
            math.inf if read is None else read,
            math.inf if write is None else write,
        )

    def request(self, method: str, url: str, body: bytes | None, key: str) -> bytes | None:
        """The whole request, or ``None`` when it must take the general path."""
        path = url.partition("://")[2].partition("/")[2]
        try:
            target = ("/" + path).encode("ascii")
            idem = key.encode("ascii")
        except UnicodeError:
            return None
        if b" " in target or b"\r" in target or b"\n" in target or b"\r" in idem or b"\n" in idem:
            return None
        if body is None:
            return b"".join([
                method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n", self._common_no_body,
                b"Idempotency-Key: ", idem, b"\r\n\r\n",
            ])  # fmt: skip
        return b"".join([
            method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n", self._common,
            b"Idempotency-Key: ", idem, b"\r\nContent-Length: ", str(len(body)).encode(),
            b"\r\n\r\n", body,
        ])  # fmt: skip
