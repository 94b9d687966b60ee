"""A batch of streamed items hedged on the time to first token, against the mock server
(real sockets on 127.0.0.1, real clock): a straggler whose first chunk is late gets a
copy, the copy's whole answer wins, and the original's connection is closed (the
server's log records the disconnect)."""

from __future__ import annotations

import hashlib

import pytest
import trio

import mock_server as ms
import paradigm_trio as pt

pytestmark = pytest.mark.anyio


def key_of(custom_id: str) -> str:
    """The Idempotency-Key the client derives from a custom_id."""
    return "pt-" + hashlib.sha256(custom_id.encode()).hexdigest()[:32]


async def test_a_streamed_straggler_is_hedged_and_its_original_disconnected() -> None:
    config = ms.MockConfig(seed=3, reply_tokens=(10, 12), token_delay=0.01)
    async with ms.serve(config) as server:
        # The first send of item 7 waits 30 s before its head (its first chunk); the
        # copy (the same key's second request) answers as every other does.
        server.script(key_of("item-7"), [ms.Fault("ok", latency=30.0)])
        requests = [
            pt.ChatRequest(
                messages=[{"role": "user", "content": f"story {i}"}], custom_id=f"item-{i}"
            )
            for i in range(12)
        ]
        # (a floor of 1 s and room for copies: a busy machine's late first chunks aside)
        hedge = pt.Hedge(min_samples=5, max_share=0.5, floor=1.0)
        client = pt.Client(api_key="test-key", base_url=server.url)
        async with client:
            with trio.fail_after(20):  # (the straggler alone would take 30 s)
                results = await client.chat_batch(requests, stream=True, hedge=hedge)
        with trio.fail_after(5):  # the server notices the disconnect on its own time
            while not any(r.disconnected for r in server.requests()):
                await trio.sleep(0.01)
        log = [r for r in server.requests() if r.key == key_of("item-7")]
    assert all(r.ok for r in results)
    assert results[7].hedged
    assert results[7].completion is not None
    assert results[7].completion.text
    # (on a busy machine another item's first chunk may be late enough for a copy too)
    assert 1 <= results.statistics.hedges <= 0.5 * len(requests)
    assert results.statistics.hedges_won >= 1
    assert [r.attempt for r in log] == [1, 2]
    assert all(r.stream for r in log)
    assert log[0].disconnected  # the original, closed when the copy won
    assert not log[1].disconnected
