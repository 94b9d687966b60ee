"""An independent model of the documented retry policy, to judge the client against.

It reads :class:`paradigm_trio.RetryPolicy`'s docstring, not ``_client.py``: given a
request's scripted steps (see :mod:`.strategies`) and a policy, it says whether the request
succeeds, after how many attempts, with which error class when it fails, and what the wait
before each retry must be.  The rules, as documented:

* retryable causes: a status in ``retry_statuses`` or any 5xx; a connection error or
  timeout (``retry_connection_errors``); a 2xx with an invalid body
  (``retry_invalid_responses``).  ``x-should-retry: true|false`` overrides the status rule;
* at most ``attempts`` attempts;
* a server-requested wait (``retry-after-ms`` / ``Retry-After``) longer than
  ``max_retry_after`` is not slept through: the request fails at once with that error;
* the wait is the server's when it asks for one, else
  ``min(max_delay, initial_delay * multiplier ** (n - 1)) * (1 - jitter * U)``, U in [0, 1);
* a streamed request is retried only before its first chunk: a stream broken, malformed or
  ended by an error event after it is final.

What the oracle does *not* model: the retry budget and circuit breaker of batches (the
properties turn them off), ``Timeouts.total`` and deadlines (timing-dependent: property 6
checks them separately), and the adaptive controller (it changes timing, not outcomes).
"""

from __future__ import annotations

from dataclasses import dataclass

import paradigm_trio as pt

from .strategies import OK, Schedule, Step

__all__ = ["Prediction", "Wait", "error_class", "predict", "retryable"]

# The error class of a status, from the documented tree (not from the library's table).
_STATUS_CLASSES: dict[int, type[pt.APIStatusError]] = {
    400: pt.BadRequestError,
    401: pt.AuthenticationError,
    403: pt.PermissionDeniedError,
    404: pt.NotFoundError,
    409: pt.ConflictError,
    422: pt.UnprocessableEntityError,
    429: pt.RateLimitError,
}

# For a streamed request, what a step that breaks the stream *after* its first chunk gives.
_AFTER_FIRST_CHUNK: dict[str, type[pt.APIError]] = {
    "stream_cut": pt.IncompleteStreamError,
    "truncated": pt.IncompleteStreamError,  # on a stream the mock cuts it the same way
    "stream_no_done": pt.IncompleteStreamError,
    "malformed": pt.APIResponseValidationError,  # one broken ``data:`` line mid-stream
    "stream_error": pt.APIError,  # an ``event: error`` without a status
}


def error_class(step: Step, *, stream: bool = False) -> type[pt.APIError] | None:
    """The exception class the client raises for this step, ``None`` for a success."""
    status = step.status
    if status is not None:
        if 500 <= status < 600:
            return pt.InternalServerError
        return _STATUS_CLASSES.get(status, pt.APIStatusError)
    if step.kind == "ok":
        return None
    if step.kind == "hang":
        return pt.APITimeoutError
    if step.kind in ("reset", "close"):
        return pt.APIConnectionError
    if stream:
        return _AFTER_FIRST_CHUNK[step.kind]
    if step.kind == "malformed":
        return pt.APIResponseValidationError
    if step.kind == "truncated":
        return pt.APIConnectionError  # the body stops short of its Content-Length
    return None  # stream_* faults on a non-streamed request: served normally


def retryable(step: Step, policy: pt.RetryPolicy, *, stream: bool = False) -> bool:
    """Whether a failed attempt with this step may be retried (ignoring the attempt count)."""
    if error_class(step, stream=stream) is None:
        return False
    status = step.status
    if status is not None:
        if step.should_retry is not None:
            rule = step.should_retry
        else:
            rule = status in policy.retry_statuses or 500 <= status < 600
        if not rule:
            return False
        ra = step.retry_after
        return ra is None or ra <= policy.max_retry_after
    if step.kind in ("hang", "reset", "close"):
        return policy.retry_connection_errors
    if stream:
        return False  # broken after the first chunk: final
    # malformed: an invalid 2xx body; truncated: the connection broke mid-body.
    return (
        policy.retry_invalid_responses
        if step.kind == "malformed"
        else policy.retry_connection_errors
    )


@dataclass(frozen=True, slots=True)
class Wait:
    """The documented bounds of the wait before a retry, in seconds."""

    low: float
    high: float
    server_requested: bool


@dataclass(frozen=True, slots=True)
class Prediction:
    """What must happen to one request."""

    ok: bool
    attempts: int
    error: type[pt.APIError] | None
    waits: tuple[Wait, ...]  # one per retry, before attempts 2, 3, ...

    def __str__(self) -> str:
        end = "ok" if self.ok else (self.error.__name__ if self.error else "?")
        return f"{end} after {self.attempts} attempt(s)"


def wait_bounds(step: Step, policy: pt.RetryPolicy, retry_number: int) -> Wait:
    """The wait before retry ``retry_number`` (1-based) after a failure with ``step``."""
    if step.retry_after is not None:
        return Wait(step.retry_after, step.retry_after, True)
    base = min(policy.max_delay, policy.initial_delay * policy.multiplier ** (retry_number - 1))
    return Wait(base * (1 - policy.jitter), base, False)


def predict_steps(
    script: tuple[Step, ...], policy: pt.RetryPolicy, *, stream: bool = False
) -> Prediction:
    waits: list[Wait] = []
    attempt = 1
    while True:
        step = script[attempt - 1] if attempt <= len(script) else OK
        error = error_class(step, stream=stream)
        if error is None:
            return Prediction(True, attempt, None, tuple(waits))
        if attempt >= policy.attempts or not retryable(step, policy, stream=stream):
            return Prediction(False, attempt, error, tuple(waits))
        waits.append(wait_bounds(step, policy, attempt))
        attempt += 1


def predict(
    schedule: Schedule, policy: pt.RetryPolicy, *, stream: bool = False
) -> dict[str, Prediction]:
    """The prediction of every request of a schedule, by ``custom_id``."""
    return {
        cid: predict_steps(schedule.script_of(cid), policy, stream=stream)
        for cid in schedule.custom_ids
    }
