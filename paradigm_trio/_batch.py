"""Batches: :meth:`Client.stream_batch` and :meth:`Client.chat_batch`.

The engine is one nursery.  A feeder task reads the input lazily, one item at a time, and
starts a worker task per item, never more than ``Limits.concurrency`` workers at once; each
worker sends its request through the client (which holds the client-wide concurrency slot,
the rate limits and the retry loop) and puts exactly one :class:`BatchResult` into a
memory channel.  The consumer reads that channel.  Memory therefore grows with the
concurrency, never with the size of the batch.

Every input item yields exactly one result: a completion, an error (an invalid item, as
:class:`InvalidRequestError`, whatever is wrong with it; an :class:`APIError` after retries,
:class:`ServerUnreachableError` once the circuit breaker gives up) or, when a ``deadline``
passes, :class:`RequestCancelled`: items that were in flight are interrupted and items not
yet sent are read from the input and reported without being sent.  One bad item never stops
the others.  What does: ``on_error="raise"`` stops at the first failure (the rest are
cancelled and not reported), an exception raised by the input iterable itself (or by
``on_progress``) ends the batch with that exception, and cancelling the whole batch from
outside (your cancel scope) propagates :class:`trio.Cancelled` after every task and
connection is cleaned up.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

import trio

from . import _log
from ._batch_options import BatchOptions, BatchStatistics
from ._budget import BatchControl
from ._errors import BatchError, InvalidRequestError, RequestCancelled
from ._events import Attempt, LatencyHistogram
from ._ledger import Observer
from ._models import ChatCompletion, ChatRequest, Usage, make_request

__all__ = ["BatchResult", "BatchResults", "BatchStream", "SendOne", "stream_batch"]

BatchInput = ChatRequest | Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one input item of a batch.  Exactly one per item, success or not.

    Attributes:
        index: the item's position in the input (0-based).
        custom_id: the request's ``custom_id``, if it has one.
        request: the item as a :class:`ChatRequest`, or ``None`` when it is not a valid one.
        completion: the completion, when it succeeded.
        error: why it failed: an :class:`APIError` (:class:`RequestCancelled` when a
            deadline or fail-fast stopped it), or :class:`InvalidRequestError` (a
            ``ValueError``) for an item that cannot be sent (not a request, invalid Unicode,
            a value JSON cannot hold): nothing of it was sent.  Any other exception raised
            while preparing or sending one item (a bug, an event hook raising) is that
            item's error too; it never stops the batch.
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
    def usage(self) -> Usage | None:
        """Token usage; ``None`` when it failed or the server reported no usage."""
        return self.completion.usage if self.completion is not None else None


class BatchResults(list[BatchResult]):
    """The list :meth:`Client.chat_batch` returns, in input order, with ``statistics``."""

    statistics: BatchStatistics


class SendOne(Protocol):
    """How the batch sends one request (the client provides it)."""

    def __call__(
        self,
        request: ChatRequest,
        *,
        deadline: float,
        control: BatchControl,
        history: list[Attempt],
    ) -> Awaitable[ChatCompletion]: ...


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
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, result: BatchResult) -> None:
        if result.completion is not None:
            self.succeeded += 1
            usage = result.completion.usage
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


def _to_request(item: object, defaults: Mapping[str, Any], index: int) -> ChatRequest:
    """An input item as a validated request; batch keywords fill the fields left unset.

    Raises :class:`InvalidRequestError` for anything wrong with it, even an unexpected
    exception while reading it (a message whose lookups raise, say): it is the item's
    result, never the batch's end.
    """
    try:
        return _checked_request(item, defaults, index)
    except InvalidRequestError:
        raise
    except Exception as exc:
        raise InvalidRequestError(
            f"item {index} is not a valid request: {type(exc).__name__}: {exc}"
        ) from exc


def _checked_request(item: object, defaults: Mapping[str, Any], index: int) -> ChatRequest:
    if isinstance(item, ChatRequest):
        missing = {k: v for k, v in defaults.items() if getattr(item, k) is None}
        return replace(item, **missing) if missing else item
    if isinstance(item, Mapping):
        raise InvalidRequestError(
            f"item {index} is a dict; pass a list of messages or a ChatRequest"
            " (a single message must still be inside a list)"
        )
    if not isinstance(item, Sequence) or isinstance(item, str | bytes):
        raise InvalidRequestError(
            f"item {index} is a {type(item).__name__}; pass a list of messages or a ChatRequest"
        )
    return make_request(item, **defaults)


class _Run:
    """One batch under way: the feeder, its workers, and the channel of results."""

    def __init__(self, send_one: SendOne, options: BatchOptions, width: int) -> None:
        self.send_one = send_one
        self.options = options
        self.width = width
        self.stop_at = math.inf if options.deadline is None else options.deadline
        self.params = options.defaults()
        self.control = BatchControl(
            retry_budget=options.retry_budget,
            threshold=options.circuit_breaker,
            unreachable_after=options.unreachable_after,
            reserve=width,
        )
        self.tracker = _Tracker(start=trio.current_time())
        self.next_progress = self.tracker.start + _log.PROGRESS_INTERVAL
        self.send, receive = trio.open_memory_channel[BatchResult](width)
        self.results = BatchStream(receive, self.tracker, self.control)

    async def deliver(self, result: BatchResult) -> None:
        self.tracker.add(result)
        if self.options.on_progress is not None:
            # Before the send: calls come one per result, in order, with ``done`` increasing.
            self.options.on_progress(self.tracker.snapshot(self.control))
        if _log.enabled(_log.INFO):
            self.log_progress()
        await self.send.send(result)

    def log_progress(self) -> None:
        """A ``batch_progress`` message, at most every ``PROGRESS_INTERVAL`` seconds."""
        now = trio.current_time()
        if now >= self.next_progress:
            self.next_progress = now + _log.PROGRESS_INTERVAL
            _log.batch_statistics("batch_progress", self.tracker.snapshot(self.control))

    def fail_fast(self, error: Exception, workers: trio.CancelScope) -> None:
        """With ``on_error="raise"``, the first failure stops the batch."""
        if self.options.on_error == "raise" and self.results._error is None:
            self.results._error = error
            workers.cancel()

    async def work(
        self, index: int, request: ChatRequest, slot: trio.Semaphore, workers: trio.CancelScope
    ) -> None:
        """Send one item and deliver its result.

        The slot is held until the result is delivered: a slow consumer stops the feeder,
        so finished results never pile up (memory stays bounded by the concurrency).
        """
        tracker, control = self.tracker, self.control
        try:
            start = trio.current_time()
            history: list[Attempt] = []
            tracker.in_flight += 1
            control.started += 1
            completion: ChatCompletion | None = None
            error: Exception | None = None
            try:
                completion = await self.send_one(
                    request, deadline=self.stop_at, control=control, history=history
                )
            except Exception as exc:  # an APIError, or InvalidRequestError before sending
                error = exc  # (or a bug, a hook raising): this item's result, not the batch's
            finally:
                tracker.in_flight -= 1
            elapsed = trio.current_time() - start
            await self.deliver(
                BatchResult(index, request.custom_id, request, completion, error,
                            len(history), elapsed)
            )  # fmt: skip
            if error is not None:
                self.fail_fast(error, workers)
        finally:
            slot.release()

    async def feed(self, inputs: AsyncIterable[Any]) -> None:
        """Read the input lazily and start a worker per item, ``width`` at most at once.

        Raises only what the input itself raises (no item to blame: the items under way
        finish first), or a progress callback.  The channel is closed without a checkpoint,
        so that such an exception is never replaced by the cancellation that the consumer's
        exit sends back.
        """
        with self.send:
            slot = trio.Semaphore(self.width)
            index = 0
            iterator = inputs.__aiter__()
            broken: Exception | None = None
            async with trio.open_nursery() as workers:
                while True:
                    # Only the wait for a slot is cut by the deadline: an item being read
                    # from the input is never lost half-way.  (An item read after the
                    # deadline is not sent: its worker reports it cancelled.)
                    if self.stop_at == math.inf:
                        await slot.acquire()
                    else:
                        with trio.move_on_at(self.stop_at) as waiting:
                            await slot.acquire()
                        if waiting.cancelled_caught:
                            break
                    try:
                        item = await iterator.__anext__()
                    except StopAsyncIteration:
                        slot.release()
                        return
                    except Exception as exc:
                        slot.release()
                        broken = exc
                        break
                    self.tracker.submitted += 1
                    try:
                        request = _to_request(item, self.params, index)
                    except InvalidRequestError as exc:
                        slot.release()
                        await self.deliver(BatchResult(index, _custom_id_of(item), None, error=exc))
                        self.fail_fast(exc, workers.cancel_scope)
                    else:
                        workers.start_soon(self.work, index, request, slot, workers.cancel_scope)
                    index += 1
            if broken is not None:
                raise broken
            if self.results._error is None or self.options.on_error != "raise":
                await self.report_unsent(iterator, index)

    async def report_unsent(self, iterator: AsyncIterator[Any], index: int) -> None:
        """The deadline passed: report every item not yet read, without sending it."""
        async for item in iterator:
            self.tracker.submitted += 1
            unsent: ChatRequest | None = None
            error: Exception
            try:
                unsent = _to_request(item, self.params, index)
            except InvalidRequestError as exc:
                error = exc
            else:
                error = RequestCancelled(
                    "cancelled: the batch deadline passed before it was sent",
                    reason="deadline",
                    custom_id=unsent.custom_id,
                )
            await self.deliver(BatchResult(index, _custom_id_of(item), unsent, error=error))
            index += 1


@asynccontextmanager
async def stream_batch(
    send_one: SendOne,
    requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
    options: BatchOptions,
    *,
    width: int,
    observers: Sequence[Observer] = (),
) -> AsyncIterator[BatchStream]:
    """The engine behind :meth:`Client.stream_batch` (documented there).

    ``send_one`` sends one request (through the client's attempt engine); ``width`` is the
    most items worked on at once (the client's concurrency); ``observers`` (the ledger's)
    are told when the batch starts and ends.
    """
    run = _Run(send_one, options, width)
    inputs: AsyncIterable[Any] = (
        requests if isinstance(requests, AsyncIterable) else _SyncInputs(requests)
    )
    for observer in observers:
        observer.batch_started(run.control)
    _log.batch_started(width)
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
            note = f" ({type(error).__name__})" if error is not None else ""
            _log.batch_statistics("batch_finished", statistics, note)


@asynccontextmanager
async def _run_batch(run: _Run, inputs: AsyncIterable[Any]) -> AsyncIterator[BatchStream]:
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
        # Only the body or the input (the feeder reports every item as a result) can
        # raise here: hand the exception back unwrapped, as if there were no nursery.
        if len(group.exceptions) == 1:
            exc = group.exceptions[0]
            raise exc from exc.__cause__
        raise


def _custom_id_of(item: object) -> str | None:
    if isinstance(item, ChatRequest):
        return item.custom_id
    return None
