"""Reliability properties of the client, judged from the mock server's side (issue 7).

Each example runs against its own in-process mock server on 127.0.0.1 (started and
stopped inside the example's ``trio.run``), with a fault schedule handed to the mock as
scripts, so that outcomes depend on the schedule and the policy, never on timing.  A
failing example prints as a replayable ``Schedule({...})`` plus the policies drawn.

1. exactly one result per input; ``chat_batch`` keeps input order;
2. outcomes and attempt counts equal the oracle's (plain requests and ``chat_stream``;
   batches with ``stream=True`` in ``test_batch_oracle.py``);
3. nothing non-retryable is ever retried (server log; plain, ``chat_stream`` and
   ``stream=True`` batch items);
4. waits honour ``Retry-After`` and the backoff bounds (server arrival times);
5. the server never sees more than ``Limits.concurrency`` requests at once, and a client
   rate limit of R requests/minute never lets more than ``R + R * t / 60`` requests
   through in any interval of length t;
6. nothing is sent after a request's ``Timeouts.total`` or a batch's deadline;
7. after cancellation at a random moment: no task left, no request left open at the
   server, and the client still works.

Property 8 (kill and resume the CLI) is in ``test_cli_resume.py``.  The batch's storm
control (retry budget, circuit breaker) and streamed batch items are judged against the
oracle in ``test_batch_oracle.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mock_server as ms
import paradigm_trio as pt

from .oracle import Mode, error_class, predict, retryable, wait_bounds
from .strategies import (
    API_KEY,
    CONNECTION_KINDS,
    NO_STORM_CONTROL,
    STATUS_KINDS,
    Schedule,
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

# Batches in these tests turn the batch-wide storm controls off (``NO_STORM_CONTROL``): the
# oracle models them for a sequential batch only, in ``test_batch_oracle.py``.

# Time the machine may add to a wait (scheduling, the loopback round trip), in seconds, on
# a quiet machine: raised by ``slack()`` to the pace measured before each example.
SLACK = 0.25
LOOP_SLACK = 0.5


# --------------------------------------------------------------------------- property 1


@given(
    schedule=schedules(invalid=True),
    policy=retry_policies(),
    timeouts_=timeouts(),
    limits_=limits(),
    via_stream=st.booleans(),
)
def test_exactly_one_result_per_input_in_order(
    schedule: Schedule,
    policy: pt.RetryPolicy,
    timeouts_: pt.Timeouts,
    limits_: pt.Limits,
    via_stream: bool,
) -> None:
    async def example() -> None:
        items = schedule.items()
        async with mock_and_client(
            schedule=schedule, retry=policy, timeouts=timeouts_, limits=limits_
        ) as (server, client):
            if via_stream:
                async with client.stream_batch(items, **NO_STORM_CONTROL) as stream:
                    results = [r async for r in stream]
                results.sort(key=lambda r: r.index)
            else:
                results = list(await client.chat_batch(items, **NO_STORM_CONTROL))
            await settle(server)
        # one result per input, each index once, in input order for chat_batch
        assert [r.index for r in results] == list(range(len(items)))
        for result, item in zip(results, items, strict=True):
            assert (result.completion is None) != (result.error is None), result
            if isinstance(item, pt.ChatRequest):
                assert result.custom_id == item.custom_id
                assert result.attempts >= 1
            else:
                assert isinstance(result.error, ValueError)
                assert result.attempts == 0
        # and one logical request per key at the server, nothing else
        assert set(records_by_key(server)) == {key_of(c) for c in schedule.custom_ids}

    run_trio(example)


# --------------------------------------------------------------------------- property 2


@given(schedule=schedules(), policy=retry_policies(), timeouts_=timeouts(), limits_=limits())
def test_outcomes_and_attempts_match_the_oracle(
    schedule: Schedule, policy: pt.RetryPolicy, timeouts_: pt.Timeouts, limits_: pt.Limits
) -> None:
    predictions = predict(schedule, policy)

    async def example() -> None:
        async with mock_and_client(
            schedule=schedule, retry=policy, timeouts=timeouts_, limits=limits_
        ) as (server, client):
            results = await client.chat_batch(schedule.items(), **NO_STORM_CONTROL)
            await settle(server)
        seen = records_by_key(server)
        for result in results:
            cid = result.custom_id
            assert cid is not None
            want = predictions[cid]
            got = "ok" if result.ok else type(result.error).__name__
            context = f"{cid}: predicted {want}, got {got} after {result.attempts}"
            assert result.ok == want.ok, context
            assert result.attempts == want.attempts, context
            assert len(seen[key_of(cid)]) == want.attempts, context
            if not want.ok:
                assert type(result.error) is want.error, context
                assert isinstance(result.error, pt.APIError)
                assert len(result.error.attempts) == want.attempts, context

    run_trio(example)


@settings(max_examples=15)
@example(
    schedule=Schedule({"r0": ["stream_cut", "malformed", "ok"]}),
    policy=pt.RetryPolicy(attempts=4, initial_delay=0.001, max_delay=0.002),
    timeouts_=pt.Timeouts(),
    restart="replay",
)
@given(
    schedule=schedules(max_requests=5, max_steps=4, step=steps(stream=True)),
    policy=retry_policies(),
    timeouts_=timeouts(),
    restart=st.sampled_from([None, "replay"]),
)
def test_stream_outcomes_and_attempts_match_the_oracle(
    schedule: Schedule, policy: pt.RetryPolicy, timeouts_: pt.Timeouts, restart: str | None
) -> None:
    """Without restart, streams are retried before their first chunk only: after it a
    failure is final.  With restart (the default "replay", against the deterministic mock),
    a live stream ends as a streamed batch item does: every break is retried."""
    predictions = predict(
        schedule, policy, mode="chat_stream" if restart is None else "batch_stream"
    )
    outcomes: dict[str, tuple[bool, type[BaseException] | None, int]] = {}

    async def one(client: pt.Client, request: pt.ChatRequest) -> None:
        assert request.custom_id is not None
        stream = client.chat_stream(request, restart=restart)  # type: ignore[arg-type]
        try:
            async with stream:
                async for _ in stream:
                    pass
        except pt.APIError as exc:
            outcomes[request.custom_id] = (False, type(exc), len(exc.attempts))
        else:
            outcomes[request.custom_id] = (True, None, len(stream.attempts))
            assert stream.completion.text

    async def example() -> None:
        async with mock_and_client(schedule=schedule, retry=policy, timeouts=timeouts_) as (
            server,
            client,
        ):
            async with trio.open_nursery() as nursery:
                for item in schedule.items():
                    nursery.start_soon(one, client, item)
            await settle(server)
            assert client.statistics().in_flight == 0
        seen = records_by_key(server)
        for cid, want in predictions.items():
            ok, error, attempts = outcomes[cid]
            context = f"{cid}: predicted {want}, got {error or 'ok'} after {attempts}"
            assert (ok, attempts, len(seen[key_of(cid)])) == (
                want.ok,
                want.attempts,
                want.attempts,
            ), context
            assert error is want.error, context

    run_trio(example)


# --------------------------------------------------------------------------- property 3


@given(
    schedule=schedules(),
    policy=retry_policies(),
    timeouts_=timeouts(),
    limits_=limits(),
    mode=st.sampled_from(["plain", "chat_stream", "batch_stream"]),
)
def test_nothing_non_retryable_is_retried(
    schedule: Schedule,
    policy: pt.RetryPolicy,
    timeouts_: pt.Timeouts,
    limits_: pt.Limits,
    mode: Mode,
) -> None:
    """From the server log alone: every attempt but a request's last was retryable."""
    stream = mode != "plain"

    async def example() -> None:
        async with mock_and_client(
            schedule=schedule, retry=policy, timeouts=timeouts_, limits=limits_
        ) as (server, client):
            if mode == "chat_stream":
                async with trio.open_nursery() as nursery:
                    for item in schedule.items():
                        nursery.start_soon(drain_stream, client, item)
            else:
                await client.chat_batch(schedule.items(), stream=stream, **NO_STORM_CONTROL)
            await settle(server)
        seen = records_by_key(server)
        for cid in schedule.custom_ids:
            records = seen[key_of(cid)]
            assert [r.attempt for r in records] == list(range(1, len(records) + 1)), cid
            assert len(records) <= policy.attempts, cid
            for record in records:
                step = schedule.step(cid, record.attempt)
                assert record.outcome == expected_outcome(step.kind, stream=stream), (cid, record)
            # (a chat_stream resumes every break by default, as a streamed item is resent)
            judged: Mode = "batch_stream" if mode == "chat_stream" else mode
            for record in records[:-1]:
                step = schedule.step(cid, record.attempt)
                assert retryable(step, policy, mode=judged), (
                    f"{cid} attempt {record.attempt} ({step}) is not retryable under the "
                    f"policy, yet attempt {record.attempt + 1} was sent"
                )

    run_trio(example)


