"""A batch's storm control: the retry budget and the circuit breaker (no I/O).

The attempt engine (``_attempts``) consults a :class:`BatchControl` before and after every
attempt of a batch item, and before every retry.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from .. import _log
from .._diagnosis import Diagnosis, SystematicFailureError, diagnose
from .._errors import InvalidRequestError, RequestCancelled, ServerUnreachableError

__all__ = [
    "BatchControl",
    "DEFAULT_SYSTEMATIC_FAILURES",
    "DEFAULT_UNREACHABLE_AFTER",
    "HOLD",
    "PASS",
    "RELEASE",
    "RETRY_FLOOR",
    "RETRY_RESERVE",
    "STOP",
]

DEFAULT_UNREACHABLE_AFTER = 10.0
"""Seconds of nothing but connection failures after which a batch gives up on the server."""


DEFAULT_SYSTEMATIC_FAILURES = 10
"""Answers in a row, at a batch's start, all the same configuration failure, that stop it."""

PASS, HOLD, RELEASE, STOP = "pass", "hold", "release", "stop"
""":meth:`BatchControl.judge`'s verdicts on a request's results."""

RETRY_FLOOR = 10.0
"""Retries a second the retry budget always allows, whatever the successes."""

RETRY_RESERVE = 10
"""The smallest reserve of the retry budget (a batch's reserve is at least its concurrency)."""


