"""The default HTTP transport: HTTP/1.1 over trio, with an O(1) keep-alive pool.

Why not httpx2's own transport: its connection pool (httpcore2) walks every connection, and
asks each idle one whether its socket is readable, whenever a request enters the pool and
whenever a response closes.  At a few thousand connections that scan is most of the
client's CPU time (see ``docs/performance.md``).  This transport keeps idle connections in
a stack per origin (``_pool``): taking one, checking it and putting it back cost the same
at 10 or 10,000 connections.  Host names are looked up once per minute, not once per
connection (``_resolve``).

What it does: HTTP/1.1 (requests written by hand, responses parsed by llhttp through
``httptools``: see ``_wire``), keep-alive, TLS through :class:`trio.SSLStream` with
httpx2's ``verify=``/``cert=``/``trust_env`` (``_tls``), HTTP proxies with httpx2's rules
(``_proxies``), the ``connect``/``read``/``write`` timeouts of the request
(``request.extensions["timeout"]``), and httpx2's exception classes, so everything above it
(the client's error mapping, retries) is unchanged.  What it does not do: HTTP/2, SOCKS
proxies, Unix sockets.  For those, pass your own ``httpx2.AsyncClient`` to :class:`Client`.

Proxies: an ``https`` URL goes through a ``CONNECT`` tunnel, with TLS to the origin inside
it; an ``http`` URL is sent to the proxy in absolute form (``GET http://host/path``).  An
``https://`` proxy URL adds TLS to the proxy (TLS inside TLS for ``https`` URLs).  The
proxy's credentials go to the proxy only (``Proxy-Authorization``), never to the origin.
A tunnel is a connection like any other: kept alive and reused, so a batch opens as many
tunnels as it has requests in flight, not one per request.  The pool is keyed by origin,
and each origin always takes the same route, so it is in effect keyed by (proxy, origin).

Early answers: a server may answer before it has read the whole request body (a 413 for
a body too large, a 401, a 400), then close or reset the connection, or read on and
discard.  That answer is the response: a body larger than 64 KiB is written in pieces
while another task watches for it, and writing stops when it comes; a smaller body whose
write fails is followed by a look for an answer already received.  A connection whose
request body was not written whole is never reused.

How many connections: one per request in flight; the client's
:class:`trio.CapacityLimiter` bounds requests, so it bounds connections.  At most
``max_keepalive`` idle connections are kept, each for ``keepalive_expiry`` seconds.
:meth:`TrioTransport.warm_up` opens them ahead of the requests (a batch's first wave).

Cancellation: a request cancelled at any point closes its connection, which is never
reused: there is no slot to leak.

Plain TCP connections (no TLS) keep their stdlib socket (``_pool._plain``): a request the
socket takes at once is written with one ``send``, and an answer already there is read
with one ``recv``, without trio's stream layers; only a wait goes through trio
(``trio.lowlevel.wait_readable``, under the read timeout's cancel scope).  Every exchange
still checkpoints, as trio's own ``receive_some`` does.  TLS connections go through
:class:`trio.SSLStream` as before.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx2
import trio

from ._dial import (
    ProxyRefused,
    Report,
    authority,
    open_tcp,
    quiet,
    start_tls,
    tunnel,
)
from ._errors import ConfigurationError
from ._pool import Connection, Origin, Pool
from ._proxies import ProxyRoute, ProxyRules, ProxyTypes
from ._resolve import Resolver
from ._tls import CertTypes, VerifyTypes, check_environment, ssl_context
from ._wire import ProtocolError, request_head

__all__ = ["Origin", "TrioTransport", "WireTimeouts"]

logger = logging.getLogger("paradigm_trio")

_READ_SIZE = 65536
_INLINE_BODY = 64 * 1024
"""A request up to this size is written at once; a larger one in pieces (see ``_Upload``)."""
_UPLOAD_PIECE = 64 * 1024
_STOP_GRACE = 0.5
"""Once an early answer is in, how long the piece being written may take to finish (s)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}

