"""Opening connections for the transport: TCP, TLS, and a proxy's ``CONNECT`` tunnel.

Each function does one hop, within the caller's ``connect`` deadline, and reports it
(``Report``: ``doctor`` prints each step).  Failures are httpx2's exceptions, so the
mapping above (``_failures``) is unchanged, plus two that say more:

* :class:`TLSConnectError`, a TLS handshake that failed, with whose it was (the origin's
  or the proxy's), so a certificate error names the right host;
* :class:`ProxyRefused`, a proxy's 4xx (407: credentials; 403: forbidden destination),
  never retried.  A proxy's 5xx to ``CONNECT`` (502, 504: it cannot reach the origin) is
  an ``httpx2.ConnectError``, retried like any connection failure;
* :class:`InvalidHostName`, a host name that cannot be looked up (``_hostname``: an
  empty label, a label over 63 characters), never retried.

Messages name the proxy by its URL without credentials, and never show them.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2
import trio

from ._hostname import host_problem
from ._proxies import ProxyRoute
from ._wire import ProtocolError, ResponseReader, request_head

__all__ = [
    "Connect",
    "InvalidHostName",
    "ProxyRefused",
    "Report",
    "TLSConnectError",
    "authority",
    "open_tcp",
    "quiet",
    "start_tls",
    "tunnel",
]

_READ_SIZE = 65536

Connect = Callable[[str, int], Awaitable[trio.abc.Stream]]
"""Opens a TCP connection to ``(host, port)``: ``trio.open_tcp_stream`` or one like it."""

Report = Callable[[str, str], object]
"""Told each step of opening a connection as it completes: ``(step, detail)`` (``doctor``)."""


class TLSConnectError(httpx2.ConnectError):
    """A TLS handshake failed.

    Attributes:
        peer: ``host:port`` of the server whose handshake failed (the origin or the proxy).
        proxy: whether that server is the proxy.
    """

    def __init__(self, message: str, *, peer: str, proxy: bool) -> None:
        super().__init__(message)
        self.peer = peer
        self.proxy = proxy


class ProxyRefused(httpx2.ProxyError):
    """The proxy answered a ``CONNECT`` (or a forwarded request) with a 4xx: a 407 for
    missing or wrong credentials, a 403 for a destination its policy forbids.

    Attributes:
        proxy: the proxy's URL, without credentials.
        status: the proxy's status code.
        target: ``host:port`` the request was for.
    """

    def __init__(self, message: str, *, proxy: str, status: int, target: str) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.status = status
        self.target = target


class InvalidHostName(httpx2.ConnectError):
    """A host name that cannot be looked up (an empty label, a label over 63 characters,
    characters a host name cannot have): a configuration problem, never retried.

    Attributes:
        host: the host name.
    """

    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.host = host

    @classmethod
    def check(cls, host: str, port: int) -> None:
        """Raise it if ``host`` cannot be looked up (before connecting to it)."""
        problem = host_problem(host)
        if problem:
            raise cls(_bad_host(host, port, problem), host=host)


def _bad_host(host: str, port: int, problem: str) -> str:
    return (
        f"cannot connect to {authority(host, port)}: the host {host!r} is not a valid "
        f"host name: {problem}"
    )


def quiet(step: str, detail: str) -> None:
    """The default :data:`Report`: tells no one."""


def authority(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _failure_reason(exc: BaseException) -> BaseException:
    """The exception that says why: trio wraps a TLS failure (an unverified certificate...)
    in a ``BrokenResourceError`` with no message of its own, its cause is the reason."""
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def open_tcp(
    host: str,
    port: int,
    proxy: ProxyRoute | None,
    say: Report,
    connect: Connect = trio.open_tcp_stream,
) -> trio.abc.Stream:
    """A TCP connection to ``host:port`` (the origin, or the ``proxy``), opened by
    ``connect`` (the transport's: through its DNS cache, see ``_resolve``)."""
    where = authority(host, port)
    try:
        stream = await connect(host, port)
    except OSError as exc:
        hop = where if proxy is None else f"the proxy {proxy.url}"
        raise httpx2.ConnectError(f"cannot connect to {hop}: {_text(exc)}") from exc
    except UnicodeError as exc:  # the look-up could not encode the name (IDNA)
        problem = host_problem(host) or f"it cannot be encoded ({exc})"
        raise InvalidHostName(_bad_host(host, port, problem), host=host) from exc
    say("connect", where if proxy is None else f"{where} (the proxy)")
    return stream


async def start_tls(
    stream: trio.abc.Stream,
    host: str,
    port: int,
    context: ssl.SSLContext,
    proxy: ProxyRoute | None,
    say: Report,
) -> trio.SSLStream[trio.abc.Stream]:
    """TLS over ``stream`` with ``host`` (the origin, or the ``proxy``); closes ``stream``
    if the handshake fails."""
    tls = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
    try:
        await tls.do_handshake()
    except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
        await trio.aclose_forcefully(tls)
        reason = _failure_reason(exc)
        peer = authority(host, port)
        hop = peer if proxy is None else f"the proxy {proxy.url}"
        raise TLSConnectError(
            f"cannot connect to {hop}: {_text(reason)}", peer=peer, proxy=proxy is not None
        ) from reason
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    say("tls" if proxy is None else "proxy tls", _describe_tls(tls))
    return tls


def _describe_tls(tls: trio.SSLStream[trio.abc.Stream]) -> str:
    """The TLS version and the certificate's subject and issuer, in words."""
    version = tls.version() or "TLS"
    cert = tls.getpeercert() or {}
    if not cert:
        return f"{version}, certificate not verified"
    names = [value for _, value in cert.get("subjectAltName", ())]
    name = tls.server_hostname if tls.server_hostname in names else None
    name = name or (names[0] if names else _name(cert, "subject"))
    return f"{version}, certificate for {name}, issued by {_name(cert, 'issuer')}"


def _name(cert: Mapping[str, Any], field: str) -> str:
    """The common name (else the organisation) of a certificate's subject or issuer."""
    parts = dict(pair for rdn in cert.get(field, ()) for pair in rdn)
    return str(parts.get("commonName") or parts.get("organizationName") or "?")


async def tunnel(
    stream: trio.abc.Stream, route: ProxyRoute, host: str, port: int, say: Report
) -> None:
    """Ask the proxy for a tunnel to ``host:port`` (``CONNECT``), on ``stream``.

    Raises:
        ProxyRefused: a 4xx answer (407: credentials; 403: forbidden destination).
        httpx2.ConnectError: another answer (a 502 or 504: the proxy cannot reach the
            origin), or the proxy broke the exchange.
    """
    ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    target = authority(ascii_host, port).encode("ascii")
    reader = ResponseReader()
    reader.start(no_body=True)  # a 2xx turns the connection into the tunnel: no body
    try:
        await stream.send_all(request_head(b"CONNECT", target, [(b"Host", target), *route.headers]))
        await _answer(stream, reader)  # the connect timeout bounds it
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError) as exc:
        raise httpx2.ConnectError(
            f"the proxy {route.url} broke the CONNECT to {target.decode()}: {_text(exc)}"
        ) from exc
    status, reason = reader.status, reader.reason.decode("latin-1")
    if 200 <= status < 300:
        if reader.extra:
            raise httpx2.ConnectError(f"the proxy {route.url} sent data before the tunnel's TLS")
        say("tunnel", f"CONNECT {target.decode()}: {status} {reason}".rstrip())
        return
    answer = f"{status} {reason}".rstrip()
    if 400 <= status < 500:
        raise ProxyRefused(
            f"the proxy {route.url} refused the CONNECT to {target.decode()}: {answer}",
            proxy=str(route.url),
            status=status,
            target=target.decode(),
        )
    raise httpx2.ConnectError(
        f"the proxy {route.url} could not open a tunnel to {target.decode()}: {answer}"
    )


async def _answer(stream: trio.abc.Stream, reader: ResponseReader) -> None:
    """Read the proxy's final answer to ``CONNECT`` (interim 1xx answers skipped)."""
    while not reader.head:
        data = await stream.receive_some(_READ_SIZE)
        if not data:
            raise OSError("the proxy closed the connection without answering")
        reader.feed(bytes(data))
