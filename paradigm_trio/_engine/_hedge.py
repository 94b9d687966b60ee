"""Hedged requests ("The Tail at Scale", Dean and Barroso): :class:`Hedge`, the batch
option, and :class:`Hedger`, one batch's hedging under way.

A batch item still unanswered after a delay learnt from this batch (a percentile of the
time its items took to succeed, with a floor, once enough have) gets one *hedge*: the same
request sent again, as a logical request of its own on the attempt engine (its lease, its
rate permit, its events and its span, its ``AttemptStarted`` saying ``retry_of="hedge"``),
with no retries of its own.  The first success wins; the other is cancelled (its cancel
scope: the request is counted as cancelled, its connection closed).  Should the original
fail while the hedge runs, the hedge's answer is awaited; should the hedge fail, the
original's outcome stands.

A batch of streamed items (``stream=True``) hedges on the *time to first token*: the
delay is learnt from the time its items took to their first chunk (told by the send path
through ``SendOne``'s ``first_chunk``), and an original whose first chunk has arrived is
no longer hedged (its answer is coming; what is left is the length of the answer, which a
copy would not shorten): no hedge is sent after it, and a hedge under way that has no
first chunk yet is cancelled (it is behind).  The first whole answer still wins.

A hedge is sent only while it costs little: when the client has a free concurrency slot
(an item waiting for one is never delayed by a hedge), when the batch has made fewer
hedges than ``Hedge.max_share`` of its items, and never while the server sheds load (a
429 or a 5xx in the last ``Hedge.quiet`` seconds, or the batch's circuit breaker open).

The original is sent in the item's own task, inside a cancel scope; the hedges of a batch
are started by one *watcher* task in the batch's nursery (:attr:`Hedger.nursery`), which
sleeps until the earliest moment an item under way should be looked at (a heap of those
moments), so an item that never needs a hedge costs a heap entry, not a task or a
nursery.  The winner cancels the other's scope; an item whose original failed waits for
its running hedge; a cancellation from outside propagates, and cancels the item's hedge.
The watcher ends when no item is under way (and starts again with the next one).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Protocol, TypeVar

import trio

from .._config import _check_int, _check_number, _Replace
from .._events import Attempt, LatencyHistogram
from ._budget import BatchControl

__all__ = ["DEFAULT_HEDGE", "Hedge", "Hedger", "SendOne", "hedger_for", "race"]

Q = TypeVar("Q")
T = TypeVar("T")
Q_contra = TypeVar("Q_contra", contravariant=True)
T_co = TypeVar("T_co", covariant=True)

_RECOMPUTE_EVERY: Final = 16  # samples between two computations of the delay


@dataclass(frozen=True, kw_only=True, slots=True)
class Hedge(_Replace):
    """Hedged requests for a batch (``hedge=True`` or ``hedge=pt.Hedge(...)``; opt-in).

    Attributes:
        percentile: an item still unanswered after this percentile of the times this
            batch's items took to succeed gets a hedge.  Default ``95``.  In a batch of
            streamed items, the times to the first chunk, and an item whose first chunk
            has arrived is not hedged.
        floor: never hedge sooner than this many seconds after the item was sent.
            Default ``0.05``.
        min_samples: successes (first chunks, streamed) the batch needs before it hedges
            at all (before, the percentile means little).  Default ``20``.
        max_share: the most hedges, as a share of the items the batch has started.
            Default ``0.05`` (5 %).
        quiet: seconds without a 429 or a 5xx (the server shedding load) before the batch
            hedges again.  Default ``5.0``.
    """

    percentile: float = 95.0
    floor: float = 0.05
    min_samples: int = 20
    max_share: float = 0.05
    quiet: float = 5.0

    def __post_init__(self) -> None:
        owner = "Hedge"
        _check_number(owner, "percentile", self.percentile, strict=True)
        if self.percentile >= 100:
            raise ValueError(f"Hedge.percentile must be below 100, got {self.percentile!r}")
        _check_number(owner, "floor", self.floor)
        _check_int(owner, "min_samples", self.min_samples, minimum=1)
        _check_number(owner, "max_share", self.max_share)
        if self.max_share > 1:
            raise ValueError(f"Hedge.max_share must be at most 1, got {self.max_share!r}")
        _check_number(owner, "quiet", self.quiet)


DEFAULT_HEDGE: Final = Hedge()
"""The hedging of ``hedge=True``."""


class Hedger:
    """One batch's hedging: the latencies it learnt, the hedges it made and won, and the
    items under way it watches (``ttft``: the batch streams its items, and hedges on the
    time to their first chunk)."""

    __slots__ = (
        "_delay", "_heap", "_nap", "_order", "control", "free", "latencies", "live",
        "nursery", "policy", "sent", "ttft", "watching", "won",
    )  # fmt: skip

    def __init__(
        self,
        policy: Hedge,
        control: BatchControl,
        free: Callable[[], bool],
        *,
        ttft: bool = False,
    ) -> None:
        self.policy = policy
        self.control = control
        self.free = free  # whether the client has a concurrency slot free now
        self.ttft = ttft
        self.latencies = LatencyHistogram()
        self.sent = 0
        self.won = 0
        self._delay: float | None = None
        self.nursery: trio.Nursery | None = None  # where hedges run (the batch's workers')
        self.live = 0  # items under way
        self.watching = False  # whether the watcher runs
        self._heap: list[tuple[float, int, _Item]] = []  # (when to look, order, item)
        self._order = itertools.count()
        self._nap: trio.CancelScope | None = None  # the watcher's sleep, while it sleeps

    def learn(self, seconds: float) -> None:
        """An item succeeded after ``seconds`` (from its send to its answer; to its first
        chunk, with :attr:`ttft`)."""
        latencies = self.latencies
        latencies.add(seconds)
        if latencies.count >= self.policy.min_samples and (
            self._delay is None or latencies.count % _RECOMPUTE_EVERY == 0
        ):
            value = latencies.percentile(self.policy.percentile) or 0.0
            self._delay = max(self.policy.floor, value)

    @property
    def delay(self) -> float | None:
        """Seconds after which an unanswered item may be hedged (``None``: not yet)."""
        return self._delay

    def allowed(self) -> bool:
        """Whether a hedge may be sent now."""
        control, policy = self.control, self.policy
        if self.sent + 1 > policy.max_share * control.started:
            return False
        if control.breaker_open or trio.current_time() - control.shed_at < policy.quiet:
            return False
        return self.free()

    def watch(self, item: _Item, look: float) -> None:
        """Look at ``item`` (under way) at ``look``; start the watcher, or wake it sooner."""
        heapq.heappush(self._heap, (look, next(self._order), item))
        if not self.watching:
            assert self.nursery is not None
            self.watching = True
            self.nursery.start_soon(self._watch)
        elif self._nap is not None and look < self._nap.deadline:
            self._nap.deadline = look

    def left(self) -> None:
        """An item is no longer under way; with none left, the watcher ends now."""
        self.live -= 1
        if self.live == 0 and self._nap is not None:
            self._nap.deadline = -math.inf

    async def _watch(self) -> None:
        """Until no item is under way: hedge each when its time comes and it may be, else
        look again later (each wait half the time waited so far: a batch of thousands in
        flight wakes a few times per item, not per tick)."""
        heap, floor = self._heap, self.policy.floor
        try:
            while heap:
                look, _, item = heap[0]
                if item.state != "waiting":  # finished, or hedged: nothing to look at
                    heapq.heappop(heap)
                    continue
                if look > trio.current_time():
                    with trio.move_on_at(look) as self._nap:
                        await trio.sleep_forever()
                    self._nap = None
                    continue
                heapq.heappop(heap)
                now, delay = trio.current_time(), self.delay
                if delay is not None and now >= item.start + delay and self.allowed():
                    self._launch(item)
                    continue
                later = now + max(floor, (now - item.start) / 2)
                look = later if delay is None else max(item.start + delay, later)
                heapq.heappush(heap, (look, next(self._order), item))
            await trio.lowlevel.checkpoint()
        finally:
            self.watching = False
            self._nap = None

    def _launch(self, item: _Item) -> None:
        """Send ``item``'s hedge, in the batch's nursery."""
        assert self.nursery is not None
        item.state = "running"
        item.hedge_scope = trio.CancelScope()
        self.sent += 1
        self.nursery.start_soon(self._hedge, item)

    async def _hedge(self, item: _Item) -> None:
        sent = trio.current_time()
        scope = item.hedge_scope
        assert scope is not None

        def first(at: float) -> None:  # (streamed items: the hedge's first chunk)
            if item.hedge_first is None:
                item.hedge_first = at
                self.learn(at - sent)

        with scope:
            try:
                value = await item.send(
                    item.request, deadline=item.deadline, control=self.control,
                    history=item.hedged, hedge=True, first_chunk=first if self.ttft else None,
                )  # fmt: skip
            except Exception:
                item.state = "failed"
                item.hedge_over.set()
                return
            if item.resolved:  # the original answered first (the same tick)
                item.state = "failed"
                item.hedge_over.set()
                return
            item.resolved, item.value, item.state = True, value, "won"
            self.won += 1
            if not self.ttft:
                self.learn(trio.current_time() - sent)
            item.scope.cancel()
            item.hedge_over.set()
        if scope.cancelled_caught:
            item.hedge_over.set()  # (cut, or the original answered: nobody waits for it)

    def first_chunk(self, item: _Item, at: float) -> None:
        """Streamed items: the original's first chunk arrived; no hedge after it, and a
        hedge under way without its own first chunk is cut (it is behind)."""
        if item.first is not None:  # (the first attempt to stream; a retry's is not news)
            return
        item.first = at
        self.learn(at - item.start)
        if item.state == "waiting":
            item.state = "over"
        elif item.state == "running" and item.hedge_first is None:
            item.state = "cut"
            assert item.hedge_scope is not None
            item.hedge_scope.cancel()


class _Item:
    """One item sent hedged: its request, its two histories, the state of its hedge
    (``"waiting"``, ``"running"``, then ``"won"`` or ``"failed"``, or ``"cut"``: the
    original streamed first; ``"over"``: the item finished, or streams, before its hedge
    was sent), when each first streamed, and what answered."""

    __slots__ = (
        "deadline", "first", "hedge_first", "hedge_over", "hedge_scope", "hedged", "primary",
        "request", "resolved", "scope", "send", "start", "state", "value",
    )  # fmt: skip

    def __init__(self, send: SendOne[Any, Any], request: object, deadline: float) -> None:
        self.send = send
        self.request = request
        self.deadline = deadline
        self.start = trio.current_time()
        self.primary: list[Attempt] = []
        self.hedged: list[Attempt] = []
        self.state = "waiting"
        self.resolved = False  # whether a value was taken (the first answer's)
        self.value: Any = None
        self.scope = trio.CancelScope()  # the original's
        self.hedge_scope: trio.CancelScope | None = None
        self.hedge_over = trio.Event()
        self.first: float | None = None  # the original's first chunk (streamed items)
        self.hedge_first: float | None = None  # the hedge's


class SendOne(Protocol[Q_contra, T_co]):
    """How a batch sends one request through the attempt engine (the client provides it);
    ``hedge=True``: a hedge, sent without retries of its own; ``first_chunk``, for a
    streamed request: told when an attempt's first chunk arrives (trio time)."""

    def __call__(
        self,
        request: Q_contra,
        *,
        deadline: float,
        control: BatchControl,
        history: list[Attempt],
        hedge: bool = False,
        first_chunk: Callable[[float], None] | None = None,
    ) -> Awaitable[T_co]: ...


