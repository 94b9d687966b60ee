"""Clients sharing one quota in a real Redis, against the mock server (real sockets).

Several clients in one trio run stand for several workers: each has its own buckets,
lock and heartbeat, and only Redis joins them (the multi-process runs are in
``test_workers.py``).  Judged from the mock's side: what it let through and refused.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio

import mock_server as ms
import paradigm_trio as pt
from paradigm_trio._quota._shared import SharedRateLimiter

from ..redis_helpers import RedisServer

pytestmark = pytest.mark.anyio

HELLO = [{"role": "user", "content": "Hello"}]


def _client(url: str, quota: pt.RedisQuota, rpm: float, events: list[pt.Event] | None = None,
            **limits: object) -> pt.Client:  # fmt: skip
    return pt.Client(
        api_key="test-key",
        base_url=url,
        limits=pt.Limits(requests_per_minute=rpm, shared=quota, **limits),  # type: ignore[arg-type]
        retry=pt.RetryPolicy(attempts=8),
        on_event=None if events is None else events.append,
    )


def _outage_events(events: list[pt.Event]) -> list[type]:
    kinds = (pt.SharedQuotaUnavailable, pt.SharedQuotaRestored)
    return [type(e) for e in events if isinstance(e, kinds)]


async def _hammer(client: pt.Client, seconds: float, tasks: int, done: list[float]) -> None:
    """``tasks`` tasks sending one request after another for ``seconds``."""

    async def one() -> None:
        while True:
            await client.chat(HELLO)
            done.append(trio.current_time())

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(one)


async def test_three_clients_with_the_full_rate_each_stay_under_the_quota(
    redis_server: RedisServer,
) -> None:
    rpm = 240  # 4 a second
    quota = pt.RedisQuota(redis_server.url, name="three")
    done: list[float] = []
    async with ms.serve(ms.MockConfig(rpm=rpm)) as server:
        async with (
            _client(server.url, quota, rpm) as a,
            _client(server.url, quota, rpm) as b,
            _client(server.url, quota, rpm) as c,
        ):
            state = await pt.quota_state(quota)
            assert len(state.workers) == 3
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for client in (a, b, c):
                    nursery.start_soon(_hammer, client, 5.0, 8, done)
            elapsed = trio.current_time() - start
        outcomes = server.stats().by_outcome
    assert outcomes.get("quota", 0) == 0, outcomes  # not one 429
    # The shared bucket starts empty: rpm/60 a second from the start, no burst.
    assert len(done) <= rpm / 60 * elapsed + 1
    assert len(done) >= 0.8 * rpm / 60 * 5.0
    after = await pt.quota_state(quota)
    assert after.workers == ()  # each client left on close
    assert after.requests_per_minute == rpm  # learnt from the server's headers


async def test_without_sharing_the_same_clients_meet_429s() -> None:
    """The problem the shared quota solves (and so the test above could fail).

    Each client's bucket of a full minute lets its 100 requests go at once; the server's
    lets 240 of the 300 through, plus four a second: unless sending 300 requests takes
    this machine more than 15 s, some get a 429.  (Not adaptive: a client that learns the
    quota from the answers' headers paces itself, and whether it learns it before the
    quota runs out depends on the machine's speed.)
    """
    rpm = 240
    async with ms.serve(ms.MockConfig(rpm=rpm)) as server:
        clients = [
            pt.Client(
                api_key="sk-shared-test",
                base_url=server.url,
                retry=pt.RetryPolicy.no_retries(),
                limits=pt.Limits(requests_per_minute=rpm, adaptive=False),
            )
            for _ in range(3)
        ]
        async with clients[0] as a, clients[1] as b, clients[2] as c:
            async with trio.open_nursery() as nursery:
                for client in (a, b, c):
                    nursery.start_soon(client.chat_batch, [HELLO] * 100)
        outcomes = server.stats().by_outcome
    assert outcomes.get("quota", 0) > 0


@asynccontextmanager
async def _limiters(
    quota: pt.RedisQuota, n: int, rpm: float | None, tpm: float | None,
    emit: Callable[[pt.Event], None] = lambda _: None,
) -> AsyncIterator[list[SharedRateLimiter]]:  # fmt: skip
    limiters = [SharedRateLimiter(quota, rpm, tpm, emit=emit) for _ in range(n)]
    async with limiters[0].running():
        if n == 1:
            yield limiters
            return
        async with limiters[1].running():
            yield limiters


async def test_a_pause_in_one_worker_holds_every_worker(redis_server: RedisServer) -> None:
    quota = pt.RedisQuota(redis_server.url, name="pause")
    async with _limiters(quota, 2, 6000, None) as (a, b):
        await trio.sleep(0.2)  # some quota to spend
        await b.acquire(0)
        a.pause(trio.current_time() + 1.5)  # a 429 with Retry-After: 1.5 in worker a
        await trio.sleep(0.2)  # the update reaches Redis
        start = trio.current_time()
        await b.acquire(0)
        assert trio.current_time() - start >= 1.2


async def test_usage_refunds_and_charges_reach_the_shared_bucket(
    redis_server: RedisServer,
) -> None:
    quota = pt.RedisQuota(redis_server.url, name="usage")
    async with _limiters(quota, 1, None, 60_000) as (limiter,):
        await trio.sleep(0.5)  # about 500 tokens in the bucket
        await limiter.acquire(400)
        before = (await pt.quota_state(quota, tokens_per_minute=60_000)).tokens_available
        limiter.reconcile(400, 100)  # 300 given back
        await trio.sleep(0.2)
        after = (await pt.quota_state(quota, tokens_per_minute=60_000)).tokens_available
        assert after - before == pytest.approx(300 + 1000 * 0.2, abs=60)
        limiter.reconcile(100, 700)  # 600 more charged
        await trio.sleep(0.2)
        charged = (await pt.quota_state(quota, tokens_per_minute=60_000)).tokens_available
        assert charged - after == pytest.approx(-600 + 1000 * 0.2, abs=60)


async def test_redis_gone_then_back_in_wait_mode_loses_nothing(
    redis_server: RedisServer,
) -> None:
    rpm = 600
    events: list[pt.Event] = []
    quota = pt.RedisQuota(redis_server.url, name="outage", timeout=0.3)
    done: list[float] = []
    async with ms.serve(ms.MockConfig(rpm=rpm)) as server:
        async with _client(server.url, quota, rpm, events) as client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_hammer, client, 5.0, 4, done)
                await trio.sleep(1.5)
                redis_server.stop()
                stopped = trio.current_time()
                await trio.sleep(2.0)
                redis_server.start()
                restarted = trio.current_time()
        log = server.requests()
        outcomes = server.stats().by_outcome
    assert outcomes.get("quota", 0) == 0
    assert set(outcomes) == {"ok"}  # every request sent succeeded
    assert _outage_events(events) == [pt.SharedQuotaUnavailable, pt.SharedQuotaRestored]
    lost = next(e for e in events if isinstance(e, pt.SharedQuotaUnavailable))
    assert (lost.fallback, lost.name) == ("wait", "outage")
    assert lost.error
    # Nothing was sent while Redis was gone (a request let through just before may arrive
    # a little later), and sending resumed after it came back.
    during = [r for r in log if stopped + 0.3 < r.arrival < restarted]
    assert during == []
    assert any(r.arrival > restarted for r in log)
    # A Redis that lost its data starts the quota empty: no burst after the restart.
    after = [r.arrival for r in log if r.arrival > restarted]
    assert len(after) <= rpm / 60 * (after[-1] - restarted) + 1


async def test_redis_gone_in_local_mode_goes_on_at_its_share(redis_server: RedisServer) -> None:
    rpm = 600
    events: list[pt.Event] = []
    quota = pt.RedisQuota(redis_server.url, name="local", timeout=0.3, on_unavailable="local")
    done: list[float] = []
    async with ms.serve(ms.MockConfig(rpm=rpm)) as server:
        async with (
            _client(server.url, quota, rpm, events) as a,
            _client(server.url, quota, rpm) as b,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_hammer, a, 5.0, 4, done)
                nursery.start_soon(_hammer, b, 5.0, 4, [])
                await trio.sleep(1.5)
                redis_server.stop()
                stopped = trio.current_time()
                await trio.sleep(2.0)
                redis_server.start()
        outcomes = server.stats().by_outcome
    assert outcomes.get("quota", 0) == 0
    lost = next(e for e in events if isinstance(e, pt.SharedQuotaUnavailable))
    assert (lost.fallback, lost.workers) == ("local", 2)
    sent_alone = [t for t in done if stopped + 0.5 < t < stopped + 2.0]
    # Half the rate each (two live workers), from an empty bucket: about 7 in 1.5 s.
    assert 3 <= len(sent_alone) <= rpm / 60 / 2 * 1.5 + 2
    assert any(isinstance(e, pt.SharedQuotaRestored) for e in events)


async def test_a_slow_redis_counts_as_unavailable_until_it_answers(
    redis_server: RedisServer,
) -> None:
    events: list[pt.Event] = []
    quota = pt.RedisQuota(redis_server.url, name="slow", timeout=0.3)
    async with ms.serve(ms.MockConfig(rpm=600)) as server:
        async with _client(server.url, quota, 600, events) as client:
            await trio.sleep(0.3)
            await client.chat(HELLO)
            sleeper = redis_server.sleep(1.5)  # DEBUG SLEEP: Redis answers nothing for 1.5 s
            try:
                await trio.sleep(0.1)
                start = trio.current_time()
                await client.chat(HELLO)
                waited = trio.current_time() - start
            finally:
                sleeper.wait(timeout=10)
        assert set(server.stats().by_outcome) == {"ok"}
    assert waited >= 1.0
    assert _outage_events(events) == [pt.SharedQuotaUnavailable, pt.SharedQuotaRestored]
    assert "0.3s" in next(e for e in events if isinstance(e, pt.SharedQuotaUnavailable)).error


async def test_a_shared_quota_needs_async_with(redis_server: RedisServer) -> None:
    quota = pt.RedisQuota(redis_server.url, name="closed")
    async with ms.serve(ms.MockConfig()) as server:
        client = _client(server.url, quota, 60)
        with pytest.raises(RuntimeError, match="async with"):
            await client.chat(HELLO)
        await client.aclose()


async def test_without_coredis_the_error_says_which_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)
    client = _client("http://127.0.0.1:9", pt.RedisQuota("redis://127.0.0.1:9"), 60)
    with pytest.raises(
        pt.ConfigurationError, match=r"pip install coredis, .*pip install '\.\[redis\]'"
    ):
        async with client:
            pass


async def test_quota_state_of_an_unreachable_redis_raises_in_time() -> None:
    from ..redis_helpers import free_port

    quota = pt.RedisQuota(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    start = trio.current_time()
    with pytest.raises(pt.QuotaUnavailableError):
        await pt.quota_state(quota)
    assert trio.current_time() - start < 2.0


async def test_an_exception_in_the_body_comes_out_unwrapped(redis_server: RedisServer) -> None:
    quota = pt.RedisQuota(redis_server.url, name="body")
    with pytest.raises(KeyError):
        async with _client("http://127.0.0.1:9", quota, 60):
            raise KeyError("mine")
    assert (await pt.quota_state(quota)).workers == ()
