"""A batch's results as the engine hands them out: what it reads of a result
(:class:`Outcome`), the counters behind its statistics (``_Tracker``) and the stream of
results (:class:`ResultStream`) every batch method hands out."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

import trio

from .._errors import BatchError
from .._events import LatencyHistogram
from ._batch_options import BatchStatistics
from ._budget import BatchControl
from ._ledger import Tokens

__all__ = ["Outcome", "ResultStream"]


class Outcome(Protocol):
    """What the batch engine reads of a result (of any kind)."""

    @property
    def ok(self) -> bool: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def usage(self) -> Tokens | None: ...
    @property
    def error(self) -> Exception | None: ...
    @property
    def elapsed(self) -> float: ...


R = TypeVar("R", bound=Outcome)


@dataclass(slots=True)
class _Tracker:
    start: float
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unknown_usage: int = 0
    deduplicated: int = 0
    cached: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, result: Outcome) -> None:
        if result.ok:
            self.succeeded += 1
            usage = result.usage
            if usage is None:
                self.unknown_usage += 1  # unknown, not zero: left out of the sums
            else:
                self.prompt_tokens += usage.prompt_tokens
                self.completion_tokens += usage.completion_tokens
            self.latency.add(result.elapsed)
        elif result.cancelled:
            self.cancelled += 1
        else:
            self.failed += 1

    def snapshot(self, control: BatchControl) -> BatchStatistics:
        elapsed = max(trio.current_time() - self.start, 0.0)
        minutes = elapsed / 60.0
        total = self.prompt_tokens + self.completion_tokens
        return BatchStatistics(
            submitted=self.submitted,
            done=self.succeeded + self.failed + self.cancelled,
            succeeded=self.succeeded,
            failed=self.failed,
            cancelled=self.cancelled,
            in_flight=self.in_flight,
            retries=control.retries,
            retries_by_cause=MappingProxyType(dict(control.retries_by_cause)),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=total,
            latency_p50=self.latency.percentile(50),
            latency_p90=self.latency.percentile(90),
            latency_p99=self.latency.percentile(99),
            elapsed=elapsed,
            requests_per_minute=self.succeeded / minutes if minutes > 0 else 0.0,
            tokens_per_minute=total / minutes if minutes > 0 else 0.0,
            unknown_usage=self.unknown_usage,
            deduplicated=self.deduplicated,
            cached=self.cached,
            hedges=0 if control.hedger is None else control.hedger.sent,
            hedges_won=0 if control.hedger is None else control.hedger.won,
        )


class ResultStream(Generic[R]):
    """The results of a batch, in completion order.

    ``async for result in stream`` yields each result once; the loop ends when every
    input item has its result.  With ``on_error="raise"``, the loop raises
    :class:`BatchError` after the failed result has been yielded.

    Each step is a cancellation point.  A result already finished is handed over at once;
    the loop lets other tasks run when it waits for one, and at least once every
    ``YIELD_EVERY`` (64) results.  (Taking one finished result per turn of trio's scheduler
    let results pile up, and the workers that had finished them wait, holding their
    concurrency slots.)
    """

    YIELD_EVERY = 64

    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[R],
        tracker: _Tracker,
        control: BatchControl,
    ) -> None:
        self._receive = receive
        self._tracker = tracker
        self._control = control
        self._error: BaseException | None = None
        self._unyielded = 0  # results handed over since the loop last let others run

    def statistics(self) -> BatchStatistics:
        """A frozen snapshot of the batch's counters."""
        return self._tracker.snapshot(self._control)

    def __aiter__(self) -> ResultStream[R]:
        return self

    async def __anext__(self) -> R:
        try:
            if self._unyielded < self.YIELD_EVERY:
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    result = self._receive.receive_nowait()
                except trio.WouldBlock:
                    pass
                else:
                    self._unyielded += 1
                    return result
            self._unyielded = 0
            return await self._receive.receive()
        except trio.EndOfChannel:
            if isinstance(self._error, BatchError):
                raise self._error from self._error.error
            if self._error is not None:
                raise BatchError(self._error) from self._error
            raise StopAsyncIteration from None
