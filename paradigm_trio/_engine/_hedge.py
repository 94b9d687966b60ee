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

The race is a nursery of two tasks; the winner cancels the nursery's scope, which the
nursery absorbs; a cancellation from outside propagates.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
    """One batch's hedging: the latencies it learnt, the hedges it made and won (``ttft``:
    the batch streams its items, and hedges on the time to their first chunk)."""

    __slots__ = ("_delay", "control", "free", "latencies", "policy", "sent", "ttft", "won")

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
    hedge under way that has no first chunk yet (it is behind)."""
    start = trio.current_time()
    control = hedger.control
    primary: list[Attempt] = []
    hedged: list[Attempt] = []
    # "waiting", then "running", then "done" (failed), "won" or "cut" (the original
    # streamed first)
    state: dict[str, Any] = {"hedge": "waiting"}
    ttft = hedger.ttft
    waiting = trio.CancelScope()  # the hedge's wait: cancelled once the original streams
    hedging = trio.CancelScope()  # the hedge under way: cut if the original streams first
    sent = math.inf  # when the hedge was sent

    def first(at: float) -> None:
        if "first" not in state:  # (the first attempt to stream; a retry's is not news)
            state["first"] = at
            hedger.learn(at - start)
            waiting.cancel()
            if "hedge_first" not in state:
                hedging.cancel()

    def hedge_first(at: float) -> None:
        if "hedge_first" not in state:
            state["hedge_first"] = at
            hedger.learn(at - sent)

    async def original(race: trio.Nursery) -> None:
        try:
            value = await send(
                request, deadline=deadline, control=control, history=primary,
                first_chunk=first if ttft else None,
            )  # fmt: skip
        except Exception as exc:
            state["error"] = exc
            if state["hedge"] != "running":  # nothing else to wait for
                race.cancel_scope.cancel()
            return
        state["value"] = value
        if not ttft:
            hedger.learn(trio.current_time() - start)
        race.cancel_scope.cancel()

    async def hedge(race: trio.Nursery) -> None:
        nonlocal sent
        with waiting:
            await _wait_for_delay(hedger, start)
        if waiting.cancelled_caught:  # the original streams: no hedge
            return
        state["hedge"] = "running"
        hedger.sent += 1
        sent = trio.current_time()
        with hedging:
            try:
                value = await send(
                    request, deadline=deadline, control=control, history=hedged, hedge=True,
                    first_chunk=hedge_first if ttft else None,
                )  # fmt: skip
            except Exception:
                state["hedge"] = "done"
                if "error" in state:  # the original failed meanwhile: its outcome stands
                    race.cancel_scope.cancel()
                return
        if hedging.cancelled_caught:  # cut: the original streams, the hedge did not yet
            state["hedge"] = "cut"
            return
        state["value"], state["won"], state["hedge"] = value, True, "won"
        hedger.won += 1
        if not ttft:
            hedger.learn(trio.current_time() - sent)
        race.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(original, nursery)
        nursery.start_soon(hedge, nursery)
    attempts = len(primary) + len(hedged)
    lost = state["hedge"] in ("running", "cut") or (
        state["hedge"] == "won" and "error" not in state
    )
    if lost:  # the loser was cancelled: its attempt under way counts
        attempts += 1
    elapsed = trio.current_time() - start
    if "value" in state:
        return state["value"], None, attempts, elapsed, state.get("won", False)
    return None, state["error"], attempts, elapsed, False


async def _wait_for_delay(hedger: Hedger, start: float) -> None:
    """Until the item, sent at ``start``, may be hedged: its delay passed, and a hedge
    allowed.  Looks at the delay, then less and less often (each wait half the time
    waited so far): a batch of thousands in flight wakes a few times per item, not per
    tick."""
    floor = hedger.policy.floor
    look = start + (hedger.delay or floor)
    while True:
        await trio.sleep_until(look)
        now, delay = trio.current_time(), hedger.delay
        if delay is not None and now >= start + delay and hedger.allowed():
            return
        later = now + max(floor, (now - start) / 2)
        look = later if delay is None else max(start + delay, later)


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
