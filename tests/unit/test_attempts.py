"""The attempt engine (``_attempts``) on its own: no HTTP, no client, no transport.

Like trio's and h11's tests of their state machines, these drive the engine directly: an
:class:`Engine` built from a limiter, a rate limiter, an adaptive controller and a ledger, and
*attempt functions* that return a result or raise :class:`AttemptFailure`.  The tests run on
trio's ``MockClock(autojump_threshold=0)`` (``tests/unit/conftest.py``), so every wait takes
virtual time and the times asserted are exact.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._attempt_failure import AttemptFailure
from paradigm_trio._config import RetryPolicy, Timeouts
from paradigm_trio._endpoints._completion import Usage
from paradigm_trio._engine._attempts import Attempting, Call, Engine, Plan
from paradigm_trio._engine._budget import BatchControl
from paradigm_trio._engine._ledger import Ledger
from paradigm_trio._engine._ratelimit import AdaptiveController, RateLimiter
from paradigm_trio._events import (
    AttemptFailed,
    AttemptStarted,
    Event,
    RateLimited,
    RequestFinished,
    RetryScheduled,
)

pytestmark = pytest.mark.anyio

CUSTOM_ID = "item-7"
KEY = "idem-key-7"

Step = Callable[[Attempting], Awaitable[str]]
E = TypeVar("E", bound=Event)


# ============================================================================ helpers


@dataclass
class Rig:
    """An engine and what it reports to: its limiter, its ledger, the events emitted."""

    engine: Engine
    events: list[Event] = field(default_factory=list)

    @property
    def limiter(self) -> trio.CapacityLimiter:
        return self.engine.limiter

    @property
    def ledger(self) -> Ledger:
        return self.engine.ledger

    def call(self, plan: Plan | None = None, history: list[pt.Attempt] | None = None) -> Call:
        return self.engine.call(plan if plan is not None else make_plan(), history)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]


def make_rig(concurrency: int = 4, *, adaptive: bool = False) -> Rig:
    limiter = trio.CapacityLimiter(concurrency)
    rates = RateLimiter(None, None)
    controller = AdaptiveController(limiter, maximum=concurrency, rates=rates, enabled=adaptive)
    events: list[Event] = []
    ledger = Ledger(on_event=events.append)
    engine = Engine(limiter=limiter, rates=rates, adaptive=controller, ledger=ledger)
    return Rig(engine, events)


def policy(**changes: object) -> RetryPolicy:
    """Fixed waits (no jitter): 1, 2, 4, ... seconds, four attempts unless changed."""
    settings: dict[str, object] = {"attempts": 4, "initial_delay": 1.0, "multiplier": 2.0}
    settings.update(changes)
    return RetryPolicy(jitter=0, **settings)  # type: ignore[arg-type]


def make_plan(
    *,
    retry: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
    deadline: float = math.inf,
    control: BatchControl | None = None,
    attempt_timeout: bool = True,
    tokens: int = 0,
) -> Plan:
    return Plan(
        CUSTOM_ID,
        KEY,
        retry=retry if retry is not None else policy(),
        timeouts=timeouts if timeouts is not None else Timeouts.none(),
        tokens=tokens,
        deadline=deadline,
        control=control,
        attempt_timeout=attempt_timeout,
    )


def ok(value: str = "done", *, status: int = 200) -> Step:
    """An attempt that gets a response and returns ``value``."""

    async def step(current: Attempting) -> str:
        await trio.lowlevel.checkpoint()
        current.responded(status, f"req-{current.number}", {})
        return value

    return step


def fail(
    status: int = 503,
    *,
    message: str = "busy",
    should_retry: bool | None = None,
    retry_after: float | None = None,
    rate_limit: Mapping[str, str] | None = None,
    takes: float = 0.0,
) -> Step:
    """An attempt that gets an error response (after ``takes`` seconds); ``should_retry``
    is the server's ``x-should-retry``."""

    async def step(current: Attempting) -> str:
        await trio.sleep(takes)
        current.responded(status, f"req-{current.number}", rate_limit or {})
        error: pt.APIStatusError
        if status == 429:
            error = pt.RateLimitError(message, status_code=429)
        elif status >= 500:
            error = pt.InternalServerError(message, status_code=status)
        else:
            error = pt.BadRequestError(message, status_code=status)
        raise AttemptFailure(
            error,
            str(status),
            status=status,
            should_retry=should_retry,
            retry_after=retry_after,
            rate_limit=rate_limit,
        )

    return step


def refused(*, takes: float = 0.0) -> Step:
    """An attempt whose connection fails: no response, no status."""

    async def step(current: Attempting) -> str:
        await trio.sleep(takes)
        raise AttemptFailure(pt.APIConnectionError("connection refused"), "connection")

    return step


async def hang(current: Attempting) -> str:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


