"""A trio event loop on a thread of its own, and the bridge blocking callers cross.

:class:`Loop` runs ``trio.run`` on a daemon thread it starts, holding one nursery open
until :meth:`Loop.stop`.  A blocking caller hands it a :class:`Job` (an async function
with a cancel scope and a ``concurrent.futures.Future``); the job runs as a task of that
nursery and its outcome lands in the future, which the caller waits for.  If the wait is
interrupted (``KeyboardInterrupt``, or any exception raised into the waiting thread), the
job's scope is cancelled on the loop and the caller waits (at most ``CANCEL_WAIT``) for the
task to have ended before the exception goes on: no task survives its caller.

:class:`Pipe` carries many items from a job to one blocking reader (a stream's chunks, a
batch's results), at most ``capacity`` waiting: the job waits for room, so memory stays
bounded by the reader's pace.

Nothing here knows the client: ``_sync`` composes a :class:`~paradigm_trio.Client` with it.

Why a thread and not ``trio.lowlevel.start_guest_run``: a guest run advances only while
its host loop runs, and a blocking call (a notebook cell's ``client.chat_batch(...)``)
holds the host loop, asyncio's on the kernel's main thread, until it returns, so the
guest would never progress; a plain script has no host loop at all.  A blocking API needs
the engine to run elsewhere, and a thread of its own also keeps it away from whatever
the caller's loop does (``nest_asyncio``, a busy cell).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio

__all__ = ["CANCEL_WAIT", "Job", "Loop", "Pipe"]

T = TypeVar("T")

WAKE_UP = 0.1
"""Seconds between a blocked caller's wake-ups (to notice an interrupt)."""

CANCEL_WAIT = 10.0
"""Seconds an interrupted caller waits for its cancelled task to end (it takes
milliseconds: trio cancels at the next checkpoint)."""


class Job(Generic[T]):
    """One async call on the loop, for one blocking caller."""

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.scope = trio.CancelScope()
        self.started = False  # on the loop: its task was asked for (``Loop._start``)


class LoopClosedError(RuntimeError):
    """The loop ended while a call ran (the client was closed from another thread)."""


