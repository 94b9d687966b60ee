"""Batches: :meth:`Client.stream_batch` and :meth:`Client.chat_batch`.

The engine is one nursery.  A feeder task reads the input lazily, one item at a time, and
starts a worker task per item, never more than ``Limits.concurrency`` workers at once; each
worker sends its request through the client (which holds the client-wide concurrency slot,
the rate limits and the retry loop) and puts exactly one :class:`BatchResult` into a
memory channel.  The consumer reads that channel.  Memory therefore grows with the
concurrency, never with the size of the batch.

Every input item yields exactly one result: a completion, an error (invalid input, an
:class:`APIError` after retries, :class:`ServerUnreachableError` once the circuit breaker
gives up) or, when a ``deadline`` passes, :class:`RequestCancelled`: items that were in
flight are interrupted and items not yet sent are read from the input and reported without
being sent.  The exceptions: ``on_error="raise"`` stops at the first failure (the rest are
cancelled and not reported), and cancelling the whole batch from outside (your cancel
scope) propagates :class:`trio.Cancelled` after every task and connection is cleaned up.
"""

from __future__ import annotations

import functools
import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import trio

from ._errors import (
    APIError,
    BatchError,
    RequestCancelled,
    ServerUnreachableError,
)
from ._events import Attempt, LatencyHistogram
from ._models import ChatCompletion, ChatRequest, Usage

if TYPE_CHECKING:
    from ._client import Client
    from ._config import RetryPolicy, Timeouts

__all__ = [
    "BatchResult",
    "BatchResults",
    "BatchStatistics",
    "BatchStream",
    "stream_batch",
]

BatchInput = ChatRequest | Sequence[Mapping[str, Any]]
OnError = Literal["collect", "raise"]

DEFAULT_RETRY_BUDGET = 0.25
"""Retries a batch may make, as a fraction of the requests it has started (plus 10)."""

DEFAULT_CIRCUIT_BREAKER = 20
"""Consecutive connection failures after which a batch stops trusting the server."""

