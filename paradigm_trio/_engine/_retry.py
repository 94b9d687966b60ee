"""The retry decision: whether a :class:`~paradigm_trio.RetryPolicy` allows another attempt
after a failure, made here and nowhere else.

Attempt functions only *classify* a failure (:class:`~paradigm_trio._errors.AttemptFailure`:
its cause, the status, ``x-should-retry``, ``Retry-After``); the engine (``Call``) asks
:func:`allows`, then decides the wait (attempts left, ``Retry-After``, backoff, budget,
deadline).
"""

from __future__ import annotations

from typing import Final

from .._config import RetryPolicy
from .._errors import AttemptFailure

__all__ = ["INVALID_ANSWER", "allows"]

_CONNECTION: Final = frozenset({"connection", "timeout"})
INVALID_ANSWER: Final = frozenset({"invalid_output", "invalid_tool_call"})
"""The causes of an answer that arrived whole but did not pass the request's checks
(``output=``, tool calls): re-asked within one budget, ``invalid_output_retries``."""


def allows(policy: RetryPolicy, failure: AttemptFailure, invalid_outputs: int) -> bool:
    """Whether ``policy`` allows another attempt after ``failure``.

    ``invalid_outputs`` counts the request's answers that did not pass its checks
    (``output=``, tool calls: :data:`INVALID_ANSWER`), this one included.  A certificate,
    a proxy's refusal or a host name that cannot be looked up (``"tls"``, ``"proxy"``,
    ``"host"``) is a configuration problem: never.
    """
    if failure.final:
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
