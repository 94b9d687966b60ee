"""Batch properties judged against the oracle: streamed items, retry budget, circuit breaker.

Like ``test_reliability.py``, each example runs against its own in-process mock server on
127.0.0.1 with a fault schedule scripted per key and attempt, and is judged twice: the
results against the oracle (:mod:`.oracle`), and the server's request log.

9. a batch with ``stream=True`` reads each stream whole per attempt: a stream cut,
   malformed, ended by an error event or short of ``[DONE]`` *after* its first chunk is
   retried like any failure, with the outcomes, attempt counts, error classes, and each
   failed attempt's cause and status, that the oracle predicts; a success is the whole
   answer, once;
10. a sequential batch (``Limits.concurrency=1``) under a small ``retry_budget`` (and maybe
    a circuit breaker) succeeds and fails exactly as the oracle's storm-control model says,
    with the predicted retries in total and by cause, and the budget's note on exactly the
    failures it made final; the breaker's exemption of connection retries included;
11. against a dead server (every attempt a connection failure) the circuit breaker fails
    the batch with ``ServerUnreachableError`` within about ``unreachable_after`` seconds of
    real time, having sent at most ``circuit_breaker + concurrency - 1`` attempts.

At the end: the budget across a breaker's probe (one second of real time, so a single
example), then regression tests of two places where the client disagreed with its docs
(found with the oracle, both fixed).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

import paradigm_trio as pt

from .oracle import Mode, Prediction, cause, predict, predict_batch, status_seen
from .strategies import (
    NO_STORM_CONTROL,
    Schedule,
    examples,
    expected_outcome,
    key_of,
    limits,
    mock_and_client,
    records_by_key,
    retry_policies,
    run_trio,
    schedules,
    settle,
    slack,
    steps,
    timeouts,
)

# Time the machine may add to a bound in real time (the mock and the client share one trio
# loop), in seconds, on a quiet machine: raised by ``slack()`` when the machine is slow now.
LOOP_SLACK = 2.0

# Timeouts that no step of the budget and breaker schedules comes near (they draw no hang).
ROOMY = pt.Timeouts(connect=5.0, read=5.0, write=5.0, attempt=2.0, first_token=2.0)

# A policy for the hand-written examples: retries everything, waits a millisecond.
EAGER = pt.RetryPolicy(attempts=5, initial_delay=0.001, max_delay=0.001, jitter=0.0)

BUDGET_NOTE = "retry budget is spent"


def outcome_of(result: pt.BatchResult) -> str:
    return "ok" if result.ok else type(result.error).__name__


def check_against(result: pt.BatchResult, want: Prediction) -> None:
    """A batch result is what the oracle predicted: outcome, class, attempts."""
    cid = result.custom_id
    context = f"{cid}: predicted {want}, got {outcome_of(result)} after {result.attempts}"
    assert result.ok == want.ok, context
    assert result.attempts == want.attempts, context
    if not want.ok:
        assert type(result.error) is want.error, context
        assert isinstance(result.error, pt.APIError), context
        assert len(result.error.attempts) == want.attempts, context


class FailedAttempts:
    """An ``on_event`` hook keeping every failed attempt by ``custom_id``."""

    def __init__(self) -> None:
        self.by_id: dict[str, list[pt.AttemptFailed]] = {}

    def __call__(self, event: object) -> None:
        if isinstance(event, pt.AttemptFailed) and event.custom_id is not None:
            self.by_id.setdefault(event.custom_id, []).append(event)

    def check(self, schedule: Schedule, cid: str, want: Prediction, mode: Mode) -> None:
        """Each failed attempt has the documented cause and status, in order."""
        failed = want.attempts - want.ok
        got = [
            (e.attempt.number, e.attempt.cause, e.attempt.status) for e in self.by_id.get(cid, [])
        ]
        script = [schedule.step(cid, n) for n in range(1, failed + 1)]
        expected = [
            (n, cause(step, mode=mode), status_seen(step, mode=mode))
            for n, step in enumerate(script, start=1)
        ]
        assert got == expected, (cid, [str(step) for step in script], got)


def predicted_causes(
    schedule: Schedule, predictions: dict[str, Prediction], mode: Mode
) -> dict[str, int]:
    """The retries by cause of a batch without storm control: every retried attempt's."""
    causes: Counter[str] = Counter()
    for cid, want in predictions.items():
        for attempt in range(1, len(want.waits) + 1):
            why = cause(schedule.step(cid, attempt), mode=mode)
            assert why is not None
            causes[why] += 1
    return dict(causes)


