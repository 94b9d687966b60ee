"""Batches: the engine behind :meth:`Client.stream_batch` and :meth:`Client.embed_batch`.

The engine is one nursery of workers, never more than ``Limits.concurrency`` (the batch's
width).  A worker reads the input lazily (one worker at a time), groups the items into a
*unit* (one item for chat; several small embedding requests packed into one for
embeddings), sends it through the client (which holds the client-wide concurrency slot,
the rate limits and the retry loop), puts exactly one result per item into a memory
channel, then reads its next unit.  Workers start as units come, so a batch of three
items runs three.  The consumer reads the channel; a worker whose results wait for it
reads nothing more.  Memory therefore grows with the concurrency, never with the size of
the batch.

What a batch sends is a :class:`Kind`: how an item becomes a request, which requests
share a unit, how a unit is sent and how its results are made (each an :class:`Outcome`,
handed out by a :class:`ResultStream`).  The chat completions' kind is in ``_chat_kind``;
the embeddings' is in ``_embedding_kind``.  Everything here (the workers, fail-fast,
the deadline, the statistics) is the same for every kind.

Every input item yields exactly one result: a completion, an error (an invalid item, as
:class:`InvalidRequestError`, whatever is wrong with it; an :class:`APIError` after retries,
:class:`ServerUnreachableError` once the circuit breaker gives up) or, when a ``deadline``
passes, :class:`RequestCancelled`: items that were in flight are interrupted and items not
yet sent are read from the input and reported without being sent.  One bad item never stops
the others.  What does: ``on_error="raise"`` stops at the first failure (the rest are
cancelled and not reported); a batch whose first answers are all the same configuration
failure (``BatchOptions.systematic_failures``, judged by :meth:`BatchControl.judge`) stops
with :class:`SystematicFailureError` (those answers are held until the rule is disarmed,
and are the error's ``results`` if it stops; the rest get no result); an exception raised
by the input iterable itself (or by ``on_progress``) ends the batch with that exception,
and cancelling the whole batch from outside (your cancel scope) propagates
:class:`trio.Cancelled` after every task and connection is cleaned up.
"""

from __future__ import annotations

import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
    Sized,
)
from contextlib import asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar

import trio

from .. import _log
from .._config import Timeouts
from .._errors import InvalidRequestError, RequestCancelled
from ._batch_options import BatchOptions
from ._budget import HOLD, RELEASE, STOP, BatchControl
from ._cache import CacheStore
from ._dedupe import Dedupe, Identity
from ._hedge import SendOne, hedger_for
from ._ledger import Observer
from ._repeats import Repeats
from ._results import Outcome, ResultStream, _Tracker

__all__ = [
    "Kind",
    "Outcome",
    "ResultStream",
    "SendOne",
    "WarmUp",
    "run_batch",
]

Q = TypeVar("Q")


R = TypeVar("R", bound=Outcome)
R_co = TypeVar("R_co", bound=Outcome, covariant=True)
S = TypeVar("S", bound="ResultStream[Any]")

_ABSORBED_PER_TURN = 64
"""Items read in a row that need no sending (duplicates of an item under way, or answered
already) before the reader lets other tasks run."""


class WarmUp(Protocol):
    """Opens connections to the server for the requests to come (:meth:`Client.warm_up`)."""

    def __call__(
        self, connections: int, *, timeouts: Timeouts | None, task_status: trio.TaskStatus[None]
    ) -> Awaitable[object]: ...


