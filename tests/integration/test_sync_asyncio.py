"""``SyncClient`` from asyncio: calls through ``asyncio.to_thread`` share its limits."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import paradigm_trio as pt

from .mockprocess import mock_process, mock_stats


def test_twenty_to_thread_calls_share_a_concurrency_of_four() -> None:
    with (
        mock_process("--latency", "fixed:0.2") as url,
        pt.SyncClient(
            api_key="sk-test-not-a-real-key", base_url=url, limits=pt.Limits(concurrency=4)
        ) as client,
    ):

        async def main() -> list[str]:
            # 20 threads, so that the 20 calls really wait at once (the default executor
            # has min(32, cores + 4) workers).
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(20))
            done = await asyncio.gather(
                *(asyncio.to_thread(client.chat, [{"role": "user", "content": f"q{i}"}])
                  for i in range(20))
            )  # fmt: skip
            return [c.text for c in done]

        texts = asyncio.run(main())
        stats = mock_stats(url)
    assert len(texts) == 20
    assert all(f'"q{i}"' in text for i, text in enumerate(texts))
    assert stats["total"] == 20
    assert stats["max_in_flight"] == 4  # never more than the limit; the limit was reached