class BatchControl:
    """Batch-wide storm control, consulted by the engine before and after every attempt.

    **Retry budget** (``retry_budget``, retries earned per success): a token bucket that
    *paces* retries, in the style of Finagle's retry budget and gRPC's retry throttling.  A
    retry needs one token.  The bucket starts full with ``reserve`` tokens (at least the
    batch's concurrency, so a blip that fails a whole first wave is retried at once), each
    success deposits ``retry_budget`` tokens, and ``RETRY_FLOOR`` tokens a second arrive
    whatever happens; it never holds more than ``reserve``.  A retry with no token waits for
    one, in order (without a concurrency slot), so retries are sent at most at::

        rate(retries) <= retry_budget * rate(successes) + RETRY_FLOOR   (after the reserve)

    A healthy server that fails now and then never notices the budget; a drowning one (most
    answers errors) gets retries no faster than it produces successes, plus the floor.  The
    budget never *refuses* a retry: while the server answers at all, every retryable failure
    is retried within its ``RetryPolicy.attempts``, unless the wait would pass the request's
    deadline (then the failure is final, with a note).  A dead server is the circuit
    breaker's business.

    **Circuit breaker**: after ``threshold`` consecutive connection failures (no HTTP
    response at all; any response resets the count) the breaker opens: attempts wait
    ``cooldown`` seconds, then probe again.  Once the failures have lasted
    ``unreachable_after`` seconds, every attempt not yet sent fails at once with
    :class:`ServerUnreachableError`: a dead server fails a batch in seconds.  While the
    breaker is open, connection failures are its business, not the budget's: their retries
    take no token.

    **Systematic failures** (``systematic``, answers): while the batch has had nothing but
    answers that are the same configuration failure (:func:`diagnose`: a 401, 403 or 404,
    a certificate or a proxy refused), those answers are *held* (not handed out); the
    ``systematic``-th such answer stops the batch.  Any other answer (a success, another
    failure) *disarms* the rule for the rest of the batch and releases what was held: a
    batch that has had one success is never stopped by it, however many items fail later.
    Results that are no answer (an invalid item, a request cancelled by the deadline)
    neither count nor disarm.
    """

    def __init__(
        self,
        *,
        retry_budget: float | None,
        threshold: int | None,
        unreachable_after: float = DEFAULT_UNREACHABLE_AFTER,
        cooldown: float = 1.0,
        reserve: int = RETRY_RESERVE,
        systematic: int | None = None,
    ) -> None:
        self.systematic = systematic
        self.suspect: Diagnosis | None = None  # the failure every answer so far has been
        self.suspects = 0  # answers (requests) that were it
        self.stop_error: SystematicFailureError | None = None  # once stopped
        self.retry_budget = retry_budget
        self.threshold = threshold
        self.unreachable_after = unreachable_after
        self.cooldown = cooldown
        self.started = 0
        self.retries = 0
        self.retries_by_cause: dict[str, int] = {}
        self.reserve = max(RETRY_RESERVE, reserve)
        # Tokens: ``supplied`` ever (reserve, deposits, floor) against ``issued`` tickets; the
        # retry holding ticket k may go once ``supplied >= k``.
        self._supplied = float(self.reserve)
        self._issued = 0
        self._updated: float | None = None
        self._waiters = trio.lowlevel.ParkingLot()
        self._consecutive = 0
        self._failing_since: float | None = None
        self._open_until = -math.inf
        self.dead = False
        self.shed_at = -math.inf  # when the server last shed load (a 429 or a 5xx)
        self.hedger: Any = None  # the batch's Hedger, when it hedges (_hedge)

    @property
    def breaker_open(self) -> bool:
        return self.threshold is not None and self._consecutive >= self.threshold

    async def before_attempt(self) -> None:
        """Wait for the breaker's next probe; raise once the server is judged dead."""
        waited = False
        while self.breaker_open:
            now = trio.current_time()
            since = self._failing_since
            if since is not None and now - since >= self.unreachable_after and not self.dead:
                self.dead = True
                _log.say(
                    _log.ERROR, "server_unreachable",
                    "the server is unreachable: nothing but connection failures for %.1fs; "
                    "the batch's remaining requests fail", now - since, seconds=now - since,
                )  # fmt: skip
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
        """An attempt ended: with a response (``status``), a success, or a failure."""
        if cause is None:
            self._deposit()
        if status is not None and (status == 429 or status >= 500):
            self.shed_at = trio.current_time()
        if status is not None or cause is None:
            if self.breaker_open:
                _log.say(_log.INFO, "breaker_closed", "circuit breaker closed: the server answers")
            self._consecutive = 0
            self._failing_since = None
            return
        if cause in ("connection", "timeout"):
            now = trio.current_time()
            self._consecutive += 1
            if self._failing_since is None:
                self._failing_since = now
            if self.breaker_open:
                if self._consecutive == self.threshold:
                    _log.say(
                        _log.WARNING, "breaker_opened",
                        "circuit breaker opened: %d connection failures in a row; probing "
                        "every %gs", self._consecutive, self.cooldown, failures=self._consecutive,
                    )  # fmt: skip
                self._open_until = now + self.cooldown

    # ------------------------------------------------------------------ systematic failures

    def judge(self, errors: list[Exception | None]) -> str:
        """The verdict on the results of one request (one per item it carried).

        :data:`PASS`: hand them out (the rule is off or disarmed, or they are no answer);
        :data:`HOLD`: keep them, the batch may be failing systematically; :data:`RELEASE`:
        the rule is disarmed now, hand out what was held, then them; :data:`STOP`: they
        make ``systematic`` answers in a row of the same configuration failure.
        """
        if self.systematic is None:
            return PASS
        answers = [e for e in errors if not isinstance(e, RequestCancelled | InvalidRequestError)]
        if not answers:
            return PASS
        found = {diagnose(e) for e in answers}
        verdict = found.pop() if len(found) == 1 else None
        if verdict is None or (self.suspect is not None and verdict != self.suspect):
            self.systematic = None  # disarmed for good
            return RELEASE if self.suspects else PASS
        self.suspect = verdict
        self.suspects += 1
        return STOP if self.suspects >= self.systematic else HOLD

    def stopped(self, held: list[Any]) -> SystematicFailureError:
        """The error of a batch stopped by :data:`STOP` (``held``: the results held), said
        in a ``batch_stopped`` log record.

        The first stop stands: a worker woken before the batch was cancelled (its answer in
        hand, no checkpoint since) may judge one more answer :data:`STOP`; its results join
        the same error's (in input order), and nothing more is logged.
        """
        if self.stop_error is not None:
            results = (*self.stop_error.results, *held)
            self.stop_error.results = tuple(sorted(results, key=_index))
            return self.stop_error
        results = tuple(sorted(held, key=_index))
        first = next(r.error for r in results if r.error is not None)
        diagnosis = diagnose(first)
        assert diagnosis is not None
        error = SystematicFailureError(
            first, diagnosis, failures=self.suspects, sent=self.started, results=results
        )
        _log.say(_log.ERROR, "batch_stopped", "%s", error, cause=diagnosis.cause,
                 status=diagnosis.status, sent=self.started)  # fmt: skip
        self.stop_error = error
        return error

    # ------------------------------------------------------------------ the budget

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._supplied += RETRY_FLOOR * (now - self._updated)
        self._updated = now
        self._supplied = min(self._supplied, self._issued + self.reserve)

    def _deposit(self) -> None:
        if self.retry_budget:
            self._refill(trio.current_time())
            self._supplied = min(self._supplied + self.retry_budget, self._issued + self.reserve)
            self._waiters.unpark_all()

    def spend_retry(self, cause: str, now: float) -> tuple[int | None, float]:
        """Take a token for a retry of ``cause``: ``(ticket, most it may wait)``.

        ``ticket`` is ``None`` when the retry needs none (no budget, or a connection retry
        while the breaker is open).  The wait is an upper bound (the floor alone, without
        the successes that will come): the engine checks it against the deadline.
        """
        if self.retry_budget is None or (self.breaker_open and cause in ("connection", "timeout")):
            return None, 0.0
        self._refill(now)
        self._issued += 1
        return self._issued, max(0.0, (self._issued - self._supplied) / RETRY_FLOOR)

    def refund(self, ticket: int | None) -> None:
        """Give back the token of a retry that will not be made (its wait would pass the
        deadline, or its request ended first: cancelled, deadline, breaker)."""
        if ticket is None:
            return
        if ticket == self._issued:
            self._issued -= 1
        else:  # later tickets are out: the token goes to the next retry in line
            self._supplied += 1.0
            self._waiters.unpark_all()

    async def wait_for_token(self, ticket: int | None) -> None:
        """Wait until the retry holding ``ticket`` may go (retries go in ticket order)."""
        if ticket is None:
            return
        while True:
            self._refill(trio.current_time())
            deficit = ticket - self._supplied
            if deficit <= 1e-9:
                return
            with trio.move_on_after(deficit / RETRY_FLOOR):
                await self._waiters.park()

    def retried(self, cause: str) -> None:
        """A retry of ``cause`` was made (its attempt started): the batch's statistics."""
        self.retries += 1
        self.retries_by_cause[cause] = self.retries_by_cause.get(cause, 0) + 1


def _index(result: Any) -> int:
    """A batch result's input index (results are ``BatchResult`` or alike)."""
    return int(getattr(result, "index", 0))