DEFAULT_UNREACHABLE_AFTER = 10.0
"""Seconds of nothing but connection failures after which a batch gives up on the server."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one input item of a batch.  Exactly one per item, success or not.

    Attributes:
        index: the item's position in the input (0-based).
        custom_id: the request's ``custom_id``, if it has one.
        request: the request sent, or ``None`` when the item was not a valid request.
        completion: the completion, when it succeeded.
        error: why it failed: an :class:`APIError` (:class:`RequestCancelled` when a
            deadline or fail-fast stopped it) or a :class:`ValueError` for an invalid item.
        attempts: HTTP attempts made (0 when nothing was sent).
        elapsed: seconds from when the batch started working on it (waits for a
            concurrency slot and for the rate limits included) to its outcome.
    """

    index: int
    custom_id: str | None
    request: ChatRequest | None
    completion: ChatCompletion | None = None
    error: Exception | None = None
    attempts: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether it produced a completion."""
        return self.completion is not None

    @property
    def cancelled(self) -> bool:
        """Whether a deadline or fail-fast stopped it before it finished."""
        return isinstance(self.error, RequestCancelled)

    @property
    def usage(self) -> Usage:
        """Token usage (zeros when it failed)."""
        return self.completion.usage if self.completion is not None else Usage()


@dataclass(frozen=True, slots=True)
class BatchStatistics:
    """Where a batch stands: a frozen snapshot (see :meth:`BatchStream.statistics`).

    Attributes:
        submitted: items read from the input so far.
        done: results produced (``succeeded + failed + cancelled``).
        succeeded, failed, cancelled: results by kind.
        in_flight: items being worked on.
        retries: retries made by this batch; ``retries_by_cause`` splits them by cause.
        prompt_tokens, completion_tokens, total_tokens: summed usage of the successes.
        latency_p50, latency_p90, latency_p99: seconds per successful item (within 2 %).
        elapsed: seconds since the batch started.
        requests_per_minute, tokens_per_minute: effective throughput of the successes.
    """

    submitted: int
    done: int
    succeeded: int
    failed: int
    cancelled: int
    in_flight: int
    retries: int
    retries_by_cause: Mapping[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    elapsed: float
    requests_per_minute: float
    tokens_per_minute: float


class BatchResults(list[BatchResult]):
    """The list :meth:`Client.chat_batch` returns, in input order, with ``statistics``."""

    statistics: BatchStatistics


class BatchControl:
    """Batch-wide storm control, consulted by the client's retry loop.

    * Retry budget: the batch may make at most ``10 + retry_budget * started`` retries;
      past that a failure is final (its error carries a note saying so).
    * Circuit breaker: after ``threshold`` consecutive connection failures (no HTTP response
      at all; any response resets the count) the breaker opens: attempts wait
      ``cooldown`` seconds, then probe again.  Once the failures have lasted
      ``unreachable_after`` seconds, every attempt not yet sent fails at once with
      :class:`ServerUnreachableError`: a dead server fails a batch in seconds.
    """

    def __init__(
        self,
        *,
        retry_budget: float | None,
        threshold: int | None,
        unreachable_after: float = DEFAULT_UNREACHABLE_AFTER,
        cooldown: float = 1.0,
    ) -> None:
        self.retry_budget = retry_budget
        self.threshold = threshold
        self.unreachable_after = unreachable_after
        self.cooldown = cooldown
        self.started = 0
        self.retries = 0
        self.retries_by_cause: dict[str, int] = {}
        self._consecutive = 0
        self._failing_since: float | None = None
        self._open_until = -math.inf
        self.dead = False

    async def before_attempt(self) -> None:
        waited = False
        while self.threshold is not None and self._consecutive >= self.threshold:
            now = trio.current_time()
            since = self._failing_since
            if since is not None and now - since >= self.unreachable_after:
                self.dead = True
            if self.dead:
                raise ServerUnreachableError(
                    f"the server is unreachable: {self._consecutive} connection failures in "
                    f"a row for {now - (since if since is not None else now):.1f}s; not sent"
                )
            if now >= self._open_until:
                break
            # Wait for the next probe, but no later than the moment to give up.
            wake = self._open_until
            if since is not None:
                wake = min(wake, since + self.unreachable_after)
            await trio.sleep_until(wake)
            waited = True
        if not waited:
            await trio.lowlevel.checkpoint()

    def after_attempt(self, cause: str | None, status: int | None) -> None:
        if status is not None or cause is None:
            self._consecutive = 0
            self._failing_since = None
            return
        if cause in ("connection", "timeout"):
            now = trio.current_time()
            self._consecutive += 1
            if self._failing_since is None:
                self._failing_since = now
            if self.threshold is not None and self._consecutive >= self.threshold:
                self._open_until = now + self.cooldown

    def spend_retry(self, cause: str = "") -> str | None:
        """Count a retry; return why it may not happen, or ``None``.

        While the breaker is open, connection failures are its business, not the budget's:
        they are retried (paced by the breaker) until the server answers or
        ``unreachable_after`` passes.
        """
        breaker_open = self.threshold is not None and self._consecutive >= self.threshold
        if breaker_open and cause in ("connection", "timeout"):
            self.retries += 1
            return None
        if self.retry_budget is not None:
            allowed = 10 + self.retry_budget * self.started
            if self.retries >= allowed:
                return (
                    f"not retried: the batch's retry budget is spent ({self.retries} retries "
                    f"for {self.started} requests; retry_budget={self.retry_budget:g})"
                )
        self.retries += 1
        return None


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
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, result: BatchResult) -> None:
        if result.completion is not None:
            self.succeeded += 1
            self.prompt_tokens += result.completion.usage.prompt_tokens
            self.completion_tokens += result.completion.usage.completion_tokens
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
        )


class BatchStream:
    """The results of :meth:`Client.stream_batch`, in completion order.

    ``async for result in stream`` yields each :class:`BatchResult` once; the loop ends when
    every input item has its result.  With ``on_error="raise"``, the loop raises
    :class:`BatchError` after the failed result has been yielded.
    """

    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[BatchResult],
        tracker: _Tracker,
        control: BatchControl,
    ) -> None:
        self._receive = receive
        self._tracker = tracker
        self._control = control
        self._error: BaseException | None = None

    def statistics(self) -> BatchStatistics:
        """A frozen snapshot of the batch's counters."""
        return self._tracker.snapshot(self._control)

    def __aiter__(self) -> BatchStream:
        return self

    async def __anext__(self) -> BatchResult:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._error is not None:
                raise BatchError(self._error) from self._error
            raise StopAsyncIteration from None