async def drain_stream(client: pt.Client, request: pt.ChatRequest) -> None:
    try:
        async with client.chat_stream(request) as stream:
            async for _ in stream:
                pass
    except pt.APIError:
        pass


# --------------------------------------------------------------------------- property 4


@given(schedule=schedules(max_requests=6), policy=retry_policies(), timeouts_=timeouts())
def test_waits_honour_retry_after_and_backoff_bounds(
    schedule: Schedule, policy: pt.RetryPolicy, timeouts_: pt.Timeouts
) -> None:
    """Every wait is the server's ``Retry-After``, else within the backoff formula's bounds.

    Judged twice: the delay the client announces (``RetryScheduled``) is within the
    documented bounds, and the server's clock shows the next attempt arriving no sooner
    than that delay after the previous one finished (and not much later: concurrency is
    not binding here, and the adaptive controller is off so nothing else pauses).
    """
    scheduled: dict[tuple[str, int], float] = {}

    def on_event(event: object) -> None:
        if isinstance(event, pt.RetryScheduled):
            assert event.custom_id is not None
            scheduled[event.custom_id, event.attempt] = event.delay

    async def example() -> None:
        async with mock_and_client(
            schedule=schedule,
            retry=policy,
            timeouts=timeouts_,
            limits=pt.Limits(concurrency=len(schedule), adaptive=False),
            on_event=on_event,
        ) as (server, client):
            await client.chat_batch(schedule.items(), **NO_STORM_CONTROL)
            await settle(server)
        seen = records_by_key(server)
        for cid in schedule.custom_ids:
            records = seen[key_of(cid)]
            for before, after in itertools.pairwise(records):
                step = schedule.step(cid, before.attempt)
                bounds = wait_bounds(step, policy, before.attempt)
                delay = scheduled[cid, before.attempt]
                where = f"{cid}: wait after attempt {before.attempt} ({step})"
                assert bounds.low - 1e-9 <= delay <= bounds.high + 1e-9, (where, delay, bounds)
                assert before.finish is not None
                gap = after.arrival - before.finish
                if step.kind != "hang":  # a hang "finishes" when the server notices the client left
                    assert gap >= delay - 0.002, (where, gap, delay)
                assert gap <= delay + slack(SLACK), (where, gap, delay)

    run_trio(example)