async def whole_answers(client: pt.Client, schedule: Schedule) -> dict[str, str]:
    """The complete answer to each request of the schedule, asked for once more, plainly.

    The mock's reply is a function of the seed, model and messages, so a fresh key (no
    script: a plain success) with the same messages gets the same text.
    """
    again = [
        pt.ChatRequest(messages=item.messages, custom_id=f"{item.custom_id}/again", max_tokens=8)
        for item in schedule.items()
    ]
    results = await client.chat_batch(again, **NO_STORM_CONTROL)
    assert all(r.ok for r in results), results
    return {
        r.custom_id.removesuffix("/again"): r.completion.text  # type: ignore[union-attr]
        for r in results
        if r.custom_id is not None
    }


# --------------------------------------------------------------------------- property 9

# Every kind a stream can meet, weighted towards the breaks after the first chunk.
STREAM_KINDS = [
    "ok", "429", "500", "503", "400", "404", "hang", "reset", "close",
    "malformed", "truncated", "stream_cut", "stream_cut", "stream_error", "stream_error",
    "stream_no_done", "stream_no_done",
]  # fmt: skip


@settings(max_examples=examples(0.6))
@example(  # every break after the first chunk, in a row, then a whole answer
    schedule=Schedule(
        {"r0": ["stream_cut", "stream_error", "malformed", "stream_no_done"], "r1": []}
    ),
    policy=EAGER,
    timeouts_=ROOMY,
    limits_=pt.Limits(concurrency=2),
    via="chat_batch",
)
@example(  # the policy's flags still decide: no retry of a cut stream, nor of a bad chunk
    schedule=Schedule(
        {"r0": ["stream_cut"], "r1": ["malformed"], "r2": ["stream_no_done"], "r3": ["500"]}
    ),
    policy=EAGER.replace(retry_connection_errors=False, retry_invalid_responses=False),
    timeouts_=ROOMY,
    limits_=pt.Limits(concurrency=4),
    via="stream_batch",
)
@given(
    schedule=schedules(max_requests=6, max_steps=4, step=steps(kinds=STREAM_KINDS)),
    policy=retry_policies(),
    timeouts_=timeouts(),
    limits_=limits(),
    via=st.sampled_from(["chat_batch", "stream_batch"]),
)
def test_streamed_batch_matches_the_oracle(
    schedule: Schedule,
    policy: pt.RetryPolicy,
    timeouts_: pt.Timeouts,
    limits_: pt.Limits,
    via: str,
) -> None:
    """``stream=True`` batch items: every break, before or after the first chunk, is retried.

    Judged on the results (outcome, error class, attempts, the batch's retry counts by
    cause), on the server log (attempts per key, every one a streamed request with the
    scripted outcome) and on the text: a success is the whole answer (not a broken
    attempt's start followed by the retry's answer), and a final break keeps only a prefix.
    """
    predictions = predict(schedule, policy, mode="batch_stream")
    causes = predicted_causes(schedule, predictions, "batch_stream")
    handed_out = predict(schedule, policy, mode="chat_stream")
    event(f"differs from chat_stream: {predictions != handed_out}")
    failures = FailedAttempts()

    async def example() -> None:
        async with mock_and_client(
            schedule=schedule, retry=policy, timeouts=timeouts_, limits=limits_, on_event=failures
        ) as (server, client):
            failures.by_id.clear()
            items = schedule.items()
            if via == "chat_batch":
                results = await client.chat_batch(items, stream=True, **NO_STORM_CONTROL)
                statistics = results.statistics
            else:
                async with client.stream_batch(items, stream=True, **NO_STORM_CONTROL) as batch:
                    results = [r async for r in batch]
                statistics = batch.statistics()
            await settle(server)
            seen = records_by_key(server)
            answers = await whole_answers(client, schedule)
            assert client.statistics().in_flight == 0
        assert sorted(r.custom_id or "" for r in results) == sorted(schedule.custom_ids)
        for result in results:
            cid = result.custom_id
            assert cid is not None
            want = predictions[cid]
            check_against(result, want)
            failures.check(schedule, cid, want, "batch_stream")
            will_retry = [e.will_retry for e in failures.by_id.get(cid, [])]
            assert will_retry == [n < want.attempts for n in range(1, len(will_retry) + 1)], cid
            records = seen[key_of(cid)]
            context = f"{cid}: predicted {want}, the server saw {len(records)} attempt(s)"
            assert [r.attempt for r in records] == list(range(1, want.attempts + 1)), context
            for record in records:
                step = schedule.step(cid, record.attempt)
                assert record.stream, (cid, record)
                assert record.outcome == expected_outcome(step.kind, stream=True), (cid, record)
            if result.completion is not None:
                assert result.completion.text == answers[cid], (cid, result.completion.text)
            elif isinstance(result.error, pt.IncompleteStreamError):
                error = result.error
                assert error.chunks >= 1, (cid, error)
                assert answers[cid].startswith(error.text), (cid, error.text, answers[cid])
        assert statistics.retries == sum(p.attempts - 1 for p in predictions.values())
        assert dict(statistics.retries_by_cause) == causes, (dict(statistics.retries_by_cause),)
        assert statistics.succeeded == sum(p.ok for p in predictions.values())

    run_trio(example)


