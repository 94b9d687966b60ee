"""The retry decision: whether a :class:`~paradigm_trio.RetryPolicy` allows another attempt
after a failure, made here and nowhere else.

Attempt functions only *classify* a failure
(:class:`~paradigm_trio._attempt_failure.AttemptFailure`: its cause, the status,
``x-should-retry``, ``Retry-After``, whether the request may have reached the server);
the engine (``Call``) asks :func:`allows`, then decides the wait (attempts left,
``Retry-After``, backoff, budget, deadline).

A request that is not idempotent (``Plan.idempotent``: an upload, a delete, a thread's
turn) is resent only when sending it again cannot do its work twice: the failure proves
it never reached the server (``AttemptFailure.reached`` is false: the connection could
not be opened), or the server answered that it did not process it: a status of
:data:`UNPROCESSED` (408, 425, 429, 503: refused before any work), or
``x-should-retry: true`` (the server's own word).  Any other failure after the request
may have reached the server (a 500, 502 or 504, a read timeout, a connection reset, a
2xx that does not parse) is final for it, whatever the policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .._attempt_failure import AttemptFailure
from .._config import RetryPolicy

__all__ = [
    "INVALID_ANSWER",
    "UNPROCESSED",
    "allows",
    "delay_before_next",
    "not_resent",
    "resendable",
]

_CONNECTION: Final = frozenset({"connection", "timeout"})
INVALID_ANSWER: Final = frozenset({"invalid_output", "invalid_tool_call"})
"""The causes of an answer that arrived whole but did not pass the request's checks
(``output=``, tool calls): re-asked within one budget, ``invalid_output_retries``."""
UNPROCESSED: Final = frozenset({408, 425, 429, 503})
"""The statuses that say the server refused a request before doing any of its work
(request timeout, too early, rate limited, unavailable): a request that is not
idempotent may be resent after them."""


def resendable(failure: AttemptFailure) -> bool:
    """Whether a request that is not idempotent may be sent again after ``failure``: it
    never reached the server, or the server said it did not process it."""
    if not failure.reached or failure.should_retry is True:
        return True
    return failure.status in UNPROCESSED


def allows(
    policy: RetryPolicy, failure: AttemptFailure, invalid_outputs: int, idempotent: bool = True
) -> bool:
    """Whether ``policy`` allows another attempt after ``failure``.

    ``invalid_outputs`` counts the request's answers that did not pass its checks
    (``output=``, tool calls: :data:`INVALID_ANSWER`), this one included.  A certificate,
    a proxy's refusal or a host name that cannot be looked up (``"tls"``, ``"proxy"``,
    ``"host"``) is a configuration problem: never.  A request that is not
    ``idempotent``: only when it is :func:`resendable` too.
    """
    if failure.final or not (idempotent or resendable(failure)):
        return False
    if failure.status is not None:
        if failure.should_retry is not None:  # the server's word wins over the policy
            return failure.should_retry
        return policy.is_retryable_status(failure.status)
    cause = failure.cause
    if cause in _CONNECTION:
        return policy.retry_connection_errors
    if cause == "invalid_response":
        return policy.retry_invalid_responses
    if cause in INVALID_ANSWER:
        return invalid_outputs <= policy.invalid_output_retries
    if cause == "stream_error":  # an error event that names no status: as a 500
        return policy.is_retryable_status(500)
    return False


def not_resent(policy: RetryPolicy, failure: AttemptFailure, invalid_outputs: int) -> str | None:
    """The note of the error of a request that is not idempotent, not resent after
    ``failure`` when ``policy`` alone would have resent it (else ``None``)."""
    if not allows(policy, failure, invalid_outputs):
        return None
    return (
        "not resent: the request is not idempotent (sending it twice may do its work "
        "twice) and it may have reached the server; check whether it took effect "
        "before sending it again"
    )


def delay_before_next(
    retry: RetryPolicy,
    failure: AttemptFailure,
    number: int,
    now: float,
    deadline: float,
    backoff: Callable[[int], float],
) -> tuple[float | None, str | None]:
    """The wait before the attempt after attempt ``number``, which failed with ``failure``
    (a failure :func:`allows` retries), at trio time ``now``; or ``(None, why not)``: no
    attempts left, a ``Retry-After`` longer than the policy accepts, or a wait that would
    pass the request's ``deadline``.  ``backoff(number)``: the computed wait, when the
    server asked for none."""
    if number >= retry.attempts:
        return None, f"gave up after {number} attempt(s) (RetryPolicy.attempts={retry.attempts})"
    if failure.retry_after is not None:
        if failure.retry_after > retry.max_retry_after:
            return None, (
                f"not retried: the server asked to wait {failure.retry_after:g}s, more than "
                f"RetryPolicy.max_retry_after={retry.max_retry_after:g}s"
            )
        delay = failure.retry_after
    else:
        delay = backoff(number)
    if now + delay >= deadline:
        return None, (
            f"not retried: the wait of {delay:.3g}s would pass the request's deadline "
            f"({max(0.0, deadline - now):.3g}s left)"
        )
    return delay, None
