"""RateLimiter brings a server's x-ratelimit-remaining forward to now and follows it down."""

from __future__ import annotations

import pytest
import trio

from paradigm_trio._engine._ratelimit import RateLimiter

pytestmark = pytest.mark.anyio

HEADERS = {"x-ratelimit-limit-requests": "60"}


async def test_remaining_lowers_the_bucket_when_someone_else_spends_the_quota() -> None:
    rates = RateLimiter(None, None)
    first = await rates.acquire(10)
    rates.learn({**HEADERS, "x-ratelimit-remaining-requests": "59"}, first)
    assert rates._rpm is not None
    assert rates._rpm.level == pytest.approx(59)
    await trio.sleep(10.0)  # virtual time: the bucket refills 10 (1/s), up to its 60
    mark = await rates.acquire(10)  # ours; level now 59 + 10 - 1 = 68 capped: 59
    level_before = rates._rpm.level
    await rates.acquire(10)  # one more of ours after it
    await trio.sleep(1.0)
    # The server says only 20 were left when `mark` arrived: someone else spent the rest.
    rates.learn({**HEADERS, "x-ratelimit-remaining-requests": "20"}, mark)
    # 20 then, minus our 1 request since, plus 1 s of refill at 1/s
    assert rates._rpm.level == pytest.approx(20 - 1 + 1.0)
    assert rates._rpm.level < level_before


async def test_remaining_that_agrees_with_us_changes_nothing() -> None:
    rates = RateLimiter(None, None)
    first = await rates.acquire(0)
    rates.learn({**HEADERS, "x-ratelimit-remaining-requests": "59"}, first)
    mark = await rates.acquire(0)
    assert rates._rpm is not None
    level = rates._rpm.level
    rates.learn({**HEADERS, "x-ratelimit-remaining-requests": str(int(level))}, mark)
    assert rates._rpm.level == pytest.approx(level)