# --------------------------------------------------------------------------- property 10

# Mostly retryable failures, so that ten retries plus the budget's share run out.
BUDGET_KINDS = [
    "ok", "429", "500", "502", "503", "503", "504", "408", "400",
    "reset", "close", "malformed", "truncated", "stream_cut", "stream_error", "stream_no_done",
]  # fmt: skip


@settings(max_examples=examples(0.6))
@example(  # five requests spend the ten retries; then the budget stops the sixth's first
    schedule=Schedule({f"r{i}": ["503", "503"] for i in range(7)}),
    policy=EAGER,
    mode="plain",
    retry_budget=0.0,
    circuit_breaker=None,
    unreachable_after=0.1,
    timeouts_=ROOMY,
)
@example(  # the budget is spent, but an open breaker's connection retry does not need it
    schedule=Schedule(
        {**{f"r{i}": ["stream_error", "stream_error"] for i in range(6)}, "r6": ["reset"], "r7": []}
    ),
    policy=EAGER,
    mode="batch_stream",
    retry_budget=0.0,
    circuit_breaker=1,
    unreachable_after=0.05,
    timeouts_=ROOMY,
)
@example(  # timeouts are connection failures too: two hangs open the breaker
    schedule=Schedule({"r0": ["hang", "hang"], "r1": ["503"], "r2": []}),
    policy=EAGER,
    mode="batch_stream",
    retry_budget=0.0,
    circuit_breaker=2,
    unreachable_after=0.05,
    timeouts_=pt.Timeouts(attempt=0.2, first_token=0.2),
)
@given(
    schedule=schedules(
        min_requests=4,
        max_requests=8,  # the budget paces retries past its reserve at 10 a second
        min_steps=1,
        max_steps=3,
        step=steps(kinds=BUDGET_KINDS, max_retry_after_ms=5, max_latency_ms=3),
    ),
    policy=retry_policies(min_attempts=2, max_wait_ms=5),
    mode=st.sampled_from(["plain", "batch_stream"]),
    retry_budget=st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 1.0]),
    circuit_breaker=st.sampled_from([None, None, None, None, 1, 2, 3]),
    unreachable_after=st.sampled_from([0.05, 0.1, 0.2]),
    timeouts_=st.just(ROOMY),  # the schedules draw no hang: see the examples
)
def test_retry_budget_of_a_sequential_batch_matches_the_oracle(
    schedule: Schedule,
    policy: pt.RetryPolicy,
    mode: Mode,
    retry_budget: float,
    circuit_breaker: int | None,
    unreachable_after: float,
    timeouts_: pt.Timeouts,
) -> None:
    """One request at a time: the budget and breaker decide exactly as the oracle says.

    With ``Limits.concurrency=1`` the batch starts request *k* after request *k - 1* is
    done, so the order of failures, retries and ``started`` is that of the schedule and
    the oracle can replay the batch's bookkeeping.  Checked: every outcome, class and
    attempt count; the budget's note on exactly the failures it made final; the batch's
    ``retries`` and ``retries_by_cause``; and from the server's side, the attempts per key
    and the retries it received.
    """
    want = predict_batch(
        schedule,
        policy,
        mode=mode,
        retry_budget=retry_budget,
        circuit_breaker=circuit_breaker,
        unreachable_after=unreachable_after,
    )
    event(f"budget spent: {any(p.budget_spent for p in want.items.values())}")
    event(f"breaker opened: {want.breaker_opened}")
    failures = FailedAttempts()

    async def example() -> None:
        async with mock_and_client(
            schedule=schedule,
            retry=policy,
            timeouts=timeouts_,
            limits=pt.Limits(concurrency=1, adaptive=False),
            on_event=failures,
        ) as (server, client):
            failures.by_id.clear()
            before = client.statistics().retries
            start = trio.current_time()
            results = await client.chat_batch(
                schedule.items(),
                stream=mode == "batch_stream",
                retry_budget=retry_budget,
                circuit_breaker=circuit_breaker,
                systematic_failures=None,  # (not modelled by the oracle)
                unreachable_after=unreachable_after,
            )
            elapsed = trio.current_time() - start
            client_retries = client.statistics().retries - before
            await settle(server)
        seen = records_by_key(server)
        for result in results:
            cid = result.custom_id
            assert cid is not None
            item = want.items[cid]
            check_against(result, item)
            failures.check(schedule, cid, item, mode)
            context = f"{cid}: predicted {item}, got {outcome_of(result)}"
            notes = getattr(result.error, "__notes__", [])
            assert any(BUDGET_NOTE in note for note in notes) == item.budget_spent, (
                context,
                notes,
            )
            assert len(seen.get(key_of(cid), [])) == item.attempts, context
        stats = results.statistics
        assert (stats.succeeded, stats.failed) == (want.succeeded, want.failed)
        assert stats.retries == client_retries == want.retries, (stats.retries, want.retries)
        assert dict(stats.retries_by_cause) == want.retries_by_cause, (
            dict(stats.retries_by_cause),
            want.retries_by_cause,
        )
        received = sum(len(records) - 1 for records in seen.values())
        assert received == want.sent_retries, (received, want.sent_retries)
        if any(isinstance(r.error, pt.ServerUnreachableError) for r in results):
            assert elapsed >= unreachable_after, elapsed

    run_trio(example)


