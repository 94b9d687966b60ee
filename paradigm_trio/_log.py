"""Logging: the ``paradigm_trio`` logger and its messages.

Quiet by default (a ``NullHandler``, and Python's last-resort handler prints WARNING and
above only when the application configured nothing).  Every message carries ``extra``
fields: ``event`` (a stable name, below) and those of its kind, so that a JSON formatter
can write them as fields; the text says the same for a person.

Per-request messages are DEBUG and built only when DEBUG is enabled (one
``isEnabledFor`` check per attempt and per request): at INFO, a batch tells its story in
a few lines (start, progress, the adaptive controller's moves, end) whatever its size.

============================ ======= ==============================================================
event                        level   extra fields
============================ ======= ==============================================================
``attempt_started``          DEBUG   custom_id, idempotency_key, attempt, cause (the retried one)
``attempt_failed``           DEBUG   custom_id, idempotency_key, attempt, status, cause, error,
                                     request_id, elapsed, will_retry
``retry_scheduled``          DEBUG   custom_id, idempotency_key, attempt, cause, wait
``rate_limited``             DEBUG   custom_id, idempotency_key, wait (``Retry-After``)
``request_succeeded``        DEBUG   custom_id, idempotency_key, attempts, elapsed, tokens
``request_cancelled``        DEBUG   custom_id, idempotency_key, attempts, elapsed, error
``request_failed``           WARNING custom_id, idempotency_key, attempts, elapsed, error, cause
                                     (DEBUG for ``ServerUnreachableError``)
``batch_started``            INFO    concurrency, batch
``batch_progress``           INFO    the batch's statistics (see below), every 10 s of a batch
``batch_finished``           INFO    the batch's statistics
``batch_stopped``            ERROR   cause, status, sent (``SystematicFailureError``)
``concurrency_lowered``      INFO    concurrency, previous, wait
``concurrency_raised``       DEBUG   concurrency, previous
``breaker_opened``           WARNING failures
``breaker_closed``           INFO
``server_unreachable``       ERROR   seconds
``connections_warmed``       DEBUG   origin, wanted, opened, failed, error (from ``_pool``)
``shared_quota_unavailable`` WARNING quota (its name), url (no password), error, fallback, workers
``shared_quota_restored``    INFO    quota, outage
============================ ======= ==============================================================

The batch's statistics fields: ``submitted``, ``done``, ``succeeded``, ``failed``,
``cancelled``, ``in_flight``, ``retries``, ``retries_by_cause`` (a dict), ``elapsed``,
``requests_per_minute``, ``total_tokens``, ``batch`` (``"chat batch"``, ...).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import trio

from ._errors import APIError, RequestCancelled, ServerUnreachableError
from ._events import AttemptFailed, RateLimited, RetryScheduled

__all__ = ["PROGRESS_INTERVAL", "logger", "say"]

logger: Final = logging.getLogger("paradigm_trio")
logger.addHandler(logging.NullHandler())

PROGRESS_INTERVAL: Final = 10.0
"""Seconds (trio's clock) between two ``batch_progress`` messages of a batch."""

DEBUG: Final = logging.DEBUG
INFO: Final = logging.INFO
WARNING: Final = logging.WARNING
ERROR: Final = logging.ERROR


def say(level: int, event: str, message: str, *args: object, **fields: Any) -> None:
    """Log ``message % args`` with ``extra={"event": event, **fields}`` (if enabled)."""
    if logger.isEnabledFor(level):
        fields["event"] = event
        logger.log(level, message, *args, extra=fields)


def enabled(level: int) -> bool:
    return logger.isEnabledFor(level)


def who(custom_id: str | None, key: str) -> str:
    """How a message names a request: its ``custom_id``, else its ``Idempotency-Key``."""
    return repr(custom_id) if custom_id is not None else key


# --------------------------------------------------------------------------- a request's story


def attempt_started(custom_id: str | None, key: str, number: int, retry_of: str | None) -> None:
    again = f" (retrying after {retry_of})" if retry_of is not None else ""
    say(
        DEBUG, "attempt_started", "request %s: attempt %d started%s", who(custom_id, key),
        number, again, custom_id=custom_id, idempotency_key=key, attempt=number, cause=retry_of,
    )  # fmt: skip


def attempt_failed(event: AttemptFailed) -> None:
    a = event.attempt
    say(
        DEBUG, "attempt_failed", "request %s: attempt %d failed (%s): %s",
        who(event.custom_id, event.idempotency_key), a.number, a.cause, a.error,
        custom_id=event.custom_id, idempotency_key=event.idempotency_key, attempt=a.number,
        status=a.status, cause=a.cause, error=a.error, request_id=a.request_id,
        elapsed=a.elapsed, will_retry=event.will_retry,
    )  # fmt: skip


def retry_scheduled(event: RetryScheduled) -> None:
    say(
        DEBUG, "retry_scheduled", "request %s: retry after %s in %.3gs",
        who(event.custom_id, event.idempotency_key), event.cause, event.delay,
        custom_id=event.custom_id, idempotency_key=event.idempotency_key,
        attempt=event.attempt, cause=event.cause, wait=event.delay,
    )  # fmt: skip


def rate_limited(event: RateLimited) -> None:
    asked = "" if event.retry_after is None else f", asked to wait {event.retry_after:.3g}s"
    say(
        DEBUG, "rate_limited", "request %s: 429 Too Many Requests%s",
        who(event.custom_id, event.idempotency_key), asked,
        custom_id=event.custom_id, idempotency_key=event.idempotency_key,
        wait=event.retry_after,
    )  # fmt: skip


def packing_disabled(model: str, status: int | None) -> None:
    say(
        WARNING, "embedding_packing_disabled",
        "embeddings: the server refused several inputs in one request (status %s); "
        "model %r now gets one input per request", status, model, model=model, status=status,
    )  # fmt: skip


def request_finished(
    outcome: object,
    custom_id: str | None,
    key: str,
    attempts: int,
    elapsed: float,
    tokens: int | None,
    *,
    cancelled: bool = False,
) -> None:
    """The end of a request: DEBUG for a success or a cancellation, WARNING for a failure.

    ``cancelled``: cancelled from outside (``outcome`` is then unused).
    """
    fields: dict[str, Any] = {
        "custom_id": custom_id, "idempotency_key": key, "attempts": attempts, "elapsed": elapsed,
    }  # fmt: skip
    name = who(custom_id, key)
    if cancelled:
        say(
            DEBUG, "request_cancelled", "request %s cancelled after %d attempt(s) in %.3gs",
            name, attempts, elapsed, error="cancelled", **fields,
        )  # fmt: skip
    elif not isinstance(outcome, BaseException):
        say(
            DEBUG, "request_succeeded", "request %s succeeded after %d attempt(s) in %.3gs",
            name, attempts, elapsed, tokens=tokens, **fields,
        )  # fmt: skip
    elif isinstance(outcome, RequestCancelled) or not isinstance(outcome, APIError):
        say(
            DEBUG, "request_cancelled", "request %s cancelled after %d attempt(s) in %.3gs",
            name, attempts, elapsed, error=str(outcome) or type(outcome).__name__, **fields,
        )  # fmt: skip
    else:
        history = outcome.attempts
        cause = history[-1].cause if history else None
        # A dead server fails a batch's every remaining request: said once, as
        # ``server_unreachable``, not once a request.
        level = DEBUG if isinstance(outcome, ServerUnreachableError) else WARNING
        say(
            level, "request_failed", "request %s failed after %d attempt(s) in %.3gs: %s",
            name, attempts, elapsed, _one_line(outcome), error=_one_line(outcome), cause=cause,
            **fields,
        )  # fmt: skip


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


# --------------------------------------------------------------------------- a batch's story


def batch_started(width: int, label: str) -> None:
    """``batch_started``: ``label`` (``"chat batch"``) names the batch."""
    say(INFO, "batch_started", "%s started (concurrency %d)", label, width, concurrency=width,
        batch=label)  # fmt: skip


def _ending(error: BaseException | None) -> str:
    """How a batch ended, for its last message: ``finished``, ``interrupted`` (cancelled:
    Ctrl-C, a cancel scope), or ``finished (SomeError)``."""
    if error is None:
        return "finished"
    leaves: list[BaseException] = []
    pending = [error]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if all(isinstance(e, trio.Cancelled | KeyboardInterrupt) for e in leaves):
        return "interrupted"
    names = sorted({type(e).__name__ for e in leaves})
    if names == ["SystematicFailureError"]:
        return "stopped (SystematicFailureError)"
    return f"finished ({', '.join(names)})"


def batch_statistics(
    event: str, statistics: Any, label: str, error: BaseException | None = None
) -> None:
    """``batch_progress`` or ``batch_finished``: one line of the batch's statistics
    (``error``: what ended it, if anything)."""
    s = statistics
    ending = "progress" if event == "batch_progress" else _ending(error)
    causes = dict(s.retries_by_cause)
    retries = ", ".join(f"{k}: {v}" for k, v in causes.items())
    say(
        INFO, event,
        "%s %s: %d done (%d succeeded, %d failed, %d cancelled), %d in flight, "
        "%d retries%s, %.0f requests/min, %d tokens, %.1fs",
        label, ending, s.done, s.succeeded,
        s.failed, s.cancelled, s.in_flight, s.retries, f" ({retries})" if retries else "",
        s.requests_per_minute, s.total_tokens, s.elapsed,
        submitted=s.submitted, done=s.done, succeeded=s.succeeded, failed=s.failed,
        cancelled=s.cancelled, in_flight=s.in_flight, retries=s.retries,
        retries_by_cause=causes, elapsed=s.elapsed, requests_per_minute=s.requests_per_minute,
        total_tokens=s.total_tokens, batch=label,
    )  # fmt: skip