# --------------------------------------------------------------------------- property 5


@given(
    schedule=schedules(
        max_requests=12,
        max_steps=3,
        step=steps(kinds=["ok", "429", "503", "500", "reset", "close", "malformed", "400"]),
    ),
    policy=retry_policies(max_attempts=3),
    limits_=limits(max_concurrency=6),
    how=st.sampled_from(["one batch", "two batches", "single calls"]),
)
def test_server_never_sees_more_than_the_concurrency_limit(
    schedule: Schedule, policy: pt.RetryPolicy, limits_: pt.Limits, how: str
) -> None:
    """``max_in_flight`` at the server never exceeds ``Limits.concurrency``.

    The limit is client-wide, so the requests come from one batch, from two batches at
    once, or from concurrent single ``chat()`` calls.  ``hang`` is left out of these
    schedules: after an attempt timeout the client closes the connection and frees its
    slot at once, but the server counts the request in flight until it notices the
    disconnect, so its count may briefly include a request the client has abandoned.
    """

    async def example() -> None:
        config = ms.MockConfig(seed=1, retry_after=0.01, latency=ms.Latency.uniform(0.0, 0.01))
        async with mock_and_client(
            schedule=schedule,
            config=config,
            retry=policy,
            timeouts=pt.Timeouts(attempt=2.0),
            limits=limits_,
        ) as (server, client):
            items = schedule.items()
            async with trio.open_nursery() as nursery:
                if how == "one batch":
                    nursery.start_soon(partial(client.chat_batch, items, **NO_STORM_CONTROL))
                elif how == "two batches":
                    for half in (items[::2], items[1::2]):
                        nursery.start_soon(partial(client.chat_batch, half, **NO_STORM_CONTROL))
                else:
                    for item in items:
                        nursery.start_soon(swallow, client.chat(item))
            await settle(server)
            stats = server.stats()
        assert stats.max_in_flight <= limits_.concurrency, (stats, limits_)

    run_trio(example)


