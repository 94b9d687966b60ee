"""The shared quota's Lua script, run by a real Redis on virtual time (hypothesis).

The script takes ``now`` from Redis's ``TIME``; tests pass it instead (the script's
``ARGV[2]``), so that every operation runs at a chosen instant and is compared with a
model of the two buckets written here in Python:

* model equivalence: any sequence of ``take`` and ``update`` operations (refunds,
  charges, drains, pauses, limits learnt) at increasing times gives the waits and
  levels the model gives;
* the quota: workers that ask, and when told to wait ask again after that wait, are let
  through no more than the quota allows, over any window, from an empty bucket;
* what the server says lowers the bucket to its estimate, and a counter reset (Redis lost
  its data) is ignored.
"""

from __future__ import annotations

import itertools
import math

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given

import paradigm_trio as pt
from paradigm_trio._quota._redis_store import Store, Update

from ..redis_helpers import RedisServer

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0  # virtual Unix time, as large as Redis's
_names = itertools.count()


@pytest.fixture(scope="module")
def url(module_redis: RedisServer) -> str:
    return module_redis.url


def _quota(url: str) -> pt.RedisQuota:
    return pt.RedisQuota(url, name=f"lua-{next(_names)}", timeout=5.0)


class Model:
    """The two buckets of ``_quota.lua``, in Python."""

    def __init__(self) -> None:
        self.r = self.t = 0.0
        self.ts: float | None = None
        self.lr = self.lt = 0.0
        self.pause = 0.0
        self.nr = self.nt = 0.0

    @staticmethod
    def _rate(user: float, learnt: float) -> float:
        return min(user, learnt) if user > 0 and learnt > 0 else max(user, learnt)

    def _refill(self, now: float, rpm: float, tpm: float) -> None:
        if self.ts is None:
            self.ts = now
        if now > self.ts:
            elapsed = now - self.ts
            if rpm > 0:
                self.r = min(rpm, self.r + elapsed * rpm / 60)
            if tpm > 0:
                self.t = min(tpm, self.t + elapsed * tpm / 60)
            self.ts = now

    @staticmethod
    def _delay(level: float, need: float, per_minute: float) -> float:
        if per_minute <= 0:
            return 0.0
        wait = (min(need, per_minute) - level) * 60 / per_minute
        return 0.0 if wait < 1e-6 else wait

    def take(self, now: float, user: tuple[float, float], tokens: int) -> float:
        rpm, tpm = self._rate(user[0], self.lr), self._rate(user[1], self.lt)
        self._refill(now, rpm, tpm)
        wait = max(0.0, self.pause - now, self._delay(self.r, 1, rpm),
                   self._delay(self.t, tokens, tpm))  # fmt: skip
        if wait <= 0:
            if rpm > 0:
                self.r -= 1
            if tpm > 0:
                self.t -= tokens
            self.nr += 1
            self.nt += tokens
        return wait

    def update(self, now: float, user: tuple[float, float], adjust: float, drain: bool,
               pause: float) -> None:  # fmt: skip
        rpm, tpm = self._rate(user[0], self.lr), self._rate(user[1], self.lt)
        self._refill(now, rpm, tpm)
        if tpm > 0 and adjust:
            self.t = min(tpm, self.t + adjust)
        if drain:
            self.r, self.t = min(self.r, 0.0), min(self.t, 0.0)
        if pause > 0:
            self.pause = max(self.pause, now + pause)

    def levels(self, now: float, user: tuple[float, float]) -> tuple[float, float]:
        rpm, tpm = self._rate(user[0], self.lr), self._rate(user[1], self.lt)
        self._refill(now, rpm, tpm)
        return self.r, self.t


def _close(a: float, b: float, tolerance: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=tolerance)


rates = st.tuples(
    st.sampled_from([0.0, 1.0, 7.0, 60.0, 600.0, 10_000.0]),
    st.sampled_from([0.0, 90.0, 1_000.0, 40_000.0]),
)
operations = st.lists(
    st.tuples(
        st.floats(0, 30),  # seconds since the previous operation
        st.one_of(
            st.tuples(st.just("take"), st.integers(0, 60_000)),
            st.tuples(
                st.just("update"),
                st.floats(-5_000, 5_000),  # refund (> 0) or charge (< 0)
                st.booleans(),  # drain
                st.sampled_from([0.0, 0.5, 3.0]),  # pause seconds
            ),
        ),
    ),
    max_size=40,
)


