"""RetryPolicy, Timeouts, Limits: defaults, validation, immutability, the backoff formula."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

import paradigm_trio as pt

# ---------------------------------------------------------------------------- defaults


def test_retry_policy_defaults() -> None:
    policy = pt.RetryPolicy()
    assert policy.attempts == 4
    assert policy.initial_delay == 0.5
    assert policy.multiplier == 2.0
    assert policy.max_delay == 30.0
    assert policy.jitter == 0.5
    assert policy.max_retry_after == 60.0
    assert policy.min_backoff_factor == 0.1
    assert policy.retry_statuses == frozenset({408, 409, 429})
    assert policy.retry_connection_errors is True
    assert policy.retry_invalid_responses is True


def test_timeouts_defaults() -> None:
    t = pt.Timeouts()
    assert (t.connect, t.read, t.write, t.attempt, t.total, t.first_token) == (
        10.0,
        120.0,
        30.0,
        180.0,
        None,
        60.0,
    )


def test_timeouts_none_has_no_limit() -> None:
    t = pt.Timeouts.none()
    assert all(getattr(t, f.name) is None for f in dataclasses.fields(t)), (
        "Timeouts.none() must disable every timeout"
    )


def test_limits_defaults() -> None:
    limits = pt.Limits()
    assert limits.concurrency == 64
    assert limits.requests_per_minute is None
    assert limits.tokens_per_minute is None
    assert limits.adaptive is True


def test_no_retries_makes_one_attempt() -> None:
    assert pt.RetryPolicy.no_retries().attempts == 1


def test_default_constants() -> None:
    assert pt.DEFAULT_BASE_URL == "https://paradigm.lighton.ai/api/v2"
    assert pt.DEFAULT_MODEL == "alfred-4.2"


# ---------------------------------------------------------------------------- validation

BAD_RETRY: list[tuple[str, Any]] = [
    ("attempts", 0),
    ("attempts", -1),
    ("attempts", 1.5),
    ("attempts", True),
    ("attempts", "3"),
    ("initial_delay", -0.1),
    ("initial_delay", math.nan),
    ("initial_delay", "1"),
    ("multiplier", 0.5),
    ("multiplier", -2),
    ("max_delay", -1),
    ("jitter", -0.1),
    ("jitter", 1.5),
    ("jitter", math.nan),
    ("max_retry_after", -5),
    ("max_retry_after", None),
    ("min_backoff_factor", -0.1),
    ("min_backoff_factor", 1.5),
    ("min_backoff_factor", math.nan),
    ("retry_statuses", [99]),
    ("retry_statuses", [600]),
    ("retry_statuses", ["429"]),
    ("retry_statuses", [True]),
    ("retry_connection_errors", "no"),
    ("retry_invalid_responses", 1),
]


@pytest.mark.parametrize(("name", "value"), BAD_RETRY)
def test_retry_policy_rejects_bad_value_naming_the_field(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"RetryPolicy\.{name}\b"):
        pt.RetryPolicy(**{name: value})


BAD_TIMEOUTS: list[tuple[str, Any]] = [
    (name, value)
    for name in ("connect", "read", "write", "attempt", "total", "first_token")
    for value in (-1.0, 0, math.nan, "10", True)
]


@pytest.mark.parametrize(("name", "value"), BAD_TIMEOUTS)
def test_timeouts_reject_bad_value_naming_the_field(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"Timeouts\.{name}\b"):
        pt.Timeouts(**{name: value})


BAD_LIMITS: list[tuple[str, Any]] = [
    ("concurrency", 0),
    ("concurrency", -3),
    ("concurrency", 2.0),
    ("concurrency", True),
    ("requests_per_minute", 0),
    ("requests_per_minute", -10),
    ("requests_per_minute", "60"),
    ("tokens_per_minute", 0),
    ("tokens_per_minute", math.nan),
    ("adaptive", "yes"),
    ("adaptive", 1),
]


@pytest.mark.parametrize(("name", "value"), BAD_LIMITS)
def test_limits_reject_bad_value_naming_the_field(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"Limits\.{name}\b"):
        pt.Limits(**{name: value})


def test_good_edge_values_are_accepted() -> None:
    assert pt.RetryPolicy(attempts=1, initial_delay=0, multiplier=1, jitter=1).jitter == 1
    assert pt.RetryPolicy(retry_statuses=[425, 429]).retry_statuses == frozenset({425, 429})
    assert pt.Timeouts(total=0.001, connect=None).total == 0.001
    assert pt.Limits(concurrency=1, requests_per_minute=0.5).requests_per_minute == 0.5


def test_retry_statuses_is_frozen_to_a_frozenset() -> None:
    policy = pt.RetryPolicy(retry_statuses=[408, 429, 429])
    assert isinstance(policy.retry_statuses, frozenset)
    assert policy.retry_statuses == {408, 429}


# ---------------------------------------------------------------------------- frozen, kw-only


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (pt.RetryPolicy(), "attempts"),
        (pt.Timeouts(), "total"),
        (pt.Limits(), "concurrency"),
    ],
)
def test_config_objects_are_frozen(obj: object, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, 1)


@pytest.mark.parametrize("cls", [pt.RetryPolicy, pt.Timeouts, pt.Limits])
def test_config_objects_are_keyword_only(cls: type) -> None:
    with pytest.raises(TypeError):
        cls(3)


@pytest.mark.parametrize("cls", [pt.RetryPolicy, pt.Timeouts, pt.Limits])
def test_config_objects_are_hashable_and_compare_by_value(cls: type) -> None:
    assert cls() == cls()
    assert hash(cls()) == hash(cls())


def test_replace_validates_like_the_constructor() -> None:
    policy = pt.RetryPolicy()
    assert policy.replace(attempts=2).attempts == 2
    assert policy.attempts == 4
    with pytest.raises(ValueError, match=r"RetryPolicy\.attempts"):
        policy.replace(attempts=0)
    with pytest.raises(ValueError, match=r"Timeouts\.read"):
        pt.Timeouts().replace(read=-1)
    with pytest.raises(ValueError, match=r"Limits\.concurrency"):
        dataclasses.replace(pt.Limits(), concurrency=0)


# ---------------------------------------------------------------------------- retry rules


@pytest.mark.parametrize("code", [408, 409, 429, 500, 501, 502, 503, 504, 599])
def test_retryable_statuses(code: int) -> None:
    assert pt.RetryPolicy().is_retryable_status(code)


@pytest.mark.parametrize("code", [200, 400, 401, 403, 404, 405, 418, 422, 451])
def test_non_retryable_statuses(code: int) -> None:
    assert not pt.RetryPolicy().is_retryable_status(code)


def test_custom_retry_statuses_replace_the_4xx_set_but_5xx_stay_retryable() -> None:
    policy = pt.RetryPolicy(retry_statuses={425})
    assert policy.is_retryable_status(425)
    assert not policy.is_retryable_status(429)
    assert policy.is_retryable_status(503)


# ---------------------------------------------------------------------------- backoff formula


def test_backoff_without_jitter_follows_the_formula() -> None:
    policy = pt.RetryPolicy(initial_delay=0.5, multiplier=2, max_delay=30, jitter=0)
    assert [policy.backoff(n, 0.7) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 16, 30]


def test_backoff_is_capped_by_max_delay() -> None:
    policy = pt.RetryPolicy(initial_delay=1, multiplier=10, max_delay=5, jitter=0)
    assert [policy.backoff(n, 0.0) for n in (1, 2, 3, 10)] == [1, 5, 5, 5]


@pytest.mark.parametrize("u", [0.0, 0.25, 0.5, 0.999999])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_backoff_with_jitter(n: int, u: float) -> None:
    policy = pt.RetryPolicy(initial_delay=0.5, multiplier=2, jitter=0.5)
    base = 0.5 * 2 ** (n - 1)
    assert policy.backoff(n, u) == pytest.approx(base * (1 - 0.5 * u))
    assert (1 - 0.5) * base < policy.backoff(n, u) <= base


def test_full_jitter_can_go_down_to_zero() -> None:
    policy = pt.RetryPolicy(jitter=1)
    assert policy.backoff(1, 0.0) == 0.5
    assert policy.backoff(1, 0.99) == pytest.approx(0.005)
