"""One exchange on a connection: the request written, the answer read and parsed.

The request is written whole when it is small; a body over ``INLINE_BODY`` is written in
pieces while a second task watches for an early answer (``_Upload``: see
``_transport``'s docstring).  Each read is parsed at once (``Connection.reader``).

On a plain TCP connection (``Connection.raw``, see ``_pool._plain``) a request the socket
takes at once is written with one ``send`` (on the fast lane by the run's writer,
``_outbox``: :func:`write_unsent` finishes what it could not do), and an answer already
there read with one ``recv``, without trio's stream layers.  The wait for the answer to a
posted request, and every later wait on its connection, is made in the run's poller
(``_poller``: one epoll of our own, which also keeps the wait's deadline); any other wait
goes through trio (``_waits.wait_readable``: the read timeout kept by one watcher, not a
cancel scope per wait).  Every read still checkpoints, as trio's own ``receive_some``
does.  TLS connections go through their :class:`trio.SSLStream`.  Failures are
``httpx2``'s exception classes.
"""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator

import httpx2
import trio

from ._poller import CLOSED, TIMED_OUT, arm
from ._pool import Connection
from ._waits import end_wait, start_wait, wait_scoped
from ._wire import ProtocolError

__all__ = [
    "INLINE_BODY",
    "READ_SIZE",
    "WireTimeouts",
    "closed_unsent",
    "exchange",
    "receive",
    "response_head",
    "write",
    "write_small",
    "write_unsent",
]

WireTimeouts = tuple[float, float, float]
"""``(connect, read, write)`` in seconds, ``inf`` for none."""

READ_SIZE = 65536
INLINE_BODY = 64 * 1024
"""A request up to this size is written at once; a larger one in pieces (see ``_Upload``)."""
_READ_TIMEOUT = "no data from the server within the read timeout"
_UPLOAD_PIECE = 64 * 1024
_STOP_GRACE = 0.5
"""Once an early answer is in, how long the piece being written may take to finish (s)."""


async def exchange(
    conn: Connection,
    data: bytes,
    timeouts: WireTimeouts,
    rest: AsyncIterator[bytes] | None = None,
    until: float = math.inf,
) -> None:
    """Send the request and read the response head, which may come before the body is
    sent (see the module docstring).  ``rest``: the rest of a streamed body, written
    after ``data`` as it comes.  ``until``: no wait goes past it (trio time; a wait cut by
    it is that wait's timeout).

    Called right after ``TrioTransport._open``, whose check for a cancellation is the
    last thing that ran: the first write makes none of its own."""
    _, read_timeout, write_timeout = timeouts
    if len(data) > INLINE_BODY or rest is not None:
        with trio.CancelScope(deadline=until) as scope:
            await _Upload(conn, data, rest).run(write_timeout, read_timeout)
        if scope.cancelled_caught:
            conn.reusable = False
            raise httpx2.WriteTimeout("sending the request timed out")
        return
    await write_small(conn, data, timeouts, until)
    reader = conn.reader  # (``response_head``, inline: one frame less while waiting)
    while not reader.head:
        await receive(conn, read_timeout, until)


async def write_small(
    conn: Connection, data: bytes, timeouts: WireTimeouts, until: float = math.inf
) -> None:
    """Write a request of at most ``INLINE_BODY`` bytes, right after
    ``TrioTransport._open`` (see :func:`exchange`).  If the write fails (the connection
    closed or reset), an answer the server sent first is looked for: the write's error
    is raised only if there is none."""
    try:
        await write(conn, data, timeouts[2], until, checked=True)
    except httpx2.WriteError as exc:
        await _answered_first(conn, exc, timeouts[1], until)


async def _answered_first(
    conn: Connection, exc: httpx2.WriteError, read_timeout: float, until: float
) -> None:
    """The write failed (closed or reset while we wrote): read the answer the server may
    have sent first; raise ``exc`` if there is none."""
    conn.reusable = False
    try:
        await response_head(conn, read_timeout, until)
    except httpx2.TransportError:
        raise exc from exc.__cause__