class Script:
    """An attempt function playing one step per attempt (the last step repeats).

    Records when each attempt started and what it saw of its lease.
    """

    def __init__(self, *steps: Step) -> None:
        self.steps = steps
        self.starts: list[float] = []
        self.numbers: list[int] = []
        self.held: list[bool] = []

    async def __call__(self, current: Attempting) -> str:
        self.starts.append(trio.current_time())
        self.numbers.append(current.number)
        self.held.append(current.held)
        step = self.steps[min(len(self.starts), len(self.steps)) - 1]
        return await step(current)


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


async def hold_slot(limiter: trio.CapacityLimiter) -> object:
    """Take the limiter's only slot on behalf of someone else."""
    holder = object()
    await limiter.acquire_on_behalf_of(holder)
    return holder


async def run_cancelled_at(when: float, call: Call, attempt: Step) -> bool:
    """Run ``call`` in a cancel scope cancelled at ``when``; whether ``Cancelled`` came out."""
    scope = trio.CancelScope()
    propagated = False

    async def canceller() -> None:
        await trio.sleep_until(when)
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(canceller)
        with scope:
            try:
                await call.run(attempt)
            except trio.Cancelled:
                propagated = True
                raise
    assert scope.cancelled_caught
    return propagated


# ============================================================================ retries


async def test_retries_until_success_with_exact_backoff_waits() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    script = Script(fail(), fail(), fail(), ok("answer"))
    call = rig.call()

    result = await call.run(script, usage=lambda _: Usage(3, 4, 7))

    assert result == "answer"
    # initial_delay * multiplier ** (n - 1): waits of 1, 2 and 4 seconds.
    assert [t - t0 for t in script.starts] == [0.0, 1.0, 3.0, 7.0]
    assert trio.current_time() - t0 == 7.0
    assert script.numbers == [1, 2, 3, 4]
    assert [r.delay for r in call.history] == [1.0, 2.0, 4.0, None]
    assert [r.cause for r in call.history] == ["503", "503", "503", None]
    assert [r.status for r in call.history] == [503, 503, 503, 200]
    assert [e.delay for e in rig.of(RetryScheduled)] == [1.0, 2.0, 4.0]
    assert not any(e.server_requested for e in rig.of(RetryScheduled))
    assert rig.kinds() == [
        *["AttemptStarted", "AttemptFailed", "RetryScheduled"] * 3,
        "AttemptStarted",
        "RequestFinished",
    ]
    assert [e.will_retry for e in rig.of(AttemptFailed)] == [True] * 3
    assert [e.attempt for e in rig.of(AttemptStarted)] == [1, 2, 3, 4]
    finished = rig.events[-1]
    assert isinstance(finished, RequestFinished)
    assert (finished.ok, finished.attempts, finished.total_tokens) == (True, 4, 7)
    assert finished.elapsed == 7.0
    assert (finished.custom_id, finished.idempotency_key) == (CUSTOM_ID, KEY)
    ledger = rig.ledger
    assert (ledger.started, ledger.succeeded, ledger.failed, ledger.cancelled) == (1, 1, 0, 0)
    assert (ledger.attempts, ledger.retries, ledger.retries_by_cause) == (4, 3, {"503": 3})
    assert (ledger.prompt_tokens, ledger.completion_tokens) == (3, 4)
    assert ledger.in_flight == 0
    assert rig.limiter.borrowed_tokens == 0
    assert call.finished


async def test_computed_backoff_is_capped_by_max_delay() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    script = Script(fail(), fail(), fail(), ok())
    await rig.call(make_plan(retry=policy(multiplier=10.0, max_delay=5.0))).run(script)
    assert [t - t0 for t in script.starts] == [0.0, 1.0, 6.0, 11.0]


# ---------------------------------------------------------------- backoff scaled by health


async def succeed_times(rig: Rig, n: int) -> None:
    for _ in range(n):
        await rig.call().run(Script(ok()))


async def test_backoff_is_scaled_down_when_failures_are_rare() -> None:
    rig = make_rig()
    await succeed_times(rig, 9)
    t0 = trio.current_time()
    script = Script(fail(), fail(), ok())
    call = rig.call()
    await call.run(script)
    # First failure: 1 failed of 10 recent attempts, f = 0.1: a fifth of the 1 s backoff.
    first = call.history[0].delay
    assert first == pytest.approx(0.2)
    # Second failure, 0.2 s later: both counts decayed by 0.5 ** (0.2 / 2), then counted.
    weight = 0.5 ** (0.2 / 2.0)
    share = (1 * weight + 1) / (10 * weight + 1)
    assert call.history[1].delay == pytest.approx(2.0 * share / 0.5)
    assert script.starts[1] - t0 == pytest.approx(0.2)


async def test_backoff_is_never_scaled_below_min_backoff_factor() -> None:
    rig = make_rig()
    await succeed_times(rig, 99)
    call = rig.call(make_plan(retry=policy(min_backoff_factor=0.25)))
    await call.run(Script(fail(), ok()))
    # f = 0.01 would give 2 % of the backoff; the floor is a quarter of it.
    assert call.history[0].delay == pytest.approx(0.25)


async def test_min_backoff_factor_one_always_waits_the_whole_backoff() -> None:
    rig = make_rig()
    await succeed_times(rig, 99)
    call = rig.call(make_plan(retry=policy(min_backoff_factor=1.0)))
    await call.run(Script(fail(), fail(), ok()))
    assert [r.delay for r in call.history] == [1.0, 2.0, None]