@given(user=rates, ops=operations)
async def test_script_matches_the_model_of_two_buckets(
    url: str, user: tuple[float, float], ops: list[tuple[float, tuple[object, ...]]]
) -> None:
    store, model, now = Store(_quota(url)), Model(), T0
    async with store.open():
        for gap, op in ops:
            now += gap
            if op[0] == "take":
                tokens = int(op[1])  # type: ignore[call-overload]
                paused = model.pause > now
                taken = await store.take(user, tokens, now=now)
                expected = model.take(now, user, tokens)
                # A pause is sent as seconds from the moment of the call: within 50 ms.
                assert _close(taken.wait, expected, 0.05 if paused else 1e-6), (taken, expected)
                assert (taken.requests, taken.tokens) == (model.nr, model.nt)
            else:
                _, adjust, drain, pause = op
                update = Update(refund=max(0.0, adjust), charge=max(0.0, -adjust),  # type: ignore[arg-type]
                                drain=bool(drain), pause_until=trio.current_time() + pause)  # type: ignore[operator]  # fmt: skip
                await store.update(user, update, now=now)
                model.update(now, user, adjust, bool(drain), pause)  # type: ignore[arg-type]
            state = await store.state(user, now=now)
            level_r, level_t = model.levels(now, user)
            assert _close(state.requests_available, level_r)
            assert _close(state.tokens_available, level_t)


@given(
    per_minute=st.sampled_from([1.0, 6.0, 60.0, 600.0, 6_000.0]),
    arrivals=st.lists(st.floats(0, 20), min_size=1, max_size=30),
)
async def test_requests_that_wait_as_told_never_exceed_the_quota(
    url: str, per_minute: float, arrivals: list[float]
) -> None:
    """Requests arrive at random; each asks, and asks again after the wait it is told."""
    store = Store(_quota(url))
    pending = [T0 + a for a in itertools.accumulate(arrivals)]
    queue = [(at, i) for i, at in enumerate(pending)]
    admitted: list[float] = []
    async with store.open():
        while queue:
            queue.sort()
            at, i = queue.pop(0)
            taken = await store.take((per_minute, 0.0), 1, now=at)
            if taken.wait <= 0:
                admitted.append(at)
            else:
                queue.append((at + taken.wait, i))
    assert len(admitted) == len(pending)  # nobody starves
    rate = per_minute / 60
    slack = rate * 1e-6 + 1e-6  # a wait under a microsecond counts as none
    for j, start in enumerate(admitted):
        # From the empty start: at most what refilled since the first ask.
        assert j + 1 <= rate * (start - pending[0]) + slack
        for k in range(j, len(admitted)):
            # Any window: a full bucket plus what refilled meanwhile.
            assert k - j + 1 <= per_minute + rate * (admitted[k] - start) + slack


async def test_what_the_server_says_lowers_the_shared_bucket(url: str) -> None:
    store = Store(_quota(url))
    user = (60.0, 0.0)
    async with store.open():
        await store.take(user, 0, now=T0)  # creates the quota, empty
        first = await store.take(user, 0, now=T0 + 30)  # 30 refilled, one taken: 29
        for i in range(5):  # five more by other workers
            await store.take(user, 0, now=T0 + 30 + i * 0.001)
        # The server saw 10 left when `first` arrived: someone else spends the quota.
        learnt = {"requests": (60.0, 10.0, float(first.requests), first.now)}
        levels = await store.update(user, Update(learnt=learnt), now=T0 + 32)
        assert levels[0] == pytest.approx(10 - 5 + 2)  # 10, less 5 since, plus 2 s refill
        assert levels[3] == 60.0  # the rate in force
        # A limit below the worker's becomes the rate, for every worker.
        lower = {"requests": (30.0, None, None, None)}
        levels = await store.update(user, Update(learnt=lower), now=T0 + 32)
        assert levels[3] == 30.0
        state = await store.state((0.0, 0.0), now=T0 + 32)
        assert state.requests_per_minute == 30.0  # a reader without rates sees it too
        # A mark from before a counter reset (more taken then than now) is ignored.
        stale = {"requests": (30.0, 0.0, 1e9, T0)}
        again = await store.update(user, Update(learnt=stale), now=T0 + 32)
        assert again[0] == pytest.approx(levels[0])


async def test_heartbeats_count_live_workers_and_expire(url: str) -> None:
    quota = _quota(url).replace(heartbeat=1.0)  # live for 3 s after each beat
    a, b = Store(quota, worker="a"), Store(quota, worker="b")
    async with a.open(), b.open():
        assert await a.beat((0, 0), now=T0) == 1
        assert await b.beat((0, 0), now=T0 + 1) == 2
        state = await a.state((0, 0), now=T0 + 2)
        assert sorted(w["id"] for w in state.workers) == ["a", "b"]
        assert {w["pid"] for w in state.workers} == {__import__("os").getpid()}
        assert await b.beat((0, 0), now=T0 + 3.5) == 1  # a's expired at T0 + 3
        assert await b.leave((0, 0)) == 0