def closed_unsent(conn: Connection) -> bool:
    """Whether none of a request posted to the run's writer went out (``_outbox``: not
    written yet, or its one ``send`` failed) and the server has closed the connection
    without a word (the end of the stream, or a reset): the request can go on another
    connection.  (A server that answered before closing is read instead: see
    :func:`write_unsent`.)"""
    raw = conn.raw
    if raw is None or (conn.outgoing is None and not isinstance(conn.unsent, OSError)):
        return False
    try:
        return raw.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def write_unsent(conn: Connection, timeouts: WireTimeouts, until: float = math.inf) -> None:
    """Finish a request posted to the run's writer (``_outbox``) that it did not write
    whole: the bytes left, or the ``send``'s error (``conn.unsent``), or all of it, when
    the socket turned readable before the writer ran (``conn.outgoing``: then it is
    written now, as it would have been before anything was read).  As in
    :func:`write_small`, after a failed write an answer the server sent first is looked
    for; the caller then reads the response head."""
    unsent: bytes | memoryview | OSError | None = conn.unsent
    if conn.outgoing is not None:
        unsent, conn.outgoing = conn.outgoing, None
    conn.unsent = None
    try:
        if isinstance(unsent, OSError):
            raise httpx2.WriteError(f"sending the request failed: {unsent}") from unsent
        if unsent is not None:
            await write(conn, unsent, timeouts[2], until)
    except httpx2.WriteError as exc:
        await _answered_first(conn, exc, timeouts[1], until)


async def write(
    conn: Connection,
    data: bytes | memoryview,
    write_timeout: float,
    until: float = math.inf,
    *,
    checked: bool = False,
) -> None:
    """Write ``data``.  ``checked``: a check for a cancellation has just been made, and
    nothing has run since (on plain TCP, none is made again before the socket's send)."""
    raw = conn.raw
    if raw is not None:  # plain TCP: what the socket takes at once needs no wait
        if not checked:
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
        deadline = min(trio.current_time() + write_timeout, until)
        with trio.CancelScope(deadline=deadline) as scope:
            await conn.stream.send_all(data)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise httpx2.WriteError(f"sending the request failed: {exc}") from exc
    if scope.cancelled_caught:
        raise httpx2.WriteTimeout("sending the request timed out")


async def response_head(conn: Connection, read_timeout: float, until: float = math.inf) -> None:
    """Read until the final response head is in (interim 1xx responses skipped)."""
    reader = conn.reader
    while not reader.head:
        await receive(conn, read_timeout, until)


class _Upload:
    """A large request body, written in pieces while a second task watches for the answer.

    Written in one piece, a body the server refuses early is a broken pipe, or a write
    timeout, and the answer explaining it is lost.  Here the answer stops the writing
    (the piece under way may finish within ``_STOP_GRACE``) and is returned; after a
    write failure, an answer the server sent before closing is returned too.
    """

    def __init__(
        self, conn: Connection, data: bytes, rest: AsyncIterator[bytes] | None = None
    ) -> None:
        self._conn = conn
        self._data = memoryview(data)
        self._rest = rest
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
        raise httpx2.ReadTimeout(_READ_TIMEOUT)

    async def _write_all(self, write_timeout: float) -> httpx2.TransportError | None:
        """Write the body until done or answered; the write failure, if any."""
        data, sent, whole = self._data, 0, False
        try:
            with self._writing:
                while sent < len(data) and not self._answered.is_set():
                    await write(self._conn, data[sent : sent + _UPLOAD_PIECE], write_timeout)
                    sent += _UPLOAD_PIECE
                whole = sent >= len(data) and await self._write_rest(write_timeout)
        except (httpx2.WriteError, httpx2.WriteTimeout) as exc:
            return exc
        finally:
            if not whole:
                self._conn.reusable = False
        return None

    async def _write_rest(self, write_timeout: float) -> bool:
        """Write a streamed body's pieces as they come; whether it was written whole."""
        if self._rest is None:
            return True
        async for piece in self._rest:
            if self._answered.is_set():
                return False
            view = memoryview(piece)
            for at in range(0, len(view), _UPLOAD_PIECE):
                await write(self._conn, view[at : at + _UPLOAD_PIECE], write_timeout)
        return True

    async def _watch(self) -> None:
        """Read the response head.  No read timeout while the body is being written: a
        server may rightly say nothing until it has read all of it."""
        try:
            await response_head(self._conn, math.inf)
            self._answered_head = True
        except httpx2.TransportError as exc:
            self._failure = exc
        self._answered.set()
        self._writing.deadline = min(self._writing.deadline, trio.current_time() + _STOP_GRACE)