class Loop:
    """``trio.run`` on a daemon thread, running :class:`Job` s until :meth:`stop`.

    ``enter`` is an async context manager factory entered first (the client's
    ``async with``): its value is :attr:`value`, and the loop leaves it when stopping.
    An exception raised entering it is raised by the constructor, and no thread remains.
    If the constructor is interrupted (``KeyboardInterrupt``), the loop abandons: it
    cancels the entering, or leaves ``enter`` if it was entered; the constructor waits
    (at most ``CANCEL_WAIT``) for the thread to end, then the exception goes on.
    """

    def __init__(self, enter: Callable[[], Any], *, name: str) -> None:
        self._ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._stop: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._abandoned = threading.Event()  # the constructor was interrupted
        self._entering = trio.CancelScope()
        self._thread = threading.Thread(target=self._run, args=(enter,), name=name, daemon=True)
        try:
            self._thread.start()
            # In slices: see :meth:`wait`.
            while not concurrent.futures.wait([self._ready], timeout=WAKE_UP).done:
                pass
            self.value = self._ready.result()
        except BaseException:
            self._give_up()
            raise

    def _give_up(self) -> None:
        """The constructor was interrupted: have the loop abandon, wait for its thread."""
        self._abandoned.set()  # before reading the token: see ``_main``
        if self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._abandon)
        if self._thread.is_alive():  # (else it ends on its own, seeing the flag)
            self._thread.join(CANCEL_WAIT)

    @property
    def token(self) -> trio.lowlevel.TrioToken:
        """The loop's :class:`trio.lowlevel.TrioToken` (for ``trio.from_thread``)."""
        assert self._token is not None
        return self._token

    @property
    def thread(self) -> threading.Thread:
        """The loop's thread."""
        return self._thread

    def _run(self, enter: Callable[[], Any]) -> None:
        try:
            trio.run(self._main, enter)
        except BaseException as exc:  # the loop crashed: nobody may wait on it forever
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                raise

    def _abandon(self) -> None:
        """The constructor was interrupted: cancel the entering, or end the loop."""
        self._entering.cancel()
        if self._stop is not None:
            self._stop.set()

    async def _main(self, enter: Callable[[], Any]) -> None:
        self._stop = trio.Event()
        # The token first, the flag then (the constructor sets the flag, then reads the
        # token): either this sees the flag, or the constructor cancels the entering.
        self._token = trio.lowlevel.current_trio_token()
        entered = False
        with self._entering:
            if self._abandoned.is_set():
                return
            try:
                cm = enter()
                value = await cm.__aenter__()
                entered = True
            except Exception as exc:
                self._ready.set_exception(exc)
                return
        if not entered or self._abandoned.is_set():  # nobody will use nor stop this loop
            if entered:
                with trio.CancelScope(shield=True):
                    await cm.__aexit__(None, None, None)
            return
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._ready.set_result(value)
                await self._stop.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await cm.__aexit__(None, None, None)

    # ------------------------------------------------------------------ from other threads

    def submit(self, job: Job[Any]) -> None:
        """Start ``job`` on the loop (from any thread but the loop's).

        If an interrupt lands while the job is being handed over, the job is cancelled
        (:meth:`cancel`: it may already be queued) before the exception goes on.

        Raises:
            LoopClosedError: the loop has ended.
        """
        assert self._token is not None
        assert self._nursery is not None
        try:
            self._token.run_sync_soon(self._start, job)
        except trio.RunFinishedError:
            raise LoopClosedError("the client is closed") from None
        except BaseException:
            self.cancel(job)
            raise

    def _start(self, job: Job[Any]) -> None:
        assert self._nursery is not None
        if job.future.done():  # (cancelled before it started: see ``_cancel``)
            return
        job.started = True
        try:
            self._nursery.start_soon(self._work, job)
        except RuntimeError:  # the nursery is closing: the client is being closed
            job.future.set_exception(LoopClosedError("the client is closed"))

    def soon(self, fn: Callable[..., object], *args: object) -> None:
        """Call ``fn(*args)`` on the loop's thread, soon; nothing if the loop has ended."""
        assert self._token is not None
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, *args)

    def run(self, job: Job[T], *, tick: Callable[[], object] | None = None) -> T:
        """:meth:`submit` ``job``, then :meth:`wait` for it, one interruptible call: an
        interrupt that lands between the two cancels the job as one during either does."""
        try:
            self.submit(job)
            return self.wait(job, tick=tick)
        except BaseException:
            self.cancel(job)
            raise

    def wait(self, job: Job[T], *, tick: Callable[[], object] | None = None) -> T:
        """Wait for ``job`` and return its value or raise its exception.

        ``tick``, if given, is called every ``WAKE_UP`` seconds while waiting (in this
        thread).  If anything interrupts the wait (``KeyboardInterrupt``), the job is
        cancelled and has ended (or ``CANCEL_WAIT`` has passed) when the exception goes on.
        """
        try:
            # In slices, not at once: a signal delivered to another thread (or
            # ``_thread.interrupt_main``) does not wake a waiting lock, but Python raises
            # its KeyboardInterrupt as soon as this thread runs again.
            while not concurrent.futures.wait([job.future], timeout=WAKE_UP).done:
                if tick is not None:
                    tick()
        except BaseException:
            self.cancel(job)
            raise
        return job.future.result()

    def cancel(self, job: Job[Any]) -> None:
        """Cancel ``job`` on the loop and wait (at most ``CANCEL_WAIT``) for it to end.

        A job that never reached the loop (its :meth:`submit` was interrupted before it
        queued it) ends at once, cancelled.  An interrupt that lands during the wait (a
        second Ctrl-C) does not cut it short: it is raised once the job has ended.
        """
        if job.future.done():
            return
        deadline = time.monotonic() + CANCEL_WAIT
        interrupt: BaseException | None = None
        asked = False
        while not job.future.done() and (left := deadline - time.monotonic()) > 0:
            try:
                if not asked:  # (asked again if interrupted while asking: no harm)
                    self.token.run_sync_soon(self._cancel, job)
                    asked = True
                concurrent.futures.wait([job.future], timeout=min(WAKE_UP, left))
            except trio.RunFinishedError:
                break  # the loop has ended: every job it started has its outcome
            except KeyboardInterrupt as exc:
                interrupt = exc
        if interrupt is not None:
            raise interrupt

    @staticmethod
    def _cancel(job: Job[Any]) -> None:
        """On the loop: cancel ``job``; one that never reached the loop ends now.

        Calls from another thread run in the order they were asked for, so a ``_start``
        asked for before this (by the job's caller, who cancels it) has run: a job not
        started now was never queued.
        """
        job.scope.cancel()
        if not job.started and not job.future.done():
            job.future.set_exception(KeyboardInterrupt())  # its caller was interrupted

    def stop(self, timeout: float) -> bool:
        """End the loop (cancelling what runs), leave ``enter``; whether the thread ended.

        Called from the loop's own thread, it only asks: the loop ends after the caller's
        callback returns.
        """
        if self._stop is not None:
            self.soon(self._stop.set)
        if threading.current_thread() is self._thread:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ------------------------------------------------------------------ on the loop

    @staticmethod
    async def _work(job: Job[Any]) -> None:
        """Run ``job``, its outcome into its future.

        Whatever it raises is its caller's (a ``SystemExit``, a ``KeyboardInterrupt``, a
        group of them too): only trio's ``Cancelled`` goes on, which ends the job, never the
        loop, its other jobs or the client.
        """
        try:
            with job.scope:
                try:
                    value = await job.fn()
                except BaseException as exc:
                    if _cancelled(exc):
                        raise
                    job.future.set_exception(exc)
                else:
                    job.future.set_result(value)
        finally:
            if not job.future.done():
                if job.scope.cancel_called:
                    job.future.set_exception(KeyboardInterrupt())  # the caller cancelled it
                else:
                    job.future.set_exception(LoopClosedError("the client was closed"))


def _cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` is trio's ``Cancelled``, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


_END = object()


class Pipe(Generic[T]):
    """Items from one job on the loop to one blocking reader, at most ``capacity`` waiting.

    The job calls :meth:`put` (waiting for room); the reader calls :meth:`get` and gets
    the items, then :data:`END` once the job has ended (its outcome is the job's).
    """

    END: Any = _END

    def __init__(self, loop: Loop, job: Job[Any], capacity: int) -> None:
        self._loop = loop
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._room = trio.Semaphore(capacity)
        job.future.add_done_callback(lambda _: self._items.put(_END))

    async def put(self, item: T) -> None:
        """Hand ``item`` to the reader, once it has room for it (on the loop)."""
        await self._room.acquire()
        self._items.put(item)

    def get(self) -> Any:
        """The next item, or :attr:`END` (blocking; interruptible)."""
        while True:
            try:
                item = self._items.get(timeout=WAKE_UP)  # in slices: see Loop.wait
            except queue.Empty:
                continue
            break
        if item is not _END:
            self._loop.soon(self._room.release)
        return item