@settings(max_examples=6)
@given(
    rpm=st.sampled_from([120, 180, 240]),
    extra=st.integers(1, 3),
    concurrency=st.sampled_from([8, 32, 64]),
)
def test_rate_limit_never_exceeded_in_any_window(rpm: int, extra: int, concurrency: int) -> None:
    """With ``Limits(requests_per_minute=R)`` at most ``R + R * t / 60`` requests in any t.

    The client's bucket holds a minute's worth (``R`` requests) and refills at ``R / 60``
    per second, so a batch of ``R + extra`` requests is a burst of ``R`` then one request
    every ``60 / R`` seconds.  The check is on server arrival times, with 50 ms allowed for
    the loopback jitter of two arrivals.
    """
    n = rpm + extra

    async def example() -> None:
        requests = [
            pt.ChatRequest(messages=({"role": "user", "content": "x"},), custom_id=f"q{i}")
            for i in range(n)
        ]
        async with mock_and_client(
            limits=pt.Limits(concurrency=concurrency, requests_per_minute=rpm, adaptive=False)
        ) as (server, client):
            results = await client.chat_batch(requests, **NO_STORM_CONTROL)
        assert all(r.ok for r in results)
        arrivals = sorted(r.arrival for r in server.requests())
        assert len(arrivals) == n
        rate = rpm / 60
        for i in range(n):
            for j in range(i, n):
                t = arrivals[j] - arrivals[i]
                allowed = math.floor(rpm + rate * (t + 0.05) + 1e-9)
                assert j - i + 1 <= allowed, (i, j, t, allowed)
        # and the limit was binding: the last request waited about extra * 60 / R seconds
        assert arrivals[-1] - arrivals[0] >= (extra - 1) / rate

    run_trio(example)


# --------------------------------------------------------------------------- property 6


@given(
    schedule=schedules(
        max_requests=6,
        step=steps(kinds=[*STATUS_KINDS, *CONNECTION_KINDS, "ok"], max_latency_ms=60),
    ),
    policy=retry_policies(),
    timeouts_=timeouts(total=True),
    batch_deadline=st.none() | st.floats(0.01, 0.4),
)
def test_nothing_is_sent_after_a_deadline(
    schedule: Schedule,
    policy: pt.RetryPolicy,
    timeouts_: pt.Timeouts,
    batch_deadline: float | None,
) -> None:
    """No attempt is sent after ``Timeouts.total`` or the batch ``deadline=``.

    Judged on both sides.  The client starts no attempt (``AttemptStarted``) after the
    request's cutoff: the batch deadline, or ``Timeouts.total`` after the request began
    (known exactly from ``RequestFinished``: its time minus its ``elapsed``).  The server
    receives no more attempts than the client started (nothing sent behind its back, such
    as a retry racing the deadline), and none arrives more than :data:`LOOP_SLACK` after
    the cutoff (the trip of an attempt started just before it: client and server share
    one trio loop, so a busy loop delays the server's timestamp).
    """
    assert timeouts_.total is not None
    total = timeouts_.total
    started: dict[str, list[float]] = defaultdict(list)
    began: dict[str, float] = {}

    def on_event(event: object) -> None:
        if isinstance(event, pt.AttemptStarted):
            started[event.idempotency_key].append(event.time)
        elif isinstance(event, pt.RequestFinished):
            began[event.idempotency_key] = trio.current_time() - event.elapsed

    async def example() -> None:
        async with mock_and_client(
            schedule=schedule,
            retry=policy,
            timeouts=timeouts_,
            limits=pt.Limits(concurrency=len(schedule)),
            on_event=on_event,
        ) as (server, client):
            started.clear()
            began.clear()
            start = trio.current_time()
            deadline = None if batch_deadline is None else start + batch_deadline
            results = await client.chat_batch(
                schedule.items(), deadline=deadline, **NO_STORM_CONTROL
            )
            returned = trio.current_time()
            await settle(server)
        if deadline is not None:
            assert returned <= deadline + slack(LOOP_SLACK), "the batch outlived its deadline"
        seen = records_by_key(server)
        for cid in schedule.custom_ids:
            key = key_of(cid)
            records = seen.get(key, [])
            if key not in began:  # never started: the batch deadline passed first
                assert not records, cid
                assert not started[key], cid
                continue
            cutoff = began[key] + total
            if deadline is not None:
                cutoff = min(cutoff, deadline)
            assert all(t < cutoff for t in started[key]), (
                f"{cid}: attempt started {max(started[key]) - cutoff:.3f}s after the deadline"
            )
            assert len(records) <= len(started[key]), cid
            for record in records:
                assert record.arrival <= cutoff + slack(LOOP_SLACK), (
                    f"{cid}: attempt {record.attempt} arrived "
                    f"{record.arrival - cutoff:.3f}s after the deadline"
                )
        for result in results:
            assert result.ok or isinstance(result.error, pt.APIError)
            if isinstance(result.error, pt.RequestCancelled):
                assert result.error.reason == "deadline"

    run_trio(example)


