"""The retry decision, made once (``_engine._retry.allows``): failures only classify."""

from __future__ import annotations

import pytest

import paradigm_trio as pt
from paradigm_trio._attempt_failure import AttemptFailure
from paradigm_trio._engine._retry import allows, delay_before_next

ERROR = pt.APIError("failed")


def failure(cause: str, **classified: object) -> AttemptFailure:
    return AttemptFailure(ERROR, cause, **classified)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "should_retry", "expected"),
    [(503, None, True), (400, None, False), (429, None, True), (400, True, True),
     (503, False, False), (418, None, False)],
)  # fmt: skip
def test_a_status_follows_x_should_retry_then_the_policy(
    status: int, should_retry: bool | None, expected: bool
) -> None:
    classified = failure(str(status), status=status, should_retry=should_retry)
    assert allows(pt.RetryPolicy(), classified, 0) is expected


def test_the_policy_s_statuses_decide() -> None:
    policy = pt.RetryPolicy(retry_statuses=frozenset({418}))
    assert allows(policy, failure("418", status=418), 0)
    assert not allows(policy, failure("429", status=429), 0)


@pytest.mark.parametrize("cause", ["connection", "timeout"])
def test_connection_failures_follow_retry_connection_errors(cause: str) -> None:
    assert allows(pt.RetryPolicy(), failure(cause), 0)
    assert not allows(pt.RetryPolicy(retry_connection_errors=False), failure(cause), 0)


def test_invalid_responses_follow_retry_invalid_responses() -> None:
    on = pt.RetryPolicy(retry_invalid_responses=True)
    off = pt.RetryPolicy(retry_invalid_responses=False)
    assert allows(on, failure("invalid_response"), 0)
    assert not allows(off, failure("invalid_response"), 0)


@pytest.mark.parametrize("cause", ["invalid_output", "invalid_tool_call"])
def test_invalid_answers_are_retried_as_many_times_as_the_policy_says(cause: str) -> None:
    # ``output=`` and tool calls: one budget (the engine counts both in ``n``).
    policy = pt.RetryPolicy(invalid_output_retries=2)
    assert [allows(policy, failure(cause), n) for n in (1, 2, 3)] == [True, True, False]
    assert not allows(pt.RetryPolicy(), failure(cause), 1)


def test_an_error_event_without_a_status_is_judged_as_a_500() -> None:
    # (a 5xx is always retried: retry_statuses names the 4xx that are)
    assert allows(pt.RetryPolicy(retry_statuses=frozenset()), failure("stream_error"), 0)


@pytest.mark.parametrize("cause", ["tls", "proxy", "host"])
def test_configuration_problems_are_never_retried(cause: str) -> None:
    assert not allows(pt.RetryPolicy(), failure(cause), 0)


def test_a_final_failure_is_never_retried() -> None:
    assert not allows(pt.RetryPolicy(), failure("timeout", final=True), 0)
    assert not allows(pt.RetryPolicy(), failure("503", status=503, final=True), 0)


@pytest.mark.parametrize(
    ("classified", "expected"),
    [
        (failure("connection", reached=False), True),  # never sent: safe
        (failure("connection"), False),  # may have reached it
        (failure("timeout"), False),
        (failure("invalid_response"), False),  # a 2xx: it was processed
        (failure("500", status=500), False),
        (failure("502", status=502), False),
        (failure("503", status=503), True),  # refused before any work
        (failure("429", status=429), True),
        (failure("408", status=408), True),
        (failure("500", status=500, should_retry=True), True),  # the server's word
        (failure("503", status=503, should_retry=False), False),
        (failure("connection", reached=False, final=True), False),
    ],
)  # fmt: skip
def test_a_request_that_is_not_idempotent_is_resent_only_if_it_was_not_processed(
    classified: AttemptFailure, expected: bool
) -> None:
    assert allows(pt.RetryPolicy(), classified, 0, idempotent=False) is expected


def test_the_policy_still_decides_for_a_request_that_is_not_idempotent() -> None:
    # Never sent, but the policy says no: no.
    off = pt.RetryPolicy(retry_connection_errors=False)
    assert not allows(off, failure("connection", reached=False), 0, idempotent=False)
    # A 425 says it was not processed, but the policy does not list it: no.
    assert not allows(pt.RetryPolicy(), failure("425", status=425), 0, idempotent=False)
    listed = pt.RetryPolicy(retry_statuses=frozenset({425}))
    assert allows(listed, failure("425", status=425), 0, idempotent=False)


def _backoff(number: int) -> float:
    return 0.5 * number  # (a stand-in for the policy's jittered backoff)


@pytest.mark.parametrize(
    ("number", "retry_after", "now", "expected", "why"),
    [
        (1, None, 0.0, 0.5, None),  # the computed backoff
        (2, 3.0, 0.0, 3.0, None),  # the server's Retry-After, within the policy's maximum
        (3, None, 0.0, None, "gave up after 3 attempt(s) (RetryPolicy.attempts=3)"),
        (1, 61.0, 0.0, None, "more than RetryPolicy.max_retry_after=60s"),
        (1, None, 9.6, None, "the wait of 0.5s would pass the request's deadline (0.4s left)"),
    ],
)  # fmt: skip
def test_the_wait_before_the_next_attempt_or_why_there_is_none(
    number: int, retry_after: float | None, now: float, expected: float | None, why: str | None
) -> None:
    policy = pt.RetryPolicy(attempts=3, max_retry_after=60.0)
    classified = failure("503", status=503, retry_after=retry_after)
    delay, reason = delay_before_next(policy, classified, number, now, 10.0, _backoff)
    assert delay == expected
    assert (reason is None) if why is None else (reason is not None and why in reason)