async def test_the_whole_backoff_while_half_of_recent_attempts_fail() -> None:
    rig = make_rig()
    await succeed_times(rig, 1)
    call = rig.call()
    await call.run(Script(fail(), ok()))
    # 1 failed of 2: f = 0.5, the full backoff (a blip at the start of a batch).
    assert call.history[0].delay == 1.0


async def test_old_failures_fade_from_the_health_share() -> None:
    rig = make_rig()
    for _ in range(10):  # an outage: ten requests failing with no retry
        with pytest.raises(pt.APIError):
            await rig.call(make_plan(retry=policy(attempts=1))).run(Script(fail()))
    await trio.sleep(20.0)  # ten half-lives: the outage weighs 1/1024 now
    await succeed_times(rig, 10)
    call = rig.call()
    await call.run(Script(fail(), ok()))
    share = (10 / 1024 + 1) / (10 / 1024 + 10 + 1)
    assert call.history[0].delay == pytest.approx(share / 0.5)


async def test_non_retryable_failures_do_not_count_as_server_trouble() -> None:
    rig = make_rig()
    for _ in range(9):  # the server answered: a 400 is the caller's mistake
        with pytest.raises(pt.APIError):
            await rig.call().run(Script(fail(400, should_retry=False)))
    call = rig.call()
    await call.run(Script(fail(), ok()))
    assert call.history[0].delay == pytest.approx(0.2)


async def test_a_server_requested_wait_is_never_scaled() -> None:
    rig = make_rig()
    await succeed_times(rig, 99)
    call = rig.call()
    await call.run(Script(fail(retry_after=3.0), ok()))
    assert call.history[0].delay == 3.0


async def test_the_lease_is_held_during_an_attempt_and_given_back_while_waiting() -> None:
    rig = make_rig(concurrency=1)
    t0 = trio.current_time()
    seen: list[tuple[int, int]] = []

    async def observed(current: Attempting) -> str:
        seen.append((rig.limiter.borrowed_tokens, rig.ledger.in_flight))
        return await (fail() if current.number == 1 else ok())(current)

    script = Script(observed)
    competitor: list[tuple[float, int]] = []

    async def compete() -> None:
        await trio.sleep(0.5)  # in the middle of the 1 s wait after the first failure
        async with rig.limiter:
            competitor.append((trio.current_time() - t0, rig.ledger.in_flight))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(compete)
        await rig.call().run(script)

    assert script.held == [True, True]
    assert seen == [(1, 1), (1, 1)]
    # The only slot was free while the engine slept between attempts.
    assert competitor == [(0.5, 0)]
    assert [t - t0 for t in script.starts] == [0.0, 1.0]
    assert rig.limiter.borrowed_tokens == 0
    assert rig.ledger.in_flight == 0


async def test_a_non_retryable_failure_is_raised_at_once() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    script = Script(fail(400, message="bad request", should_retry=False), ok())
    call = rig.call()

    with pytest.raises(pt.BadRequestError) as info:
        await call.run(script)

    error = info.value
    assert len(script.starts) == 1
    assert trio.current_time() == t0
    assert error.message == "bad request"
    assert notes(error) == []
    assert error.__suppress_context__
    assert len(error.attempts) == 1
    assert error.attempts[0].cause == "400"
    assert error.attempts[0].delay is None
    assert error.custom_id == CUSTOM_ID
    assert rig.kinds() == ["AttemptStarted", "AttemptFailed", "RequestFinished"]
    failed = rig.events[1]
    assert isinstance(failed, AttemptFailed)
    assert not failed.will_retry
    finished = rig.events[-1]
    assert isinstance(finished, RequestFinished)
    assert not finished.ok
    assert finished.error == "BadRequestError: bad request"
    ledger = rig.ledger
    assert (ledger.failed, ledger.succeeded, ledger.attempts, ledger.retries) == (1, 0, 1, 0)
    assert rig.limiter.borrowed_tokens == 0


async def test_exhausted_attempts_raise_the_last_error_with_a_note() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    script = Script(*(fail(message=f"busy {n}") for n in (1, 2, 3)))
    history: list[pt.Attempt] = []
    call = rig.call(make_plan(retry=policy(attempts=3)), history)

    with pytest.raises(pt.InternalServerError) as info:
        await call.run(script)

    error = info.value
    assert error.message == "busy 3"
    assert error.status_code == 503
    assert any("gave up after 3 attempt(s)" in note for note in notes(error)), notes(error)
    assert "RetryPolicy.attempts=3" in notes(error)[0]
    assert len(script.starts) == 3
    assert trio.current_time() - t0 == 3.0  # waits of 1 and 2 seconds, none after the last
    assert error.attempts == tuple(history)
    assert call.history is history
    assert [r.number for r in history] == [1, 2, 3]
    assert [r.error for r in history] == [
        "InternalServerError: busy 1",
        "InternalServerError: busy 2",
        "InternalServerError: busy 3",
    ]
    assert [r.request_id for r in history] == ["req-1", "req-2", "req-3"]
    assert [r.started - t0 for r in history] == [0.0, 1.0, 3.0]
    assert [r.delay for r in history] == [1.0, 2.0, None]
    assert error.custom_id == CUSTOM_ID
    assert [e.will_retry for e in rig.of(AttemptFailed)] == [True, True, False]
    assert rig.kinds()[-2:] == ["AttemptFailed", "RequestFinished"]
    assert (rig.ledger.failed, rig.ledger.retries) == (1, 2)


