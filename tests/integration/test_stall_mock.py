"""Stall detection against the mock over real sockets: a stream that the mock stalls
for seconds mid-answer (``stream_stall@N+S``) is caught at its own pace, and a streamed
batch item is resent and ends whole, long before the stall would have ended."""

from __future__ import annotations

import hashlib

import pytest
import trio

import mock_server as ms
import paradigm_trio as pt

pytestmark = pytest.mark.anyio


def key_of(custom_id: str) -> str:
    return "pt-" + hashlib.sha256(custom_id.encode()).hexdigest()[:32]


async def test_a_stalled_stream_is_resent_and_ends_whole() -> None:
    config = ms.MockConfig(seed=3, token_delay=0.01)
    request = pt.ChatRequest(
        messages=[{"role": "user", "content": "Tell me a long story about the sea"}],
        custom_id="stalled",
    )
    timeouts = pt.Timeouts(stall_factor=5, stall_floor=0.3)
    retry = pt.RetryPolicy(initial_delay=0.01, max_delay=0.05)
    async with ms.serve(config) as server:
        server.script(key_of("stalled"), ["stream_stall@6+30", "ok"])
        async with pt.Client(
            api_key="sk-stall-test", base_url=server.url, timeouts=timeouts, retry=retry
        ) as client:
            with trio.fail_after(20):  # (the stall lasts 30 s)
                [result] = await client.chat_batch([request], stream=True)
            plain = await client.chat(request.messages)
        outcomes = [r.outcome for r in server.requests() if r.key == key_of("stalled")]
    assert result.ok, result.error
    assert result.completion is not None
    assert result.completion.text == plain.text
    assert result.attempts == 2
    assert outcomes == ["stream_stall", "ok"]
