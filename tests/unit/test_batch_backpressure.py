"""Regression: a slow consumer of stream_batch stops the feeder (memory bounded by concurrency)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
import trio

import paradigm_trio as pt

from .helpers import completion_json

pytestmark = pytest.mark.anyio


async def test_slow_consumer_stops_the_feeder() -> None:
    sent = 0

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal sent
        sent += 1
        await trio.sleep(0.01)
        return httpx2.Response(200, json=completion_json())

    pulled = 0

    def inputs() -> Iterator[list[dict[str, str]]]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield [{"role": "user", "content": f"m{i}"}]

    concurrency = 4
    client = pt.Client(
        api_key="test-key",
        base_url="http://test/api/v2",
        transport=httpx2.MockTransport(handler),
        limits=pt.Limits(concurrency=concurrency),
    )
    async with client, client.stream_batch(inputs()) as results:
        received = 0
        async for _ in results:
            received += 1
            await trio.sleep(1.0)  # a slow consumer
            # read ahead is bounded: the workers (concurrency) plus the channel buffer
            assert pulled <= received + 2 * concurrency + 1
            assert sent <= received + 2 * concurrency + 1
            if received == 20:
                break
