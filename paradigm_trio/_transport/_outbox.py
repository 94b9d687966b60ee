"""Small requests written together: one writer task per trio run.

A request that waits for its answer on a plain TCP connection is not written by its own
task: the task *posts* it (:func:`post`), starts its wait for the answer at once, and the
writer, woken by the first post, writes every request posted meanwhile in its next step,
one ``send`` after the other.

Why: a batch's workers are woken together, by answers that came together, and each then
makes its next request.  Written by each task as soon as it is made, those requests left
spaced by a request's Python work, so a server on the same machine read each one alone,
went back to sleep, and was woken for the next: once per request, a context switch whose
cost (waking a process on the other core) falls on the client's CPU, which makes the
``send``.  Written together, they find the server awake.  Measured against the raw
server of ``python -m benchmarks cost`` (a quiet 2-core AMD EPYC, CPython 3.11.7, 8,000
requests at concurrency 64; ``docs/performance.md``, section 2): the server's context
switches per request 1.0 -> 0.15 (the aiohttp recipe's: 0.06), the client's CPU time per
request 1.19x the recipe's -> 0.74x warm, 1.24x -> 0.97x cold.  (``TrioTransport.fetch``
posts only when another request is under way: a request alone would just wait a turn of
the scheduler for the writer.)

Why a writer task rather than a trip through trio's scheduler before each write (which
also writes them together): that trip puts the wait's allocations (its coroutines) in a
step of their own, after the step that freed the last request's objects, and the garbage
collector ran about half as often again at concurrency 2,000.  Here the task frees,
allocates and starts its wait in one step, and the writer allocates nothing per request.

A post that finds ``_FLUSH_AT`` (8) requests waiting writes them first, itself.  At
concurrency 2,000 one step of trio's scheduler can run hundreds of tasks; with every
request held for the writer, each waited for all of them, and the answers then came back
in floods, which the batch's consumer handled in larger gulps, freeing more objects at once
than the collector's count could take back (measured with the writer alone: 1.15 times the
ideal wall time and about 400 young collections in scenario 16's run, against 1.06 and
200 without it; with 8: 1.06 and 200, and the server still woken for about one request in
seven at concurrency 64; 4, 16 and 32 were measured too, within the noise of 8 but for the
server's wake-ups: 0.27, 0.09 and 0.05 per request).

The writer is a trio system task (:func:`trio.lowlevel.spawn_system_task`), started by
the first post of a run; it sleeps while nothing is posted, and ends with the run.
Nothing escapes it (a failure of a system task would end the whole run).  What a write
could not do is left on the connection (``Connection.unsent``: the bytes the socket did
not take, or the ``OSError`` of the ``send``) and the task's wait is woken: by the run's
poller (``_poller.wake``), or, where the wait is trio's, with
:func:`trio.lowlevel.notify_closing` (it raises :class:`trio.ClosedResourceError` there);
the task then writes the rest itself, or looks for an answer the server sent before it
closed (see ``TrioTransport.fetch``).  A task that gives up (cancelled, timed out) sets
``Connection.outgoing`` to ``None`` as it does, and the writer skips it, unless the
writer's step came first in the same turn of the scheduler: then the request was written,
as it always was before the writer existed, and the connection is closed all the same.
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio

from ._poller import WOKEN, wake
from ._pool import Connection
from ._waits import system_task

__all__ = ["post"]

_FLUSH_AT = 8
"""A post that finds this many requests waiting for the writer writes them first itself."""


class _Outbox:
    """The requests posted in one trio run, and their writer."""

    __slots__ = ("asleep", "conns", "task")

    def __init__(self) -> None:
        self.conns: list[Connection] = []  # posted, in order, not yet written
        self.task: trio.lowlevel.Task | None = None  # the writer, while it runs
        self.asleep = False  # the writer waits for a post

    def post(self, conn: Connection, data: bytes) -> bool:
        """Have ``data`` written on ``conn`` (plain TCP) in the writer's next step;
        ``False`` if no writer can run (the run is ending): the caller writes it."""
        if self.task is None:
            self.task = system_task(self.write, "paradigm_trio request writer")
            if self.task is None:
                return False
        if len(self.conns) >= _FLUSH_AT:
            self.write_posted()
        conn.outgoing = data
        self.conns.append(conn)
        if self.asleep:
            self.asleep = False
            trio.lowlevel.reschedule(self.task)
        return True

    async def write(self) -> None:
        """Write what is posted, as it is; sleep while nothing is."""
        try:
            while True:
                if not self.conns:
                    self.asleep = True
                    await trio.lowlevel.wait_task_rescheduled(self._abort)
                    continue
                self.write_posted()
        finally:
            # Cancelled as the run ends: what is still posted (a shielded clean-up's
            # request, in the run's last moments) is written now, as its task would have.
            self.task = None
            self.asleep = False
            self.write_posted()

    def write_posted(self) -> None:
        """Write every request posted so far, in order (nothing escapes: see ``_write``)."""
        conns, self.conns = self.conns, []
        for conn in conns:
            _write(conn)

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self.asleep = False  # (no post may reschedule it any more)
        return trio.lowlevel.Abort.SUCCEEDED


def _write(conn: Connection) -> None:
    """Write ``conn``'s posted request, unless its task gave it up."""
    data = conn.outgoing
    if data is None:
        return
    conn.outgoing = None
    raw = conn.raw
    if raw is None:  # (never posted: a TLS connection has no ``raw``)
        return
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    except OSError as exc:
        _unsent(conn, exc.with_traceback(None))  # (no frame of the writer's kept alive)
        return
    if sent < len(data):
        _unsent(conn, memoryview(data)[sent:])


def _unsent(conn: Connection, what: memoryview | OSError) -> None:
    """Leave what a write did not do on ``conn``, and wake its task's wait."""
    conn.unsent = what
    if wake(conn, WOKEN):  # (its wait is in the run's poller)
        return
    with contextlib.suppress(OSError, ValueError):  # (closed meanwhile, some OSes)
        trio.lowlevel.notify_closing(conn.raw)  # type: ignore[arg-type]


_OUTBOX: trio.lowlevel.RunVar[_Outbox] = trio.lowlevel.RunVar("paradigm_trio_outbox")


def post(conn: Connection, data: bytes) -> bool:
    """Have ``data``, a whole request on ``conn`` (plain TCP: ``Connection.raw``), written
    by this run's writer in its next step; then wait for the answer at once, in the same
    step.  ``False`` if no writer can run (the run is ending): write it yourself.

    If the write fails or is not whole, ``conn.unsent`` is set (the ``OSError``, or the
    bytes left) and the wait is woken (``_poller.WOKEN``; a wait of trio's raises
    :class:`trio.ClosedResourceError`); a task that gives up the request before it is
    written sets ``conn.outgoing`` to ``None``."""
    try:
        outbox = _OUTBOX.get()
    except LookupError:
        outbox = _Outbox()
        _OUTBOX.set(outbox)
    return outbox.post(conn, data)
