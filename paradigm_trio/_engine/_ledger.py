"""The ledger: a client's counters and its event hook, the only place either changes.

The attempt engine (``_attempts``) reports to it; :meth:`Client.statistics
<paradigm_trio.Client.statistics>` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import trio

from .. import _log
from .._attempt_failure import AttemptFailure
from .._errors import APIError, RequestCancelled
from .._events import (
    AttemptFailed,
    AttemptStarted,
    ClientStatistics,
    Event,
    LatencyHistogram,
    RateLimited,
    RequestFinished,
    RetryScheduled,
    StreamEndedWithoutDone,
    frozen_counts,
)

__all__ = ["CANCELLED", "Ledger", "Observer", "Tokens", "one_line"]

CANCELLED: Final[Any] = object()
"""The outcome of a request cancelled from outside (or left early): no result, no error."""


class Tokens(Protocol):
    """The usage an answer reports, as the engine counts it (an endpoint's ``Usage``)."""

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...

    @property
    def total_tokens(self) -> int: ...


def one_line(error: BaseException) -> str:
    """``Type: message``, first line, at most 300 characters (for records and events)."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


class Observer(Protocol):
    """What the ledger tells an observer installed on it (telemetry: ``_otel``).

    Called synchronously, like ``on_event``; nothing is called, and nothing built for it,
    while no observer is installed.  ``call`` is the engine's ``Call`` (its ``plan``,
    ``history``, ``start``, ``interrupted`` and ``first_chunk``): the ledger does not
    import the engine, so it is untyped here.
    """

    def event(self, event: Event) -> None:
        """A failure-path event (as given to ``on_event``): attempt failed, retry, 429."""

    def finished(self, call: Any, outcome: object, usage: Tokens | None, end: float) -> None:
        """A logical request is over (``outcome`` as for :meth:`Ledger.finished`)."""

    def batch_started(self, control: Any, operation: str) -> None:
        """A batch of ``operation`` (its kind's: ``"chat"``, ``"embeddings"``) starts;
        ``control`` (its ``BatchControl``) is in its items' plans."""

    def batch_finished(self, control: Any, statistics: Any, error: BaseException | None) -> None:
        """The batch is over: its ``BatchStatistics``, and the exception that ended it."""


class Ledger:
    """The client's counters and its event hook: the only place either changes.

    Args:
        on_event: the user's callback, called synchronously with each event.

    Attributes:
        observers: the observers installed (``pt.instrument``), empty by default.
    """

    def __init__(self, on_event: Callable[[Event], object] | None) -> None:
        self._on_event = on_event
        self.observers: Sequence[Observer] = ()
        self.in_flight = 0
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.attempts = 0
        self.retries = 0
        self.retries_by_cause: dict[str, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.unknown_usage = 0
        self.rate_limited_answers = 0
        self.hedges = 0  # attempts that were batches' hedges
        self.latency = LatencyHistogram()

    def observe(self, observer: Observer) -> None:
        """Install ``observer`` (after those already installed)."""
        self.observers = (*self.observers, observer)

    def emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)
        for observer in self.observers:
            observer.event(event)
        if isinstance(event, AttemptFailed):
            _log.attempt_failed(event)
        elif isinstance(event, RetryScheduled):
            _log.retry_scheduled(event)
        elif isinstance(event, RateLimited):
            _log.rate_limited(event)

    def rate_limited(
        self,
        custom_id: str | None,
        key: str,
        retry_after: float | None,
        headers: Mapping[str, str],
    ) -> None:
        """The server answered 429 (counted, then :class:`RateLimited`)."""
        self.rate_limited_answers += 1
        self.emit(RateLimited(custom_id, key, retry_after, headers))

    def attempt_started(
        self,
        custom_id: str | None,
        key: str,
        number: int,
        now: float,
        retry_of: str | None,
        hedge: bool = False,
    ) -> None:
        """An attempt holds its lease and starts; ``retry_of`` is the cause it retries (a
        retry is counted when it is made, not when it is scheduled); ``hedge``: a batch's
        hedge."""
        self.attempts += 1
        self.in_flight += 1
        if retry_of is not None:
            self.retries += 1
            self.retries_by_cause[retry_of] = self.retries_by_cause.get(retry_of, 0) + 1
        if hedge:
            self.hedges += 1
        if self._on_event is not None:  # (no event object at all without a hook)
            self._on_event(AttemptStarted(custom_id, key, number, now, hedge))
        if _log.enabled(_log.DEBUG):
            _log.attempt_started(custom_id, key, number, retry_of)

    def retry_scheduled(
        self, custom_id: str | None, key: str, failure: AttemptFailure, number: int, delay: float
    ) -> None:
        cause = failure.cause
        self.emit(
            RetryScheduled(custom_id, key, number, cause, delay, failure.retry_after is not None)
        )

    def stream_ended_without_done(
        self, custom_id: str | None, key: str, attempt: int, broken: str | None
    ) -> None:
        """A stream ended complete, but without ``[DONE]``: worth an event, not a failure."""
        if self._on_event is not None:
            self._on_event(StreamEndedWithoutDone(custom_id, key, attempt, broken))

    def finished(
        self,
        outcome: object,
        custom_id: str | None,
        key: str,
        attempts: int,
        elapsed: float,
        usage: Tokens | None,
        call: object = None,
        *,
        metered: bool = False,
    ) -> None:
        """Count a logical request once: ``outcome`` is its result, its error, or
        :data:`CANCELLED`; ``call`` (the engine's ``Call``) is for the observers.
        ``metered``: the answer reports its usage (an endpoint's: a success without it is
        counted as unknown usage, not as zero tokens)."""
        if outcome is CANCELLED:
            self.cancelled += 1
            if _log.enabled(_log.DEBUG):
                _log.request_finished(None, custom_id, key, attempts, elapsed, None, cancelled=True)
        elif isinstance(outcome, APIError):
            if isinstance(outcome, RequestCancelled):
                self.cancelled += 1
            else:
                self.failed += 1
            self.emit(
                RequestFinished(custom_id, key, False, attempts, elapsed, None, one_line(outcome))
            )
            _log.request_finished(outcome, custom_id, key, attempts, elapsed, None)
        elif isinstance(outcome, BaseException):
            self.failed += 1  # no event: the hook may be what raised
        else:
            self.succeeded += 1
            self.latency.add(elapsed)
            tokens: int | None = None
            if usage is not None:
                self.prompt_tokens += usage.prompt_tokens
                self.completion_tokens += usage.completion_tokens
                tokens = usage.total_tokens
            elif metered:
                self.unknown_usage += 1  # the server reported none: unknown, not zero
            if self._on_event is not None:
                self._on_event(RequestFinished(custom_id, key, True, attempts, elapsed, tokens))
            if _log.enabled(_log.DEBUG):
                _log.request_finished(outcome, custom_id, key, attempts, elapsed, tokens)
        if self.observers:
            end = trio.current_time()
            for observer in self.observers:
                observer.finished(call, outcome, usage, end)

    def statistics(self, concurrency: int) -> ClientStatistics:
        return ClientStatistics(
            in_flight=self.in_flight,
            concurrency=concurrency,
            started=self.started,
            succeeded=self.succeeded,
            failed=self.failed,
            cancelled=self.cancelled,
            attempts=self.attempts,
            retries=self.retries,
            retries_by_cause=frozen_counts(self.retries_by_cause),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            latency_p50=self.latency.percentile(50),
            latency_p90=self.latency.percentile(90),
            latency_p99=self.latency.percentile(99),
            unknown_usage=self.unknown_usage,
            rate_limited=self.rate_limited_answers,
            hedges=self.hedges,
        )
