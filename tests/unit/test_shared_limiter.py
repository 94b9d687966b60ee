"""SharedRateLimiter's decisions without Redis: a fake store, on trio's MockClock.

What a failed update keeps (charges, drains, pauses, what the server said) and drops
(refunds); what requests do while the store is unavailable, in each mode; the events.
The real script and Redis are tested in ``tests/shared``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._quota._redis_store import Taken, Update
from paradigm_trio._quota._shared import SharedRateLimiter

pytestmark = pytest.mark.anyio

QUOTA = pt.RedisQuota("redis://127.0.0.1:1/0", name="fake", heartbeat=5.0)


class FakeStore:
    """Grants everything at once while ``up``; raises QuotaUnavailableError while not."""

    def __init__(self) -> None:
        self.up = True
        self.updates: list[Update] = []
        self.taken = 0
        self.workers = 4

    def _check(self) -> None:
        if not self.up:
            raise pt.QuotaUnavailableError("Redis did not answer within 1s")

    async def start(self, nursery: trio.Nursery) -> None:
        await trio.lowlevel.checkpoint()

    async def take(self, rates: Sequence[float], tokens: int) -> Taken:
        await trio.lowlevel.checkpoint()
        self._check()
        self.taken += 1
        return Taken(0.0, 1e9, self.taken, 0.0, rates[0], rates[1], self.workers)

    async def update(self, rates: Sequence[float], update: Update) -> list[float]:
        await trio.lowlevel.checkpoint()
        self._check()
        self.updates.append(update)
        return [0.0] * 5

    async def beat(self, rates: Sequence[float]) -> int:
        await trio.lowlevel.checkpoint()
        self._check()
        return self.workers

    async def leave(self, rates: Sequence[float]) -> int:
        await trio.lowlevel.checkpoint()
        self._check()
        return self.workers - 1


def _limiter(store: FakeStore, events: list[pt.Event], quota: pt.RedisQuota = QUOTA,
             tpm: float | None = 60_000) -> SharedRateLimiter:  # fmt: skip
    return SharedRateLimiter(quota, 600, tpm, emit=events.append, store=store)  # type: ignore[arg-type]


async def test_a_failed_update_keeps_what_errs_on_the_safe_side() -> None:
    store, events = FakeStore(), []
    limiter = _limiter(store, events)
    async with limiter.running():
        await limiter.acquire(100)
        store.up = False
        limiter.reconcile(100, 40)  # a refund of 60
        limiter.reconcile(100, 130)  # a charge of 30
        limiter.drain()
        limiter.pause(trio.current_time() + 30)
        limiter.learn({"x-ratelimit-limit-requests": "500"})
        await trio.sleep(0.1)  # the flush fails
        assert store.updates == []
        store.up = True
        await trio.sleep(5)  # reached again; the kept part is sent
    sent = store.updates[0]
    assert sent.refund == 0  # may have run: dropped
    assert sent.charge == 30
    assert sent.drain
    assert sent.pause_until > 0
    assert sent.learnt == {"requests": (500.0, None, None, None)}


async def test_wait_mode_sends_nothing_until_the_store_is_back() -> None:
    store, events = FakeStore(), []
    limiter = _limiter(store, events)
    async with limiter.running():
        await limiter.acquire(1)
        store.up = False
        done: list[float] = []

        async def one() -> None:
            await limiter.acquire(1)
            done.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            nursery.start_soon(one)
            await trio.sleep(30)
            assert done == []
            back = trio.current_time()
            store.up = True
        assert all(t - back <= 1.1 for t in done)  # backoff at most 1 s
    kinds = [type(e) for e in events]
    assert kinds == [pt.SharedQuotaUnavailable, pt.SharedQuotaRestored]
    lost, restored = events
    assert isinstance(lost, pt.SharedQuotaUnavailable)
    assert (lost.fallback, lost.workers, lost.name) == ("wait", 4, "fake")
    assert isinstance(restored, pt.SharedQuotaRestored)
    assert restored.outage == pytest.approx(30, abs=1.2)


async def test_local_mode_sends_at_the_rate_divided_by_the_live_workers() -> None:
    store, events = FakeStore(), []
    limiter = _limiter(store, events, QUOTA.replace(on_unavailable="local"), tpm=None)
    async with limiter.running():
        await limiter.acquire(1)  # 4 live workers: 600/4 = 150 a minute alone
        store.up = False
        start = trio.current_time()
        sent: list[float] = []
        with trio.move_on_after(60):
            while True:
                mark = await limiter.acquire(1)
                assert math.isnan(mark[0])  # not Redis's (its time)
                sent.append(trio.current_time() - start)
        store.up = True
        await trio.sleep(2)
        await limiter.acquire(1)
    assert 148 <= len(sent) <= 151  # from an empty bucket: none at once
    assert sent[0] >= 0.39
    assert store.updates[0].drain  # what was sent alone: the shared bucket is emptied
    assert [type(e) for e in events] == [pt.SharedQuotaUnavailable, pt.SharedQuotaRestored]


async def test_a_store_down_at_open_does_not_stop_the_client() -> None:
    store, events = FakeStore(), []
    store.up = False
    limiter = _limiter(store, events)
    async with limiter.running():
        with trio.move_on_after(10):
            await limiter.acquire(1)
        assert [type(e) for e in events] == [pt.SharedQuotaUnavailable]
        store.up = True
        await limiter.acquire(1)
    assert limiter.statistics().requests_per_minute == 600


@pytest.mark.parametrize(
    ("fallback", "doing"),
    [("wait", "requests wait (nothing is sent)"), ("local", "local share (1/1 of")],
)
async def test_a_lost_redis_is_said_at_once_naming_the_url_without_its_password(
    caplog: pytest.LogCaptureFixture, fallback: str, doing: str
) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")
    store, events, times = FakeStore(), [], []

    def emit(event: pt.Event) -> None:
        events.append(event)
        times.append(trio.current_time())

    store.up = False
    quota = QUOTA.replace(url="redis://app:s3cret@127.0.0.1:1/0", on_unavailable=fallback)
    limiter = SharedRateLimiter(quota, 600, None, emit=emit, store=store)  # type: ignore[arg-type]
    async with limiter.running():
        with trio.move_on_after(5):
            await limiter.acquire(1)
        store.up = True
        await limiter.acquire(1)
    (lost,) = [r for r in caplog.records if r.event == "shared_quota_unavailable"]
    assert lost.levelno == logging.WARNING
    assert "redis://app:***@127.0.0.1:1/0" in lost.getMessage()
    assert doing in lost.getMessage()
    assert (lost.quota, lost.fallback) == ("fake", fallback)
    assert "s3cret" not in lost.getMessage() + str(lost.__dict__)
    assert events[0].url == "redis://app:***@127.0.0.1:1/0"  # type: ignore[union-attr]
    (back,) = [r for r in caplog.records if r.event == "shared_quota_restored"]
    assert back.levelno == logging.INFO
    assert times[0] <= quota.timeout  # said by the first request, not after a while


async def test_a_lost_redis_is_said_without_a_query_string_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")
    store, events = FakeStore(), []
    store.up = False
    quota = QUOTA.replace(url="redis://127.0.0.1:1/0?password=s3cret&db=0")
    limiter = SharedRateLimiter(quota, 600, None, emit=events.append, store=store)  # type: ignore[arg-type]
    async with limiter.running():
        with trio.move_on_after(5):
            await limiter.acquire(1)
    (lost,) = [r for r in caplog.records if r.event == "shared_quota_unavailable"]
    assert "redis://127.0.0.1:1/0?password=***&db=0" in lost.getMessage()
    assert "s3cret" not in lost.getMessage() + str(lost.__dict__)
    assert "s3cret" not in repr(events)
