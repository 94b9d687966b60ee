"""Waits for answers in an epoll of our own: one per trio run, on Linux.

A request on the fast lane waits for its answer on a plain TCP socket.  Through trio's
:func:`trio.lowlevel.wait_readable`, each such wait holds 14 objects for as long as the
answer takes: four coroutines, the generator and the record (and its dict) of trio's
trap, an abort closure with its four cells and their tuple, and the fd's
``EpollWaiters``.  That was more than a quarter of what a request in flight held, and
the garbage collector walks all of it in every collection of the older generations
(``docs/performance.md``, section 16).

Here the wait for the answer to a request posted to the run's writer (``_outbox``: a
request among others on the fast lane; the long wait, for the whole of the server's time)
is made in one :class:`select.epoll` per run instead, which trio watches as one more file
descriptor.  A *poller* (a trio system task) waits until that epoll is readable, reads
which sockets received something, and reschedules the task waiting on each.  A request's
wait is then :func:`trio.lowlevel.wait_task_rescheduled` with a bound method of its
connection as the abort function: five objects instead of 14, and no coroutine of ours.

Each socket is registered once, edge-triggered, and stays registered until it is closed
(the kernel then takes it out): a wait makes no system call (trio's re-arms the socket
with an ``epoll_ctl`` each time), and every later wait on that connection is made here
too (the rest of an answer that came in pieces, the next request's), but for a lone
request's first wait (written by its own task: the poller would add a turn of the
scheduler), which is trio's, as on a connection that never waited here: its socket is
then taken out of the epoll (:meth:`Poller.drop`), which would only report the answer a
second time, until it next waits here.  Something that
comes while no task waits (an idle connection the server closed; or bytes that came after
the poller's look and were read with the rest) is noted (``stirred``, by descriptor): the
next wait reads before it waits, and the pool asks the socket itself before it reuses the
connection.  Before that, the pool asks this epoll what came since the poller last looked
(``Connection.socket_readable`` calls :meth:`Poller.look`: one ``epoll_wait`` for all the
sockets), so that a close just before a reuse is seen, as a system call on the socket
would see it.  The server's close is reported with what came (``EPOLLRDHUP``): a
connection whose answer came with the close is not reused.  The poller holds a connection
only while a task waits on it: one dropped without a close (a transport never closed) is
collected, which closes its socket.

The poller also keeps the waits' deadlines (the read timeout, or the attempt's, whichever
comes first), as :mod:`._waits` does for trio's waits: a heap of ``(deadline, number)``,
and the poller's own wait for the epoll ends at the earliest.  A wait ends with one of:

* ``READY``: the socket received something (an answer, EOF or an error: the read tells;
  or nothing left, bytes read already: the read finds none and waits again);
* ``TIMED_OUT``: its deadline passed first (the caller closes the connection);
* ``WOKEN``: the run's writer could not write the request whole (``_outbox``; the caller
  finishes it);
* ``CLOSED``: the connection was closed by another task meanwhile.

A cancelled wait takes itself off (its abort function); what comes later is noted
(``stirred``).  The poller ends with the run: a wait left then (a shielded
clean-up's, in the run's last moments) ends as timed out, and later waits use trio's own
(:func:`arm` returns ``False``), as they do where there is no :class:`select.epoll`.
Nothing escapes the poller: a failure of a system task would end the whole run.  Should
the poller fail all the same (a bug), it says so in the log, the waits under way end with
``READY`` (each then finds nothing to read and waits again, through trio), and the run's
later waits are trio's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import socket
from typing import TYPE_CHECKING

import outcome
import trio

from ._waits import Deadlines, system_task

if TYPE_CHECKING:
    from ._pool import Connection

__all__ = ["CLOSED", "READY", "TIMED_OUT", "WOKEN", "arm", "wake"]

logger = logging.getLogger("paradigm_trio")

READY = 1
TIMED_OUT = 0
WOKEN = 2
CLOSED = 3

_EPOLL = getattr(select, "epoll", None)
# Edge-triggered: a socket is reported when something arrives, not for as long as it is
# readable, so it stays registered between waits with no ``epoll_ctl`` per wait.  The
# server's close is reported with what came (``EPOLLRDHUP``): the edge of an answer and the
# close right after it may be one event.
_CLOSES = getattr(select, "EPOLLRDHUP", 0) | getattr(select, "EPOLLHUP", 0)
_CLOSES |= getattr(select, "EPOLLERR", 0)
_EVENTS = getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLRDHUP", 0)
_EVENTS |= getattr(select, "EPOLLET", 0)
_MOST = 4096  # events read by one ``epoll_wait`` at most (its buffer: 12 bytes each)


class Poller:
    """The answer waits of one trio run, in one epoll, and the task that watches it.

    ``ready`` holds the connection waiting on each socket, by file descriptor;
    ``stirred`` the descriptors of the registered sockets that received something while no
    task waited; ``registered`` counts the sockets registered (a socket closed without its
    connection's ``close`` is still counted: a larger buffer for ``epoll_wait``, no more);
    ``deadlines`` holds the connection of
    each wait with a deadline, by its number.  No connection is held but while a task
    waits on it: one dropped without a close (a transport never closed, say) is collected,
    which closes its socket and takes it out of the epoll.
    """

    __slots__ = ("deadlines", "epoll", "ready", "registered", "running", "stirred")

    def __init__(self, epoll: select.epoll) -> None:
        self.epoll: select.epoll | None = epoll  # ``None`` once the run ends
        self.ready: dict[int, Connection] = {}
        self.stirred: set[int] = set()
        self.registered = 0
        self.deadlines: Deadlines[Connection] = Deadlines()
        self.running = False

    def arm(self, conn: Connection, raw: socket.socket, deadline: float) -> bool:
        """Start a wait for ``raw`` (``conn``'s socket) to receive something, by
        ``deadline``; ``False`` if this poller cannot (the run is ending).

        Raises:
            ValueError: ``deadline`` is NaN (never in the poller, a system task).
            OSError: the socket cannot be registered (closed, say).
        """
        epoll = self.epoll
        if epoll is None:
            return False
        if math.isnan(deadline):
            raise ValueError("deadline must not be NaN")
        if not self.running:
            if system_task(self.watch, "paradigm_trio answer poller") is None:
                self.end()
                return False
            self.running = True
        fd = raw.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the connection is closed")
        if conn.poller is not self or conn.fd != fd:  # (once: it stays until it is closed)
            other = self.ready.get(fd)
            if other is not None:  # (the same: its socket was closed behind its back)
                self.closing(other)
            try:
                epoll.register(fd, _EVENTS)
            except FileExistsError:  # (the same: its descriptor is still registered)
                epoll.modify(fd, _EVENTS)
            self.stirred.discard(fd)  # (a socket's before, closed without a word)
            self.registered += 1
            conn.poller = self
            conn.fd = fd
        conn.task = trio.lowlevel.current_task()
        self.ready[fd] = conn
        conn.number = -1 if deadline == math.inf else self.deadlines.add(deadline, conn)
        return True

    def forget(self, conn: Connection) -> None:
        """``conn``'s wait ended (woken, or cancelled): take it off."""
        conn.task = None
        if self.ready.get(conn.fd) is conn:
            del self.ready[conn.fd]
        if conn.number >= 0:
            self.deadlines.pop(conn.number)

    def wake(self, conn: Connection, how: int) -> None:
        """End ``conn``'s wait (under way): its task resumes with ``how``."""
        task = conn.task
        self.forget(conn)
        trio.lowlevel.reschedule(task, outcome.Value(how))  # type: ignore[arg-type]

    def closing(self, conn: Connection) -> None:
        """``conn``'s socket (registered here) is being closed, which takes it out of the
        epoll: its wait, if any, ends with ``CLOSED``, and it is forgotten here (its
        close, if it comes again, is not counted twice)."""
        if conn.task is not None:
            self.wake(conn, CLOSED)
        self._unregistered(conn)

    def drop(self, conn: Connection) -> None:
        """Take ``conn``'s socket out of the epoll: a lone request's wait is trio's (the
        poller would add a turn of the scheduler), and a registration would only report
        its answer a second time.  It is registered again when it next waits here."""
        self._unregistered(conn)
        if self.epoll is not None:
            with contextlib.suppress(OSError):  # (closed meanwhile: out already)
                self.epoll.unregister(conn.fd)

    def _unregistered(self, conn: Connection) -> None:
        """``conn``'s socket is no longer registered here."""
        conn.poller = None
        self.stirred.discard(conn.fd)
        self.registered -= 1

    def stirred_since(self, conn: Connection) -> bool:
        """Whether ``conn``'s socket received something while no task waited since this
        was last asked (an idle connection the server closed, or bytes read already)."""
        stirred = self.stirred
        if conn.fd in stirred:
            stirred.discard(conn.fd)
            return True
        return False

    def look(self) -> None:
        """Take what the epoll reports now: wake the waits whose socket received
        something (a connection the server closed or that failed, even if its answer came
        with the close, is not reused: ``reusable``), and note the sockets that received
        something while no task waited (``stirred``).  The poller does it each time the
        epoll turns readable; the pool does it before it reuses a connection
        (``Connection.socket_readable``), so that what came since (the server's close of
        an idle connection, say) is seen."""
        epoll = self.epoll
        if epoll is None:
            return
        ready = self.ready
        size = min(max(self.registered, 1), _MOST)  # (all at once, as a rule)
        while True:
            events = epoll.poll(0, size)
            for fd, got in events:
                conn = ready.get(fd)
                if conn is None:
                    self.stirred.add(fd)
                    continue
                if got & _CLOSES:  # (the server closed, or an error: the answer is its last)
                    conn.reusable = False
                self.wake(conn, READY)
            if len(events) < size:
                return

    async def watch(self) -> None:
        """Wake the waits whose socket received something or whose deadline passed; note
        the sockets that received something while nobody waited (``stirred``)."""
        epoll = self.epoll
        assert epoll is not None  # (started by ``arm``, which checks)
        deadlines = self.deadlines
        how = TIMED_OUT  # (how the waits left at the end end)
        try:
            while True:
                with trio.CancelScope(deadline=deadlines.earliest()) as deadlines.scope:
                    await trio.lowlevel.wait_readable(epoll)
                deadlines.scope = None
                self.look()  # (before the deadlines: a ready socket wins)
                for conn in deadlines.due(trio.current_time()):
                    self.wake(conn, TIMED_OUT)
        except Exception:  # (a bug: never expected, and never to end the whole run)
            logger.exception("the answer poller failed: this run's waits are trio's from now on")
            how = READY  # (each finds nothing to read, and waits again through trio)
        finally:
            # Cancelled as the run ends: a wait left (a shielded clean-up's) ends as timed
            # out rather than with no deadline; the waits that start later are trio's.
            self.end(how)

    def end(self, how: int = TIMED_OUT) -> None:
        """No wait is made here any more: the waits under way end with ``how``."""
        epoll, self.epoll = self.epoll, None
        self.running = False
        self.deadlines.scope = None
        for conn in list(self.ready.values()):
            self.wake(conn, how)
        self.stirred.clear()
        self.deadlines.heap.clear()
        self.deadlines.items.clear()
        if epoll is not None:
            with contextlib.suppress(OSError):
                epoll.close()


_POLLER: trio.lowlevel.RunVar[Poller | None] = trio.lowlevel.RunVar("paradigm_trio_poller")


def arm(conn: Connection, raw: socket.socket, deadline: float) -> bool:
    """Start a wait for ``raw``, ``conn``'s socket, to turn readable by ``deadline`` (trio
    time; infinite for none); then ``await trio.lowlevel.wait_task_rescheduled(
    conn.abort_wait)`` at once, which returns ``READY``, ``TIMED_OUT``, ``WOKEN`` or
    ``CLOSED``.  ``False`` if there is no poller (no :class:`select.epoll` here, or the run
    is ending): wait with trio's :func:`trio.lowlevel.wait_readable` instead.

    (A plain call before trio's own wait, not a coroutine of ours: one frame less on every
    request in flight.)
    """
    try:
        poller = _POLLER.get()
    except LookupError:
        poller = None
        if _EPOLL is not None:
            with contextlib.suppress(OSError):  # (out of descriptors: trio's waits, then)
                poller = Poller(_EPOLL())
        _POLLER.set(poller)
    return poller is not None and poller.arm(conn, raw, deadline)


def wake(conn: Connection, how: int) -> bool:
    """End ``conn``'s wait with ``how`` if it waits in this run's poller; whether it did."""
    poller = conn.poller
    if conn.task is None or poller is None:
        return False
    poller.wake(conn, how)
    return True