# --------------------------------------------------------------------------- property 11


@settings(max_examples=examples(0.5))
@given(
    # Scripts as long as the longest policy: every attempt fails, none gets a response.
    schedule=schedules(
        max_requests=30,
        min_steps=5,
        max_steps=5,
        step=steps(kinds=["reset", "close"], max_latency_ms=2),
    ),
    policy=retry_policies(max_wait_ms=5),
    concurrency=st.integers(1, 4),
    circuit_breaker=st.integers(1, 6),
    unreachable_after=st.sampled_from([0.05, 0.1, 0.2, 0.4]),
    retry_budget=st.sampled_from([0.25, None]),
    mode=st.sampled_from(["plain", "batch_stream"]),
)
def test_breaker_fails_a_dead_server_batch_within_unreachable_after(
    schedule: Schedule,
    policy: pt.RetryPolicy,
    concurrency: int,
    circuit_breaker: int,
    unreachable_after: float,
    retry_budget: float | None,
    mode: Mode,
) -> None:
    """Every attempt is a connection failure: the batch ends within ``unreachable_after``.

    Every item fails with a connection error: its own (:class:`APIConnectionError`) if its
    attempts ran out before the breaker opened, else :class:`ServerUnreachableError`,
    raised no sooner than ``unreachable_after`` after the first failure and no later than
    that plus :data:`LOOP_SLACK`.  Once the breaker is open nothing new is sent: the server
    sees at least ``circuit_breaker`` attempts (when the batch has that many to make) and
    at most ``circuit_breaker + concurrency - 1`` (those already under way).  With one
    request at a time the outcome is exactly the oracle's.
    """
    n = len(schedule)
    per_item = policy.attempts if policy.retry_connection_errors else 1
    keywords: dict[str, Any] = {
        "circuit_breaker": circuit_breaker,
        "unreachable_after": unreachable_after,
        "retry_budget": retry_budget,
        "stream": mode == "batch_stream",
        "systematic_failures": None,  # (not modelled by the oracle)
    }

    async def example() -> None:
        async with mock_and_client(
            schedule=schedule,
            retry=policy,
            timeouts=ROOMY,
            limits=pt.Limits(concurrency=concurrency, adaptive=False),
        ) as (server, client):
            start = trio.current_time()
            results = await client.chat_batch(schedule.items(), **keywords)
            elapsed = trio.current_time() - start
            await settle(server)
        seen = records_by_key(server)
        sent = sum(len(records) for records in seen.values())
        unreachable = [r for r in results if isinstance(r.error, pt.ServerUnreachableError)]
        assert len(results) == n
        for result in results:
            cid = result.custom_id
            assert cid is not None
            assert isinstance(result.error, pt.APIConnectionError), (cid, result.error)
            assert len(seen.get(key_of(cid), [])) == result.attempts, cid
            if not isinstance(result.error, pt.ServerUnreachableError):
                assert result.attempts == per_item, (cid, result.attempts, per_item)
            else:
                assert result.attempts < per_item, (cid, result.attempts, per_item)
        assert elapsed <= unreachable_after + slack(LOOP_SLACK), elapsed
        if unreachable:
            assert elapsed >= unreachable_after, elapsed
        event(f"unreachable: {bool(unreachable)}")
        if n * per_item < circuit_breaker:  # the breaker cannot open
            assert not unreachable
            assert sent == n * per_item
        else:
            assert circuit_breaker <= sent <= circuit_breaker + concurrency - 1, sent
        if concurrency == 1:
            want = predict_batch(
                schedule,
                policy,
                mode=mode,
                retry_budget=retry_budget,
                circuit_breaker=circuit_breaker,
                unreachable_after=unreachable_after,
            )
            for result in results:
                assert result.custom_id is not None
                check_against(result, want.items[result.custom_id])
            assert results.statistics.retries == want.retries
            assert sent == sum(p.attempts for p in want.items.values())

    run_trio(example)