def _one(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to raise for a group: the first that is not ``Cancelled``, if any."""
    leaves = group.exceptions
    return next((e for e in leaves if not isinstance(e, trio.Cancelled)), leaves[0])


async def receive(
    conn: Connection,
    read_timeout: float,
    until: float = math.inf,
    *,
    sent: bool = False,
    posted: bool = False,
) -> None:
    """Receive what the server sent next and parse it (the close, too); a wait ends by
    ``until`` at the latest (a :class:`httpx2.ReadTimeout` then).

    ``sent``: the request was written just now, so its answer is not there yet: the read
    waits first instead of trying a read that would fail (a system call and an exception
    per request).  ``posted``: the same for a request posted to the run's writer
    (``_outbox``), whose wait is the run's poller's (``_poller``): if the socket turns
    readable before the writer wrote it whole (the server closed, or spoke first), or the
    writer's write failed or was not whole (``conn.unsent`` set), nothing is read and it
    returns: the caller then finishes the request (:func:`closed_unsent`,
    :func:`write_unsent`).  (Where the wait is trio's, because there is no poller, a write
    of the writer's that failed is a :class:`httpx2.ReadError` with ``conn.unsent`` set.)"""
    raw = conn.raw
    data: bytes | bytearray = b""
    fired = False  # whether the watcher ended the wait (``_waits``): its deadline passed
    try:
        if raw is None:
            data = await _receive_some(conn.stream, min(trio.current_time() + read_timeout, until))
        else:
            # A cancellation is seen by the wait, or by the checkpoint after an answer that
            # was already there: one full checkpoint either way.  (Unlike trio's
            # ``receive_some``, bytes already read are then dropped: the exchange's caller
            # closes the connection on any exception, so nothing is left half-read.)
            there = None if sent or posted else _recv_nowait(raw)
            if there is None:  # (the wait, inline: one frame less while the answer comes)
                deadline = min(trio.current_time() + read_timeout, until)
                # (in the run's poller, one wait among many: a posted request's, and any
                # later one on a connection registered there, which stays registered, but
                # a lone request's first: the poller would add a turn of the scheduler)
                polled = posted or (not sent and conn.poller is not None)
                if sent and conn.poller is not None:  # (its answer would be reported twice)
                    conn.poller.drop(conn)
                while there is None:
                    if polled and conn.poller is not None and conn.poller.stirred_since(conn):
                        await trio.lowlevel.checkpoint()  # (came while nobody waited: look)
                    elif polled and arm(conn, raw, deadline):
                        how = await trio.lowlevel.wait_task_rescheduled(conn.abort_wait)
                        if how == TIMED_OUT:
                            raise httpx2.ReadTimeout(_READ_TIMEOUT)
                        if how == CLOSED:
                            raise trio.ClosedResourceError("the connection was closed")
                    # Else trio's wait (``_waits.wait_readable``, inline); with no deadline,
                    # or when the run is ending, no watcher: a cancel scope keeps it.
                    elif (entry := start_wait(raw, deadline)) < 0:
                        if not await wait_scoped(raw, deadline):
                            raise httpx2.ReadTimeout(_READ_TIMEOUT)
                    else:
                        try:
                            await trio.lowlevel.wait_readable(raw)
                        finally:
                            fired = end_wait(entry)
                        fired = False  # (readable, even if the deadline passed meanwhile)
                    if posted and (conn.outgoing is not None or conn.unsent is not None):
                        return  # (not written, or not whole: the caller finishes it first)
                    there = _recv_nowait(raw)  # (None: woken for nothing, wait again)
            else:
                await trio.lowlevel.checkpoint()
            data = there
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        if fired:
            raise httpx2.ReadTimeout(_READ_TIMEOUT) from None
        raise httpx2.ReadError(f"reading the response failed: {exc}") from exc
    try:
        if data:
            conn.reader.feed(data if isinstance(data, bytes) else bytes(data))
        else:
            conn.reader.feed_eof()
    except ProtocolError as exc:
        hint = "" if conn.reader.head else conn.hint
        raise httpx2.RemoteProtocolError(str(exc) + hint) from None


def _recv_nowait(raw: socket.socket) -> bytes | None:
    """What the socket holds, or ``None`` if nothing yet.  (Waiting is the caller's, out of
    the ``except`` block: in it, the exception and its traceback would stay alive for as
    long as the answer takes.)"""
    try:
        return raw.recv(READ_SIZE)
    except BlockingIOError:
        return None


async def _receive_some(stream: trio.abc.Stream, deadline: float) -> bytes | bytearray:
    # A bare CancelScope, not trio.fail_after: this is on every request's path.
    with trio.CancelScope(deadline=deadline):
        return await stream.receive_some(READ_SIZE)
    raise httpx2.ReadTimeout(_READ_TIMEOUT)