class _SyncInputs:
    """Iterate a plain iterable from async code.

    No checkpoint of its own: the feeder checkpoints per item already (waiting for a slot).
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


def _to_request(
    client: Client, item: object, defaults: Mapping[str, Any], index: int
) -> ChatRequest:
    """An input item as a validated request; batch keywords fill the fields left unset."""
    if isinstance(item, ChatRequest):
        missing = {k: v for k, v in defaults.items() if getattr(item, k) is None}
        return replace(item, **missing) if missing else item
    if isinstance(item, Mapping):
        raise ValueError(
            f"item {index} is a dict; pass a list of messages or a ChatRequest"
            " (a single message must still be inside a list)"
        )
    if not isinstance(item, Sequence) or isinstance(item, str | bytes):
        raise ValueError(
            f"item {index} is a {type(item).__name__}; pass a list of messages or a ChatRequest"
        )
    return client.make_request(item, **defaults)


@asynccontextmanager
async def stream_batch(
    client: Client,
    requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
    *,
    on_error: OnError = "collect",
    deadline: float | None = None,
    on_progress: Callable[[BatchStatistics], object] | None = None,
    retry: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
    retry_budget: float | None = DEFAULT_RETRY_BUDGET,
    circuit_breaker: int | None = DEFAULT_CIRCUIT_BREAKER,
    unreachable_after: float = DEFAULT_UNREACHABLE_AFTER,
    defaults: Mapping[str, Any] | None = None,
    stream: bool = False,
) -> AsyncIterator[BatchStream]:
    """The engine behind :meth:`Client.stream_batch` (documented there)."""
    if on_error not in ("collect", "raise"):
        raise ValueError(f"on_error must be 'collect' or 'raise', got {on_error!r}")
    if retry_budget is not None and not retry_budget >= 0:
        raise ValueError(f"retry_budget must be >= 0 or None, got {retry_budget!r}")
    if circuit_breaker is not None and circuit_breaker < 1:
        raise ValueError(f"circuit_breaker must be >= 1 or None, got {circuit_breaker!r}")
    client._check_open()
    send_one: Callable[..., Awaitable[ChatCompletion]] = client._send
    if stream:
        from ._streaming import stream_completion  # _streaming imports _client imports us

        send_one = functools.partial(stream_completion, client)
    stop_at = math.inf if deadline is None else deadline
    params = {k: v for k, v in (defaults or {}).items() if v is not None}
    control = BatchControl(
        retry_budget=retry_budget, threshold=circuit_breaker, unreachable_after=unreachable_after
    )
    tracker = _Tracker(start=trio.current_time())
    width = client.limits.concurrency
    send, receive = trio.open_memory_channel[BatchResult](width)
    results = BatchStream(receive, tracker, control)
    inputs: AsyncIterable[Any] = (
        requests if isinstance(requests, AsyncIterable) else _SyncInputs(requests)
    )

    async def deliver(result: BatchResult) -> None:
        tracker.add(result)
        if on_progress is not None:
            # Before the send: calls come one per result, in order, with ``done`` increasing.
            on_progress(tracker.snapshot(control))
        await send.send(result)

    async def work(
        index: int, request: ChatRequest, slot: trio.Semaphore, fail_fast: trio.CancelScope
    ) -> None:
        # The slot is held until the result is delivered: a slow consumer stops the feeder,
        # so finished results never pile up (memory stays bounded by the concurrency).
        try:
            start = trio.current_time()
            history: list[Attempt] = []
            tracker.in_flight += 1
            control.started += 1
            completion: ChatCompletion | None = None
            error: APIError | None = None
            try:
                completion = await send_one(
                    request, retry=retry, timeouts=timeouts, deadline=stop_at,
                    control=control, history=history,
                )  # fmt: skip
            except APIError as exc:
                error = exc
            finally:
                tracker.in_flight -= 1
            by_cause = control.retries_by_cause
            for attempt in history:
                if attempt.delay is not None and attempt.cause is not None:
                    by_cause[attempt.cause] = by_cause.get(attempt.cause, 0) + 1
            await deliver(
                BatchResult(
                    index,
                    request.custom_id,
                    request,
                    completion=completion,
                    error=error,
                    attempts=len(history),
                    elapsed=trio.current_time() - start,
                )
            )
            if error is not None and on_error == "raise" and results._error is None:
                results._error = error
                fail_fast.cancel()
        finally:
            slot.release()

    async def feed() -> None:
        async with send:
            slot = trio.Semaphore(width)
            index = 0
            iterator = inputs.__aiter__()
            async with trio.open_nursery() as workers:
                while True:
                    # Only the wait for a slot is cut by the deadline: an item being read
                    # from the input is never lost half-way.  (An item read after the
                    # deadline is not sent: its worker reports it cancelled.)
                    with trio.move_on_at(stop_at) as waiting:
                        await slot.acquire()
                    if waiting.cancelled_caught:
                        break
                    try:
                        item = await iterator.__anext__()
                    except StopAsyncIteration:
                        slot.release()
                        return
                    tracker.submitted += 1
                    try:
                        request = _to_request(client, item, params, index)
                    except ValueError as exc:
                        slot.release()
                        await deliver(BatchResult(index, _custom_id_of(item), None, error=exc))
                        if on_error == "raise" and results._error is None:
                            results._error = exc
                            workers.cancel_scope.cancel()
                    else:
                        workers.start_soon(work, index, request, slot, workers.cancel_scope)
                    index += 1
            if results._error is not None and on_error == "raise":
                return
            # The deadline passed: report every item not yet read, without sending it.
            async for item in iterator:
                tracker.submitted += 1
                unsent: ChatRequest | None = None
                error: Exception
                try:
                    unsent = _to_request(client, item, params, index)
                except ValueError as exc:
                    error = exc
                else:
                    error = RequestCancelled(
                        "cancelled: the batch deadline passed before it was sent",
                        reason="deadline",
                        custom_id=unsent.custom_id,
                    )
                await deliver(BatchResult(index, _custom_id_of(item), unsent, error=error))
                index += 1

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            try:
                yield results
            finally:
                # Leaving the block early (break, an exception) stops the batch.
                nursery.cancel_scope.cancel()
                receive.close()
    except BaseExceptionGroup as group:
        # Only the body can raise here (the feeder reports everything as results), so
        # hand its exception back unwrapped, as if there were no nursery.
        if len(group.exceptions) == 1:
            exc = group.exceptions[0]
            raise exc from exc.__cause__
        raise


def _custom_id_of(item: object) -> str | None:
    if isinstance(item, ChatRequest):
        return item.custom_id
    return None
