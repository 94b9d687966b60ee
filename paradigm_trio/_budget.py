"""A batch's storm control: the retry budget and the circuit breaker (no I/O).

The attempt engine (``_attempts``) consults a :class:`BatchControl` before and after every
attempt of a batch item, and before every retry.
"""

from __future__ import annotations

import math

import trio

from ._errors import ServerUnreachableError

__all__ = ["BatchControl", "DEFAULT_UNREACHABLE_AFTER"]

DEFAULT_UNREACHABLE_AFTER = 10.0
"""Seconds of nothing but connection failures after which a batch gives up on the server."""


class BatchControl:
    """Batch-wide storm control, consulted by the engine before and after every attempt.

    * Retry budget: the batch may make at most ``10 + retry_budget * started`` retries;
      past that a failure is final (its error carries a note saying so).
    * Circuit breaker: after ``threshold`` consecutive connection failures (no HTTP response
      at all; any response resets the count) the breaker opens: attempts wait
      ``cooldown`` seconds, then probe again.  Once the failures have lasted
      ``unreachable_after`` seconds, every attempt not yet sent fails at once with
      :class:`ServerUnreachableError`: a dead server fails a batch in seconds.  While the
      breaker is open, connection failures are its business, not the budget's.
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
        self.spent = 0  # retries charged to the budget (those of an open breaker are not)
        self.retries_by_cause: dict[str, int] = {}
        self._consecutive = 0
        self._failing_since: float | None = None
        self._open_until = -math.inf
        self.dead = False

    @property
    def breaker_open(self) -> bool:
        return self.threshold is not None and self._consecutive >= self.threshold

    async def before_attempt(self) -> None:
        """Wait for the breaker's next probe; raise once the server is judged dead."""
        waited = False
        while self.breaker_open:
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
        """An attempt ended: with a response (``status``), a success, or a failure."""
        if status is not None or cause is None:
            self._consecutive = 0
            self._failing_since = None
            return
        if cause in ("connection", "timeout"):
            now = trio.current_time()
            self._consecutive += 1
            if self._failing_since is None:
                self._failing_since = now
            if self.breaker_open:
                self._open_until = now + self.cooldown

    def spend_retry(self, cause: str) -> str | None:
        """Charge a scheduled retry of ``cause`` to the budget; return why it may not
        happen, or ``None``.  (Counted in ``retries`` only once made: :meth:`retried`.)"""
        exempt = self.breaker_open and cause in ("connection", "timeout")
        if not exempt:
            if self.retry_budget is not None:
                allowed = 10 + self.retry_budget * self.started
                if self.spent >= allowed:
                    return (
                        f"not retried: the batch's retry budget is spent ({self.spent} retries "
                        f"for {self.started} requests; retry_budget={self.retry_budget:g})"
                    )
            self.spent += 1
        return None

    def retried(self, cause: str) -> None:
        """A retry of ``cause`` was made (its attempt started): the batch's statistics."""
        self.retries += 1
        self.retries_by_cause[cause] = self.retries_by_cause.get(cause, 0) + 1
