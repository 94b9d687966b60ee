"""Rate limits and adaptive concurrency on virtual time: ``TokenBucket``, ``RateLimiter``,
``AdaptiveController``, ``parse_duration``, and the adaptation seen through ``Client``."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

import paradigm_trio as pt
from paradigm_trio._engine._ratelimit import (
    AdaptiveController,
    RateLimiter,
    RateLimiterStatistics,
    TokenBucket,
    parse_duration,
)

from .helpers import MESSAGES, Script, after, fixed, make_client, ok, status

approx = pytest.approx

# ============================================================================ parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("250ms", 0.25),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("17", 17.0),
        (" 2s ", 2.0),
        ("1m30s", 90.0),
        ("1.5m", 90.0),
        ("2h", 7200.0),
        ("10ms", 0.01),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == approx(seconds)


@pytest.mark.parametrize(
    "text", ["garbage", "", "   ", "s", "1x", "1s garbage", "ms", "1 s", "abc1s", "1s2"]
)
def test_parse_duration_garbage_is_none(text: str) -> None:
    assert parse_duration(text) is None


def test_parse_duration_negative_number_is_clamped_to_zero() -> None:
    assert parse_duration("-3") == 0.0


# ============================================================================ TokenBucket


def test_bucket_starts_full_with_a_minutes_worth() -> None:
    bucket = TokenBucket(120, now=5.0)
    assert bucket.capacity == 120
    assert bucket.rate == 2.0
    assert bucket.level == 120
    assert bucket.delay(120, 5.0) == 0.0


def test_bucket_initial_level_is_capped_at_capacity() -> None:
    assert TokenBucket(60, level=10, now=0).level == 10
    assert TokenBucket(60, level=1000, now=0).level == 60
    assert TokenBucket(60, level=-5, now=0).level == -5


@pytest.mark.parametrize("per_minute", [0, -1, math.nan])
def test_bucket_refuses_a_non_positive_rate(per_minute: float) -> None:
    with pytest.raises(ValueError, match="per_minute"):
        TokenBucket(per_minute, now=0)


def test_bucket_refills_at_per_minute_over_sixty() -> None:
    bucket = TokenBucket(60, now=0.0)
    bucket.take(60, 0.0)
    assert bucket.level == 0
    bucket.refill(10.0)
    assert bucket.level == approx(10.0)
    bucket.refill(12.5)
    assert bucket.level == approx(12.5)
    # time going backwards changes nothing
    bucket.refill(11.0)
    assert bucket.level == approx(12.5)
    assert bucket.updated == 12.5


def test_bucket_level_is_capped_at_capacity() -> None:
    bucket = TokenBucket(60, now=0.0)
    bucket.take(30, 0.0)
    bucket.refill(1_000.0)
    assert bucket.level == 60
    assert bucket.delay(60, 1_000.0) == 0.0
    assert bucket.delay(61, 1_000.0) == 0.0  # oversized: a full bucket is enough


def test_bucket_delay_is_the_time_to_refill_the_shortfall() -> None:
    bucket = TokenBucket(600, now=0.0)  # 10 tokens/s
    bucket.take(600, 0.0)
    assert bucket.delay(1, 0.0) == approx(0.1)
    assert bucket.delay(50, 0.0) == approx(5.0)
    assert bucket.delay(50, 2.0) == approx(3.0)
    assert bucket.delay(50, 5.0) == 0.0
    assert bucket.delay(0, 0.0) == 0.0


def test_oversized_amount_waits_for_a_full_bucket_and_leaves_debt() -> None:
    bucket = TokenBucket(600, now=0.0)  # capacity 600, 10 tokens/s
    bucket.take(100, 0.0)
    wait = bucket.delay(5_000, 0.0)
    assert wait == approx(10.0)  # the 100 missing for a full bucket, not 4,500
    assert math.isfinite(wait)
    assert bucket.delay(5_000, wait) == 0.0
    bucket.take(5_000, wait)
    assert bucket.level == approx(600 - 5_000)
    # the debt is paid back before anything else goes
    assert bucket.delay(10, wait) == approx((10 + 4_400) / 10)
    # and a second oversized request, too, waits only for a full bucket, never forever
    assert bucket.delay(1_000_000, wait) == approx(5_000 / 10)


def test_adjust_refunds_and_charges_capped_at_capacity() -> None:
    bucket = TokenBucket(600, now=0.0)
    bucket.take(500, 0.0)
    bucket.adjust(200, 0.0)  # refund
    assert bucket.level == approx(300)
    bucket.adjust(10_000, 0.0)  # a refund never overfills
    assert bucket.level == 600
    bucket.adjust(-900, 0.0)  # charge: into debt
    assert bucket.level == approx(-300)
    assert bucket.delay(1, 0.0) == approx(30.1)
    bucket.adjust(0, 3.0)  # refills first
    assert bucket.level == approx(-270)


# ============================================================================ RateLimiter


@asynccontextmanager
async def livelock_guard(seconds: float = 3.0) -> AsyncIterator[None]:
    """Fail instead of hanging when virtual time stops advancing because a task keeps
    being runnable (the autojump clock only jumps when every task is blocked)."""

    async def watchdog() -> None:
        await trio.to_thread.run_sync(time.sleep, seconds, abandon_on_cancel=True)
        raise AssertionError(
            f"livelock: still runnable after {seconds}s of real time, "
            f"virtual time stuck at {trio.current_time()!r}"
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog)
        yield
        nursery.cancel_scope.cancel()


async def _acquire_all(
    limiter: RateLimiter, amounts: list[int], *, spacing: float = 0.0
) -> list[tuple[int, float]]:
    """Acquire ``amounts`` (task ``i`` arrives at ``i * spacing``); return (task, time) in
    the order the acquisitions happened."""
    done: list[tuple[int, float]] = []

    async def one(i: int, amount: int) -> None:
        await trio.sleep(i * spacing)
        await limiter.acquire(amount)
        done.append((i, trio.current_time()))

    # a deadlock would autojump to the fail_after and fail; a livelock trips the guard
    with trio.fail_after(100_000):
        async with livelock_guard(), trio.open_nursery() as nursery:
            for i, amount in enumerate(amounts):
                nursery.start_soon(one, i, amount)
    return done


def _check_bucket_conformance(
    sends: Sequence[tuple[float, float]], capacity: float, per_second: float
) -> None:
    """For any run of consecutive sends i..j: their amounts fit in a full bucket plus what
    refilled between them (plus the debt an oversized last one may leave)."""
    ordered = sorted(sends)
    for i in range(len(ordered)):
        total = 0.0
        for j in range(i, len(ordered)):
            total += ordered[j][1]
            span = ordered[j][0] - ordered[i][0]
            excess = max(0.0, ordered[j][1] - capacity)
            assert total <= capacity + per_second * span + excess + 1e-6, (i, j, total, span)


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        n = sum(1 for t in times[i:] if t < start + window - 1e-9)
        best = max(best, n)
    return best


@pytest.mark.anyio
async def test_inactive_limiter_never_waits() -> None:
    limiter = RateLimiter(None, None)
    assert not limiter.active
    done = await _acquire_all(limiter, [10**9] * 50)
    assert {t for _, t in done} == {0.0}
    stats = limiter.statistics()
    assert stats == RateLimiterStatistics(None, None, None, 0)


@pytest.mark.anyio
async def test_requests_per_minute_starts_full_then_paces() -> None:
    limiter = RateLimiter(60, None)
    done = await _acquire_all(limiter, [1] * 150)
    times = [t for _, t in done]
    # a minute's worth at once, then one a second
    assert times[:60] == [0.0] * 60
    assert times[60:] == approx([float(k) for k in range(1, 91)])
    # any 60 s window: at most rpm plus the initial full bucket, and the steady rate after
    assert _max_in_window(times, 60.0) <= 2 * 60
    assert _max_in_window([t for t in times if t > 0], 60.0) <= 60
    _check_bucket_conformance([(t, 1) for t in times], 60, 1.0)


@pytest.mark.anyio
async def test_requests_per_minute_over_several_minutes_is_the_configured_rate() -> None:
    limiter = RateLimiter(30, None)
    done = await _acquire_all(limiter, [1] * 200)
    times = [t for _, t in done]
    assert times[-1] == approx((200 - 30) * 2.0)  # 30 at once, then one every 2 s
    for minute in range(1, 5):
        window = [t for t in times if 60 * minute <= t < 60 * (minute + 1)]
        assert len(window) == 30


@pytest.mark.anyio
async def test_tokens_per_minute_paces_by_estimate() -> None:
    limiter = RateLimiter(None, 600)  # 10 tokens/s
    amounts = [100, 250, 50, 300, 100, 100, 150, 600, 50, 200]
    done = await _acquire_all(limiter, amounts, spacing=1.0)
    assert [i for i, _ in done] == list(range(len(amounts)))  # FIFO
    sends = [(t, amounts[i]) for i, t in done]
    _check_bucket_conformance(sends, 600, 10.0)
    # the first 600 tokens' worth goes at once, the rest at 10 tokens/s: the last of the
    # 1,900 tokens can go once 1,300 have refilled
    times = dict(done)
    assert times[0] == 0.0
    assert times[2] == 2.0
    assert times[9] == approx(130.0)


@pytest.mark.anyio
async def test_waiting_for_tokens_never_livelocks_on_float_rounding() -> None:
    # arrivals a millisecond apart leave levels like 119.99999999999997 at t=40.0: the
    # wait left (3e-15 s) is below the clock's resolution there, so sleeping it must not
    # turn into an endless loop of zero-length sleeps that stops the virtual clock
    limiter = RateLimiter(None, 600)
    amounts = [100, 250, 50, 300, 100, 80, 120, 600, 10, 200]
    done = await _acquire_all(limiter, amounts, spacing=0.001)
    assert [i for i, _ in done] == list(range(len(amounts)))
    _check_bucket_conformance([(t, amounts[i]) for i, t in done], 600, 10.0)
    assert dict(done)[9] == approx(121.0, abs=0.01)


@pytest.mark.anyio
async def test_tokens_per_minute_exact_schedule() -> None:
    limiter = RateLimiter(None, 600)  # capacity 600, 10 tokens/s
    done = await _acquire_all(limiter, [300, 300, 300, 300, 50], spacing=0.001)
    assert [i for i, _ in done] == [0, 1, 2, 3, 4]
    assert [t for _, t in done] == approx([0.0, 0.001, 30.0, 60.0, 65.0], abs=0.01)


@pytest.mark.anyio
async def test_reconcile_refunds_and_charges_tokens() -> None:
    limiter = RateLimiter(None, 600)
    await limiter.acquire(600)
    limiter.reconcile(estimated=600, actual=100)  # 500 back
    start = trio.current_time()
    await limiter.acquire(500)
    assert trio.current_time() == start  # no wait: the refund was real
    limiter.reconcile(estimated=10, actual=310)  # 300 more than estimated
    await limiter.acquire(1)
    assert trio.current_time() - start == approx(30.1)  # the charge left a debt of 300


@pytest.mark.anyio
async def test_reconcile_refund_is_capped_at_capacity() -> None:
    limiter = RateLimiter(None, 600)
    await limiter.acquire(100)
    limiter.reconcile(estimated=100, actual=0)  # back to full, not 700
    limiter.reconcile(estimated=10_000, actual=0)
    await limiter.acquire(600)
    start = trio.current_time()
    await limiter.acquire(1)
    assert trio.current_time() - start == approx(0.1)


@pytest.mark.anyio
async def test_reconcile_without_a_token_limit_is_a_no_op() -> None:
    limiter = RateLimiter(60, None)
    limiter.reconcile(estimated=10, actual=10_000)
    done = await _acquire_all(limiter, [1] * 60)
    assert {t for _, t in done} == {0.0}


@pytest.mark.anyio
async def test_pause_holds_every_sender_until_it_ends() -> None:
    limiter = RateLimiter(None, None)
    limiter.pause(trio.current_time() + 5)
    assert limiter.active
    assert limiter.statistics().paused_until == 5
    done = await _acquire_all(limiter, [1, 1, 1], spacing=1.0)
    assert [t for _, t in done] == [5.0, 5.0, 5.0]
    assert limiter.statistics().paused_until is None
    # later, nothing waits
    await limiter.acquire(1)
    assert trio.current_time() == 5.0


@pytest.mark.anyio
async def test_pause_never_shortens_an_earlier_pause() -> None:
    limiter = RateLimiter(None, None)
    limiter.pause(10.0)
    limiter.pause(3.0)
    await limiter.acquire(1)
    assert trio.current_time() == 10.0


@pytest.mark.anyio
async def test_pause_set_while_waiting_for_rate_is_honoured() -> None:
    limiter = RateLimiter(60, None)
    for _ in range(60):
        await limiter.acquire(1)
    times: list[float] = []

    async def waiter() -> None:
        await limiter.acquire(1)  # would go at t=1
        times.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(0.5)
        assert limiter.statistics().waiting == 1
        limiter.pause(8.0)
    assert times == [8.0]


@pytest.mark.anyio
async def test_waiters_are_served_first_come_first_served() -> None:
    limiter = RateLimiter(None, 600)
    await limiter.acquire(600)  # empty
    # a big request first, then small ones: the small ones must not overtake it
    done = await _acquire_all(limiter, [600, 10, 10, 10, 600, 10], spacing=0.01)
    assert [i for i, _ in done] == [0, 1, 2, 3, 4, 5]
    times = [t for _, t in done]
    assert times == sorted(times)
    assert times[0] == approx(60.0)  # waits for a full bucket despite 10-token waiters
    assert times[1] == approx(61.0)


@pytest.mark.anyio
async def test_fifo_among_many_request_waiters() -> None:
    # (a dyadic rate and grid: the float-rounding livelock has its own test above)
    limiter = RateLimiter(15, None)
    done = await _acquire_all(limiter, [1] * 40, spacing=1 / 64)
    assert [i for i, _ in done] == list(range(40))
    assert [t for _, t in done][15:] == approx([4.0 * k for k in range(1, 26)])


@pytest.mark.anyio
async def test_statistics_count_waiters_and_rates() -> None:
    limiter = RateLimiter(60, 1_000)
    assert limiter.statistics().requests_per_minute == 60
    assert limiter.statistics().tokens_per_minute == 1_000
    for _ in range(60):
        await limiter.acquire(1)
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(limiter.acquire, 1)
        await trio.sleep(0.5)
        assert limiter.statistics().waiting == 3
    assert limiter.statistics().waiting == 0


@pytest.mark.anyio
async def test_request_bigger_than_the_tpm_budget_goes_after_a_full_bucket() -> None:
    limiter = RateLimiter(None, 600)
    await limiter.acquire(100)
    start = trio.current_time()
    with trio.fail_after(1_000):
        await limiter.acquire(5_000)  # more than a minute's worth
    assert trio.current_time() - start == approx(10.0)  # 100 to refill to full
    with trio.fail_after(1_000):
        await limiter.acquire(10)
    assert trio.current_time() - start == approx(10.0 + 4_410 / 10)


@pytest.mark.anyio
async def test_learn_adopts_server_limits_with_remaining_as_level() -> None:
    limiter = RateLimiter(None, None)
    await limiter.acquire(1)  # started, inactive
    limiter.learn(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "2",
            "x-ratelimit-limit-tokens": "6000",
            "x-ratelimit-remaining-tokens": "5000",
        }
    )
    stats = limiter.statistics()
    assert stats.requests_per_minute == 60
    assert stats.tokens_per_minute == 6000
    assert limiter.active
    done = await _acquire_all(limiter, [1, 1, 1, 1])
    assert sorted(t for _, t in done) == approx([0.0, 0.0, 1.0, 2.0])


@pytest.mark.anyio
async def test_learn_tokens_remaining_sets_the_initial_level() -> None:
    limiter = RateLimiter(None, None)
    await limiter.acquire(1)
    limiter.learn({"x-ratelimit-limit-tokens": "600", "x-ratelimit-remaining-tokens": "0"})
    assert limiter.statistics().requests_per_minute is None
    await limiter.acquire(50)
    assert trio.current_time() == approx(5.0)


@pytest.mark.anyio
async def test_learn_without_remaining_starts_full() -> None:
    limiter = RateLimiter(None, None)
    await limiter.acquire(1)
    limiter.learn({"x-ratelimit-limit-requests": "120"})
    done = await _acquire_all(limiter, [1] * 121)
    assert max(t for _, t in done) == approx(0.5)


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "lots", ""])
@pytest.mark.anyio
async def test_learn_ignores_unusable_limits(value: str) -> None:
    limiter = RateLimiter(None, None)
    await limiter.acquire(1)
    limiter.learn({"x-ratelimit-limit-requests": value, "x-ratelimit-limit-tokens": value})
    assert not limiter.active
    assert limiter.statistics().requests_per_minute is None


@pytest.mark.anyio
async def test_learn_never_raises_the_users_own_limit() -> None:
    limiter = RateLimiter(30, None)
    await limiter.acquire(1)
    limiter.learn({"x-ratelimit-limit-requests": "6000"})
    assert limiter.statistics().requests_per_minute == 30
    limiter.learn({"x-ratelimit-limit-requests": "12"})  # the server's is lower: it wins
    assert limiter.statistics().requests_per_minute == 12


@pytest.mark.anyio
async def test_learn_resizes_an_existing_bucket_and_caps_its_level() -> None:
    limiter = RateLimiter(120, None)
    await limiter.acquire(1)  # level 119
    limiter.learn({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "60"})
    assert limiter.statistics().requests_per_minute == 60
    done = await _acquire_all(limiter, [1] * 61)
    times = sorted(t for _, t in done)
    assert times[:60] == [0.0] * 60  # level capped to the new capacity
    assert times[60] == approx(1.0)  # then the new rate: one a second


@pytest.mark.anyio
async def test_drain_empties_the_buckets() -> None:
    limiter = RateLimiter(60, None)
    await limiter.acquire(1)
    limiter.drain()
    await limiter.acquire(1)
    assert trio.current_time() == approx(1.0)


# ============================================================================ AdaptiveController


def _controller(
    concurrency: int = 16, *, enabled: bool = True, rates: RateLimiter | None = None
) -> tuple[AdaptiveController, trio.CapacityLimiter, RateLimiter]:
    limiter = trio.CapacityLimiter(concurrency)
    rates = rates or RateLimiter(None, None)
    controller = AdaptiveController(limiter, maximum=concurrency, rates=rates, enabled=enabled)
    return controller, limiter, rates


@pytest.mark.anyio
async def test_429_halves_the_capacity_limiter_and_pauses() -> None:
    controller, limiter, rates = _controller(16)
    controller.on_rate_limited(2.0, {}, quota=True)
    assert limiter.total_tokens == 8
    assert controller.limit == 8
    assert controller.decreases == 1
    assert rates.statistics().paused_until == 2.0
    start = trio.current_time()
    await rates.acquire(1)
    assert trio.current_time() - start == 2.0


@pytest.mark.anyio
async def test_a_burst_of_429s_is_one_decrease_per_cooldown() -> None:
    controller, limiter, _ = _controller(16)
    for _ in range(10):
        controller.on_rate_limited(None, {}, quota=True)
    assert limiter.total_tokens == 8
    await trio.sleep(0.99)
    controller.on_rate_limited(None, {}, quota=True)
    assert limiter.total_tokens == 8  # still in the 1 s cooldown
    await trio.sleep(0.01)
    controller.on_rate_limited(None, {}, quota=True)
    assert limiter.total_tokens == 4
    assert controller.decreases == 2


@pytest.mark.anyio
async def test_cooldown_stretches_to_the_retry_after() -> None:
    controller, limiter, _ = _controller(16)
    controller.on_rate_limited(5.0, {}, quota=True)
    await trio.sleep(4.0)
    controller.on_rate_limited(5.0, {})  # the same storm
    assert limiter.total_tokens == 8
    await trio.sleep(1.0)
    controller.on_rate_limited(5.0, {}, quota=True)
    assert limiter.total_tokens == 4


@pytest.mark.anyio
async def test_concurrency_never_goes_below_one() -> None:
    controller, limiter, _ = _controller(5)
    seen = []
    for _ in range(10):
        controller.on_rate_limited(None, {}, quota=True)
        seen.append(limiter.total_tokens)
        await trio.sleep(1.0)
    assert seen == [2, 1, 1, 1, 1, 1, 1, 1, 1, 1]


@pytest.mark.anyio
async def test_clean_successes_grow_by_one_per_round() -> None:
    controller, limiter, _ = _controller(16)
    controller.on_rate_limited(None, {}, quota=True)
    assert limiter.total_tokens == 8
    for _ in range(7):
        controller.on_clean_success()
    assert limiter.total_tokens == 8  # 7/8 of a round
    controller.on_clean_success()
    assert limiter.total_tokens == 9
    for _ in range(9):
        controller.on_clean_success()
    assert limiter.total_tokens == 10


@pytest.mark.parametrize("limit", [2, 3, 6, 7, 10, 13, 30])
@pytest.mark.anyio
async def test_exactly_one_round_of_clean_successes_adds_one(limit: int) -> None:
    # "a clean success adds 1/concurrency, so the limit grows by one per round": ``limit``
    # successes, not ``limit + 1`` (ten credits of 1/10 must add up to a whole one)
    controller, limiter, _ = _controller(64)
    limiter.total_tokens = limit
    for _ in range(limit - 1):
        controller.on_clean_success()
    assert limiter.total_tokens == limit
    controller.on_clean_success()
    assert limiter.total_tokens == limit + 1


@pytest.mark.anyio
async def test_growth_stops_at_limits_concurrency() -> None:
    controller, limiter, _ = _controller(4)
    for _ in range(1_000):
        controller.on_clean_success()
    assert limiter.total_tokens == 4
    controller.on_rate_limited(None, {}, quota=True)
    assert limiter.total_tokens == 2
    for _ in range(1_000):
        controller.on_clean_success()
    assert limiter.total_tokens == 4


@pytest.mark.anyio
async def test_a_429_forfeits_the_growth_credit() -> None:
    controller, limiter, _ = _controller(16)
    controller.on_rate_limited(None, {}, quota=True)  # 8
    for _ in range(7):
        controller.on_clean_success()
    await trio.sleep(1)
    controller.on_rate_limited(None, {}, quota=True)  # 4, credit lost
    for _ in range(3):
        controller.on_clean_success()
    assert limiter.total_tokens == 4
    controller.on_clean_success()
    assert limiter.total_tokens == 5


@pytest.mark.anyio
async def test_429_learns_and_drains_the_rate_buckets() -> None:
    rates = RateLimiter(None, None)
    await rates.acquire(1)
    controller, _, _ = _controller(8, rates=rates)
    controller.on_rate_limited(None, {"x-ratelimit-limit-requests": "60"}, quota=True)
    assert rates.statistics().requests_per_minute == 60
    await rates.acquire(1)  # the server says the quota is spent: wait for a token
    assert trio.current_time() == approx(1.0)


@pytest.mark.anyio
async def test_on_headers_learns_only_limit_headers() -> None:
    controller, _, rates = _controller(8)
    await rates.acquire(1)
    controller.on_headers({"x-ratelimit-remaining-requests": "0"})
    assert not rates.active
    controller.on_headers({"x-ratelimit-limit-tokens": "6000"})
    assert rates.statistics().tokens_per_minute == 6000


@pytest.mark.anyio
async def test_disabled_controller_changes_nothing() -> None:
    rates = RateLimiter(60, None)
    await rates.acquire(1)
    controller, limiter, _ = _controller(8, enabled=False, rates=rates)
    limiter.total_tokens = 4
    for _ in range(5):
        controller.on_rate_limited(30.0, {"x-ratelimit-limit-requests": "6"}, quota=True)
        await trio.sleep(2)
    for _ in range(100):
        controller.on_clean_success()
    controller.on_headers({"x-ratelimit-limit-requests": "6"})
    assert limiter.total_tokens == 4
    assert controller.decreases == 0
    stats = rates.statistics()
    assert stats.paused_until is None
    assert stats.requests_per_minute == 60
    start = trio.current_time()
    await rates.acquire(1)
    assert trio.current_time() == start  # not drained


# ============================================================================ through Client


def _rate_limited(retry_after: str = "1") -> httpx2.Response:
    """A 429 of a spent quota (its remaining requests at 0)."""
    return status(429, headers={"retry-after": retry_after, "x-ratelimit-remaining-requests": "0"})


def _noise(retry_after: str = "1") -> httpx2.Response:
    """A 429 with nothing saying the quota is spent: an overloaded replica."""
    return status(429, headers={"retry-after": retry_after})


async def _two_requests(
    first: httpx2.Response, *, adaptive: bool = True
) -> tuple[list[float], int]:
    """A request answered ``first`` (then ok) at t=0, another at t=1, concurrency 4: when
    the server saw each attempt, and the concurrency after."""
    script = Script(first, default=lambda r: ok())
    limits = pt.Limits(concurrency=4, adaptive=adaptive)
    async with make_client(script, retry=fixed(), limits=limits) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.chat, MESSAGES)

            async def later() -> None:
                await trio.sleep(1)
                await client.chat(MESSAGES)

            nursery.start_soon(later)
        return sorted(script.times), client.statistics().concurrency


@pytest.mark.anyio
async def test_a_noise_429_makes_only_its_request_wait() -> None:
    times, concurrency = await _two_requests(_noise("5"))
    assert concurrency == 4  # no decrease
    assert times == [0.0, 1.0, 5.0]  # the other request was not paused


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}},
        {"error": {"message": "Monthly quota exhausted", "type": "requests"}},
    ],
)
@pytest.mark.anyio
async def test_a_429_whose_body_says_quota_pauses_the_client(body: dict[str, Any]) -> None:
    times, concurrency = await _two_requests(status(429, body, headers={"retry-after": "5"}))
    assert concurrency == 2
    assert times == [0.0, 5.0, 5.0]


@pytest.mark.anyio
async def test_clustering_429s_are_taken_for_a_spent_quota() -> None:
    # Random 429s at 10 %: noise, never a pause.  Then every answer a 429: a quota.
    calls = itertools.count()
    storm = 50

    def handler(request: httpx2.Request) -> httpx2.Response:
        n = next(calls)
        if n < storm:
            return _noise("0.1") if n % 10 == 9 else ok()
        return _noise("0.1") if n < storm + 6 else ok()

    async with make_client(
        handler, retry=fixed(attempts=10), limits=pt.Limits(concurrency=8)
    ) as client:
        for _ in range(storm - 5):
            await client.chat(MESSAGES)
        assert client.statistics().concurrency == 8  # 10 % of 429s: noise
        await trio.sleep(10)  # the recent past fades (half-life CLUSTER_HALF_LIFE)
        await client.chat(MESSAGES)  # six 429s in a row, then a success
        assert client.statistics().concurrency < 8


@pytest.mark.anyio
async def test_client_shrinks_on_a_429_storm_and_grows_back() -> None:
    samples: list[tuple[float, int]] = []
    calls = itertools.count()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        n = next(calls)
        await trio.sleep(0.1)
        return _rate_limited("1") if n < 8 else ok()

    client = make_client(handler, limits=pt.Limits(concurrency=8), retry=fixed())
    async with client:
        assert client.statistics().concurrency == 8

        def progress(_: pt.BatchStatistics) -> None:
            samples.append((trio.current_time(), client.statistics().concurrency))

        results = await client.chat_batch([MESSAGES] * 60, on_progress=progress)
        final = client.statistics().concurrency
    assert all(r.ok for r in results)
    levels = [c for _, c in samples]
    assert min(levels) == 4  # one burst of 8 429s: one halving
    assert levels[0] == 4
    assert final == 8  # back to Limits.concurrency after enough clean successes
    assert levels == sorted(levels)  # never shrinks again once the storm is over
    assert max(levels) == 8


@pytest.mark.anyio
async def test_client_pauses_every_sender_for_retry_after() -> None:
    times, concurrency = await _two_requests(_rate_limited("5"))
    assert concurrency == 2
    assert times == [0.0, 5.0, 5.0]


@pytest.mark.anyio
async def test_client_with_adaptive_off_neither_shrinks_nor_pauses() -> None:
    times, concurrency = await _two_requests(_rate_limited("5"), adaptive=False)
    assert concurrency == 4
    assert times == [0.0, 1.0, 5.0]  # only the 429'd request waits


@pytest.mark.anyio
async def test_only_first_attempt_successes_grow_the_limit() -> None:
    script = Script(_rate_limited("1"), ok(), ok(), ok(), ok(), status(503), ok(), ok())
    async with make_client(script, retry=fixed(), limits=pt.Limits(concurrency=8)) as client:
        await client.chat(MESSAGES)  # 429 then a success on attempt 2: not clean
        assert client.statistics().concurrency == 4
        for _ in range(3):
            await client.chat(MESSAGES)  # 3/4 of a round
        assert client.statistics().concurrency == 4
        await client.chat(MESSAGES)  # succeeds on attempt 2: no credit
        assert client.statistics().concurrency == 4
        await client.chat(MESSAGES)  # the 4th clean success
        assert client.statistics().concurrency == 5


@pytest.mark.anyio
async def test_client_learns_rate_from_response_headers() -> None:
    headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "1"}
    script = Script(default=lambda r: ok(headers=headers))
    async with make_client(script) as client:
        for _ in range(4):
            await client.chat(MESSAGES)
    # the first response says 1 left of 60/min: the client paces itself at 1/s from there
    assert script.times == approx([0.0, 0.0, 1.0, 2.0])


@pytest.mark.anyio
async def test_client_requests_per_minute_limit_holds_across_calls() -> None:
    script = Script(default=lambda r: ok())
    async with (
        make_client(script, limits=pt.Limits(requests_per_minute=10)) as client,
        trio.open_nursery() as nursery,
    ):
        for _ in range(25):
            nursery.start_soon(client.chat, MESSAGES)
    assert script.times[:10] == [0.0] * 10
    assert sorted(script.times)[10:] == approx([6.0 * k for k in range(1, 16)])


@pytest.mark.anyio
async def test_client_reconciles_estimates_with_usage() -> None:
    # estimate: 1 message "Hi" = 1 + 4 prompt, + max_tokens 595 = 600: the whole budget
    script = Script(default=lambda r: ok(prompt_tokens=5, completion_tokens=5))
    limits = pt.Limits(tokens_per_minute=600)
    async with make_client(script, limits=limits) as client:
        for _ in range(3):
            await client.chat(MESSAGES, max_tokens=595)
    # each used 10 of its 600: the refund lets the next go after refilling only 10 tokens
    assert script.times == approx([0.0, 1.0, 2.0])


@pytest.mark.anyio
async def test_client_request_over_the_whole_tpm_budget_does_not_deadlock() -> None:
    script = Script(default=after(0.5, ok(prompt_tokens=5, completion_tokens=5)))
    limits = pt.Limits(tokens_per_minute=100, concurrency=4)
    async with make_client(script, limits=limits) as client:
        with trio.fail_after(3_600):
            results = await client.chat_batch([MESSAGES] * 4, max_tokens=1_000)
    assert all(r.ok for r in results)
    assert script.calls == 4
    times = sorted(script.times)
    assert times[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(times))  # one at a time, each after a refill
