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
descriptor.  (A lone request, and the rest of an answer that came in pieces, wait through
trio as before.)  A *poller* (a trio system task) waits until that epoll is readable,
reads which sockets are ready, and reschedules the task waiting on each.  A request's
wait is then :func:`trio.lowlevel.wait_task_rescheduled` with a bound method of
its connection as the abort function: five objects instead of 14, and no coroutine of
ours.  Each socket is registered once, level-triggered and one-shot: a wait re-arms it
(``epoll_ctl``, as trio's wait does), and a socket nobody waits on (an idle connection the
server closed) is not reported again.

The poller also keeps the waits' deadlines (the read timeout, or the attempt's, whichever
comes first), as :mod:`._waits` does for trio's waits: a heap of ``(deadline, number)``,
and the poller's own wait for the epoll ends at the earliest.  A wait ends with one of:

* ``READY``: the socket is readable (an answer, EOF or an error: the read tells);
* ``TIMED_OUT``: its deadline passed first (the caller closes the connection);
* ``WOKEN``: the run's writer could not write the request whole (``_outbox``; the caller
  finishes it);
* ``CLOSED``: the connection was closed by another task meanwhile.

A cancelled wait takes itself off (its abort function); the socket stays armed until it is
closed, which takes it out of the epoll, or until it turns readable, which the poller then
ignores.  The poller ends with the run: a wait left then (a shielded clean-up's, in the
run's last moments) ends as timed out, and later waits use trio's own (:func:`arm` returns
``False``), as they do where there is no :class:`select.epoll`.  Nothing escapes the poller:
a failure of a system task would end the whole run.  Should the poller fail all the same
(a bug), it says so in the log, the waits under way end with ``READY`` (each then finds
nothing to read and waits again, through trio), and the run's later waits are trio's.
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
_ARMED = getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLONESHOT", 0)


class Poller:
    """The answer waits of one trio run, in one epoll, and the task that watches it.

    ``ready`` holds the connection waiting on each socket, by file descriptor;
    ``deadlines`` the connection of each wait with a deadline, by its number.
    """

    __slots__ = ("deadlines", "epoll", "ready", "running")

    def __init__(self, epoll: select.epoll) -> None:
        self.epoll: select.epoll | None = epoll  # ``None`` once the run ends
        self.ready: dict[int, Connection] = {}
        self.deadlines: Deadlines[Connection] = Deadlines()
        self.running = False

    def arm(self, conn: Connection, raw: socket.socket, deadline: float) -> bool:
        """Start a wait for ``raw`` (``conn``'s socket) to turn readable, by ``deadline``;
        ``False`` if this poller cannot (the run is ending).

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
        if conn.poller is self:
            try:
                epoll.modify(fd, _ARMED)
            except FileNotFoundError:  # (its descriptor was closed behind the socket's back)
                epoll.register(fd, _ARMED)
        else:
            try:
                epoll.register(fd, _ARMED)
            except FileExistsError:  # (a descriptor of a socket closed behind its back)
                epoll.modify(fd, _ARMED)
            conn.poller = self
        other = self.ready.get(fd)
        if other is not None:  # (the same: its socket was closed behind its back)
            self.wake(other, CLOSED)
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
        """``conn`` is being closed by another task than the one waiting for its answer:
        that wait ends with ``CLOSED``."""
        self.wake(conn, CLOSED)

    async def watch(self) -> None:
        """Wake the waits whose socket is ready or whose deadline passed."""
        epoll = self.epoll
        assert epoll is not None  # (started by ``arm``, which checks)
        ready, deadlines = self.ready, self.deadlines
        how = TIMED_OUT  # (how the waits left at the end end)
        try:
            while True:
                with trio.CancelScope(deadline=deadlines.earliest()) as deadlines.scope:
                    await trio.lowlevel.wait_readable(epoll)
                deadlines.scope = None
                for fd, _ in epoll.poll(0):  # (before the deadlines: a ready socket wins)
                    conn = ready.get(fd)
                    if conn is not None:
                        self.wake(conn, READY)
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
