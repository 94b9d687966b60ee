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

One exchange on a connection (writing, reading, the early answer's watch) is
``_exchange``'s: on a plain TCP connection, straight on the stdlib socket when it is
ready.  On the fast lane (:meth:`TrioTransport.fetch`) a small request on a plain TCP
connection is written by the run's writer with the others made in the same step
(``_outbox``), while its task already waits for the answer.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import httpx2
import trio

from .._config import AttemptTimedOut
from .._errors import ConfigurationError
from ._dial import (
    InvalidHostName,
    ProxyRefused,
    Report,
    authority,
    open_tcp,
    quiet,
    start_tls,
    tunnel,
)
from ._exchange import (
    INLINE_BODY,
    WireTimeouts,
    closed_unsent,
    exchange,
    receive,
    write_small,
    write_unsent,
)
from ._outbox import post
from ._pool import Connection, Origin, Pool
from ._proxies import DEFAULT_PORTS, ProxyRoute, ProxyRules, ProxyTypes
from ._resolve import Resolver
from ._tls import CertTypes, VerifyTypes, check_environment, ssl_context
from ._wire import ProtocolError, request_head

__all__ = ["Answering", "Origin", "TrioTransport", "WireTimeouts", "origin_of"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

logger = logging.getLogger("paradigm_trio")


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

    A request to a host that cannot be looked up (an empty label as in ``a..b``, a label
    over 63 characters) raises an ``httpx2.ConnectError`` saying why, before anything is
    sent; the :class:`Client` refuses such a base URL when it is built.

    Raises:
        ConfigurationError: a CA bundle or certificate that cannot be loaded, a proxy URL
            that is not ``http://`` or ``https://`` or whose host cannot be looked up, or
            both ``verify`` and ``ssl_context``.
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
        self._fetching = 0  # exchanges under way in ``fetch``
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
        origin = origin_of(httpx2.URL(url))
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 0:
            raise ValueError(f"connections must be an int >= 0, got {connections!r}")
        if self._pool.closed:
            raise RuntimeError("the transport is closed")
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
        within the ``connect`` timeout.  A host that cannot be looked up (``_hostname``)
        is refused first (:class:`InvalidHostName`), whatever the route.
        """
        scheme, host, port = origin
        InvalidHostName.check(host, port)
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
        origin = origin_of(url)
        timeouts = wire_timeouts(request.extensions.get("timeout", {}))
        conn = await self._open(origin, timeouts[0])
        try:
            data, rest = _request_bytes(conn, request)
            conn.reader.start(no_body=request.method == "HEAD")
            await exchange(conn, data, timeouts, rest)
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
        answering: Answering[T],
        arg: Any,
        until: float = math.inf,
    ) -> T:
        """One whole exchange, without ``httpx2`` objects: the client's fast lane.

        ``data`` is the whole request (its head, as ``_wire.request_head`` writes it, and
        its body).  ``answering.head(arg, status, headers)`` is called when the response
        head arrives (a body that breaks afterwards still had a response); the result is
        ``answering.answer(status, headers, body, head)`` of the whole response, ``head``
        being what ``answering.head`` returned.  A failure raises
        ``answering.failed(exc)`` of the ``httpx2`` exception ``handle_async_request``
        would raise; and ``AttemptTimedOut`` when ``until`` (trio time: the attempt's
        deadline, ``Timeouts.attempt``) passes first, which bounds every wait of the
        exchange instead of a cancel scope around it.
        """
        if self._pool.closed:
            raise RuntimeError("the transport is closed")
        self._fetching += 1
        try:
            try:
                conn = await self._open(origin, timeouts[0], until)
                reader = conn.reader
                try:
                    reader.start()
                    if len(data) > INLINE_BODY:
                        await exchange(conn, data, timeouts, None, until)
                    elif conn.raw is not None and self._fetching > 1 and post(conn, data):
                        # Written by the run's writer with the others made in this step
                        # (``_outbox``); the wait starts now.  (Not when it is the only
                        # request under way: no other can join it, and the writer's turn
                        # would only add a step of the scheduler before it leaves.)
                        try:
                            await receive(conn, timeouts[1], until, posted=True)
                        except httpx2.ReadError:
                            if conn.unsent is None:
                                raise
                        if conn.unsent is not None or conn.outgoing is not None:  # (seldom)
                            conn = await self._finish_posted(conn, origin, data, timeouts, until)
                            reader = conn.reader
                    else:  # (``exchange``, inline: its frame does not wait with the answer)
                        await write_small(conn, data, timeouts, until)
                        if not reader.head:  # (a write that failed has read the answer itself)
                            await receive(conn, timeouts[1], until, sent=True)
                    while not reader.head:
                        await receive(conn, timeouts[1], until)
                    head = answering.head(arg, reader.status, reader.headers)
                    parts = [reader.take_body()]
                    while not reader.complete:
                        await receive(conn, timeouts[1], until)
                        parts.append(reader.take_body())
                except BaseException:
                    conn.outgoing = None  # (not written yet: the writer skips it)
                    await conn.close()
                    raise
            except httpx2.HTTPError as exc:
                if isinstance(exc, httpx2.TimeoutException) and trio.current_time() >= until:
                    raise AttemptTimedOut from None
                raise answering.failed(exc) from None
            if not self._pool.checkin(conn):
                await conn.close()
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            return answering.answer(reader.status, reader.headers, body, head)
        finally:
            self._fetching -= 1

    async def _finish_posted(
        self, conn: Connection, origin: Origin, data: bytes, timeouts: WireTimeouts, until: float
    ) -> Connection:
        """Finish a request the run's writer did not write whole (``_outbox``); the
        connection whose answer to read.  If nothing of it went out and the server had
        closed ``conn`` (what ``Pool.checkout`` looks for, a moment too early), ``conn`` is
        closed and the request written at once on another connection."""
        if not closed_unsent(conn):
            await write_unsent(conn, timeouts, until)
            return conn
        conn.outgoing = conn.unsent = None
        await conn.close()
        other = await self._open(origin, timeouts[0], until)
        try:
            other.reader.start()
            await write_small(other, data, timeouts, until)
        except BaseException:
            await other.close()
            raise
        return other

    async def _open(
        self, origin: Origin, connect_timeout: float, until: float = math.inf
    ) -> Connection:
        """A pooled connection to ``origin``, or a new one (by ``until`` at the latest)."""
        # A pending cancellation is raised before a pooled connection is taken, so it never
        # closes an idle connection.  (No full checkpoint: the wait for the answer is one.)
        await trio.lowlevel.checkpoint_if_cancelled()
        conn = self._pool.checkout(origin)
        if conn is None:
            # One that a warm-up is opening, else a new one.
            now = trio.current_time()
            conn = await self._pool.claimed(origin, min(now + connect_timeout, until))
            if conn is None:
                left = max(0.0, until - trio.current_time())
                conn = await self._connect(origin, min(connect_timeout, left))
            # After a wait, as after none: a cancellation is seen before anything is sent
            # (``exchange``'s first write makes no check of its own).  The connection is
            # then kept for another request (else closed), not dropped unclosed.
            try:
                await trio.lowlevel.checkpoint_if_cancelled()
            except BaseException:
                if not self._pool.keep(conn):
                    conn.close_nowait()
                raise
        return conn


class Answering(Protocol[T_co]):
    """What :meth:`TrioTransport.fetch` tells of an exchange, and what makes its result:
    the fast lane's caller in one object (the HTTP layer's ``JsonAttempt``), so that the
    exchange's coroutine is the attempt's own, with no frame of the caller's waiting above
    it while the answer comes."""

    def head(self, arg: Any, status: int, headers: list[tuple[bytes, bytes]], /) -> Any:
        """The response head arrived (``arg``: ``fetch``'s); what it returns is handed to
        :meth:`answer`."""
        ...

    def answer(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, head: Any, /
    ) -> T_co:
        """The result of the whole response (its connection is back in the pool)."""
        ...

    def failed(self, exc: httpx2.HTTPError, /) -> BaseException:
        """The exception to raise for ``exc``, the exchange's failure."""
        ...


def _request_bytes(
    conn: Connection, request: httpx2.Request
) -> tuple[bytes, AsyncIterator[bytes] | None]:
    """The request (head and body) of an ``httpx2.Request`` (in absolute form, with the
    proxy's headers, for a proxy that forwards ``http`` requests), and the rest of a
    streamed body, written piece by piece as the stream yields it (never held whole:
    a file uploaded from disk stays on disk)."""
    try:
        content: bytes | None = request.content
    except httpx2.RequestNotRead:
        content = None
    headers = list(request.headers.raw)
    if conn.forward is not None:
        headers.extend(conn.forward.headers)
    target = url_target(request.url, absolute=conn.forward is not None)
    rest: AsyncIterator[bytes] | None = None
    if content is None:  # a streamed body, framed as the headers say
        stream: Any = request.stream
        chunked = any(n.lower() == b"transfer-encoding" for n, _ in headers)
        if not chunked and not any(n.lower() == b"content-length" for n, _ in headers):
            headers.append((b"Transfer-Encoding", b"chunked"))
            chunked = True
        rest = _Chunked(stream) if chunked else _Pieces(stream)
        content = b""
    try:
        return request_head(request.method.encode(), target, headers) + content, rest
    except ProtocolError as exc:
        raise httpx2.LocalProtocolError(str(exc)) from None


class _Pieces:
    """A streamed request body's pieces, as bytes (an iterator object, not a generator:
    nothing to finalise when a write stops half-way)."""

    def __init__(self, stream: Any) -> None:
        self._it = stream.__aiter__()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while True:
            piece = bytes(await self._it.__anext__())
            if piece:
                return piece


class _Chunked(_Pieces):
    """:class:`_Pieces` in ``Transfer-Encoding: chunked`` framing, the last chunk included."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._ended = False

    async def __anext__(self) -> bytes:
        if self._ended:
            raise StopAsyncIteration
        try:
            piece = await super().__anext__()
        except StopAsyncIteration:
            self._ended = True
            return b"0\r\n\r\n"
        return b"%x\r\n%s\r\n" % (len(piece), piece)


def origin_of(url: httpx2.URL) -> Origin:
    """``(scheme, host, port)`` of ``url``, the port filled in; only ``http`` and ``https``."""
    if url.scheme not in DEFAULT_PORTS:
        raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
    return (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])


def url_target(url: httpx2.URL, absolute: bool = False) -> bytes:
    """The request target: the path and query, as bytes (with the scheme and host before
    them, for a proxy: ``absolute``)."""
    if absolute:
        return url.scheme.encode("ascii") + b"://" + url.netloc + url.raw_path
    return url.raw_path


def _refused(route: ProxyRoute, url: httpx2.URL) -> ProxyRefused:
    _, host, port = origin_of(url)
    target = authority(host, port)
    return ProxyRefused(
        f"the proxy {route.url} refused the request to {target}: 407 Proxy Authentication Required",
        proxy=str(route.url),
        status=407,
        target=target,
    )


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
                await receive(conn, self._read_timeout)
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
