"""Requests/tokens per minute quotas, their headers, and latency under load."""

from __future__ import annotations

from functools import partial

import httpx2
import pytest
import trio

import mock_server as ms

from .. import pace
from ..pace import slack
from ._helpers import assert_error_envelope, chat_body, keyed

pytestmark = pytest.mark.anyio


async def test_rpm_quota_rejects_with_accurate_retry_after() -> None:
    async with (
        ms.serve(ms.MockConfig(rpm=3)) as server,
        httpx2.AsyncClient(base_url=server.url) as client,
    ):
        responses = [
            await client.post("/chat/completions", json=chat_body(f"r{i}")) for i in range(4)
        ]
    ok, rejected = responses[:3], responses[3]
    assert [r.status_code for r in ok] == [200, 200, 200]
    assert [r.headers["x-ratelimit-limit-requests"] for r in ok] == ["3", "3", "3"]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in ok] == ["2", "1", "0"]
    assert ok[0].headers["x-ratelimit-reset-requests"] == "20s"  # 1 request at 3/min
    assert "x-ratelimit-limit-tokens" not in ok[0].headers  # no tpm configured
    error = assert_error_envelope(rejected, 429, "rate_limit_exceeded")
    assert error["type"] == "requests"
    wait_ms = int(rejected.headers["retry-after-ms"])
    assert 19_000 <= wait_ms <= 20_000  # one request refills in 20 s, minus elapsed time
    assert rejected.headers["retry-after"] == "20"
    assert rejected.headers["x-ratelimit-remaining-requests"] == "0"
    assert server.requests()[-1].outcome == "quota"
    assert server.stats().by_outcome == {"ok": 3, "quota": 1}


async def test_rpm_bucket_refills_continuously() -> None:
    # 120 per minute: 2 requests per second
    async with (
        ms.serve(ms.MockConfig(rpm=120)) as server,
        httpx2.AsyncClient(base_url=server.url) as client,
    ):
        # Send until the first 429: a full bucket lets 120 through, plus whatever refilled
        # (2 a second) while they were sent (a loaded machine sends them slower).
        start = trio.current_time()
        passed = 0
        while passed <= 200:
            status = await client.post("/chat/completions", json=chat_body(f"r{passed}"))
            if status.status_code == 429:
                break
            assert status.status_code == 200
            passed += 1
        refilled = 2 * (trio.current_time() - start)
        assert 120 <= passed <= 120 + refilled + 1
        blocked = await client.post("/chat/completions", json=chat_body("again"))
        wait = int(blocked.headers["retry-after-ms"]) / 1000
        assert 0.0 < wait <= 0.5
        await trio.sleep(wait + 0.02)
        after = await client.post("/chat/completions", json=chat_body("later"))
    assert blocked.status_code == 429
    assert after.status_code == 200


async def test_tpm_quota_charges_prompt_plus_max_tokens() -> None:
    async with (
        ms.serve(ms.MockConfig(tpm=1000, default_max_tokens=100)) as server,
        httpx2.AsyncClient(base_url=server.url) as client,
    ):
        body = chat_body("abcd", max_tokens=400)  # prompt: 3 + 4 + 1 = 8 tokens
        first = await client.post("/chat/completions", json=body)
        no_max = await client.post("/chat/completions", json=chat_body("abcd"))
        second = await client.post("/chat/completions", json=body)
        third = await client.post("/chat/completions", json=body)
        too_big = await client.post("/chat/completions", json=chat_body("abcd", max_tokens=5000))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    remaining = int(first.headers["x-ratelimit-remaining-tokens"])
    assert 1000 - 408 <= remaining <= 1000 - 408 + 2  # refill is 16.7 tokens/s
    after_default = int(no_max.headers["x-ratelimit-remaining-tokens"])
    assert remaining - 108 <= after_default <= remaining - 108 + 2
    assert second.status_code == 429 or third.status_code == 429
    rejected = second if second.status_code == 429 else third
    error = assert_error_envelope(rejected, 429, "rate_limit_exceeded")
    assert error["type"] == "tokens"
    missing = 408 - int(rejected.headers["x-ratelimit-remaining-tokens"])
    wait_ms = int(rejected.headers["retry-after-ms"])
    assert abs(wait_ms - missing * 60) <= 60 + 150  # 60 ms per token at 1000/min
    assert too_big.status_code == 429
    assert too_big.headers["x-should-retry"] == "false"
    assert "retry-after" not in too_big.headers


async def test_quota_headers_on_every_chat_response_and_reset() -> None:
    async with ms.serve(ms.MockConfig(rpm=10, tpm=10_000)) as server:
        server.script("s", ["503"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            scripted = await client.post("/chat/completions", json=chat_body(), headers=keyed("s"))
            bad = await client.post("/chat/completions", content=b"{")
            stream = await client.post("/chat/completions", json=chat_body(stream=True))
            server.reset()
            fresh = await client.post("/chat/completions", json=chat_body())
    for response in (scripted, bad, stream, fresh):
        for name in (
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ):
            assert name in response.headers, (response.status_code, name)
    assert scripted.status_code == 503
    assert scripted.headers["x-ratelimit-remaining-requests"] == "10"  # scripts are not charged
    assert stream.headers["x-ratelimit-remaining-requests"] == "9"
    assert fresh.headers["x-ratelimit-remaining-requests"] == "9"  # reset refilled the bucket


async def test_no_quota_headers_without_quotas() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        response = await client.post("/chat/completions", json=chat_body())
    assert not any(name.startswith("x-ratelimit") for name in response.headers)


async def test_load_latency_grows_with_requests_in_flight() -> None:
    config = ms.MockConfig(latency=ms.Latency.fixed(0.2), load_latency=0.05)
    async with ms.serve(config) as server, httpx2.AsyncClient(base_url=server.url) as client:
        now = await pace.round_trip(server.url + "/models")
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(
                    partial(client.post, "/chat/completions", json=chat_body(f"{i}"))
                )
        durations = sorted(r.finish - r.arrival for r in server.requests() if r.finish)
    assert server.stats().max_in_flight == 5
    assert durations[0] < slack(0.27, now)  # the first arrival saw nobody else
    assert durations[-1] >= 0.2 + 4 * 0.05 - 0.01  # the last one saw the 4 others