def test_the_oracle_models_the_documented_rules() -> None:
    """The oracle's answers for the hand-written examples, worked out from the docs."""
    cut_then_ok = Schedule({"r0": ["stream_cut", "ok"], "r1": ["stream_error"]})
    whole = predict(cut_then_ok, EAGER, mode="batch_stream")
    handed_out = predict(cut_then_ok, EAGER, mode="chat_stream")
    assert (whole["r0"].ok, whole["r0"].attempts) == (True, 2)
    assert (whole["r1"].ok, whole["r1"].attempts) == (True, 2)  # retried like a 500
    assert (handed_out["r0"].error, handed_out["r0"].attempts) == (pt.IncompleteStreamError, 1)
    assert (handed_out["r1"].error, handed_out["r1"].attempts) == (pt.APIError, 1)
    strict = EAGER.replace(retry_connection_errors=False, retry_invalid_responses=False)
    assert not predict(cut_then_ok, strict, mode="batch_stream")["r0"].ok
    assert predict(cut_then_ok, strict, mode="batch_stream")["r1"].ok

    spent = predict_batch(
        Schedule({f"r{i}": ["503", "503"] for i in range(7)}),
        EAGER,
        retry_budget=0.0,
        circuit_breaker=None,
        unreachable_after=0.1,
    )
    # The budget paces retries past its reserve; it never makes one final (no deadline).
    assert [(p.ok, p.attempts, p.budget_spent) for p in spent.items.values()] == [
        (True, 3, False)
    ] * 7
    assert (spent.retries, spent.retries_by_cause, spent.sent_retries) == (14, {"503": 14}, 14)

    exempt = predict_batch(
        Schedule(
            {
                **{f"r{i}": ["stream_error", "stream_error"] for i in range(6)},
                "r6": ["reset"],
                "r7": [],
            }
        ),
        EAGER,
        mode="batch_stream",
        retry_budget=0.0,
        circuit_breaker=1,
        unreachable_after=0.05,
    )
    items = exempt.items
    assert (items["r5"].ok, items["r5"].attempts, items["r5"].budget_spent) == (True, 3, False)
    assert (items["r6"].error, items["r6"].attempts) == (pt.ServerUnreachableError, 1)
    assert (items["r7"].error, items["r7"].attempts) == (pt.ServerUnreachableError, 0)
    # r6's connection retry is scheduled (exempt from the budget: the breaker is open) but
    # the breaker gives up during its wait: never made, so not counted.
    assert exempt.retries_by_cause == {"stream_error": 12}
    assert (exempt.retries, exempt.sent_retries, exempt.breaker_opened) == (12, 12, True)