async def race(
    send: SendOne[Q, T], request: Q, deadline: float, hedger: Hedger
) -> tuple[T | None, Exception | None, int, float, bool]:
    """``send(request)``, hedged: ``(value, error, attempts, elapsed, whether the hedge
    won)``; any ``Exception`` is the error (``Cancelled`` propagates).

    With ``hedger.ttft`` (streamed items), the delay is learnt from first chunks, and the
    original's first chunk ends the wait for a hedge (none is sent after it) and cuts a
    hedge under way that has no first chunk yet (it is behind).

    Outside a batch (``hedger.nursery`` unset), the watcher and the hedge run in a
    nursery of this call's own."""
    if hedger.nursery is None:
        async with trio.open_nursery() as nursery:
            hedger.nursery = nursery
            try:
                return await race(send, request, deadline, hedger)
            finally:
                hedger.nursery = None
    item = _Item(send, request, deadline)
    start = item.start
    ttft = hedger.ttft
    error: Exception | None = None
    hedger.live += 1
    try:
        hedger.watch(item, start + (hedger.delay or hedger.policy.floor))
        with item.scope:
            try:
                value = await send(
                    request, deadline=deadline, control=hedger.control, history=item.primary,
                    first_chunk=partial(hedger.first_chunk, item) if ttft else None,
                )  # fmt: skip
            except Exception as exc:
                error = exc
            else:
                if not item.resolved:
                    item.resolved, item.value = True, value
                    if not ttft:
                        hedger.learn(trio.current_time() - start)
        if error is not None and item.state == "running":  # the hedge may yet answer
            await item.hedge_over.wait()
    finally:
        if item.state == "waiting":
            item.state = "over"
        elif item.state == "running" and item.hedge_scope is not None:
            item.hedge_scope.cancel()  # the original answered: the hedge loses
        hedger.left()
    won = item.state == "won"
    attempts = len(item.primary) + len(item.hedged)
    if item.state in ("running", "cut") or (won and error is None):
        attempts += 1  # the loser was cancelled: its attempt under way counts
    elapsed = trio.current_time() - start
    if item.resolved:
        return item.value, None, attempts, elapsed, won
    assert error is not None
    return None, error, attempts, elapsed, False


def hedger_for(
    hedge: Hedge | bool | None,
    control: BatchControl,
    free: Callable[[], bool],
    *,
    ttft: bool = False,
) -> Hedger | None:
    """The batch's :class:`Hedger`, or ``None`` when it does not hedge (``ttft``: its
    items are streamed: it hedges on the time to their first chunk)."""
    if hedge is None or hedge is False:
        return None
    return Hedger(DEFAULT_HEDGE if hedge is True else hedge, control, free, ttft=ttft)
