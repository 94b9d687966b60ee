"""Stateful properties of the rate-limit machinery, on virtual time (hypothesis).

* :class:`TokenBucket`, driven with an explicit ``now``: the level never exceeds the
  capacity; waiting ``delay()`` is always enough (and always finite: an oversized request
  waits for a full bucket, never forever); whatever is taken after waiting fits, over any
  run of takes, in a full bucket plus what refilled meanwhile (plus refunds, plus the debt
  an oversized last take leaves).
* :class:`AdaptiveController` on a shared ``MockClock``: the limit stays in
  ``[1, maximum]``; a 429 halves it at most once per cool-down; a clean success never
  lowers it and raises it by at most one; ``maximum`` clean successes in a row always
  raise it (when below the maximum).
* :class:`RateLimiter` under ``trio.run`` with an autojump clock: random arrivals are served
  first come, first served, every request eventually goes (no deadlock), and the sends
  conform to the token buckets.
"""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from paradigm_trio._engine._ratelimit import AdaptiveController, RateLimiter, TokenBucket

EPS = 1e-6

# ============================================================================ TokenBucket


class TokenBucketMachine(RuleBasedStateMachine):
    """A well-behaved user: waits ``delay(amount)`` before each take."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.bucket = TokenBucket(60, now=0.0)
        self.takes: list[tuple[float, float]] = []
        self.refunds: list[tuple[float, float]] = []

    @initialize(
        per_minute=st.sampled_from([1, 7, 60, 90, 600, 1_000, 6_000, 100_000])
        | st.floats(0.5, 1e6, allow_nan=False),
        start=st.floats(0, 1e5),
    )
    def start(self, per_minute: float, start: float) -> None:
        self.now = start
        self.bucket = TokenBucket(per_minute, now=start)
        assert self.bucket.level == self.bucket.capacity == per_minute

    @property
    def capacity(self) -> float:
        return self.bucket.capacity

    @rule(dt=st.floats(0, 300))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(fraction=st.floats(0.001, 3.0))
    def take_after_waiting(self, fraction: float) -> None:
        amount = max(1.0, round(fraction * self.capacity))
        before = self.bucket.level
        wait = self.bucket.delay(amount, self.now)
        assert wait >= 0
        assert math.isfinite(wait)
        # never longer than refilling the shortfall of a full bucket (or of the amount)
        need = min(amount, self.capacity)
        bound = max(0.0, (need - min(before, self.capacity)) / self.bucket.rate)
        assert wait <= bound * (1 + 1e-9) + EPS
        self.now += wait
        # waiting what it said is enough (up to rounding)
        assert self.bucket.delay(amount, self.now) * self.bucket.rate <= EPS * max(1, amount)
        self.bucket.take(amount, self.now)
        self.takes.append((self.now, amount))

    @rule(fraction=st.floats(-1.5, 1.5))
    def adjust(self, fraction: float) -> None:
        delta = fraction * self.capacity
        self.bucket.adjust(delta, self.now)
        if delta > 0:
            self.refunds.append((self.now, delta))

    @invariant()
    def level_is_capped(self) -> None:
        assert self.bucket.level <= self.capacity + EPS * self.capacity

    @invariant()
    def takes_conform_to_the_bucket(self) -> None:
        takes = self.takes
        if not takes:
            return
        rate = self.bucket.rate
        # every run of takes ending with the last one (checking each new take once)
        j = len(takes) - 1
        t_j, a_j = takes[j]
        total = 0.0
        for i in range(j, -1, -1):
            t_i, a_i = takes[i]
            total += a_i
            refunded = sum(d for t, d in self.refunds if t_i <= t <= t_j)
            excess = max(0.0, a_j - self.capacity)
            allowed = self.capacity + rate * (t_j - t_i) + refunded + excess
            assert total <= allowed * (1 + 1e-9) + EPS * self.capacity, (i, j, total, allowed)


TestTokenBucket = TokenBucketMachine.TestCase


@settings(derandomize=True)
@given(
    amounts=st.lists(st.integers(1, 700), min_size=1, max_size=12),
    spacing=st.sampled_from([0.001, 0.01, 0.1, 0.3]),
)
@example(amounts=[100, 250, 50, 300, 100, 80, 120, 600, 10, 200], spacing=0.001)
def test_a_bucket_delay_always_moves_the_clock(amounts: list[int], spacing: float) -> None:
    """A waiter sleeps ``delay()`` and asks again; if the delay is positive but smaller than
    the clock's resolution at ``now``, sleeping it does not move the clock and the waiter
    spins forever (on trio's autojump ``MockClock``).  So a positive delay must be one the
    clock can represent: ``now + delay > now``."""
    bucket = TokenBucket(600, now=0.0)
    waiters = [(i * spacing, a) for i, a in enumerate(amounts)]
    now = 0.0
    for arrival, amount in waiters:
        now = max(now, arrival)
        for _ in range(1_000):
            wait = bucket.delay(amount, now)
            if wait <= 0:
                break
            assert now + wait > now, f"delay {wait!r} at now={now!r} does not move the clock"
            now += wait
        else:
            raise AssertionError("still waiting after 1,000 rounds")
        bucket.take(amount, now)


# ============================================================================ AdaptiveController


class AdaptiveMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = trio.testing.MockClock()
        self.maximum = 16
        self.limiter = trio.CapacityLimiter(16)
        self.controller = AdaptiveController(
            self.limiter, maximum=16, rates=RateLimiter(None, None), enabled=True
        )
        self.last_decrease = -math.inf
        self.last_window = 0.0

    @initialize(maximum=st.integers(1, 200))
    def start(self, maximum: int) -> None:
        self.maximum = maximum
        self.limiter = trio.CapacityLimiter(maximum)
        self.controller = AdaptiveController(
            self.limiter, maximum=maximum, rates=RateLimiter(None, None), enabled=True
        )

    def _run(self, fn: object) -> None:
        async def main() -> None:
            fn()  # type: ignore[operator]
            await trio.lowlevel.checkpoint()

        trio.run(main, clock=self.clock)

    @property
    def now(self) -> float:
        return self.clock.current_time()

    @rule(dt=st.floats(0, 5))
    def advance(self, dt: float) -> None:
        self.clock.jump(dt)

    @rule(retry_after=st.none() | st.floats(0, 10))
    def rate_limited(self, retry_after: float | None) -> None:
        before = self.controller.limit
        decreases = self.controller.decreases
        self._run(lambda: self.controller.on_rate_limited(retry_after, {}, quota=True))
        after = self.controller.limit
        in_cooldown = self.now < self.last_decrease + self.last_window
        if in_cooldown:
            assert after == before
            assert self.controller.decreases == decreases
        else:
            assert after == max(1, before // 2)
            assert self.controller.decreases == decreases + 1
            self.last_decrease = self.now
            self.last_window = max(1.0, retry_after or 0.0)

    @rule()
    def clean_success(self) -> None:
        before = self.controller.limit
        self.controller.on_clean_success()
        after = self.controller.limit
        assert before <= after <= before + 1

    @precondition(lambda self: self.controller.limit < self.maximum)
    @rule()
    def a_round_of_clean_successes_grows_by_one(self) -> None:
        # (exactly ``limit`` successes should do; one more absorbs float rounding of the
        # 1/limit credits, which tests/unit/test_ratelimit.py pins down exactly)
        before = self.controller.limit
        for _ in range(before + 1):
            self.controller.on_clean_success()
        assert self.controller.limit == before + 1

    @invariant()
    def limit_in_bounds(self) -> None:
        assert 1 <= self.controller.limit <= self.maximum
        assert self.limiter.total_tokens == self.controller.limit


TestAdaptiveController = AdaptiveMachine.TestCase


# ============================================================================ RateLimiter


def _run_limiter(
    rpm: float | None, tpm: float | None, arrivals: list[tuple[float, int]]
) -> list[tuple[int, float]]:
    """Each request ``i`` arrives at ``arrivals[i][0]`` and acquires ``arrivals[i][1]`` tokens;
    return ``(i, time)`` in the order they were let through."""
    done: list[tuple[int, float]] = []
    limiter = RateLimiter(rpm, tpm)

    async def one(i: int, at: float, tokens: int) -> None:
        await trio.sleep(at)
        await limiter.acquire(tokens)
        done.append((i, trio.current_time()))

    guard = _StepGuard(limit=100_000 + 1_000 * len(arrivals))

    async def main() -> None:
        with trio.fail_after(10**7):  # a deadlock autojumps here and fails
            with trio.CancelScope() as guard.scope:
                async with trio.open_nursery() as nursery:
                    for i, (at, tokens) in enumerate(arrivals):
                        nursery.start_soon(one, i, at, tokens)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0), instruments=[guard])
    assert not guard.tripped, f"livelock: {guard.limit} task steps without the clock moving"
    return done


class _StepGuard(trio.abc.Instrument):
    """Stops a run whose tasks keep stepping while virtual time stands still (a livelock:
    the autojump clock only jumps when every task is blocked)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.steps = 0
        self.at = -1.0
        self.tripped = False
        self.scope: trio.CancelScope | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        now = trio.current_time()
        if now != self.at:
            self.at, self.steps = now, 0
            return
        self.steps += 1
        if self.steps > self.limit and self.scope is not None and not self.tripped:
            self.tripped = True
            self.scope.cancel()


# Rates of 2**k a second and arrivals on a 1/64 s grid keep the arithmetic exact, away from
# the float-rounding livelock that test_a_bucket_delay_always_moves_the_clock pins down.
dyadic_rates = st.sampled_from([60 * 2**k for k in range(-2, 6)])


@given(
    rpm=st.none() | dyadic_rates,
    tpm=st.none() | dyadic_rates.map(lambda r: r * 8),
    arrivals=st.lists(
        st.tuples(st.integers(0, 64 * 30).map(lambda n: n / 64), st.integers(1, 4_000)),
        min_size=1,
        max_size=40,
        unique_by=lambda a: a[0],
    ),
)
def test_rate_limiter_is_fair_live_and_conformant(
    rpm: float | None, tpm: float | None, arrivals: list[tuple[float, int]]
) -> None:
    done = _run_limiter(rpm, tpm, arrivals)
    assert len(done) == len(arrivals)  # everyone went: no deadlock, even oversized
    order = [i for i, _ in done]
    assert order == sorted(order, key=lambda i: arrivals[i][0])  # first come, first served
    times = dict(done)
    for i, t in times.items():
        assert t >= arrivals[i][0]
    sends = sorted((times[i], float(arrivals[i][1])) for i in times)
    for per_minute, amount_of in ((rpm, lambda a: 1.0), (tpm, lambda a: a)):
        if per_minute is None:
            continue
        rate = per_minute / 60
        for j in range(len(sends)):
            total = 0.0
            last = amount_of(sends[j][1])
            for i in range(j, -1, -1):
                total += amount_of(sends[i][1])
                span = sends[j][0] - sends[i][0]
                excess = max(0.0, last - per_minute)
                assert total <= per_minute + rate * span + excess + EPS
    if rpm is None and tpm is None:
        assert all(times[i] == arrivals[i][0] for i in times)  # nothing ever waits


@pytest.mark.parametrize("rpm", [60, 120, 240])
def test_rate_limiter_bucket_starts_full_then_steady(rpm: int) -> None:
    n = rpm * 2
    done = _run_limiter(rpm, None, [(0.0, 1)] * 1 + [(k / 1024, 1) for k in range(1, n)])
    times = sorted(t for _, t in done)
    assert times[rpm - 1] < 1  # a minute's worth at once
    assert times[-1] == pytest.approx((n - rpm) * 60 / rpm)
