"""The default HTTP transport: HTTP/1.1 over trio, with an O(1) keep-alive pool.

Why not httpx2's own transport: its connection pool (httpcore2) walks every connection, and
asks each idle one whether its socket is readable, whenever a request enters the pool and
whenever a response closes.  At a few thousand connections that scan is most of the
client's CPU time (see ``docs/performance.md``).  This transport keeps idle connections in
a stack per origin: taking one, checking it and putting it back cost the same at 10 or 10,000
connections.

What it does: HTTP/1.1 (requests written by hand, responses parsed by llhttp through
``httptools``: see ``_wire``), keep-alive, TLS through :class:`trio.SSLStream` with
``httpx2.create_ssl_context()``, the ``connect``/``read``/``write`` timeouts of the request
(``request.extensions["timeout"]``), and httpx2's exception classes, so everything above it
(the client's error mapping, retries) is unchanged.  What it does not do: HTTP/2, proxies,
Unix sockets.  For those, pass your own ``httpx2.AsyncClient`` to :class:`Client`.

Early answers: a server may answer before it has read the whole request body (a 413 for
a body too large, a 401, a 400), then close or reset the connection, or read on and
discard.  That answer is the response: a body larger than 64 KiB is written in pieces
while another task watches for it, and writing stops when it comes; a smaller body whose
write fails is followed by a look for an answer already received.  A connection whose
request body was not written whole is never reused.

How many connections: one per request in flight; the client's
:class:`trio.CapacityLimiter` bounds requests, so it bounds connections.  At most
``max_keepalive`` idle connections are kept, each for ``keepalive_expiry`` seconds.

Cancellation: a request cancelled at any point closes its connection, which is never
reused: there is no slot to leak.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx2
import trio

from ._wire import ProtocolError, ResponseReader, request_head

__all__ = ["Origin", "TrioTransport", "WireTimeouts"]

_READ_SIZE = 65536
_INLINE_BODY = 64 * 1024
"""A request up to this size is written at once; a larger one in pieces (see ``_Upload``)."""
_UPLOAD_PIECE = 64 * 1024
_STOP_GRACE = 0.5
"""Once an early answer is in, how long the piece being written may take to finish (s)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]
WireTimeouts = tuple[float, float, float]
"""``(connect, read, write)`` in seconds, ``inf`` for none."""


class _Connection:
    __slots__ = ("idle_since", "origin", "reader", "reusable", "stream")

    def __init__(self, stream: trio.abc.Stream, origin: Origin) -> None:
        self.stream = stream
        self.origin = origin
        self.reader = ResponseReader()
        self.idle_since = 0.0
        self.reusable = True  # False once a request body was not written whole

    def socket_readable(self) -> bool:
        """Whether the idle socket has something to read: for an idle connection, EOF."""
        stream: Any = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        sock = getattr(stream, "socket", None)
        return sock is None or bool(sock.is_readable())

    async def close(self) -> None:
        await trio.aclose_forcefully(self.stream)

    def close_nowait(self) -> None:
        """Close the socket at once (for an idle connection: nothing to flush)."""
        stream: Any = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        sock = getattr(stream, "socket", None)
        if sock is not None:
            sock.close()


def _timeout(timeouts: Mapping[str, Any], name: str) -> float:
    value = timeouts.get(name)
    return math.inf if value is None else float(value)


def wire_timeouts(timeouts: Mapping[str, Any]) -> WireTimeouts:
    """``(connect, read, write)`` of an ``httpx2`` timeout extension."""
    return _timeout(timeouts, "connect"), _timeout(timeouts, "read"), _timeout(timeouts, "write")


class TrioTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 over trio (responses parsed by llhttp) with a constant-time keep-alive pool.

    A server's answer sent before it has read the whole request body (a 413 for a body
    too large, a 401) is returned as the response, and the rest of the body is not sent.

    Args:
        max_keepalive: idle connections kept for reuse, over all origins.
        keepalive_expiry: seconds an idle connection is kept (below the usual 5 s of
            servers, so that the server's close and our reuse rarely cross).
        ssl_context: for ``https``; ``httpx2.create_ssl_context()`` by default.  To trust
            a private or corporate CA: ``ssl.create_default_context(cafile="ca.pem")``.
    """

    def __init__(
        self,
        *,
        max_keepalive: int = 100,
        keepalive_expiry: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_keepalive = max_keepalive
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        idle = [conn for conns in self._idle.values() for conn in conns]
        self._idle.clear()
        self._idle_count = 0
        for conn in idle:
            await conn.close()
        await trio.lowlevel.checkpoint()

    # ---------------------------------------------------------------- the pool

    def _checkout(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = trio.current_time()
        while stack:
            conn = stack.pop()
            self._idle_count -= 1
            if now - conn.idle_since < self._keepalive_expiry and not conn.socket_readable():
                return conn
            # expired, or the server closed it: drop it (closing needs no wait)
            conn.close_nowait()
        return None

    def _checkin(self, conn: _Connection) -> bool:
        """Keep a connection whose exchange completed cleanly; ``False`` if not kept."""
        if (
            self._closed
            or not conn.reusable
            or not conn.reader.reusable
            or self._idle_count >= self._max_keepalive
        ):
            return False
        conn.idle_since = trio.current_time()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._idle_count += 1
        return True

    async def _connect(self, origin: Origin, connect_timeout: float) -> _Connection:
        scheme, host, port = origin
        try:
            with trio.fail_after(connect_timeout):
                stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
                if scheme == "https":
                    if self._ssl_context is None:
                        self._ssl_context = httpx2.create_ssl_context()
                    ssl_stream = trio.SSLStream(
                        stream, self._ssl_context, server_hostname=host, https_compatible=True
                    )
                    try:
                        await ssl_stream.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(ssl_stream)
                        raise
                    stream = ssl_stream
        except trio.TooSlowError:
            raise httpx2.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            # trio wraps a TLS failure (an unverified certificate...) in a BrokenResourceError
            # with no message of its own: the reason is its cause.
            reason = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else None
            reason = reason or exc
            raise httpx2.ConnectError(
                f"cannot connect to {host}:{port}: {str(reason) or type(reason).__name__}"
            ) from reason
        return _Connection(stream, origin)

    # ---------------------------------------------------------------- one exchange

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts = wire_timeouts(request.extensions.get("timeout", {}))
        data = await _request_bytes(request)
        conn = await self._open(origin, timeouts[0])
        try:
            conn.reader.start(no_body=request.method == "HEAD")
            await _exchange(conn, data, timeouts)
        except BaseException:
            await conn.close()
            raise
        reader = conn.reader
        return httpx2.Response(
            status_code=reader.status,
            headers=reader.headers,
            stream=_ResponseStream(self, conn, timeouts[1]),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reader.reason},
        )

    async def fetch(
        self,
        origin: Origin,
        data: bytes,
        timeouts: WireTimeouts,
        on_head: Callable[[int, list[tuple[bytes, bytes]]], None],
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One whole exchange, without ``httpx2`` objects: the client's fast lane.

        ``data`` is the whole request (:func:`~paradigm_trio._wire.request_head` and the
        body).  ``on_head(status, headers)`` is called when the response head arrives (a
        body that breaks afterwards still had a response); returns the status, the headers
        and the whole body.  Raises the same ``httpx2`` exceptions as
        :meth:`handle_async_request`.
        """
        if self._closed:
            raise RuntimeError("the transport is closed")
        conn = await self._open(origin, timeouts[0])
        reader = conn.reader
        try:
            reader.start()
            await _exchange(conn, data, timeouts)
            on_head(reader.status, reader.headers)
            parts = [reader.take_body()]
            while not reader.complete:
                await _receive(conn, timeouts[1])
                parts.append(reader.take_body())
        except BaseException:
            await conn.close()
            raise
        if not self._checkin(conn):
            await conn.close()
        return reader.status, reader.headers, parts[0] if len(parts) == 1 else b"".join(parts)

    async def _open(self, origin: Origin, connect_timeout: float) -> _Connection:
        """A pooled connection to ``origin``, or a new one."""
        # Checkpoint before taking a pooled connection: nothing may be cancelled between
        # taking it and the ``try`` that closes it on failure.
        await trio.lowlevel.checkpoint()
        conn = self._checkout(origin)
        if conn is None:
            conn = await self._connect(origin, connect_timeout)
        return conn


async def _exchange(conn: _Connection, data: bytes, timeouts: WireTimeouts) -> None:
    """Send the request and read the response head, which may come before the body is
    sent (see the module docstring)."""
    _, read_timeout, write_timeout = timeouts
    if len(data) > _INLINE_BODY:
        await _Upload(conn, data).run(write_timeout, read_timeout)
        return
    try:
        await _write(conn, data, write_timeout)
    except httpx2.WriteError as exc:
        # Closed or reset while we wrote: the server may have answered first.
        conn.reusable = False
        try:
            await _response_head(conn, read_timeout)
        except httpx2.TransportError:
            raise exc from exc.__cause__
        return
    await _response_head(conn, read_timeout)


async def _request_bytes(request: httpx2.Request) -> bytes:
    """The whole request (head and body) of an ``httpx2.Request``."""
    try:
        content: bytes | None = request.content
    except httpx2.RequestNotRead:
        content = None
    headers = request.headers.raw
    if content is None:  # a streamed body: sent whole, framed as the headers say
        stream: Any = request.stream
        content = b"".join([bytes(chunk) async for chunk in stream])
        if any(n.lower() == b"transfer-encoding" for n, _ in headers):
            content = (
                (b"%x\r\n%s\r\n0\r\n\r\n" % (len(content), content)) if content else b"0\r\n\r\n"
            )
        elif not any(n.lower() == b"content-length" for n, _ in headers):
            headers = [*headers, (b"Content-Length", str(len(content)).encode())]
    try:
        return request_head(request.method.encode(), url_target(request.url), headers) + content
    except ProtocolError as exc:
        raise httpx2.LocalProtocolError(str(exc)) from None


async def _write(conn: _Connection, data: bytes | memoryview, write_timeout: float) -> None:
    # A bare CancelScope, not trio.fail_after: this is on every request's path.
    try:
        with trio.CancelScope(deadline=trio.current_time() + write_timeout) as scope:
            await conn.stream.send_all(data)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise httpx2.WriteError(f"sending the request failed: {exc}") from exc
    if scope.cancelled_caught:
        raise httpx2.WriteTimeout("sending the request timed out")


async def _response_head(conn: _Connection, read_timeout: float) -> None:
    """Read until the final response head is in (interim 1xx responses skipped)."""
    reader = conn.reader
    while not reader.head:
        await _receive(conn, read_timeout)


class _Upload:
    """A large request body, written in pieces while a second task watches for the answer.

    Written in one piece, a body the server refuses early is a broken pipe, or a write
    timeout, and the answer explaining it is lost.  Here the answer stops the writing
    (the piece under way may finish within ``_STOP_GRACE``) and is returned; after a
    write failure, an answer the server sent before closing is returned too.
    """

    def __init__(self, conn: _Connection, data: bytes) -> None:
        self._conn = conn
        self._data = memoryview(data)
        self._answered_head = False
        self._failure: httpx2.TransportError | None = None  # the watcher's
        self._answered = trio.Event()  # set when the watcher is done, either way
        self._writing = trio.CancelScope()

    async def run(self, write_timeout: float, read_timeout: float) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch)
                error = await self._write_all(write_timeout)
                if not isinstance(error, httpx2.WriteTimeout):
                    # Written, or closed or reset by the server: its answer may be coming.
                    with trio.move_on_after(read_timeout):
                        await self._answered.wait()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Both tasks keep their own failures: only cancellation (or a
            # KeyboardInterrupt) gets here.  Raise it as one exception.
            raise _one(group) from None
        if self._answered_head:
            return
        if error is not None:
            raise error
        if self._failure is not None:
            raise self._failure
        raise httpx2.ReadTimeout("no data from the server within the read timeout")

    async def _write_all(self, write_timeout: float) -> httpx2.TransportError | None:
        """Write the body until done or answered; the write failure, if any."""
        data, sent = self._data, 0
        try:
            with self._writing:
                while sent < len(data) and not self._answered.is_set():
                    await _write(self._conn, data[sent : sent + _UPLOAD_PIECE], write_timeout)
                    sent += _UPLOAD_PIECE
        except (httpx2.WriteError, httpx2.WriteTimeout) as exc:
            return exc
        finally:
            if sent < len(data):
                self._conn.reusable = False
        return None

    async def _watch(self) -> None:
        """Read the response head.  No read timeout while the body is being written: a
        server may rightly say nothing until it has read all of it."""
        try:
            await _response_head(self._conn, math.inf)
            self._answered_head = True
        except httpx2.TransportError as exc:
            self._failure = exc
        self._answered.set()
        self._writing.deadline = min(self._writing.deadline, trio.current_time() + _STOP_GRACE)


def _one(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to raise for a group: the first that is not ``Cancelled``, if any."""
    leaves = group.exceptions
    return next((e for e in leaves if not isinstance(e, trio.Cancelled)), leaves[0])


def url_target(url: httpx2.URL) -> bytes:
    """The request target: the path and query, as bytes."""
    return url.raw_path


async def _receive(conn: _Connection, read_timeout: float) -> None:
    """Receive what the server sent next and parse it (the close, too)."""
    data: bytes | bytearray = b""
    try:
        with trio.CancelScope(deadline=trio.current_time() + read_timeout) as scope:
            data = await conn.stream.receive_some(_READ_SIZE)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise httpx2.ReadError(f"reading the response failed: {exc}") from exc
    if scope.cancelled_caught:
        raise httpx2.ReadTimeout("no data from the server within the read timeout")
    try:
        if data:
            conn.reader.feed(data if isinstance(data, bytes) else bytes(data))
        else:
            conn.reader.feed_eof()
    except ProtocolError as exc:
        raise httpx2.RemoteProtocolError(str(exc)) from None


class _ResponseStream(httpx2.AsyncByteStream):
    """The body of one response; gives the connection back to the pool when complete.

    An iterator object rather than an async generator, so that leaving a body half-read
    leaves no generator to finalise.
    """

    def __init__(self, transport: TrioTransport, conn: _Connection, read_timeout: float) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._read_timeout = read_timeout
        self._complete = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None or self._complete:
            raise StopAsyncIteration
        reader = conn.reader
        while True:
            body = reader.take_body()
            if body:
                return body
            if reader.complete:
                self._complete = True
                raise StopAsyncIteration
            try:
                await _receive(conn, self._read_timeout)
            except BaseException:
                await self.aclose()
                raise

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            await trio.lowlevel.checkpoint()
            return
        if self._complete and self._transport._checkin(conn):
            await trio.lowlevel.checkpoint()
            return
        await conn.close()