async def test_the_history_list_given_to_the_call_is_filled_on_success() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    history: list[pt.Attempt] = []
    call = rig.call(make_plan(), history)
    await call.run(Script(fail(takes=0.25), ok()))
    assert call.history is history
    assert history == [
        pt.Attempt(1, t0, 0.25, 503, "503", "InternalServerError: busy", 1.0, "req-1"),
        pt.Attempt(2, t0 + 1.25, 0.0, 200, None, None, None, "req-2"),
    ]


async def test_retry_after_is_honoured_exactly() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    script = Script(fail(retry_after=7.5), ok())
    call = rig.call()

    await call.run(script)

    assert [t - t0 for t in script.starts] == [0.0, 7.5]
    scheduled = rig.of(RetryScheduled)
    assert len(scheduled) == 1
    assert isinstance(scheduled[0], RetryScheduled)
    assert scheduled[0].delay == 7.5
    assert scheduled[0].server_requested
    assert call.history[0].delay == 7.5


async def test_retry_after_beyond_max_retry_after_is_refused_at_once() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    script = Script(fail(retry_after=120.0), ok())
    call = rig.call(make_plan(retry=policy(max_retry_after=60.0)))

    with pytest.raises(pt.InternalServerError) as info:
        await call.run(script)

    assert len(script.starts) == 1
    assert trio.current_time() == t0
    (note,) = notes(info.value)
    assert "120s" in note
    assert "max_retry_after=60s" in note
    assert "RetryScheduled" not in rig.kinds()
    assert call.history[0].delay is None
    assert rig.ledger.retries == 0


# ============================================================================ deadlines


async def test_total_timeout_interrupts_a_hanging_attempt() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    script = Script(fail(takes=2.0), hang)
    call = rig.call(make_plan(timeouts=Timeouts(total=5.0, attempt=None)))

    with pytest.raises(pt.APITimeoutError) as info:
        await call.run(script)

    error = info.value
    assert error.which == "total"
    assert "Timeouts.total=5s" in error.message
    assert trio.current_time() - t0 == 5.0
    assert [t - t0 for t in script.starts] == [0.0, 3.0]
    first, second = error.attempts
    assert (first.cause, first.delay) == ("503", 1.0)
    assert second.number == 2
    assert second.cause == "timeout"
    assert second.error == "interrupted by the deadline"
    assert (second.started - t0, second.elapsed, second.delay) == (3.0, 2.0, None)
    assert error.custom_id == CUSTOM_ID
    assert rig.limiter.borrowed_tokens == 0
    assert rig.ledger.in_flight == 0
    assert (rig.ledger.failed, rig.ledger.cancelled) == (1, 0)
    finished = rig.events[-1]
    assert isinstance(finished, RequestFinished)
    assert not finished.ok
    assert finished.elapsed == 5.0


async def test_total_timeout_starts_no_attempt_that_could_not_wait_its_turn() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    script = Script(fail())
    call = rig.call(make_plan(retry=policy(attempts=10), timeouts=Timeouts(total=5.0)))

    with pytest.raises(pt.InternalServerError) as info:
        await call.run(script)

    # Attempts at 0, 1 and 3; the next wait (4 s) would end at 7, past the deadline at 5.
    assert [t - t0 for t in script.starts] == [0.0, 1.0, 3.0]
    assert trio.current_time() - t0 == 3.0
    assert all(t - t0 < 5.0 for t in script.starts)
    assert any("would pass the request's deadline" in note for note in notes(info.value))
    assert len(info.value.attempts) == 3
    assert info.value.attempts[-1].delay is None


async def test_total_timeout_while_waiting_for_a_slot() -> None:
    rig = make_rig(concurrency=1)
    holder = await hold_slot(rig.limiter)
    t0 = trio.current_time()
    script = Script(ok())

    with pytest.raises(pt.APITimeoutError) as info:
        await rig.call(make_plan(timeouts=Timeouts(total=5.0))).run(script)

    assert info.value.which == "total"
    assert info.value.attempts == ()
    assert "after 0 attempt(s)" in info.value.message
    assert trio.current_time() - t0 == 5.0
    assert script.starts == []
    assert rig.ledger.attempts == 0
    assert rig.limiter.borrowed_tokens == 1  # still the holder's
    rig.limiter.release_on_behalf_of(holder)


