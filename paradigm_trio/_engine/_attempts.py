"""The attempt engine: every logical request, of any kind, runs its attempts here.

A *logical request* (a chat completion, a stream, the model list, one item of a batch) is a
:class:`Call`.  Its attempts are made by an *attempt function*, ``async (Attempting) -> T``,
which does the I/O and either returns a result or raises
:class:`~paradigm_trio._attempt_failure.AttemptFailure` (the error and its classification: cause,
status, ``Retry-After``, ``x-should-retry``).  The engine alone owns everything else, so
that each kind of request obeys the same rules:

* the request's deadline: the earliest of ``Timeouts.total`` (counted from the start, every
  attempt and wait included) and the caller's deadline (a batch's ``deadline=``);
* what each attempt holds (its :class:`Attempting`): a concurrency slot and a rate-limit
  permit, taken together, given back before any wait between attempts;
* ``Timeouts.attempt`` around each attempt (when the request kind asks for it);
* a batch's :class:`BatchControl` (circuit breaker and retry budget);
* the retry decision (``_retry.allows``: the only place a ``RetryPolicy`` judges a
  failure) and the wait (policy, ``Retry-After``, budget, deadline);
* the :class:`~paradigm_trio.Attempt` records and the errors of a deadline;
* through the :class:`Ledger`, every counter and every event.

It knows nothing of HTTP or Server-Sent Events.

Where it blocks or can be cancelled: waiting for a breaker probe, a slot, a rate permit, in
the attempt function, and sleeping between attempts.  Cancellation from outside interrupts
any of these, gives the lease back and counts the request as cancelled; nothing swallows
:class:`trio.Cancelled`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from .._attempt_failure import AttemptFailure
from .._config import AttemptTimedOut, RetryPolicy, Timeouts
from .._errors import APIError, APITimeoutError, RequestCancelled
from .._events import Attempt, AttemptFailed
from .._records import builder
from ._attempting import Attempting
from ._budget import BatchControl
from ._ledger import CANCELLED, Ledger, Tokens, one_line
from ._ratelimit import AdaptiveController, Rates, RecentShare
from ._retry import INVALID_ANSWER, allows, delay_before_next, not_resent

__all__ = ["Attempting", "Call", "Engine", "Plan", "idempotency_key"]

T = TypeVar("T")

_KEY_PREFIX = uuid.uuid4().hex[:20]
_key_counter = itertools.count()


def idempotency_key(custom_id: str | None) -> str:
    """``Idempotency-Key`` of a logical request: stable for a ``custom_id``, else unique.

    Without a ``custom_id``: a random per-process prefix and a counter (unique, and no
    system call per request as ``uuid4`` would make).
    """
    if custom_id is None:
        return f"pt-{_KEY_PREFIX}{next(_key_counter):012x}"
    return "pt-" + hashlib.sha256(custom_id.encode("utf-8")).hexdigest()[:32]


HEALTH_HALF_LIFE = 2.0
"""Seconds over which an attempt's weight in the server's recent failure share halves."""

FULL_BACKOFF_SHARE = 0.5
"""The recent failure share from which the whole computed backoff is waited."""


class Engine:
    """What every request of one client shares: slots, rates, the controller, the ledger,
    and the server's recent health (the share of recent attempts that failed retryably,
    which scales the backoff: see :class:`~paradigm_trio.RetryPolicy`)."""

    def __init__(
        self,
        *,
        limiter: trio.CapacityLimiter,
        rates: Rates,
        adaptive: AdaptiveController,
        ledger: Ledger,
    ) -> None:
        self.limiter = limiter
        self.rates = rates
        self.adaptive = adaptive
        self.ledger = ledger
        self.random = random.Random()
        self.health = RecentShare(HEALTH_HALF_LIFE)

    def backoff_factor(self, floor: float) -> float:
        """The fraction of a computed backoff to wait, given the server's recent health."""
        return min(1.0, max(floor, self.health.share / FULL_BACKOFF_SHARE))

    def call(self, plan: Plan, history: list[Attempt] | None = None) -> Call:
        """A new logical request (not started until :meth:`Call.run`); its attempt records
        go to ``history`` (a batch passes its own list)."""
        return Call(self, plan, history)