# --------------------------------------------------------------------------- the breaker's probe


def run_sequential(schedule: Schedule, **keywords: Any) -> tuple[Any, list[Any], int]:
    """Run ``schedule`` one request at a time: (results, server log, client's retries)."""

    async def example() -> tuple[Any, list[Any], int]:
        async with mock_and_client(
            schedule=schedule,
            retry=EAGER,
            timeouts=ROOMY,
            limits=pt.Limits(concurrency=1, adaptive=False),
        ) as (server, client):
            before = client.statistics().retries
            results = await client.chat_batch(schedule.items(), **keywords)
            await settle(server)
            return results, server.requests(), client.statistics().retries - before

    return run_trio(example)


def test_connection_retries_while_the_breaker_is_open_do_not_spend_the_budget() -> None:
    """Docs: "While the breaker is open, connection failures do not spend the retry budget".

    r0's reset opens the breaker (``circuit_breaker=1``); its retry waits for the probe (one
    second) and succeeds, which closes the breaker.  Then r1..r5 need two retries each:
    ten, exactly the budget of ``retry_budget=0`` (10 + 0 * started).  All must succeed.
    Takes a second of real time (the cooldown): the oracle's model stops short of probes.
    """
    schedule = Schedule({"r0": ["reset", "ok"], **{f"r{i}": ["503", "503"] for i in range(1, 6)}})
    results, _, _ = run_sequential(
        schedule, retry_budget=0.0, circuit_breaker=1, unreachable_after=5.0
    )
    assert [(r.custom_id, outcome_of(r)) for r in results] == [
        (cid, "ok") for cid in schedule.custom_ids
    ]


# --------------------------------------------------------------------------- discrepancies
#
# What the properties found where the client and its docs disagreed, both fixed: regression
# tests now (the oracle keeps a flag for each, set to the documented behaviour).


def test_a_truncated_body_is_a_response_for_the_breaker() -> None:
    """Docs: "Any HTTP response, even an error status, resets the count".

    The mock's ``truncated`` sends a 200 status line and headers, then half the body.  That
    is a response: with ``circuit_breaker=1`` it must not open the breaker, so r0 is
    retried and succeeds, and its first attempt records the status that arrived.
    """
    schedule = Schedule({"r0": ["truncated", "ok"], "r1": []})
    results, log, _ = run_sequential(
        schedule, retry_budget=None, circuit_breaker=1, unreachable_after=0.05
    )
    assert [r.status for r in log if r.key == key_of("r0")][:1] == [200]  # the server sent one
    assert [outcome_of(r) for r in results] == ["ok", "ok"]


def test_retries_count_only_attempts_made() -> None:
    """Docs: ``ClientStatistics.retries``: "retries made (attempts beyond the first)".

    r0's reset opens the breaker (``circuit_breaker=1``); its retry waits for the probe and
    ``unreachable_after`` passes first, so it is never sent: no attempt beyond the first.
    """
    schedule = Schedule({"r0": ["reset"]})
    results, log, client_retries = run_sequential(
        schedule, retry_budget=None, circuit_breaker=1, unreachable_after=0.05
    )
    assert isinstance(results[0].error, pt.ServerUnreachableError)
    assert len(log) == 1
    assert (client_retries, results.statistics.retries) == (0, 0)