# --------------------------------------------------------------------------- property 7


@given(
    schedule=schedules(max_requests=10, step=steps(max_latency_ms=100)),
    policy=retry_policies(),
    timeouts_=timeouts(),
    limits_=limits(),
    cancel_after=st.floats(0.0, 0.3),
    how=st.sampled_from(["chat_batch", "stream_batch", "chat", "chat_stream"]),
)
def test_cancellation_leaves_nothing_behind(
    schedule: Schedule,
    policy: pt.RetryPolicy,
    timeouts_: pt.Timeouts,
    limits_: pt.Limits,
    cancel_after: float,
    how: str,
) -> None:
    """Cancel at a random moment: no task or request left, and the client still works."""

    async def run_all(client: pt.Client, items: list[Any]) -> None:
        if how == "chat_batch":
            await client.chat_batch(items, **NO_STORM_CONTROL)
        elif how == "stream_batch":
            async with client.stream_batch(items, **NO_STORM_CONTROL) as results:
                async for _ in results:
                    pass
        else:
            async with trio.open_nursery() as nursery:
                for item in items:
                    if how == "chat":
                        nursery.start_soon(swallow, client.chat(item))
                    else:
                        nursery.start_soon(drain_stream, client, item)

    async def example() -> None:
        async with mock_and_client(
            schedule=schedule, retry=policy, timeouts=timeouts_, limits=limits_
        ) as (server, client):
            with trio.move_on_after(cancel_after):
                await run_all(client, schedule.items())
            stats = client.statistics()
            assert stats.in_flight == 0, stats
            assert stats.started == stats.succeeded + stats.failed + stats.cancelled, stats
            await settle(server)  # every connection the cancel closed was seen closed
            assert all(r.finish is not None for r in server.requests())
            # the client still works
            server.reset()
            again = schedule.items()
            results = await client.chat_batch(again, **NO_STORM_CONTROL)
            assert all(r.ok for r in results if isinstance(r.request, pt.ChatRequest))
            completion = await client.chat([{"role": "user", "content": "still there?"}])
            assert completion.text
            assert client.statistics().in_flight == 0

    run_trio(example)


async def swallow(call: Any) -> None:
    with contextlib.suppress(pt.APIError):
        await call


def test_harness_prints_a_replayable_schedule() -> None:
    """The repr of a drawn schedule is Python that rebuilds the same schedule."""
    schedule = Schedule({"r0": ["503", "429 ra=12ms", "ok"], "r1": ["400 sr=true lat=3ms"]})
    assert repr(schedule) == (
        "Schedule({'r0': ['503', '429 ra=12ms', 'ok'], 'r1': ['400 sr=true lat=3ms']})"
    )
    assert eval(repr(schedule), {"Schedule": Schedule}) == schedule
    assert API_KEY not in repr(schedule)
    assert error_class(schedule.step("r0", 4)) is None  # past the script: success


def test_the_docs_example_property_runs(tmp_path: Path) -> None:
    """``docs/reliability.md``'s example of a property test of your own code, run as is.

    Run from a file of its own: hypothesis reads the source of the test it runs, and
    Python 3.13's ``inspect`` fails on a function whose file is the Markdown page.
    """
    page = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
    match = re.search(
        r"^```\{code-block\} python\n:name: example-reliability-own-property\n(?::[^\n]*\n)*\n"
        r"(.*?)^```$",
        page.read_text(),
        re.MULTILINE | re.DOTALL,
    )
    assert match, "the example is missing from docs/reliability.md"
    namespace: dict[str, Any] = {"__name__": "docs_reliability_example"}
    example = tmp_path / "docs_reliability_example.py"
    example.write_text(match.group(1))
    exec(compile(match.group(1), str(example), "exec"), namespace)
    namespace["test_every_text_gets_one_answer"]()
