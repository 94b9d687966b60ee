"""The transport's keep-alive pool: idle connections in a stack per origin.

Taking one, checking it and putting it back cost the same at 10 or 10,000 connections
(httpcore2's pool walks every connection instead: see ``_transport``).  At most
``max_keepalive`` idle connections are kept, over all origins, each for
``keepalive_expiry`` seconds of trio's clock; an idle connection the server closed is
noticed (its socket is readable: EOF; for a socket registered in the run's poller, the
poller's epoll is asked first, and the socket only if something came) and dropped when
taken.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._proxies import ProxyRoute
from ._wire import ResponseReader

__all__ = ["Connection", "Origin", "Pool"]

logger = logging.getLogger("paradigm_trio")

Origin = tuple[str, str, int]
"""``(scheme, host, port)``: what the pool is keyed by."""


def _socket_of(stream: trio.abc.Stream) -> Any:
    """The socket under ``stream`` (and under any TLS layers), or ``None``."""
    inner: Any = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    return getattr(inner, "socket", None)


def _plain(stream: trio.abc.Stream) -> socket.socket | None:
    """For a plain TCP connection, the stdlib socket under ``stream``; else ``None``.

    The socket is taken from trio's (``detach``), so that we hold it: with it, a request is
    written and its answer read without trio's stream layers when the socket is ready
    (``_exchange``), which is most of the time on a busy batch; trio's stream over it is
    made again only if it is needed (:attr:`Connection.stream`: a body the socket does not
    take at once).
    """
    if type(stream) is not trio.SocketStream:
        return None
    inner = stream.socket
    if type(inner).__module__ != "trio._socket":  # a custom socket factory's: left as it is
        return None
    return socket.socket(inner.family, inner.type, inner.proto, fileno=inner.detach())


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read (as trio's ``is_readable``)."""
    if sys.platform == "win32":  # pragma: no cover (no select.poll)
        return bool(select.select([sock], [], [], 0)[0])
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))


def _close(sock: socket.socket) -> None:
    """Close ``sock``, waking any of trio's waits on it (as trio's ``close``)."""
    if sock.fileno() != -1:
        with contextlib.suppress(RuntimeError):  # (outside a trio run: no wait of trio's)
            trio.lowlevel.notify_closing(sock)
        sock.close()


class Connection:
    """One connection to an origin (directly, or through its proxy) and its response reader;
    ``raw``: the stdlib socket of a plain TCP connection (``None`` under TLS)."""

    __slots__ = (
        "_stream", "fd", "forward", "hint", "idle_since", "number", "origin", "outgoing",
        "poller", "raw", "reader", "reusable", "task", "unsent",
    )  # fmt: skip

    def __init__(
        self, stream: trio.abc.Stream, origin: Origin, forward: ProxyRoute | None = None
    ) -> None:
        self.raw = _plain(stream)
        # The stream of a TLS connection (or a custom socket factory's); for a plain one,
        # made only when needed (``stream``): three objects less per connection, which the
        # garbage collector would walk for as long as it lives.
        self._stream: trio.abc.Stream | None = None if self.raw is not None else stream
        self.origin = origin
        self.forward = forward  # the proxy that ``http`` requests are sent to, in absolute form
        self.reader = ResponseReader()
        self.idle_since = 0.0
        self.reusable = True  # False once a request body was not written whole
        self.hint = ""  # said when the server closes it unanswered (see ``TrioTransport``)
        # A request posted to the run's writer, not yet written (``_outbox``); what its
        # write did not do: the bytes left, or the write's error.
        self.outgoing: bytes | None = None
        self.unsent: memoryview | OSError | None = None
        # Waits for the answer in the run's poller (``_poller``): the poller the socket is
        # registered in (for good: edge-triggered), the task waiting (``None`` when none
        # is), the socket's descriptor there and the number of the wait's deadline (-1
        # for none).
        self.poller: Any = None
        self.task: trio.lowlevel.Task | None = None
        self.fd = -1
        self.number = -1

    @property
    def stream(self) -> trio.abc.Stream:
        """The connection's trio stream (for a plain one, made on first use over ``raw``)."""
        stream = self._stream
        if stream is None:
            assert self.raw is not None  # (a plain connection's is made when needed)
            stream = self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(self.raw))
        return stream

    def socket_readable(self) -> bool:
        """Whether the idle socket has something to read: for an idle connection, EOF.

        For a socket registered in the run's poller, the poller's epoll is asked what came
        (one ``epoll_wait`` for all its sockets, which also wakes the waits it finds
        ready): the socket received nothing since it was last read unless that, or an
        earlier look, saw something come while no task waited (``Poller.stirred_since``);
        only then is the socket itself asked (a system call).  Else the socket is asked."""
        raw = self.raw
        if raw is not None:
            poller = self.poller
            if poller is not None and poller.epoll is not None:
                poller.look()  # (what came since the poller's last look: a close, say)
                if not poller.stirred_since(self):
                    return False
            return _readable(raw)
        sock = _socket_of(self.stream)
        return sock is None or bool(sock.is_readable())

    def abort_wait(self, _: Any) -> trio.lowlevel.Abort:
        """The abort function of a wait in the run's poller (``_poller``): a cancelled wait
        takes itself off."""
        self.poller.forget(self)
        return trio.lowlevel.Abort.SUCCEEDED

    async def close(self) -> None:
        if self.raw is None:
            await trio.aclose_forcefully(self.stream)
            return
        self.close_nowait()  # (as trio's stream would: then a checkpoint that raises nothing)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def close_nowait(self) -> None:
        """Close the socket at once (for an idle connection: nothing to flush)."""
        raw = self.raw
        if raw is None:
            sock = _socket_of(self.stream)
            if sock is not None:
                sock.close()
            return
        if self.poller is not None:  # (a task waiting for its answer is woken, as closed)
            self.poller.closing(self)
        _close(raw)  # (the socket under trio's stream too, if one was made)