async def test_a_callers_deadline_while_waiting_for_a_slot_cancels_before_sending() -> None:
    rig = make_rig(concurrency=1)
    holder = await hold_slot(rig.limiter)
    t0 = trio.current_time()
    attempts_before = rig.ledger.attempts
    script = Script(ok())
    call = rig.call(make_plan(deadline=t0 + 3.0, timeouts=Timeouts(total=10.0)))

    with pytest.raises(pt.RequestCancelled) as info:
        await call.run(script)

    error = info.value
    assert error.reason == "deadline"
    assert error.sent is False
    assert "before it was sent" in error.message
    assert error.attempts == ()
    assert error.custom_id == CUSTOM_ID
    assert trio.current_time() - t0 == 3.0
    assert script.starts == []
    assert rig.ledger.attempts == attempts_before
    assert (rig.ledger.cancelled, rig.ledger.failed) == (1, 0)
    assert rig.kinds() == ["RequestFinished"]
    assert not rig.of(RequestFinished)[0].ok
    rig.limiter.release_on_behalf_of(holder)
    assert rig.limiter.borrowed_tokens == 0


async def test_a_callers_deadline_during_an_attempt_cancels_after_sending() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    call = rig.call(make_plan(deadline=t0 + 4.0))

    with pytest.raises(pt.RequestCancelled) as info:
        await call.run(Script(hang))

    error = info.value
    assert error.sent is True
    assert trio.current_time() - t0 == 4.0
    (record,) = error.attempts
    assert (record.cause, record.error, record.elapsed) == (
        "timeout",
        "interrupted by the deadline",
        4.0,
    )
    assert rig.limiter.borrowed_tokens == 0
    assert rig.ledger.in_flight == 0
    assert (rig.ledger.cancelled, rig.ledger.failed) == (1, 0)


@pytest.mark.parametrize("which", ["total", "caller"])
async def test_a_deadline_error_counts_the_attempt_it_interrupted(which: str) -> None:
    rig = make_rig()
    t0 = trio.current_time()
    plan = (
        make_plan(timeouts=Timeouts(total=5.0))
        if which == "total"
        else make_plan(deadline=t0 + 5.0)
    )

    with pytest.raises(pt.APIError) as info:
        await rig.call(plan).run(Script(hang))

    # One attempt was made (and is in the error's history): the message must say so, as
    # ``sent=True`` does.  (``Call.deadline_error`` counts ``self.history`` before
    # ``_interrupted`` appends the attempt under way.)
    assert len(info.value.attempts) == 1
    assert "after 1 attempt(s)" in info.value.message, info.value.message


async def test_attempt_timeout_makes_a_hanging_attempt_a_retryable_timeout() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    script = Script(hang)
    call = rig.call(make_plan(retry=policy(attempts=2), timeouts=Timeouts(attempt=2.0)))

    with pytest.raises(pt.APITimeoutError) as info:
        await call.run(script)

    error = info.value
    assert error.which == "attempt"
    assert "Timeouts.attempt=2s" in error.message
    assert any("gave up after 2 attempt(s)" in note for note in notes(error))
    assert [t - t0 for t in script.starts] == [0.0, 3.0]
    assert trio.current_time() - t0 == 5.0
    assert [(r.cause, r.elapsed, r.delay) for r in error.attempts] == [
        ("timeout", 2.0, 1.0),
        ("timeout", 2.0, None),
    ]
    assert rig.ledger.retries_by_cause == {"timeout": 1}
    assert rig.limiter.borrowed_tokens == 0


async def test_attempt_timeout_is_not_retried_without_retry_connection_errors() -> None:
    rig = make_rig()
    script = Script(hang)
    plan = make_plan(retry=policy(retry_connection_errors=False), timeouts=Timeouts(attempt=2.0))

    with pytest.raises(pt.APITimeoutError) as info:
        await rig.call(plan).run(script)

    assert info.value.which == "attempt"
    assert len(script.starts) == 1
    assert notes(info.value) == []


async def test_attempt_timeout_is_not_applied_when_the_plan_says_so() -> None:
    rig = make_rig()
    t0 = trio.current_time()

    async def slow(current: Attempting) -> str:
        await trio.sleep(3.0)
        return "late but fine"

    plan = make_plan(timeouts=Timeouts(attempt=2.0), attempt_timeout=False)
    assert await rig.call(plan).run(Script(slow)) == "late but fine"
    assert trio.current_time() - t0 == 3.0


async def test_attempting_exposes_its_number_lease_and_deadline() -> None:
    rig = make_rig()
    t0 = trio.current_time()
    seen: list[tuple[int, bool, float, float]] = []

    async def look(current: Attempting) -> str:
        seen.append((current.number, current.held, current.started, current.deadline))
        return await (fail() if current.number == 1 else ok())(current)

    call = rig.call(make_plan(timeouts=Timeouts(total=30.0), deadline=t0 + 20.0))
    await call.run(look)
    assert seen == [(1, True, t0, t0 + 20.0), (2, True, t0 + 1.0, t0 + 20.0)]
    assert call.deadline == t0 + 20.0


# ============================================================================ cancellation


