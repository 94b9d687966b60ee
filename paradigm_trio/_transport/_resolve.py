"""A transport's DNS cache: one look-up per host name, shared by the connections it opens.

``trio.open_tcp_stream`` resolves the host name (``getaddrinfo``, in a worker thread) for
every connection it opens: a batch starting at concurrency 200 against a named host would
make 200 look-ups, through trio's 40 worker threads.  :class:`Resolver` makes one:

* one look-up per ``(host, port)`` at a time: the first connection to need it looks the
  name up, the others opened meanwhile wait for that answer (single flight);
* the answer is reused for :data:`DNS_TTL` seconds of trio's clock, then looked up again
  (a name that moves is followed within a minute);
* a failed look-up is not kept: the connections waiting on it fail with the same error as
  the one that made it (a copy each), and the next connection looks the name up again;
  one cancelled (its connect timeout) hands the look-up to a connection still waiting;
* an IP address is not looked up; it, and a name with one address, is connected to with
  one plain ``connect`` (a third of ``trio.open_tcp_stream``'s CPU), whose error is the
  socket's own (``[Errno 111] ... Connection refused``).

The addresses are tried as ``trio.open_tcp_stream`` tries them ("happy eyeballs", RFC
6555): one at a time in order (the first two of different families, when there are two),
the next one started when the previous one fails or after :data:`HAPPY_EYEBALLS_DELAY`,
the first to connect wins and the others are closed.  Failures are those of
``trio.open_tcp_stream``, with the same messages (``OSError("all attempts to connect to
host:443 failed")``, the ``socket.gaierror`` of the look-up).

Only the TCP connection uses the address: TLS still checks the certificate against the
host *name*, and sends it as SNI (``_dial.start_tls``).
"""

from __future__ import annotations

import copy
import functools
import ipaddress
from typing import Any

import trio

from ._dial import authority  # (as trio writes it: an IPv6 address in brackets)

__all__ = ["DNS_TTL", "HAPPY_EYEBALLS_DELAY", "Resolver", "is_address"]

DNS_TTL = 60.0
"""Seconds (trio's clock) a host name's addresses are reused before it is looked up again."""

HAPPY_EYEBALLS_DELAY = 0.25
"""Seconds an address is given before the next one is tried too (trio's default)."""

_MAX_NAMES = 64
"""Names kept at most; past it, the answers are forgotten (and looked up again)."""

Target = tuple[Any, ...]
"""One ``getaddrinfo`` entry: ``(family, type, proto, canonname, sockaddr)``."""


class _Lookup:
    """The look-up of one ``(host, port)``: under way until ``done`` is set."""

    __slots__ = ("done", "error", "expires", "targets")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.targets: list[Target] = []
        self.error: Exception | None = None
        self.expires = 0.0


@functools.lru_cache(maxsize=256)  # parsing an address costs as much as a tenth of a dial
def _family(host: str) -> int | None:
    """The address family of an IP address, ``None`` for a host name."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return None
    return trio.socket.AF_INET if version == 4 else trio.socket.AF_INET6


def is_address(host: str) -> bool:
    """Whether ``host`` is an IP address (connected to as it is, never looked up)."""
    return _family(host) is not None


def _again(error: Exception) -> Exception:
    """A copy of ``error`` to raise in another task (one exception object, one traceback)."""
    try:
        return copy.copy(error)
    except Exception:  # an exception class that cannot be rebuilt from its args
        return error


class Resolver:
    """The DNS cache of one transport (see the module docstring)."""

    __slots__ = ("_lookups", "_ttl")

    def __init__(self, ttl: float = DNS_TTL) -> None:
        self._ttl = ttl
        self._lookups: dict[tuple[str, int], _Lookup] = {}

    async def open_tcp_stream(self, host: str, port: int) -> trio.SocketStream:
        """``trio.open_tcp_stream(host, port)``, with the name looked up through the cache."""
        family = _family(host)
        if family is not None:
            return await _connect(family, trio.socket.SOCK_STREAM, 0, (host, port))
        targets = await self.addresses(host, port)
        if len(targets) == 1:
            family, kind, proto, _, address = targets[0]
            return await _connect(family, kind, proto, address)
        return await _connect_first(targets, authority(host, port))

    async def addresses(self, host: str, port: int) -> list[Target]:
        """The addresses of ``host`` (``getaddrinfo`` entries, in the order to try them)."""
        key = (host, port)
        while True:
            lookup = self._lookups.get(key)
            if lookup is None or (lookup.done.is_set() and lookup.expires <= trio.current_time()):
                return await self._look_up(key)
            if lookup.done.is_set():
                await trio.lowlevel.checkpoint()
                return lookup.targets
            await lookup.done.wait()
            if lookup.error is not None:
                raise _again(lookup.error)
            # Answered (the loop returns it), or the task looking up was cancelled: then
            # this one looks the name up (or waits for another that already does).

    async def _look_up(self, key: tuple[str, int]) -> list[Target]:
        if len(self._lookups) >= _MAX_NAMES:
            self._lookups = {k: v for k, v in self._lookups.items() if not v.done.is_set()}
        lookup = self._lookups[key] = _Lookup()
        host, port = key
        try:
            targets = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
            if not targets:  # as trio.open_tcp_stream: getaddrinfo should have raised
                raise OSError(f"no results found for hostname lookup: {authority(host, port)}")
        except BaseException as exc:
            if self._lookups.get(key) is lookup:
                del self._lookups[key]
            if isinstance(exc, Exception):
                lookup.error = exc
            lookup.done.set()
            raise
        lookup.targets = _rfc_6555_order(list(targets))
        lookup.expires = trio.current_time() + self._ttl
        lookup.done.set()
        return lookup.targets


def _rfc_6555_order(targets: list[Target]) -> list[Target]:
    """The first two addresses of different families, when there are two (RFC 6555 5.4),
    as ``trio.open_tcp_stream`` orders them."""
    for i in range(1, len(targets)):
        if targets[i][0] != targets[0][0]:
            targets.insert(1, targets.pop(i))
            break
    return targets


async def _connect(family: int, kind: int, proto: int, address: Any) -> trio.SocketStream:
    """One address: a plain ``connect``, a third of ``trio.open_tcp_stream``'s CPU (nothing
    to race, no nursery); its error is the socket's own (``Connection refused``)."""
    sock = trio.socket.socket(family, kind, proto)
    try:
        await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _connect_first(targets: list[Target], where: str) -> trio.SocketStream:
    """The first of ``targets`` to connect, tried as ``trio.open_tcp_stream`` tries them."""
    failures: list[OSError] = []
    opened: list[trio.socket.SocketType] = []
    winner: trio.socket.SocketType | None = None
    kept: trio.socket.SocketType | None = None

    async def attempt(target: Target, failed: trio.Event) -> None:
        nonlocal winner
        family, kind, proto, _, address = target
        try:
            sock = trio.socket.socket(family, kind, proto)
            opened.append(sock)
            await sock.connect(address)
        except OSError as exc:
            failures.append(exc)
            failed.set()
            return
        winner = sock
        nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            for target in targets:
                failed = trio.Event()
                nursery.start_soon(attempt, target, failed)
                with trio.move_on_after(HAPPY_EYEBALLS_DELAY):
                    await failed.wait()
        if winner is None:
            message = f"all attempts to connect to {where} failed"
            raise OSError(message) from ExceptionGroup(message, failures)
        stream = trio.SocketStream(winner)
        kept = winner
    finally:
        for sock in opened:  # every socket but the one handed out, whatever happened
            if sock is not kept:
                sock.close()
    return stream
