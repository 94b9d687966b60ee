"""Timed waits on a socket without a cancel scope each: one watcher per trio run.

Every request on the fast lane waits for its answer with a deadline (the read timeout,
or the attempt's, whichever comes first).  A :class:`trio.CancelScope` with a deadline
around that wait costs some 43,000 instructions per request (callgrind, 2,000-odd
requests at concurrency 64 that each wait for their answer: 749,975 instructions per
request with it, 706,433 without): trio registers and unregisters the deadline, and
enters, leaves and recalculates the scope's cancel status, through two context managers.

Here a wait writes its deadline in a heap instead (:func:`wait_readable`), and one watcher
task sleeps until the earliest.  A wait whose deadline passes is woken by
:func:`trio.lowlevel.notify_closing` on its socket: trio's ``wait_readable`` then raises
:class:`trio.ClosedResourceError`, which :func:`wait_readable` turns into ``False``, and
the caller, whose exchange has timed out, closes the connection.  (A wait whose socket
turned readable just as its deadline passed ends as woken by the socket, and its
connection goes on: ``notify_closing`` only took the socket off trio's registrations,
which its next wait makes again.)  A wait with no deadline is not the watcher's: it calls
trio's ``wait_readable`` itself.

The watcher is a trio system task (:func:`trio.lowlevel.spawn_system_task`), one per
run, started by the first timed wait; it ends once it wakes and no wait is left (at the
latest at the deadline of the last one, a read timeout after it began), and trio
cancels it when the run ends (a wait still left then is woken as timed out).  Nothing
escapes it: a failure of a system task would end the whole run, so a NaN deadline is
refused when the wait starts, as a cancel scope would refuse it.

A wait that ends leaves its entry in the heap, marked; the marked entries are dropped as
they reach the top, or all at once when they are more than half of the heap (as asyncio
does with its cancelled timers), so the heap holds at most about twice the waits under
way.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import socket
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

__all__ = ["Deadlines", "end_wait", "start_wait", "system_task", "wait_readable", "wait_scoped"]

_COMPACT_AFTER = 256
"""Ended waits tolerated in the heap before it is compacted (when they are half of it)."""

T = TypeVar("T")


def system_task(async_fn: Callable[[], Awaitable[object]], name: str) -> trio.lowlevel.Task | None:
    """Start ``async_fn`` as a trio system task (the one of a run that keeps its waits:
    this module's watcher, ``_poller``'s poller, ``_outbox``'s writer); ``None`` if the run
    is ending (its system nursery is closed): the caller then does without."""
    try:
        return trio.lowlevel.spawn_system_task(async_fn, name=name)
    except RuntimeError:
        return None


class Deadlines(Generic[T]):
    """The deadlines of waits under way, for the one task that wakes them (this module's
    watcher, and ``_poller``'s poller).

    ``heap`` holds ``(deadline, number)`` for each wait (plain tuples of numbers: the
    garbage collector soon stops tracking them), ``items`` what each wait under way
    stands for, by its number.  A wait that ends leaves its entry in the heap; the entries
    of ended waits are dropped as they reach the top, or all at once when they are more
    than half of the heap.  ``scope``: the waking task's sleep, whose deadline an earlier
    wait brings forward.
    """

    __slots__ = ("heap", "items", "numbers", "scope")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int]] = []
        self.items: dict[int, T] = {}
        self.numbers = itertools.count()
        self.scope: trio.CancelScope | None = None

    def add(self, deadline: float, item: T) -> int:
        """The number of a new wait for ``item`` until ``deadline``."""
        number = next(self.numbers)
        heapq.heappush(self.heap, (deadline, number))
        self.items[number] = item
        scope = self.scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        return number

    def pop(self, number: int) -> T | None:
        """End the wait ``number``; what it stood for (``None`` if it had ended)."""
        item = self.items.pop(number, None)
        heap, items = self.heap, self.items
        if len(heap) > _COMPACT_AFTER and len(heap) > 2 * len(items):
            heap[:] = [entry for entry in heap if entry[1] in items]
            heapq.heapify(heap)
        return item

    def due(self, now: float) -> list[T]:
        """End the waits whose deadline is ``now`` or earlier; what they stood for."""
        heap, items = self.heap, self.items
        ended = []
        while heap and (heap[0][1] not in items or heap[0][0] <= now):
            item = items.pop(heapq.heappop(heap)[1], None)
            if item is not None:
                ended.append(item)
        return ended

    def earliest(self) -> float:
        """The earliest deadline in the heap (perhaps an ended wait's)."""
        return self.heap[0][0] if self.heap else math.inf


class _Watch:
    """The timed waits of one trio run, and their watcher: the socket of each wait under
    way (``deadlines.items``)."""

    __slots__ = ("deadlines", "running")

    def __init__(self) -> None:
        self.deadlines: Deadlines[socket.socket] = Deadlines()
        self.running = False

    def add(self, deadline: float, sock: socket.socket) -> int:
        """The number of a new wait until ``deadline``, or -1 if no watcher can run (the
        run is ending): the caller then waits under a cancel scope.

        Raises:
            ValueError: ``deadline`` is NaN (as a cancel scope's would: never in the
                watcher, whose failure would end the whole run).
        """
        if math.isnan(deadline):
            raise ValueError("deadline must not be NaN")
        if not self.running:
            if system_task(self.watch, "paradigm_trio wait watcher") is None:
                return -1
            self.running = True
        return self.deadlines.add(deadline, sock)

    def done(self, number: int) -> bool:
        """The wait ``number`` ended (woken, cancelled or timed out); whether its deadline
        passed first."""
        return self.deadlines.pop(number) is None

    async def watch(self) -> None:
        """Wake the waits whose deadline passed; end once none is left."""
        deadlines = self.deadlines
        try:
            while True:
                for sock in deadlines.due(trio.current_time()):
                    _fire(sock)
                if not deadlines.heap:
                    break
                with trio.CancelScope(deadline=deadlines.earliest()) as deadlines.scope:
                    await trio.sleep_forever()
                deadlines.scope = None
        finally:
            # Cancelled as the run ends: a wait left (a shielded clean-up in the run's
            # last moments) is woken as timed out rather than left with no deadline.
            for sock in deadlines.due(math.inf):
                _fire(sock)
            deadlines.scope = None
            self.running = False


def _fire(sock: socket.socket) -> None:
    """Wake the wait on ``sock`` as timed out.  Nothing may escape the watcher, a system
    task, whose failure would end the whole run."""
    with contextlib.suppress(OSError, ValueError):  # (closed meanwhile, some OSes)
        trio.lowlevel.notify_closing(sock)


_WATCH: trio.lowlevel.RunVar[_Watch] = trio.lowlevel.RunVar("paradigm_trio_waits")


def start_wait(sock: socket.socket, deadline: float) -> int:
    """Register a wait on ``sock`` until ``deadline`` (trio time) with this run's watcher;
    then ``await trio.lowlevel.wait_readable(sock)`` and, however it ends, call
    :func:`end_wait` with the number returned.  -1 when there is no deadline, or no
    watcher can run (the run is ending): then use :func:`wait_scoped`.

    (Two plain calls around trio's own wait, not a coroutine of ours: one frame less on
    every wake-up of every request in flight.)"""
    if deadline == math.inf:
        return -1
    try:
        watch = _WATCH.get()
    except LookupError:
        watch = _Watch()
        _WATCH.set(watch)
    return watch.add(deadline, sock)


def end_wait(number: int) -> bool:
    """The wait ``number`` ended; whether its deadline passed first (then trio raised
    :class:`trio.ClosedResourceError` in it, and the socket is no longer registered with
    trio: close it, never wait on it again)."""
    return _WATCH.get().done(number)


async def wait_scoped(sock: socket.socket, deadline: float) -> bool:
    """:func:`wait_readable` without the watcher: a cancel scope keeps ``deadline`` (none
    for an infinite one)."""
    if deadline == math.inf:
        await trio.lowlevel.wait_readable(sock)
        return True
    with trio.move_on_at(deadline):
        await trio.lowlevel.wait_readable(sock)
        return True
    return False


async def wait_readable(sock: socket.socket, deadline: float) -> bool:
    """Wait until ``sock`` is readable, as :func:`trio.lowlevel.wait_readable` does;
    ``False`` if ``deadline`` (trio time) passed first: the caller must then close the
    socket, and not wait on it again.  (``_exchange.receive`` makes the same wait inline.)"""
    entry = start_wait(sock, deadline)
    if entry < 0:
        return await wait_scoped(sock, deadline)
    try:
        await trio.lowlevel.wait_readable(sock)
    except trio.ClosedResourceError:
        if end_wait(entry):
            return False
        raise
    except BaseException:
        end_wait(entry)
        raise
    end_wait(entry)
    return True