async def test_cancellation_during_an_attempt_propagates_and_frees_the_slot() -> None:
    rig = make_rig(concurrency=1)
    t0 = trio.current_time()
    call = rig.call()

    assert await run_cancelled_at(t0 + 2.0, call, Script(hang))

    assert trio.current_time() - t0 == 2.0
    assert rig.limiter.borrowed_tokens == 0
    assert rig.ledger.in_flight == 0
    ledger = rig.ledger
    assert (ledger.cancelled, ledger.failed, ledger.succeeded) == (1, 0, 0)
    assert rig.kinds() == ["AttemptStarted"]  # no RequestFinished for a cancellation
    assert call.finished


async def test_cancellation_between_attempts_propagates() -> None:
    rig = make_rig(concurrency=1)
    t0 = trio.current_time()
    call = rig.call(make_plan(retry=policy(initial_delay=10.0)))
    script = Script(fail(), ok())

    assert await run_cancelled_at(t0 + 2.0, call, script)

    assert len(script.starts) == 1
    assert rig.limiter.borrowed_tokens == 0
    assert rig.ledger.in_flight == 0
    assert (rig.ledger.cancelled, rig.ledger.failed) == (1, 0)
    assert rig.kinds() == ["AttemptStarted", "AttemptFailed", "RetryScheduled"]


async def test_cancellation_while_waiting_for_a_slot_propagates() -> None:
    rig = make_rig(concurrency=1)
    holder = await hold_slot(rig.limiter)
    t0 = trio.current_time()
    script = Script(ok())

    assert await run_cancelled_at(t0 + 2.0, rig.call(), script)

    assert script.starts == []
    assert rig.ledger.attempts == 0
    assert rig.ledger.cancelled == 1
    assert rig.limiter.borrowed_tokens == 1  # the holder's only
    rig.limiter.release_on_behalf_of(holder)
    assert rig.limiter.borrowed_tokens == 0


# ============================================================================ hold=True


async def held_call(rig: Rig, *steps: Step) -> tuple[Call, str]:
    call = rig.call()
    result = await call.run(Script(*steps), hold=True)
    return call, result


async def test_hold_keeps_the_lease_after_success_until_succeed() -> None:
    rig = make_rig(concurrency=2)
    t0 = trio.current_time()
    call, result = await held_call(rig, fail(), ok("stream"))

    assert result == "stream"
    assert rig.limiter.borrowed_tokens == 1  # the failed attempt's lease was given back
    assert rig.ledger.in_flight == 1
    open_before = not call.finished
    assert open_before
    assert len(call.history) == 1
    assert "RequestFinished" not in rig.kinds()
    assert rig.ledger.succeeded == 0

    await trio.sleep(2.0)  # the reader reads
    call.succeed(result, Usage(10, 5, 15))

    assert call.finished
    assert rig.limiter.borrowed_tokens == 0
    assert rig.ledger.in_flight == 0
    assert (rig.ledger.succeeded, rig.ledger.prompt_tokens) == (1, 10)
    assert [(r.cause, r.status) for r in call.history] == [("503", 503), (None, 200)]
    assert call.history[1].elapsed == 2.0
    assert rig.kinds() == [
        "AttemptStarted",
        "AttemptFailed",
        "RetryScheduled",
        "AttemptStarted",
        "RequestFinished",
    ]
    finished = rig.events[-1]
    assert isinstance(finished, RequestFinished)
    assert (finished.ok, finished.attempts, finished.total_tokens) == (True, 2, 15)
    assert finished.elapsed == trio.current_time() - t0 == 3.0


async def test_hold_then_fail_is_final_and_counts_a_failure() -> None:
    rig = make_rig()
    call, _ = await held_call(rig, ok())
    broken = pt.IncompleteStreamError("the stream broke", chunks=3)

    error = call.fail(AttemptFailure(broken, "connection"), "not retried: chunks seen")

    assert error is broken
    assert notes(error) == ["not retried: chunks seen"]
    assert error.custom_id == CUSTOM_ID
    assert len(error.attempts) == 1
    assert error.attempts[0].cause == "connection"
    assert error.attempts[0].status == 200
    assert call.finished
    assert rig.limiter.borrowed_tokens == 0
    assert rig.ledger.in_flight == 0
    assert (rig.ledger.failed, rig.ledger.succeeded, rig.ledger.retries) == (1, 0, 0)
    assert rig.kinds() == ["AttemptStarted", "AttemptFailed", "RequestFinished"]
    assert not rig.of(AttemptFailed)[0].will_retry
    assert not rig.of(RequestFinished)[0].ok


async def test_hold_then_abandon_counts_a_cancellation() -> None:
    rig = make_rig()
    call, _ = await held_call(rig, ok())

    call.abandon()

    assert call.finished
    assert rig.limiter.borrowed_tokens == 0
    assert rig.ledger.in_flight == 0
    assert (rig.ledger.cancelled, rig.ledger.failed, rig.ledger.succeeded) == (1, 0, 0)
    assert rig.kinds() == ["AttemptStarted"]


def finish(call: Call, how: str) -> None:
    if how == "succeed":
        call.succeed("stream", None)
    elif how == "fail":
        call.fail(AttemptFailure(pt.APIConnectionError("cut"), "connection"))
    else:
        call.abandon()