class Kind(Protocol[Q, R_co]):
    """What a batch sends: how items become requests, units and results."""

    @property
    def operation(self) -> str:
        """What the batch's requests do (``"chat"``, ``"embeddings"``): its span's name."""
        ...

    def request(self, item: object, index: int) -> Q:
        """The item as a request; :class:`InvalidRequestError` for anything wrong with it."""
        ...

    def custom_id(self, item: object) -> str | None:
        """The ``custom_id`` of an item that is not a valid request, if it has one."""
        ...

    def joins(self, unit: Sequence[Q], request: Q) -> bool:
        """Whether ``request`` may join ``unit`` (a non-empty unit that is not full)."""
        ...

    def full(self, unit: Sequence[Q]) -> bool:
        """Whether ``unit`` (not empty) is full: it is sent without reading further."""
        ...

    def units(self, items: int) -> int:
        """The fewest units that ``items`` items make (how many connections a batch of
        that many items warms up, the concurrency permitting)."""
        ...

    def send(
        self, unit: Sequence[tuple[int, Q]], *, deadline: float, control: BatchControl
    ) -> Awaitable[Sequence[R_co]]:
        """Send a unit; one result per item, in order.  Never raises an ``Exception``:
        every failure is a result."""
        ...

    def failed(
        self, index: int, custom_id: str | None, request: Q | None, error: Exception
    ) -> R_co:
        """The result of an item never sent (invalid, or the deadline passed)."""
        ...

    def identity(self, request: Q, sampled: bool) -> Identity | None:
        """What makes ``request`` the same as another (dedupe, the cache), or ``None``;
        for a request that is not deterministic, ``None`` unless ``sampled``."""
        ...

    def cached(self, index: int, request: Q, raw: object, request_id: str | None) -> R_co:
        """The result of an item answered from the cache (the answer's JSON, parsed as the
        endpoint parses it: an ``Exception`` here means the entry is not used)."""
        ...

    def stored(self, result: Any) -> tuple[Mapping[str, Any], str | None] | None:
        """What the cache keeps of a result: its answer's JSON and request id, or ``None``
        (not a success)."""
        ...


class _SyncInputs:
    """Iterate a plain iterable from async code.

    No checkpoint of its own: each worker checks for a cancellation before it reads.
    """

    def __init__(self, items: Iterable[Any]) -> None:
        self._it = iter(items)

    def __aiter__(self) -> _SyncInputs:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None


class _Pool:
    """The workers of a :class:`_Run`: each takes the next unit itself once its last one is
    delivered, so a request costs no task of its own and no wake-up of a feeder (the
    batch's first design: a feeder task that started a task per unit).  Workers start as
    units come, up to the batch's width; one reads the input at a time.

    The deadline (``BatchOptions.deadline``) stops the reading: only the wait to read is
    cut by it, so an item being read from the input is never lost half-way (an item read
    after it is not sent: its worker reports it cancelled).

    While a result can still stop the batch (``on_error="raise"``, or the systematic-failure
    rule still deciding), a worker makes a full checkpoint before it reads its next unit:
    the workers woken with it (answers that came together) deliver first, so a batch they
    stop starts nothing more.  Otherwise it goes straight on (a cancellation is still seen
    there): a worker then frees its last request's objects and makes its next one's in one
    step, so the collector's allocation count, which a free only lowers while it is above
    zero, does not climb by a request's objects at every step (at concurrency 2,000: less
    than half the young collections).
    """

    __slots__ = ("ended", "iterator", "nursery", "reading", "run", "running")

    def __init__(
        self, run: _Run[Any, Any, Any], iterator: AsyncIterator[Any], nursery: trio.Nursery
    ):
        self.run = run
        self.iterator = iterator
        self.nursery = nursery
        self.reading = trio.Lock()
        self.running = 1  # (the feeding task is the first worker)
        self.ended = False  # the input ended, or raised, or the deadline passed

    async def pull(self) -> None:
        """Take units and send them until none is left."""
        run = self.run
        control, stops = run.control, run.options.on_error == "raise"
        while True:
            if stops or control.systematic is not None:
                # A full checkpoint: the workers woken with this one (answers that came
                # together) run first, so a batch they stop starts nothing more.
                await trio.lowlevel.checkpoint()
            else:  # (nothing can stop the batch now: straight on, see above)
                await trio.lowlevel.checkpoint_if_cancelled()
            unit = await self.next_unit()
            if not unit:
                return
            await run.work(unit)

    async def next_unit(self) -> list[tuple[int, Any]]:
        """The next unit (empty: there is none), and another worker started if the batch
        is not as wide as it may be."""
        run, reading = self.run, self.reading
        if self.ended:
            return []
        try:  # (no trip through the scheduler when nobody else is reading)
            reading.acquire_nowait()
        except trio.WouldBlock:
            with trio.move_on_at(run.stop_at) as waiting:
                await reading.acquire()
            if waiting.cancelled_caught:  # the deadline passed while waiting to read
                self.ended = True
                return []
        try:
            if self._stopped():
                return []
            unit, ended = await run.fill(self.iterator, run.workers)
            self.ended = self.ended or ended
        finally:
            reading.release()
        if unit and not self.ended and self.running < run.width:
            self.running += 1
            self.nursery.start_soon(self.pull)
        return unit

    def _stopped(self) -> bool:
        """Whether no unit is to be read any more: the input ended (another worker read
        its end), or the deadline passed."""
        if not self.ended and self.run.stop_at != math.inf:
            self.ended = trio.current_time() >= self.run.stop_at
        return self.ended