class Pool:
    """Idle connections by origin, newest on top (the least likely to be closed by now)."""

    __slots__ = ("_dialing", "_expiry", "_idle", "_max", "closed", "idle_count")

    def __init__(self, max_keepalive: int, keepalive_expiry: float) -> None:
        self._max = max_keepalive
        self._expiry = keepalive_expiry
        self._idle: dict[Origin, list[Connection]] = {}
        self._dialing: dict[Origin, set[_Dial]] = {}  # being opened by a warm-up, unclaimed
        self.idle_count = 0  # over all origins
        self.closed = False

    def checkout(self, origin: Origin) -> Connection | None:
        """An idle connection to ``origin`` that is still usable, or ``None``."""
        stack = self._idle.get(origin)
        now = trio.current_time()
        while stack:
            conn = stack.pop()
            self.idle_count -= 1
            if now - conn.idle_since < self._expiry and not conn.socket_readable():
                return conn
            # expired, or the server closed it: drop it (closing needs no wait)
            conn.close_nowait()
        return None

    def checkin(self, conn: Connection) -> bool:
        """Keep a connection whose exchange completed cleanly; ``False`` if not kept."""
        if (
            self.closed
            or not conn.reusable
            or not conn.reader.reusable
            or self.idle_count >= self._max
        ):
            return False
        conn.hint = ""  # it answered: the hint of a first exchange no longer applies
        conn.idle_since = trio.current_time()
        self._idle.setdefault(conn.origin, []).append(conn)
        self.idle_count += 1
        return True

    def keep(self, conn: Connection) -> bool:
        """Keep a new connection idle (see ``TrioTransport.warm_up``); ``False`` if not
        kept: the pool is closed or full."""
        if self.closed or self.idle_count >= self._max:
            return False
        conn.idle_since = trio.current_time()
        self._idle.setdefault(conn.origin, []).append(conn)
        self.idle_count += 1
        return True

    def usable(self, origin: Origin) -> int:
        """How many idle connections to ``origin`` are usable (the others are dropped)."""
        stack = self._idle.get(origin)
        if not stack:
            return 0
        now = trio.current_time()
        kept = []
        for conn in stack:
            if now - conn.idle_since < self._expiry and not conn.socket_readable():
                kept.append(conn)
            else:
                conn.close_nowait()
        self.idle_count -= len(stack) - len(kept)
        stack[:] = kept
        return len(kept)

    def room(self) -> int:
        """How many more idle connections the pool would keep."""
        return 0 if self.closed else max(0, self._max - self.idle_count)

    def close(self) -> list[Connection]:
        """Keep nothing from now on; the idle connections, for the caller to close."""
        self.closed = True
        idle = [conn for conns in self._idle.values() for conn in conns]
        self._idle.clear()
        self.idle_count = 0
        return idle

    async def fill(
        self,
        origin: Origin,
        connections: int,
        connect: Callable[[], Awaitable[Connection]],
        deadline: float,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Open connections to ``origin`` with ``connect``, concurrently (``connections``
        less the usable ones kept and those being opened, within :meth:`room`), each done
        by ``deadline``.

        A request that finds no idle connection meanwhile takes one being opened
        (:meth:`claimed`) rather than opening its own; the others are kept idle.  Tells
        ``task_status`` it started once they can be taken, before any checkpoint.  Failures
        are logged (DEBUG) and go to the request that took the connection, if any, never
        raised here.  Returns how many connections were opened.
        """
        pending = self._dialing.setdefault(origin, set())
        wanted = max(0, min(connections - self.usable(origin) - len(pending), self.room()))
        dials = [_Dial(deadline) for _ in range(wanted)]
        pending.update(dials)
        task_status.started()
        failures: list[Exception] = []
        opened = 0

        async def open_one(dial: _Dial) -> None:
            nonlocal opened
            conn: Connection | None = None
            try:
                conn = await connect()
            except Exception as exc:  # the request that took it reports it (not Cancelled)
                failures.append(exc)
                dial.error = exc
            finally:
                pending.discard(dial)
                if dial.claimed:
                    dial.conn, conn = conn, None  # handed over
                dial.done.set()
            if dial.conn is not None or (conn is not None and self.keep(conn)):
                opened += 1
            elif conn is not None:  # the pool filled up (or was closed) meanwhile
                await conn.close()

        try:
            await trio.lowlevel.checkpoint()
            async with trio.open_nursery() as nursery:
                for dial in dials:
                    nursery.start_soon(open_one, dial)
        finally:
            for dial in dials:  # whatever happened, no request waits on them any longer
                pending.discard(dial)
                dial.done.set()
        if wanted > 0:
            _warmed(origin, wanted, opened, failures)
        return opened

    async def claimed(self, origin: Origin, deadline: float) -> Connection | None:
        """A connection to ``origin`` that a warm-up is opening and will have opened (or
        failed to) by ``deadline``, once open; ``None`` if there is none, or its warm-up
        was cancelled.  Raises the error of a connection that could not be opened."""
        pending = self._dialing.get(origin)
        if not pending:
            return None
        dial = pending.pop()
        if dial.deadline > deadline:  # later than the request would give up: not for it
            pending.add(dial)
            return None
        dial.claimed = True
        try:
            await dial.done.wait()
        except BaseException:  # cancelled: the warm-up keeps the connection, or this does
            dial.claimed = False
            if dial.conn is not None and not self.keep(dial.conn):
                dial.conn.close_nowait()
            dial.conn = None
            raise
        if dial.error is not None:
            raise dial.error
        return dial.conn


class _Dial:
    """A connection a warm-up is opening, which a request may take (``claimed``)."""

    __slots__ = ("claimed", "conn", "deadline", "done", "error")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = trio.Event()
        self.claimed = False
        self.conn: Connection | None = None  # handed to the request that claimed it
        self.error: Exception | None = None


def _warmed(origin: Origin, wanted: int, opened: int, failures: list[Exception]) -> None:
    """The DEBUG message of a warm-up (event ``connections_warmed``)."""
    if logger.isEnabledFor(logging.DEBUG):
        scheme, host, port = origin
        where = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
        error = repr(failures[0]) if failures else None
        logger.debug(
            "warm-up: opened %d of %d connection(s) to %s%s",
            opened, wanted, where, f"; first failure: {error}" if error else "",
            extra={"event": "connections_warmed", "origin": where,
                   "wanted": wanted, "opened": opened, "failed": len(failures), "error": error},
        )  # fmt: skip