def counts(rig: Rig) -> tuple[int, int, int, int, int]:
    ledger = rig.ledger
    return (ledger.succeeded, ledger.failed, ledger.cancelled, ledger.in_flight, len(rig.events))


@pytest.mark.parametrize("first", ["succeed", "fail", "abandon"])
async def test_a_held_call_finishes_once_and_a_later_abandon_is_ignored(first: str) -> None:
    rig = make_rig()
    call, _ = await held_call(rig, ok())
    finish(call, first)
    after_first = counts(rig)
    expected = {"succeed": (1, 0, 0), "fail": (0, 1, 0), "abandon": (0, 0, 1)}[first]
    assert after_first[:3] == expected
    assert after_first[3] == 0

    call.abandon()  # what closing the stream does, whatever happened before

    assert counts(rig) == after_first
    assert rig.limiter.borrowed_tokens == 0


@pytest.mark.parametrize("second", ["succeed", "fail"])
async def test_a_second_succeed_or_fail_after_abandon_is_ignored(second: str) -> None:
    rig = make_rig()
    call, _ = await held_call(rig, ok())
    call.abandon()
    after_first = counts(rig)

    # A second finish is ignored, like a second abandon (``Call._finish`` guards with
    # ``_done``), rather than tripping ``assert current is not None``.
    finish(call, second)

    assert counts(rig) == after_first
    assert rig.limiter.borrowed_tokens == 0


# ============================================================================ batch control


async def test_the_retry_budget_paces_retries_past_its_reserve_and_counts_them_by_cause() -> None:
    rig = make_rig()
    control = BatchControl(retry_budget=0.0, threshold=None)  # a reserve of 10, no earnings
    retry = policy(attempts=20, initial_delay=0.01, multiplier=1.0)
    t0 = trio.current_time()
    script = Script(*[fail()] * 7, *[fail(429)] * 7, ok())

    assert await rig.call(make_plan(retry=retry, control=control)).run(script) == "done"

    assert control.retries == 14 == rig.ledger.retries
    assert control.retries_by_cause == {"503": 7, "429": 7}
    gaps = [b - a for a, b in itertools.pairwise(script.starts)]
    # The first retries wait only their backoff; past the reserve of 10 tokens, retries
    # wait for the floor's tokens (10 a second): retry k needs 10 + 10 * t >= k, so the
    # 14th goes no sooner than 0.4 s (0.14 s without the budget).  Never refused.
    assert gaps[:5] == pytest.approx([0.01] * 5)
    assert script.starts[-1] - t0 == pytest.approx(0.4, abs=0.011)


async def test_a_retry_the_budget_would_hold_past_the_deadline_is_final() -> None:
    rig = make_rig()
    control = BatchControl(retry_budget=0.0, threshold=None)
    retry = policy(attempts=50, initial_delay=0.01, multiplier=1.0)
    control.spend_retry("503", trio.current_time())  # someone else holds 30 tokens of debt
    for _ in range(29):
        control.spend_retry("503", trio.current_time())

    script = Script(fail(), ok())
    call = rig.call(make_plan(retry=retry, control=control, timeouts=Timeouts(total=1.0)))
    with pytest.raises(pt.InternalServerError) as info:
        await call.run(script)

    assert len(script.starts) == 1
    assert any("retry budget could hold it" in n for n in notes(info.value)), notes(info.value)
    assert call.history[0].delay is None
    assert not rig.of(AttemptFailed)[-1].will_retry


async def test_a_retry_cancelled_before_it_is_made_gives_its_budget_token_back() -> None:
    rig = make_rig(concurrency=20)
    control = BatchControl(retry_budget=0.0, threshold=None)  # a reserve of 10, no earnings
    retry = policy(attempts=20, initial_delay=0.01, multiplier=1.0)
    with trio.move_on_after(0.005):  # ten requests cancelled while waiting to retry
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                call = rig.call(make_plan(retry=retry, control=control))
                nursery.start_soon(call.run, Script(fail(), ok()))
    assert rig.ledger.cancelled == 10
    t0 = trio.current_time()
    script = Script(*[fail()] * 10, ok())
    await rig.call(make_plan(retry=retry, control=control)).run(script)
    # The ten tokens came back: ten retries at their backoff, none held by the budget
    # (without the refunds, the floor's 10 a second would stretch them to about 1 s).
    assert script.starts[-1] - t0 == pytest.approx(0.1)
    assert control.retries == 10


async def test_connection_retries_with_the_breaker_open_spend_no_budget() -> None:
    rig = make_rig()
    control = BatchControl(retry_budget=0.0, threshold=1, unreachable_after=100.0)
    retry = policy(attempts=20, initial_delay=0.25, multiplier=1.0)
    script = Script(*[refused()] * 15, ok())

    assert await rig.call(make_plan(retry=retry, control=control)).run(script) == "done"

    # 15 retries, more than the budget's reserve of 10, all without waiting for a token:
    # exempt, because the breaker was open.
    assert len(script.starts) == 16
    assert control.retries_by_cause == {"connection": 15}
    assert not control.breaker_open  # the success closed it
    # While open, the breaker paced the probes: one per cooldown, not one per backoff.
    assert all(b - a == 1.0 for a, b in itertools.pairwise(script.starts))


