"""Goodput under faults: the batch's storm control never costs an answer the server gives.

Property: with any fault schedule in which every request fails with *retryable* faults
fewer times than its ``RetryPolicy.attempts`` allow, a batch with the *default* storm
control (``retry_budget``, ``circuit_breaker``, ``unreachable_after``, adaptive limits)
obtains every answer: the retry budget paces retries but never refuses one while the
server answers at all, and no 429 without evidence of a spent quota pauses the client.

The retry policy's waits are shortened (milliseconds), and its ``attempts`` drawn: the
policy is not what is under test, the batch's defaults are.  The dead-server half of the
story (the breaker still fails a batch in ``unreachable_after`` seconds) is property 11
(``test_batch_oracle.py``).
"""

from __future__ import annotations

import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import paradigm_trio as pt

from .strategies import (
    Schedule,
    Step,
    examples,
    key_of,
    mock_and_client,
    records_by_key,
    run_trio,
    settle,
)

# Faults after which a retry is always allowed by the default policy, and that get an
# HTTP response (so they say nothing about a dead server).
RETRYABLE = ("429", "500", "502", "503", "504", "408", "409", "malformed")


@st.composite
def retryable_schedules(draw: st.DrawFn, attempts: int) -> Schedule:
    """``r0..rN``, each failing with retryable faults fewer than ``attempts`` times."""
    n = draw(st.integers(1, 24))
    scripts: dict[str, list[Step]] = {}
    for i in range(n):
        failures = draw(st.integers(0, attempts - 1))
        kinds = draw(st.lists(st.sampled_from(RETRYABLE), min_size=failures, max_size=failures))
        scripts[f"r{i}"] = [
            Step(kind, retry_after_ms=draw(st.integers(0, 20)) if kind == "429" else None)
            for kind in kinds
        ]
    return Schedule(scripts)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Schedule, pt.RetryPolicy, int, bool]:
    attempts = draw(st.integers(2, 5))
    policy = pt.RetryPolicy(attempts=attempts, initial_delay=0.002, max_delay=0.01)
    return (
        draw(retryable_schedules(attempts)),
        policy,
        draw(st.integers(1, 16)),
        draw(st.booleans()),
    )


@settings(max_examples=examples(0.6), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(  # a blip: every request fails once, at concurrency 1 (no success to earn from)
    case=(
        Schedule({f"r{i}": [Step("503")] for i in range(20)}),
        pt.RetryPolicy(attempts=2, initial_delay=0.002, max_delay=0.01),
        1,
        False,
    )
)
@example(  # a storm of 429s without evidence of a spent quota: noise, no pause
    case=(
        Schedule({f"r{i}": [Step("429", retry_after_ms=10)] * 3 for i in range(16)}),
        pt.RetryPolicy(attempts=4, initial_delay=0.002, max_delay=0.01),
        16,
        True,
    )
)
@given(case=cases())
def test_default_storm_control_never_costs_an_answer(
    case: tuple[Schedule, pt.RetryPolicy, int, bool],
) -> None:
    schedule, policy, concurrency, stream = case

    async def run() -> None:
        async with mock_and_client(
            schedule=schedule, retry=policy, limits=pt.Limits(concurrency=concurrency)
        ) as (server, client):
            with trio.fail_after(30):
                results = await client.chat_batch(schedule.items(), stream=stream)
            await settle(server)
            seen = records_by_key(server)
        failed = {r.custom_id: repr(r.error) for r in results if not r.ok}
        assert failed == {}, (schedule, failed)
        for result in results:
            cid = result.custom_id
            assert cid is not None
            want = len(schedule.script_of(cid)) + 1  # every fault retried, then the answer
            assert result.attempts == want, (cid, result.attempts, want)
            assert len(seen.get(key_of(cid), [])) == want, cid  # judged by the server too

    run_trio(run)