@dataclass(slots=True)
class Plan:
    """The rules of one logical request.

    Attributes:
        custom_id: the request's ``custom_id``, if any.
        key: its ``Idempotency-Key``: the same for every attempt.
        retry, timeouts: the policies in force.
        tokens: the estimate charged to the tokens-per-minute limit.
        deadline: the caller's absolute deadline (trio time).
        control: the batch's :class:`BatchControl`, for a batch item.
        attempt_timeout: whether the engine bounds each attempt by ``Timeouts.attempt``
            (a stream bounds only its wait for the first chunk, itself).
        endpoint, request: what was sent, for the observers (telemetry), which ask the
            endpoint about its request; the engine never looks at either.  A request
            with an endpoint reports its usage (``None`` for the model list: no usage);
            ``stream`` whether it is sent as a stream.
        hedge: whether it is a batch's hedge (``_hedge``): its attempts are announced and
            counted as hedges.
        idempotent: whether sending it twice does no more than sending it once (the
            default); one that is not (an upload) is resent as ``_retry.resendable`` says.
    """

    custom_id: str | None
    key: str
    retry: RetryPolicy
    timeouts: Timeouts
    tokens: int = 0
    deadline: float = math.inf
    control: BatchControl | None = None
    attempt_timeout: bool = True
    endpoint: Any = None
    request: Any = None
    stream: bool = False
    hedge: bool = False
    idempotent: bool = True


_ATTEMPT = builder(Attempt)  # (every field, in order: ``_records``)


class _Unbounded:
    """What a request without a deadline runs in, instead of a cancel scope: a context
    manager that does nothing, and whose ``__exit__`` (a static method) costs no bound
    method per request, held while the request waits (``contextlib.nullcontext``'s does)."""

    __slots__ = ()

    @staticmethod
    def __enter__() -> None:
        return None

    @staticmethod
    def __exit__(*exc_info: object) -> None:
        return None


_UNBOUNDED: AbstractContextManager[object] = _Unbounded()


def _attempt_timed_out(limit: float) -> AttemptFailure:
    error = APITimeoutError(f"attempt timed out after Timeouts.attempt={limit:g}s", which="attempt")
    return AttemptFailure(error, "timeout")