async def test_breaker_exempt_retries_leave_the_budget_to_other_failures() -> None:
    rig = make_rig()
    control = BatchControl(retry_budget=0.0, threshold=1, unreachable_after=100.0)
    retry = policy(attempts=20, initial_delay=0.25, multiplier=1.0)
    await rig.call(make_plan(retry=retry, control=control)).run(Script(*[refused()] * 15, ok()))

    # The outage is over.  Its exempt retries took no token, so a 503 is retried after its
    # backoff alone, without waiting for the floor.
    script = Script(fail(), ok())
    call = rig.call(make_plan(retry=retry, control=control))
    assert await call.run(script) == "done"
    assert len(script.starts) == 2
    assert script.starts[1] - script.starts[0] == pytest.approx(0.25)


async def test_a_dead_server_fails_with_server_unreachable() -> None:
    rig = make_rig()
    control = BatchControl(retry_budget=None, threshold=2, unreachable_after=5.0, cooldown=1.0)
    retry = policy(attempts=100, initial_delay=0.5, multiplier=1.0)
    t0 = trio.current_time()
    script = Script(refused())
    call = rig.call(make_plan(retry=retry, control=control))

    with pytest.raises(pt.ServerUnreachableError) as info:
        await call.run(script)

    # Two failures open the breaker; then one probe per cooldown until 5 s of failures.
    assert [t - t0 for t in script.starts] == [0.0, 0.5, 1.5, 2.5, 3.5, 4.5]
    assert trio.current_time() - t0 == 5.0
    assert control.dead
    assert len(info.value.attempts) == 6
    assert info.value.custom_id == CUSTOM_ID
    assert rig.ledger.failed == 1
    assert rig.limiter.borrowed_tokens == 0

    # Every later request of the batch fails at once, unsent.
    attempts_before = rig.ledger.attempts
    later = Script(ok())
    with pytest.raises(pt.ServerUnreachableError) as info:
        await rig.call(make_plan(retry=retry, control=control)).run(later)
    assert later.starts == []
    assert info.value.attempts == ()
    assert rig.ledger.attempts == attempts_before
    assert trio.current_time() - t0 == 5.0
    assert rig.ledger.failed == 2


# ============================================================================ bugs and limits


async def test_a_bug_in_the_attempt_function_propagates_and_counts_as_failed() -> None:
    rig = make_rig()

    async def buggy(current: Attempting) -> str:
        await trio.lowlevel.checkpoint()
        raise ZeroDivisionError("oops")

    call = rig.call()
    with pytest.raises(ZeroDivisionError, match="oops"):
        await call.run(buggy)

    ledger = rig.ledger
    assert (ledger.failed, ledger.succeeded, ledger.cancelled, ledger.attempts) == (1, 0, 0, 1)
    assert rig.kinds() == ["AttemptStarted"]  # no AttemptFailed, no RequestFinished
    assert rig.limiter.borrowed_tokens == 0
    assert ledger.in_flight == 0
    assert call.finished


@pytest.mark.parametrize("adaptive", [True, False])
async def test_a_429_with_rate_limit_headers_halves_the_adaptive_limit(adaptive: bool) -> None:
    rig = make_rig(concurrency=8, adaptive=adaptive)
    t0 = trio.current_time()
    headers = {"retry-after": "2", "x-ratelimit-remaining-requests": "0"}  # a spent quota
    script = Script(fail(429, retry_after=2.0, rate_limit=headers), ok())

    await rig.call().run(script)

    assert rig.limiter.total_tokens == (4 if adaptive else 8)
    assert [t - t0 for t in script.starts] == [0.0, 2.0]
    assert rig.kinds() == [
        "AttemptStarted",
        "RateLimited",
        "AttemptFailed",
        "RetryScheduled",
        "AttemptStarted",
        "RequestFinished",
    ]
    limited = rig.events[1]
    assert isinstance(limited, RateLimited)
    assert (limited.retry_after, dict(limited.headers)) == (2.0, headers)
    assert (limited.custom_id, limited.idempotency_key) == (CUSTOM_ID, KEY)
    assert rig.ledger.retries_by_cause == {"429": 1}


async def test_a_429_without_rate_limit_headers_leaves_the_limit_alone() -> None:
    rig = make_rig(concurrency=8, adaptive=True)
    await rig.call().run(Script(fail(429), ok()))
    assert rig.limiter.total_tokens == 8
    assert "RateLimited" not in rig.kinds()


async def test_only_a_first_attempt_success_raises_the_adaptive_limit() -> None:
    rig = make_rig(concurrency=4, adaptive=True)
    rig.limiter.total_tokens = 1
    await rig.call().run(Script(fail(), ok()))  # retried: not clean
    assert rig.limiter.total_tokens == 1
    await rig.call().run(Script(ok()))  # clean: one per limit raises it by one
    assert rig.limiter.total_tokens == 2