class _Run(Generic[Q, R, S]):
    """One batch under way: its workers (``_Pool``), and the channel of results."""

    def __init__(
        self,
        kind: Kind[Q, R],
        options: BatchOptions,
        width: int,
        stream: Callable[[trio.MemoryReceiveChannel[R], _Tracker, BatchControl], S],
        warm: tuple[WarmUp, int] | None = None,
        cache: CacheStore | None = None,
        free: Callable[[], bool] = lambda: True,
    ) -> None:
        self.kind = kind
        self.warm = warm  # how to open the first wave's connections, and how many
        self.options = options
        self.width = width
        self.stop_at = math.inf if options.deadline is None else options.deadline
        self.control = BatchControl(
            retry_budget=options.retry_budget,
            threshold=options.circuit_breaker,
            unreachable_after=options.unreachable_after,
            reserve=width,
            systematic=options.systematic_failures if options.on_error == "collect" else None,
        )
        self.held: list[R] = []  # results held while the batch may be failing systematically
        self.control.hedger = hedger_for(options.hedge, self.control, free, ttft=options.stream)
        self.tracker = _Tracker(start=trio.current_time())
        self.next_progress = self.tracker.start + _log.PROGRESS_INTERVAL
        self.send, receive = trio.open_memory_channel[R](width)
        self.results = stream(receive, self.tracker, self.control)
        self.index = 0  # of the next item read
        self.carry: tuple[int, Q] | None = None  # read, but could not join the last unit
        self.broken: Exception | None = None  # what the input raised
        dedupe = None if options.dedupe == "off" else Dedupe(options.dedupe)
        self.repeats = (
            None if dedupe is None and cache is None
            else Repeats(kind, dedupe, cache, self.tracker, self.deliver_checked)
        )  # fmt: skip
        self.workers = trio.CancelScope()  # the workers' nursery's, once it runs

    async def deliver(self, result: R) -> None:
        self.tracker.add(result)
        if self.options.on_progress is not None:
            # Before the send: calls come one per result, in order, with ``done`` increasing.
            self.options.on_progress(self.tracker.snapshot(self.control))
        if _log.enabled(_log.INFO):
            self.log_progress()
        try:
            try:  # no trip through the scheduler while the channel has room
                self.send.send_nowait(result)
            except trio.WouldBlock:
                await self.send.send(result)
        except trio.BrokenResourceError:
            # The consumer left the batch (a break): the batch is being cancelled, and a
            # worker already woken (its answer in hand, no checkpoint since) finds the
            # channel closed.  Nobody is left to receive the result.
            pass

    def log_progress(self) -> None:
        """A ``batch_progress`` message, at most every ``PROGRESS_INTERVAL`` seconds."""
        now = trio.current_time()
        if now >= self.next_progress:
            self.next_progress = now + _log.PROGRESS_INTERVAL
            _log.batch_statistics(
                "batch_progress",
                self.tracker.snapshot(self.control),
                f"{self.kind.operation} batch",
            )

    async def deliver_checked(self, result: R) -> None:
        """Deliver ``result``; with ``on_error="raise"``, its failure stops the batch."""
        await self.deliver(result)
        if result.error is not None:
            self.fail_fast(result.error, self.workers)

    def fail_fast(self, error: Exception, workers: trio.CancelScope) -> None:
        """With ``on_error="raise"``, the first failure stops the batch."""
        if self.options.on_error == "raise" and self.results._error is None:
            self.results._error = error
            workers.cancel()

    def stop_systematic(self, workers: trio.CancelScope) -> None:
        """The batch's first answers were all one configuration failure: stop it (again:
        a worker woken before the cancel adds its results to the same error)."""
        held, self.held = self.held, []
        for result in held:
            self.tracker.add(result)
        self.results._error = self.control.stopped(held)
        workers.cancel()

    async def release(self) -> None:
        """Hand out the results held while the batch could be failing systematically
        (and the results of the duplicates that waited for them)."""
        held, self.held = self.held, []
        for result in held:
            await self.deliver(result)
            if self.repeats is not None:
                await self.repeats.release(getattr(result, "index", -1), result)

    async def work(self, unit: list[tuple[int, Q]]) -> None:
        """Send one unit and deliver its results.

        The worker delivers before it takes the next unit: a slow consumer stops every
        worker, so finished results never pile up (memory stays bounded by the
        concurrency).
        """
        tracker, repeats, size, workers = self.tracker, self.repeats, len(unit), self.workers
        tracker.in_flight += size
        self.control.started += 1
        try:
            if repeats is not None:
                unit = await repeats.from_cache(unit)
            results: Sequence[R] = []
            if unit:
                results = await self.kind.send(unit, deadline=self.stop_at, control=self.control)
        finally:
            tracker.in_flight -= size
        if repeats is not None:
            await repeats.to_cache(unit, results)
        if self.control.systematic is not None:  # (once disarmed: nothing to judge)
            verdict = self.control.judge([result.error for result in results])
            if verdict in (HOLD, STOP):
                self.held.extend(results)
                if verdict == STOP:
                    self.stop_systematic(workers)
                return
            if verdict == RELEASE:
                await self.release()
        for (index, _), result in zip(unit, results, strict=True):
            await self.deliver(result)
            if result.error is not None:
                self.fail_fast(result.error, workers)
            if repeats is not None:
                await repeats.release(index, result)

    async def feed(self, inputs: AsyncIterable[Any]) -> None:
        """Run the workers over the input, ``width`` at most at once, each reading its next
        unit lazily (one reader at a time) once its last one is delivered.

        Raises only what the input itself raises (no item to blame: the items under way
        finish first), or a progress callback.  The channel is closed without a checkpoint,
        so that such an exception is never replaced by the cancellation that the consumer's
        exit sends back.
        """
        with self.send:
            iterator = inputs.__aiter__()
            async with trio.open_nursery() as workers:
                self.workers = workers.cancel_scope
                if self.control.hedger is not None:
                    self.control.hedger.nursery = workers  # where the hedges run
                if self.warm is not None:
                    # Beside the workers, not before them: a request takes a connection
                    # being opened when it needs one, and no request waits for the others.
                    await workers.start(self.warm_up)
                pool = _Pool(self, iterator, workers)
                await pool.pull()  # (the first worker is this task: more start as needed)
            await self.release()  # (the input ended before the rule could decide)
            if self.broken is not None:
                raise self.broken
            if self.results._error is None:
                await self.report_unsent(iterator)

    async def warm_up(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Open the first wave's connections (``BatchOptions.warm_up``), by the deadline;
        started once the workers can take them."""
        assert self.warm is not None
        warm, connections = self.warm
        with trio.move_on_at(self.stop_at):
            await warm(connections, timeouts=self.options.timeouts, task_status=task_status)

    async def fill(
        self, iterator: AsyncIterator[Any], workers: trio.CancelScope
    ) -> tuple[list[tuple[int, Q]], bool]:
        """Read items into a unit until it is full; ``(unit, whether the input ended)``.

        An item that cannot join the unit is kept (``carry``) for the next one.
        """
        unit: list[tuple[int, Q]] = []
        requests: list[Q] = []
        if self.carry is not None:
            unit.append(self.carry)
            requests.append(self.carry[1])
            self.carry = None
        kind = self.kind
        absorbed = 0  # items read in a row that need no sending
        while not (requests and kind.full(requests)):
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                return unit, True
            except Exception as exc:
                self.broken = exc
                return unit, True
            index = self.index
            self.index += 1
            self.tracker.submitted += 1
            try:
                request = kind.request(item, index)
            except InvalidRequestError as exc:
                await self.deliver(kind.failed(index, kind.custom_id(item), None, exc))
                self.fail_fast(exc, workers)
                continue
            if self.repeats is not None and await self.repeats.repeated(index, request):
                # Nothing to send, so nothing waits here: a long run of such items (up to
                # ``DEDUPE_WAITING`` duplicates of a request under way) would otherwise
                # keep every other task, that request's included, from running.
                absorbed += 1
                if absorbed % _ABSORBED_PER_TURN == 0:
                    await trio.lowlevel.checkpoint()
                continue
            if requests and not kind.joins(requests, request):
                self.carry = (index, request)
                return unit, False
            unit.append((index, request))
            requests.append(request)
        return unit, False

    async def report_unsent(self, iterator: AsyncIterator[Any]) -> None:
        """The deadline passed: report every item not yet sent, without sending it."""
        kind = self.kind
        if self.carry is not None:
            index, request = self.carry
            self.carry = None
            custom_id = kind.custom_id(request)
            result = kind.failed(index, custom_id, request, _unsent(custom_id))
            await self.deliver(result)
            if self.repeats is not None:  # its duplicates waited for it
                for duplicate, request, _ in self.repeats.waiting(index, result):
                    custom_id = kind.custom_id(request)
                    cancelled = _unsent(custom_id)
                    await self.deliver(kind.failed(duplicate, custom_id, request, cancelled))
        async for item in iterator:
            index = self.index
            self.index += 1
            self.tracker.submitted += 1
            unsent: Q | None = None
            error: Exception
            try:
                unsent = kind.request(item, index)
            except InvalidRequestError as exc:
                error = exc
            custom_id = kind.custom_id(item if unsent is None else unsent)
            if unsent is not None:
                error = _unsent(custom_id)
            await self.deliver(kind.failed(index, custom_id, unsent, error))


def _unsent(custom_id: str | None) -> RequestCancelled:
    return RequestCancelled(
        "cancelled: the batch deadline passed before it was sent",
        reason="deadline",
        custom_id=custom_id,
    )


@asynccontextmanager
async def run_batch(
    kind: Kind[Q, R],
    requests: Iterable[Any] | AsyncIterable[Any],
    options: BatchOptions,
    *,
    width: int,
    stream: Callable[[trio.MemoryReceiveChannel[R], _Tracker, BatchControl], S],
    observers: Sequence[Observer],
    warm_up: WarmUp | None = None,
    cache: CacheStore | None = None,
    free: Callable[[], bool] = lambda: True,
) -> AsyncIterator[S]:
    """Run a batch of ``kind``: the engine behind every batch method of the client.

    ``width`` is the most units worked on at once (the client's concurrency); ``stream``
    makes the result stream handed out (a :class:`ResultStream` subclass); ``observers``
    (the ledger's) are told when the batch starts and ends; ``warm_up`` opens the first
    wave's connections, with ``BatchOptions.warm_up``: ``width`` of them, or as many as
    the units of a sized input make (``Kind.units``) when fewer; ``cache`` (the client's
    open :class:`ResponseCache`) answers the deterministic requests it holds and stores
    the answers to the others; ``free`` says whether the client has a concurrency slot
    free (a hedge is sent only then).
    """
    warm = None
    if warm_up is not None and options.warm_up:
        wave = min(width, kind.units(len(requests))) if isinstance(requests, Sized) else width
        warm = (warm_up, wave)
    run = _Run(kind, options, width, stream, warm, cache, free)
    inputs: AsyncIterable[Any] = (
        requests if isinstance(requests, AsyncIterable) else _SyncInputs(requests)
    )
    for observer in observers:
        observer.batch_started(run.control, kind.operation)
    _log.batch_started(width, f"{kind.operation} batch")
    error: BaseException | None = None
    try:
        async with _run_batch(run, inputs) as results:
            yield results
    except BaseException as exc:
        error = exc
        raise
    finally:
        if observers or _log.enabled(_log.INFO):
            statistics = run.results.statistics()
            for observer in observers:
                observer.batch_finished(run.control, statistics, error)
            _log.batch_statistics("batch_finished", statistics, f"{kind.operation} batch", error)


@asynccontextmanager
async def _run_batch(run: _Run[Any, Any, S], inputs: AsyncIterable[Any]) -> AsyncIterator[S]:
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.feed, inputs)
            try:
                yield run.results
            finally:
                # Leaving the block early (break, an exception) stops the batch.
                nursery.cancel_scope.cancel()
                run.results._receive.close()
    except BaseExceptionGroup as group:
        # Only the body or the input (the workers report every item as a result) can
        # raise here: hand the exception back unwrapped, as if there were no nursery.
        if len(group.exceptions) == 1:
            exc = group.exceptions[0]
            raise exc from exc.__cause__
        raise