WireTimeouts = tuple[float, float, float]
"""``(connect, read, write)`` in seconds, ``inf`` for none."""


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
        verify: which servers to trust, as in httpx2: ``True`` (the default CA
            certificates, or ``$SSL_CERT_FILE``/``$SSL_CERT_DIR`` under ``trust_env``),
            the path of a CA bundle (a PEM file, or a folder of hashed certificates), an
            :class:`ssl.SSLContext` (such as :func:`system_trust_store`), or ``False``:
            no verification, which logs a warning (logger ``paradigm_trio``).
        cert: a client certificate for servers that require one (mutual TLS): a PEM
            file holding the certificate and its key, ``(certificate, key)``, or
            ``(certificate, key, password)``.
        trust_env: read the proxy (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
            ``NO_PROXY``) and CA (``SSL_CERT_FILE``, ``SSL_CERT_DIR``) environment
            variables, as httpx2 does.
        proxy: send every request through this proxy (``http://user:pass@host:3128``,
            ``https://...`` for TLS to the proxy, or an ``httpx2.Proxy``); the
            environment's proxy variables are then ignored.  An ``https://`` proxy is
            verified with ``Proxy(ssl_context=...)`` if given, else with ``verify``.
        ssl_context: the older name of ``verify=<ssl.SSLContext>``.

    Raises:
        ConfigurationError: a CA bundle or certificate that cannot be loaded, a proxy URL
            that is not ``http://`` or ``https://``, or both ``verify`` and ``ssl_context``.
    """

    def __init__(
        self,
        *,
        max_keepalive: int = 100,
        keepalive_expiry: float = 4.0,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        proxy: ProxyTypes | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if ssl_context is not None:
            if verify is not True:
                raise ConfigurationError("pass verify= or ssl_context= (its older name), not both")
            verify = ssl_context
        self._tls_args = (verify, cert, trust_env)
        self._ssl_context: ssl.SSLContext | None = None
        if verify is not True or cert is not None:
            self._ssl_context = self._context()  # a bad file is refused now
        elif trust_env:
            check_environment()  # the default context is built at the first https connection
        self._proxies = ProxyRules(proxy, trust_env=trust_env)
        self._pool = Pool(max_keepalive, keepalive_expiry)
        self._resolver = Resolver()
        if verify is False:
            logger.warning(
                "TLS certificate verification is OFF (verify=False): anyone on the network "
                "path can read and change this client's traffic, its API key included. To "
                "trust a private CA instead, pass verify='ca-bundle.pem'."
            )

    def __repr__(self) -> str:
        verify = self._tls_args[0]
        shown = verify if isinstance(verify, bool) else type(verify).__name__
        if isinstance(verify, str | os.PathLike):
            shown = os.fspath(verify)
        return f"<TrioTransport verify={shown!r} proxies={self._proxies!r}>"

    def _context(self) -> ssl.SSLContext:
        """The SSL context for servers (built on first use for the default settings)."""
        if self._ssl_context is None:
            self._ssl_context = ssl_context(*self._tls_args[:2], trust_env=self._tls_args[2])
        return self._ssl_context

    def forwards(self, origin: Origin) -> bool:
        """Whether requests to ``origin`` go to a proxy (in absolute form, not tunnelled)."""
        scheme, host, port = origin
        return scheme == "http" and self._proxies.route_for(scheme, host, port) is not None

    def explain_route(self, url: str | httpx2.URL) -> str:
        """How a request to ``url`` would go: directly, or through which proxy and why.

        For example ``"through the proxy http://proxy.example:3128 (from HTTPS_PROXY)"``
        or ``"direct (NO_PROXY entry '.corp.example')"``.  Credentials are never shown.
        """
        return self._proxies.explain(url)

    async def warm_up(
        self,
        url: str | httpx2.URL,
        connections: int,
        *,
        connect_timeout: float | None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Open connections to ``url``'s server now, for the requests to come.

        Opens, all at once, ``connections`` less the usable idle connections kept for
        that server and those being opened (never more than the pool keeps:
        ``max_keepalive``), each as a request would (through the proxy, with TLS), within
        ``connect_timeout`` seconds (``None``: no limit).  A request that finds no idle
        connection meanwhile takes one being opened, if it will be open within the
        request's own ``connect`` timeout, rather than open its own; the others are kept
        idle.  One that cannot be opened raises nothing here: the request that took it,
        if any, gets the error it would have got opening it itself.  Logs what it did at
        DEBUG (logger ``paradigm_trio``, event ``connections_warmed``).  Cancelling it
        cancels the connections being opened.

        ``await nursery.start(partial(transport.warm_up, url, n, connect_timeout=10))``
        returns once the connections are being opened, and opens them in the background.

        Returns:
            How many connections were opened (kept, or taken by requests).

        Raises:
            httpx2.UnsupportedProtocol: ``url`` is not ``http://`` or ``https://``.
            ValueError: ``connections`` is negative.
            RuntimeError: the transport is closed.
        """
        parsed = httpx2.URL(url)
        if parsed.scheme not in _DEFAULT_PORTS:
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {parsed.scheme!r}")
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 0:
            raise ValueError(f"connections must be an int >= 0, got {connections!r}")
        if self._pool.closed:
            raise RuntimeError("the transport is closed")
        origin = (parsed.scheme, parsed.host, parsed.port or _DEFAULT_PORTS[parsed.scheme])
        timeout = math.inf if connect_timeout is None else connect_timeout
        return await self._pool.fill(
            origin, connections, lambda: self._connect(origin, timeout),
            trio.current_time() + timeout, task_status,
        )  # fmt: skip

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
        for conn in self._pool.close():
            await conn.close()
        await trio.lowlevel.checkpoint()

    # ---------------------------------------------------------------- connections

    async def _connect(
        self, origin: Origin, connect_timeout: float, report: Report | None = None
    ) -> Connection:
        """A new connection to ``origin``, directly or through its proxy.

        Blocks for the TCP connection, then the ``CONNECT`` and the TLS handshakes, all
        within the ``connect`` timeout.
        """
        scheme, host, port = origin
        route = self._proxies.route_for(scheme, host, port)
        hop = authority(host, port) + ("" if route is None else f" through the proxy {route.url}")
        say = report or quiet
        try:
            with trio.fail_after(connect_timeout):
                if route is None:
                    stream = await open_tcp(host, port, None, say, self._resolver.open_tcp_stream)
                    if scheme == "https":
                        stream = await start_tls(stream, host, port, self._context(), None, say)
                else:
                    stream = await self._through(route, origin, say)
        except trio.TooSlowError:
            raise httpx2.ConnectTimeout(f"connecting to {hop} timed out") from None
        conn = Connection(stream, origin, route if route is not None and scheme == "http" else None)
        if scheme == "https" and self._tls_args[1] is None:
            # A server requiring a client certificate checks it after a TLS 1.3 handshake
            # has succeeded for us, then closes: say what it may mean.
            conn.hint = (
                " (just after the TLS handshake: if the server requires a client "
                "certificate, give it with cert=, or --client-cert on the command line)"
            )
        return conn

    async def _through(self, route: ProxyRoute, origin: Origin, say: Report) -> trio.abc.Stream:
        """A stream to ``origin`` through the proxy of ``route``: to the proxy itself for
        an ``http`` origin, a ``CONNECT`` tunnel with TLS inside for an ``https`` one."""
        scheme, host, port = origin
        stream = await open_tcp(route.host, route.port, route, say, self._resolver.open_tcp_stream)
        try:
            if route.tls:
                context = route.ssl_context or self._context()
                stream = await start_tls(stream, route.host, route.port, context, route, say)
            if scheme == "https":
                await tunnel(stream, route, host, port, say)
                stream = await start_tls(stream, host, port, self._context(), None, say)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    # ---------------------------------------------------------------- one exchange

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._pool.closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts = wire_timeouts(request.extensions.get("timeout", {}))
        conn = await self._open(origin, timeouts[0])
        try:
            data = await _request_bytes(conn, request)
            conn.reader.start(no_body=request.method == "HEAD")
            await _exchange(conn, data, timeouts)
            if conn.reader.status == 407 and conn.forward is not None:
                raise _refused(conn.forward, url)
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

        ``data`` is the whole request (its head, as ``_wire.request_head`` writes it, and
        its body).  ``on_head(status, headers)`` is called when the response head arrives (a
        body that breaks afterwards still had a response); returns the status, the headers
        and the whole body.  Raises the same ``httpx2`` exceptions as
        ``handle_async_request``.
        """
        if self._pool.closed:
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
        if not self._pool.checkin(conn):
            await conn.close()
        return reader.status, reader.headers, parts[0] if len(parts) == 1 else b"".join(parts)

    async def _open(self, origin: Origin, connect_timeout: float) -> Connection:
        """A pooled connection to ``origin``, or a new one."""
        # A pending cancellation is raised before a pooled connection is taken, so it never
        # closes an idle connection.  (No full checkpoint: the write that follows is one.)
        await trio.lowlevel.checkpoint_if_cancelled()
        conn = self._pool.checkout(origin)
        if conn is None:
            # One that a warm-up is opening, else a new one.
            conn = await self._pool.claimed(origin, trio.current_time() + connect_timeout)
            if conn is None:
                conn = await self._connect(origin, connect_timeout)
        return conn


async def _exchange(conn: Connection, data: bytes, timeouts: WireTimeouts) -> None:
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


async def _request_bytes(conn: Connection, request: httpx2.Request) -> bytes:
    """The whole request (head and body) of an ``httpx2.Request`` (in absolute form, with
    the proxy's headers, for a proxy that forwards ``http`` requests)."""
    try:
        content: bytes | None = request.content
    except httpx2.RequestNotRead:
        content = None
    headers = list(request.headers.raw)
    if conn.forward is not None:
        headers.extend(conn.forward.headers)
    target = url_target(request.url, absolute=conn.forward is not None)
    if content is None:  # a streamed body: sent whole, framed as the headers say
        stream: Any = request.stream
        content = b"".join([bytes(chunk) async for chunk in stream])
        if any(n.lower() == b"transfer-encoding" for n, _ in headers):
            content = (
                (b"%x\r\n%s\r\n0\r\n\r\n" % (len(content), content)) if content else b"0\r\n\r\n"
            )
        elif not any(n.lower() == b"content-length" for n, _ in headers):
            headers.append((b"Content-Length", str(len(content)).encode()))
    try:
        return request_head(request.method.encode(), target, headers) + content
    except ProtocolError as exc:
        raise httpx2.LocalProtocolError(str(exc)) from None


async def _write(conn: Connection, data: bytes | memoryview, write_timeout: float) -> None:
    raw = conn.raw
    if raw is not None:  # plain TCP: what the socket takes at once needs no wait
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sent = raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise httpx2.WriteError(f"sending the request failed: {exc}") from exc
        if sent == len(data):
            return
        data = memoryview(data)[sent:]
    # A bare CancelScope, not trio.fail_after: this is on every request's path.
    try:
        with trio.CancelScope(deadline=trio.current_time() + write_timeout) as scope:
            await conn.stream.send_all(data)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise httpx2.WriteError(f"sending the request failed: {exc}") from exc
    if scope.cancelled_caught:
        raise httpx2.WriteTimeout("sending the request timed out")


async def _response_head(conn: Connection, read_timeout: float) -> None:
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

    def __init__(self, conn: Connection, data: bytes) -> None:
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


def url_target(url: httpx2.URL, absolute: bool = False) -> bytes:
    """The request target: the path and query, as bytes (with the scheme and host before
    them, for a proxy: ``absolute``)."""
    if absolute:
        return url.scheme.encode("ascii") + b"://" + url.netloc + url.raw_path
    return url.raw_path


def _refused(route: ProxyRoute, url: httpx2.URL) -> ProxyRefused:
    target = authority(url.host, url.port or _DEFAULT_PORTS[url.scheme])
    return ProxyRefused(
        f"the proxy {route.url} refused the request to {target}: 407 Proxy Authentication Required",
        proxy=str(route.url),
        status=407,
        target=target,
    )


async def _receive(conn: Connection, read_timeout: float) -> None:
    """Receive what the server sent next and parse it (the close, too)."""
    raw = conn.raw
    data: bytes | bytearray = b""
    try:
        if raw is None:
            data = await _receive_some(conn.stream, read_timeout)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                data = raw.recv(_READ_SIZE)
            except BlockingIOError:
                data = await _wait_and_receive(raw, read_timeout)
            else:  # (a checkpoint all the same, as trio's own ``receive_some`` makes)
                await trio.lowlevel.cancel_shielded_checkpoint()
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise httpx2.ReadError(f"reading the response failed: {exc}") from exc
    try:
        if data:
            conn.reader.feed(data if isinstance(data, bytes) else bytes(data))
        else:
            conn.reader.feed_eof()
    except ProtocolError as exc:
        hint = "" if conn.reader.head else conn.hint
        raise httpx2.RemoteProtocolError(str(exc) + hint) from None


async def _receive_some(stream: trio.abc.Stream, read_timeout: float) -> bytes | bytearray:
    # A bare CancelScope, not trio.fail_after: this is on every request's path.
    with trio.CancelScope(deadline=trio.current_time() + read_timeout):
        return await stream.receive_some(_READ_SIZE)
    raise httpx2.ReadTimeout("no data from the server within the read timeout")


async def _wait_and_receive(raw: socket.socket, read_timeout: float) -> bytes:
    with trio.CancelScope(deadline=trio.current_time() + read_timeout):
        while True:
            await trio.lowlevel.wait_readable(raw)
            try:
                return raw.recv(_READ_SIZE)
            except BlockingIOError:  # (woken for nothing: wait again)
                pass
    raise httpx2.ReadTimeout("no data from the server within the read timeout")


class _ResponseStream(httpx2.AsyncByteStream):
    """The body of one response; gives the connection back to the pool when complete.

    An iterator object rather than an async generator, so that leaving a body half-read
    leaves no generator to finalise.
    """

    def __init__(self, transport: TrioTransport, conn: Connection, read_timeout: float) -> None:
        self._transport = transport
        self._conn: Connection | None = conn
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
        if self._complete and self._transport._pool.checkin(conn):
            await trio.lowlevel.checkpoint()
            return
        await conn.close()