class Call:
    """One logical request: its attempts, its record and its single outcome.

    :meth:`run` makes the attempts.  With ``hold=True`` (a stream handed to its reader) a
    success keeps the lease and leaves the request open: the reader then ends it with
    :meth:`succeed`, :meth:`fail` or :meth:`abandon`, exactly once, or, when the held
    attempt breaks, asks for the next with :meth:`resume` (a live stream resumed).

    For the observers (telemetry), besides ``plan``, ``start`` and ``history``:
    ``interrupted``, the record of the attempt that was under way when the request ended
    without it ending (a stream left early, a request cancelled from outside, a hook that
    raised: not in ``history``, which holds the attempts that succeeded or failed), and
    ``first_chunk``, when the first chunk of the attempt whose result was kept arrived
    (streams only; trio time).
    """

    __slots__ = (
        "_bounded",
        "_current",
        "_done",
        "_invalid_outputs",
        "_retry_of",
        "_ticket",
        "_total_deadline",
        "deadline",
        "engine",
        "first_chunk",
        "history",
        "interrupted",
        "plan",
        "start",
    )

    def __init__(self, engine: Engine, plan: Plan, history: list[Attempt] | None = None) -> None:
        self.engine = engine
        self.plan = plan
        self.history: list[Attempt] = [] if history is None else history
        self.start = 0.0
        self.deadline = plan.deadline
        self._total_deadline = math.inf
        self._current: Attempting | None = None
        self._retry_of: str | None = None  # the cause of the retry scheduled, if any
        self._ticket: int | None = None  # its place in the batch's retry budget
        self._done = False
        self._invalid_outputs = 0  # answers that did not pass the checks so far
        self._bounded = False  # the attempt function keeps Timeouts.attempt itself
        self.interrupted: Attempt | None = None
        self.first_chunk: float | None = None

    # ------------------------------------------------------------------ the loop

    async def run(
        self,
        attempt: Callable[[Attempting], Awaitable[T]],
        *,
        usage: Callable[[T], Tokens | None] = lambda _: None,
        hold: bool = False,
        bounded: bool = False,
        resumed: AttemptFailure | None = None,
    ) -> T:
        """Make attempts until one succeeds or the request fails; return its result.

        ``bounded``: ``attempt`` keeps ``Timeouts.attempt`` itself (``Attempting.until``,
        see there), so no cancel scope is opened around each attempt.  ``resumed``: the
        failure of a held attempt (:meth:`resume`), decided first.

        The attempts are made here, inline: no frame of their own waits between this one
        and the attempt function's while the answer comes (each frame a request holds
        while it waits is walked again and again by the cyclic garbage collector).

        Raises:
            APIError: the last attempt's error (retries exhausted, not retryable, budget
                spent, breaker gave up) or the deadline's (``APITimeoutError`` for
                ``Timeouts.total``, :class:`RequestCancelled` for the caller's).
        """
        plan, engine = self.plan, self.engine
        if resumed is None:
            self.start = trio.current_time()
            if plan.timeouts.total is not None:
                self._total_deadline = self.start + plan.timeouts.total
            self.deadline = min(plan.deadline, self._total_deadline)
            self._bounded = bounded
            engine.ledger.started += 1
        limit = plan.timeouts.attempt if plan.attempt_timeout else None
        control = plan.control
        # (No cancel scope to pay for without a deadline.)
        scope = _UNBOUNDED if self.deadline == math.inf else trio.move_on_at(self.deadline)
        try:
            with scope:
                if resumed is not None:
                    await trio.sleep(self._after_failure(resumed))
                while True:
                    if control is not None and (control.breaker_open or self._ticket is not None):
                        await self._admitted(control)
                    current = Attempting(engine.adaptive, self.deadline, len(self.history) + 1)
                    await current.take(engine.limiter, engine.rates, plan.tokens)
                    now = trio.current_time()
                    if now >= self.deadline:
                        # Woken late (a busy machine): the deadline passed while waiting.
                        # Start nothing; the deadline's cancel scope ends the request at the
                        # next checkpoint.
                        current.release()
                        await trio.sleep_forever()
                    self._current = current
                    kept = False
                    try:
                        self._started(current, now)
                        if limit is None:
                            result = await attempt(current)
                        elif self._bounded:  # (no cancel scope: its waits end by ``until``)
                            current.until = now + limit
                            try:
                                result = await attempt(current)
                            except AttemptTimedOut:
                                raise _attempt_timed_out(limit) from None
                        else:
                            with trio.move_on_after(limit) as attempt_scope:
                                result = await attempt(current)
                            if attempt_scope.cancelled_caught:
                                raise _attempt_timed_out(limit)
                        kept = hold
                    except AttemptFailure as failure:
                        self._release(current)  # (no slot held while waiting to retry)
                        await trio.sleep(self._after_failure(failure))
                        continue
                    finally:
                        if not kept:
                            self._release(current)
                    if resumed is None:  # (a resumed request's first chunk stays its own)
                        self.first_chunk = current.first_chunk
                    if not hold:
                        self.succeed(result, usage(result))
                    return result
            raise self._deadline_passed()
        except BaseException as exc:
            self._end_with(exc)
            raise

    def _deadline_passed(self) -> APIError:
        """The deadline's error, the attempt it interrupted recorded."""
        error = self.deadline_error()
        self._interrupted()
        return error

    def _end_with(self, exc: BaseException) -> None:
        """The request ends with ``exc`` raised out of it: its error, or (cancelled from
        outside, a bug, a hook raising) the attempt under way dropped."""
        if not isinstance(exc, APIError):
            self._drop_current()
        self._finish(exc if isinstance(exc, Exception) else CANCELLED)

    async def _admitted(self, control: BatchControl) -> None:
        """A batch's breaker and retry budget let the next attempt go (they may wait)."""
        if control.breaker_open:
            await control.before_attempt()
        if self._ticket is not None:
            await control.wait_for_token(self._ticket)
            self._ticket = None  # (kept until here: a request ending first refunds it)

    def _started(self, current: Attempting, now: float) -> None:
        """The attempt starts, its slot and permit held: announced and counted."""
        plan = self.plan
        current.started = now
        retry_of, self._retry_of = self._retry_of, None
        if retry_of is not None and plan.control is not None:
            plan.control.retried(retry_of)
        self.engine.ledger.attempt_started(
            plan.custom_id, plan.key, current.number, now, retry_of, plan.hedge
        )

    @property
    def attempts_made(self) -> int:
        """The attempts this request made: those in :attr:`history`, and the one
        :attr:`interrupted`, if any."""
        return len(self.history) + (self.interrupted is not None)

    def _drop_current(self) -> None:
        """The request ends with an attempt under way: give its lease back and keep its
        record in :attr:`interrupted` (not in the history: it neither failed nor
        succeeded)."""
        current, self._current = self._current, None
        if current is not None:
            now = trio.current_time()
            self.interrupted = Attempt(
                current.number, current.started, now - current.started, current.status,
                request_id=current.request_id,
            )  # fmt: skip
            self._release(current)

    def _release(self, current: Attempting) -> None:
        if current.held:
            current.release()
            self.engine.ledger.in_flight -= 1

    def _after_failure(self, failure: AttemptFailure) -> float:
        """Record a failed attempt and decide: the wait before the next, or raise."""
        current = self._current
        assert current is not None
        plan, engine = self.plan, self.engine
        if plan.control is not None:
            plan.control.after_attempt(failure.cause, current.status)
        if failure.rate_limit is not None:
            asked = failure.retry_after
            honoured = asked if asked is None or asked <= plan.retry.max_retry_after else None
            engine.adaptive.on_rate_limited(honoured, failure.rate_limit, quota=failure.quota)
            engine.ledger.rate_limited(plan.custom_id, plan.key, asked, failure.rate_limit)
        now = trio.current_time()
        retryable = self._retryable(failure)
        engine.health.event(now, hit=retryable)
        delay: float | None = None
        stop_reason: str | None = None
        if retryable:
            delay, stop_reason = delay_before_next(
                plan.retry, failure, current.number, now, self.deadline, self._backoff
            )
        if not retryable and not plan.idempotent:
            stop_reason = not_resent(plan.retry, failure, self._invalid_outputs)
        if delay is not None and plan.control is not None:
            ticket, wait = plan.control.spend_retry(failure.cause, now)
            if now + max(delay, wait) >= self.deadline:
                plan.control.refund(ticket)
                delay = None
                stop_reason = (
                    f"not retried: the batch's retry budget could hold it {wait:.3g}s, past "
                    f"the request's deadline ({max(0.0, self.deadline - now):.3g}s left)"
                )
            else:
                self._ticket = ticket
        self._record_failure(current, now, failure, delay)
        failure.error.__suppress_context__ = True  # the AttemptFailure is internal
        if delay is None:
            if stop_reason:
                failure.error.add_note(stop_reason)
            raise failure.error  # its __cause__ is the transport's exception, if any
        engine.ledger.retry_scheduled(plan.custom_id, plan.key, failure, current.number, delay)
        self._retry_of = failure.cause
        return delay

    def _backoff(self, number: int) -> float:
        """The policy's backoff after attempt ``number``, scaled by the server's health."""
        retry, engine = self.plan.retry, self.engine
        delay = retry.backoff(number, engine.random.random())
        return delay * engine.backoff_factor(retry.min_backoff_factor)

    def _retryable(self, failure: AttemptFailure) -> bool:
        """The retry decision, made once (``allows``): whether the policy allows another."""
        if failure.cause in INVALID_ANSWER:
            self._invalid_outputs += 1
        plan = self.plan
        return allows(plan.retry, failure, self._invalid_outputs, plan.idempotent)

    def _record(
        self,
        current: Attempting,
        now: float,
        cause: str | None = None,
        error: str | None = None,
        delay: float | None = None,
        reached: bool = True,
    ) -> Attempt:
        """Close the attempt under way: its :class:`Attempt` joins the history."""
        record = _ATTEMPT(
            current.number, current.started, now - current.started, current.status,
            cause, error, delay, current.request_id, reached,
        )  # fmt: skip
        self.history.append(record)
        self._current = None
        return record

    def _record_failure(
        self, current: Attempting, now: float, failure: AttemptFailure, delay: float | None
    ) -> None:
        record = self._record(
            current, now, failure.cause, one_line(failure.error), delay, failure.reached
        )
        plan = self.plan
        self.engine.ledger.emit(AttemptFailed(plan.custom_id, plan.key, record, delay is not None))

    def _interrupted(self) -> None:
        """The deadline interrupted the attempt under way, if any: record it."""
        current = self._current
        if current is not None:
            self._record(current, trio.current_time(), "timeout", "interrupted by the deadline")
            self._release(current)

    def deadline_error(self) -> APIError:
        """The error of a request whose deadline passed (``Timeouts.total`` or the caller's)."""
        current = self._current
        attempts = f"{len(self.history) + (current is not None)} attempt(s)"
        progress = current.progress if current is not None else None
        got = f"; {progress()} received" if progress is not None else ""
        if self._total_deadline <= self.plan.deadline:
            return APITimeoutError(
                f"request timed out: Timeouts.total={self.plan.timeouts.total:g}s passed "
                f"after {attempts}{got}",
                which="total",
            )
        sent = bool(self.history) or current is not None
        return RequestCancelled(
            f"cancelled: the deadline passed after {attempts}{got}"
            if sent
            else "cancelled: the deadline passed before it was sent",
            reason="deadline",
            sent=sent,
        )

    # ------------------------------------------------------------------ the outcome

    def succeed(self, result: object, usage: Tokens | None) -> None:
        """The attempt under way produced the whole answer (ignored once finished)."""
        current = self._current
        if current is None or self._done:
            return
        plan, engine = self.plan, self.engine
        now = trio.current_time()
        self._release(current)
        engine.health.event(now)
        if plan.control is not None:
            plan.control.after_attempt(None, current.status)
        self._record(current, now)
        if len(self.history) == 1:
            engine.adaptive.on_clean_success()
        if usage is not None and usage.total_tokens:
            engine.rates.reconcile(plan.tokens, usage.total_tokens)
        self._finish(result, usage, now)

    def fail(self, failure: AttemptFailure, note: str | None = None) -> APIError:
        """The held attempt failed after its result was handed out: final, never retried.

        Returns the error to raise (recorded and counted only if the request was not
        finished already, e.g. abandoned by another task).
        """
        current = self._current
        if current is None or self._done:
            return failure.error
        self._release(current)
        now = trio.current_time()
        self.engine.health.event(now, hit=self._retryable(failure))
        self._record_failure(current, now, failure, None)
        failure.error.__suppress_context__ = True  # the AttemptFailure is internal
        if note:
            failure.error.add_note(note)
        self._finish(failure.error)
        return failure.error

    def resume(
        self, failure: AttemptFailure, attempt: Callable[[Attempting], Awaitable[T]]
    ) -> Awaitable[T]:
        """The held attempt failed after its result was handed out in part (a live stream
        broke): decided like any failure (``allows``, attempts left, deadline, the wait),
        then ``attempt`` resumes it, held like the first (:meth:`run`'s coroutine, with
        ``resumed``).  Returns its result.  The held attempt's slot is given back when
        this is called: await what it returns at once.

        Raises:
            APIError: ``failure``'s error when no attempt follows it (at once, when the
                request was finished already), or the error of the attempts that followed
                (the request then ends, as with :meth:`fail`).
        """
        current = self._current
        if current is None or self._done:
            raise failure.error
        self._release(current)
        return self.run(attempt, hold=True, resumed=failure)

    def abandon(self) -> None:
        """The caller left before the end: the request counts as cancelled."""
        self._drop_current()
        self._finish(CANCELLED)

    def _finish(
        self, outcome: object, usage: Tokens | None = None, now: float | None = None
    ) -> None:
        """``now``: trio's clock, when the caller has just read it."""
        if self._done:
            return
        self._done = True
        plan = self.plan
        if self._ticket is not None and plan.control is not None:
            plan.control.refund(self._ticket)  # a retry scheduled but never made
            self._ticket = None
        if isinstance(outcome, APIError):
            outcome.attempts = tuple(self.history)
            outcome.custom_id = plan.custom_id
        if now is None:
            now = trio.current_time()
        self.engine.ledger.finished(
            outcome, plan.custom_id, plan.key, self.attempts_made, now - self.start, usage,
            self, metered=plan.endpoint is not None,
        )  # fmt: skip

    @property
    def finished(self) -> bool:
        return self._done
