"""An independent model of the documented retry policy, to judge the client against.

It reads :class:`paradigm_trio.RetryPolicy`'s docstring, the ``BatchOptions`` docstring and
``docs/howto-batching.md``, not the library's code: given a request's scripted steps (see
:mod:`.strategies`) and a policy, it says whether the request succeeds, after how many
attempts, with which error class when it fails, and what the wait before each retry must
be.  The rules, as documented:

* retryable causes: a status in ``retry_statuses`` or any 5xx; a connection error or
  timeout (``retry_connection_errors``); a 2xx with an invalid body
  (``retry_invalid_responses``).  ``x-should-retry: true|false`` overrides the status rule;
* at most ``attempts`` attempts;
* a server-requested wait (``retry-after-ms`` / ``Retry-After``) longer than
  ``max_retry_after`` is not slept through: the request fails at once with that error;
* the wait is the server's when it asks for one, else
  ``min(max_delay, initial_delay * multiplier ** (n - 1)) * (1 - jitter * U)``, U in [0, 1),
  scaled by the server's recent health: a factor between ``min_backoff_factor`` and 1 (the
  factor itself is timing-dependent; unit tests pin it down on MockClock).

Three kinds of request, the :data:`Mode`:

* ``"plain"``: ``client.chat`` and a batch item (the default ``stream=False``);
* ``"chat_stream"``: ``client.chat_stream(restart=None)``, a stream handed to its caller
  chunk by chunk.  It is retried only before its first chunk: a stream broken, malformed
  or ended by an error event after it is final (the caller has seen part of an answer).
  With restart (the default ``"replay"``) against the deterministic mock, a live stream
  ends as a ``"batch_stream"`` item does;
* ``"batch_stream"``: a batch item with ``stream=True``.  Each attempt reads the *whole*
  stream and nothing is handed out until the end, so a stream that breaks after its first
  chunk is an ordinary attempt failure, retried per the policy like one before it: a cut
  stream, one cut short of ``[DONE]`` (cause ``"connection"``, ``retry_connection_errors``),
  a malformed chunk (``"invalid_response"``, ``retry_invalid_responses``), an error event
  with a status (by that status), an error event without one (``"stream_error"``,
  retryable like a 500).

The batch's storm control (:func:`predict_batch`), as documented for ``BatchOptions``:

* retry budget: it *paces* retries (a token bucket: a reserve, ``retry_budget`` tokens per
  success, a floor of 10 a second) and never refuses one while the server answers, unless
  the wait would pass the request's deadline (no deadline here): so it changes when
  retries are sent, never which;
* circuit breaker: ``circuit_breaker`` connection failures in a row open it (attempts
  that got no HTTP response: the connection failed or timed out; any response, even an
  error status, resets the count; for a plain ``truncated`` body see
  :data:`TRUNCATED_BODY_IS_NO_RESPONSE`).  While it is open, connection and timeout
  retries take no token of the budget; each new attempt first waits a second (the cooldown)
  for its probe, and once the connection failures have lasted ``unreachable_after``
  seconds every attempt not yet sent fails with :class:`~paradigm_trio.ServerUnreachableError`.

The batch model is exact for a *sequential* batch (``Limits.concurrency=1``: one request at
a time, in input order, so the order of failures and retries is known) whose
``unreachable_after`` is below the cooldown: then the attempt after the breaker opens
always waits past ``unreachable_after`` before its probe, so the breaker, once open, fails
everything that is left.  For the statistics see :data:`RETRY_COUNTED_WHEN_SCHEDULED`.

What the oracle does *not* model: the budget and breaker of a concurrent batch (the order of
failures depends on timing: the properties either turn them off, or bound the outcome),
the breaker's probes (``unreachable_after`` longer than the cooldown), ``Timeouts.total``
and deadlines (timing-dependent: property 6 checks them separately), and the adaptive
controller (it changes timing, not outcomes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import paradigm_trio as pt

from .strategies import OK, Schedule, Step

__all__ = [
    "BREAKER_COOLDOWN",
    "RETRY_COUNTED_WHEN_SCHEDULED",
    "TRUNCATED_BODY_IS_NO_RESPONSE",
    "BatchPrediction",
    "Mode",
    "Prediction",
    "Wait",
    "cause",
    "error_class",
    "no_response",
    "predict",
    "predict_batch",
    "retryable",
    "status_seen",
    "wait_bounds",
]

Mode = Literal["plain", "chat_stream", "batch_stream"]

BREAKER_COOLDOWN = 1.0
"""The documented wait of an attempt while the breaker is open ("waits one second")."""

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

# For a streamed request, what a step that breaks the stream after its first chunk gives
# (on a stream the mock sends the role chunk, then half the answer, then the fault).
# ``stream_no_done`` is not here: the mock sends every chunk, the finish reason included,
# and only leaves out ``[DONE]``: a stream whose every choice finished is complete.
_STREAM_BREAKS: dict[str, type[pt.APIError]] = {
    "stream_cut": pt.IncompleteStreamError,
    "truncated": pt.IncompleteStreamError,  # on a stream the mock cuts it the same way
    "malformed": pt.APIResponseValidationError,  # one broken ``data:`` line mid-stream
    "stream_error": pt.APIError,  # an ``event: error`` without a status
}


def error_class(step: Step, *, mode: Mode = "plain") -> type[pt.APIError] | None:
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
    if step.kind == "stream_no_done":
        return None  # complete by its finish reasons (served normally when not streamed)
    if mode != "plain":
        return _STREAM_BREAKS[step.kind]
    if step.kind == "malformed":
        return pt.APIResponseValidationError
    if step.kind == "truncated":
        return pt.APIConnectionError  # the body stops short of its Content-Length
    return None  # stream_* faults on a non-streamed request: served normally


def cause(step: Step, *, mode: Mode = "plain") -> str | None:
    """The documented cause of a failed attempt (a key of ``retries_by_cause``), or ``None``.

    A status, ``"connection"``, ``"timeout"``, ``"invalid_response"``, or (streams)
    ``"stream_error"`` for an error event without a status.
    """
    if error_class(step, mode=mode) is None:
        return None
    if step.status is not None:
        return str(step.status)
    if step.kind == "hang":
        return "timeout"
    if step.kind == "malformed":
        return "invalid_response"
    if step.kind == "stream_error":
        return "stream_error"
    return "connection"  # reset, close, truncated, stream_cut, stream_no_done


# A plain ``truncated`` body comes after a 200 status line and headers: by the docs ("any
# HTTP response, even an error status, resets the count"; ``Attempt.status`` is ``None``
# only "if no response arrived") it is a response, as for a stream cut after its head.
# (Kept as a flag: the client used to count it as no response; the oracle found it.)
TRUNCATED_BODY_IS_NO_RESPONSE = False

# ``ClientStatistics.retries`` is documented as "retries made (attempts beyond the first)",
# ``BatchStatistics.retries`` as "retries made by this batch": a retry the breaker stops
# during its wait is never made, so it is not counted.  (Kept as a flag: the client used to
# count a retry when it scheduled it; the oracle found it.)
RETRY_COUNTED_WHEN_SCHEDULED = False


def no_response(step: Step, *, mode: Mode = "plain") -> bool:
    """Whether the attempt is a connection failure for the breaker: no HTTP response at all.

    ``hang``, ``reset`` and ``close`` send no status line.  A stream broken after its head
    (a 200) had a response, which resets the count.  A plain ``truncated`` body: see
    :data:`TRUNCATED_BODY_IS_NO_RESPONSE`.
    """
    if step.kind in ("hang", "reset", "close"):
        return True
    return TRUNCATED_BODY_IS_NO_RESPONSE and mode == "plain" and step.kind == "truncated"


def status_seen(step: Step, *, mode: Mode = "plain") -> int | None:
    """The status an attempt records (``Attempt.status``): ``None`` if no response arrived."""
    if step.status is not None:
        return step.status
    if no_response(step, mode=mode):
        return None
    return 200  # a success, an invalid body, a stream broken after its head


def retryable(step: Step, policy: pt.RetryPolicy, *, mode: Mode = "plain") -> bool:
    """Whether a failed attempt with this step may be retried (ignoring the attempt count)."""
    if error_class(step, mode=mode) is None:
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
    if mode == "chat_stream":
        return False  # broken after the first chunk the caller has seen: final
    if step.kind == "stream_error":
        return True  # an error event without a status is retried like a 500
    if step.kind == "malformed":
        return policy.retry_invalid_responses  # an invalid 2xx body, or a malformed chunk
    # truncated (plain: the connection broke mid-body), stream_cut, stream_no_done
    return policy.retry_connection_errors


@dataclass(frozen=True, slots=True)
class Wait:
    """The documented bounds of the wait before a retry, in seconds."""

    low: float
    high: float
    server_requested: bool


@dataclass(frozen=True, slots=True)
class Prediction:
    """What must happen to one request.

    ``budget_spent``: the policy would have retried its last failure, but the batch's
    retry budget was spent (its error carries a note saying so).
    """

    ok: bool
    attempts: int
    error: type[pt.APIError] | None
    waits: tuple[Wait, ...]  # one per retry scheduled, before attempts 2, 3, ...
    budget_spent: bool = False

    def __str__(self) -> str:
        end = "ok" if self.ok else (self.error.__name__ if self.error else "?")
        spent = " (retry budget spent)" if self.budget_spent else ""
        return f"{end} after {self.attempts} attempt(s){spent}"


def wait_bounds(step: Step, policy: pt.RetryPolicy, retry_number: int) -> Wait:
    """The wait before retry ``retry_number`` (1-based) after a failure with ``step``."""
    if step.retry_after is not None:
        return Wait(step.retry_after, step.retry_after, True)
    base = min(policy.max_delay, policy.initial_delay * policy.multiplier ** (retry_number - 1))
    return Wait(base * (1 - policy.jitter) * policy.min_backoff_factor, base, False)


def _step(script: tuple[Step, ...], attempt: int) -> Step:
    return script[attempt - 1] if attempt <= len(script) else OK


def predict_steps(
    script: tuple[Step, ...], policy: pt.RetryPolicy, *, mode: Mode = "plain"
) -> Prediction:
    waits: list[Wait] = []
    attempt = 1
    while True:
        step = _step(script, attempt)
        error = error_class(step, mode=mode)
        if error is None:
            return Prediction(True, attempt, None, tuple(waits))
        if attempt >= policy.attempts or not retryable(step, policy, mode=mode):
            return Prediction(False, attempt, error, tuple(waits))
        waits.append(wait_bounds(step, policy, attempt))
        attempt += 1


def predict(
    schedule: Schedule, policy: pt.RetryPolicy, *, mode: Mode = "plain"
) -> dict[str, Prediction]:
    """The prediction of every request of a schedule, by ``custom_id`` (no storm control:
    ``retry_budget=None, circuit_breaker=None`` for a batch)."""
    return {
        cid: predict_steps(schedule.script_of(cid), policy, mode=mode)
        for cid in schedule.custom_ids
    }


@dataclass(frozen=True, slots=True)
class BatchPrediction:
    """What must happen to a sequential batch under its retry budget and circuit breaker.

    Attributes:
        items: the prediction of every request, by ``custom_id``.
        retries: the retries the batch counts (``BatchStatistics.retries``; see
            :data:`RETRY_COUNTED_WHEN_SCHEDULED`).
        retries_by_cause: the same, by cause (``BatchStatistics.retries_by_cause``).
        sent_retries: the retries the server receives: attempts beyond each request's first.
        breaker_opened: whether the breaker opened (then every request not finished by then
            fails with ``ServerUnreachableError``).
    """

    items: dict[str, Prediction]
    retries: int
    retries_by_cause: dict[str, int] = field(default_factory=dict)
    sent_retries: int = 0
    breaker_opened: bool = False

    @property
    def succeeded(self) -> int:
        return sum(p.ok for p in self.items.values())

    @property
    def failed(self) -> int:
        return sum(not p.ok for p in self.items.values())


def predict_batch(
    schedule: Schedule,
    policy: pt.RetryPolicy,
    *,
    mode: Mode = "plain",
    retry_budget: float | None,
    circuit_breaker: int | None,
    unreachable_after: float,
) -> BatchPrediction:
    """The outcome of a batch sent one request at a time, in order, under storm control.

    Only for ``Limits.concurrency=1`` and ``unreachable_after`` below the breaker's
    cooldown (see the module docstring).
    """
    assert mode != "chat_stream", "a batch item is plain or read whole"
    assert circuit_breaker is None or unreachable_after < BREAKER_COOLDOWN
    items: dict[str, Prediction] = {}
    retries = sent = in_a_row = 0  # retries: as counted
    opened = False
    by_cause: Counter[str] = Counter()

    def breaker_open() -> bool:
        return circuit_breaker is not None and in_a_row >= circuit_breaker

    del retry_budget  # pacing only: see the module docstring
    for cid in schedule.custom_ids:
        script = schedule.script_of(cid)
        waits: list[Wait] = []
        attempts = 0
        why: str | None = None  # the cause of the retry scheduled, if any
        while True:
            if breaker_open():
                # The next attempt waits for the probe, and unreachable_after passes first.
                items[cid] = Prediction(False, attempts, pt.ServerUnreachableError, tuple(waits))
                if why is not None and not RETRY_COUNTED_WHEN_SCHEDULED:
                    retries -= 1
                    by_cause[why] -= 1
                break
            attempts += 1
            sent += attempts > 1
            step = _step(script, attempts)
            error = error_class(step, mode=mode)
            in_a_row = in_a_row + 1 if no_response(step, mode=mode) else 0
            opened = opened or breaker_open()
            if error is None:
                items[cid] = Prediction(True, attempts, None, tuple(waits))
                break
            if attempts >= policy.attempts or not retryable(step, policy, mode=mode):
                items[cid] = Prediction(False, attempts, error, tuple(waits))
                break
            why = cause(step, mode=mode)
            assert why is not None
            # The budget paces this retry at worst: it never makes a failure final here.
            retries += 1
            by_cause[why] += 1
            waits.append(wait_bounds(step, policy, attempts))
    return BatchPrediction(
        items,
        retries,
        {c: n for c, n in by_cause.items() if n},
        sent,
        breaker_opened=opened,
    )
