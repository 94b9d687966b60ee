"""Stream restart against the mock over real sockets: a live ``chat_stream`` that the mock
cuts, corrupts, breaks with an error event or stalls after some chunks reads on as one
stream, by replay (the same request again) or by continuation (vLLM's
``continue_final_message``, which the mock serves exactly), and ends with the unbroken
answer's text, finish and, for a replay, usage."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import trio

import mock_server as ms
import paradigm_trio as pt

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Tell me a long story about the sea"}]
RETRY = pt.RetryPolicy(initial_delay=0.01, max_delay=0.05)


def key_of(custom_id: str) -> str:
    return "pt-" + hashlib.sha256(custom_id.encode()).hexdigest()[:32]


async def collect(stream: Any, deltas: list[str]) -> None:
    async with stream:
        async for chunk in stream:
            deltas.append(chunk.delta)


async def read(client: pt.Client, custom_id: str, **kwargs: Any) -> tuple[list[str], Any]:
    deltas: list[str] = []
    async with client.chat_stream(MESSAGES, custom_id=custom_id, **kwargs) as stream:
        async for chunk in stream:
            deltas.append(chunk.delta)
    return deltas, stream


@pytest.mark.parametrize("restart", ["replay", "continue"])
@pytest.mark.parametrize("fault", ["stream_cut@3", "malformed@3", "stream_error@5", "stream_cut@1"])
async def test_a_broken_live_stream_reads_on_as_the_unbroken_one(fault: str, restart: str) -> None:
    async with ms.serve(ms.MockConfig(seed=5)) as server:
        server.script(key_of("broken"), [fault, "ok"])
        async with pt.Client(api_key="sk-restart", base_url=server.url, retry=RETRY) as client:
            whole, unbroken = await read(client, "whole", max_tokens=30)
            deltas, stream = await read(client, "broken", max_tokens=30, restart=restart)
        sent = [r for r in server.requests() if r.key == key_of("broken")]
    assert "".join(deltas) == unbroken.completion.text  # never twice, never a gap
    if restart == "replay":
        assert deltas == whole  # the very same chunks
    got, expected = stream.completion.choices[0], unbroken.completion.choices[0]
    assert (got.message.content, got.finish_reason) == (expected.message.content, "length")
    if restart == "replay":
        assert stream.completion.usage == unbroken.completion.usage
    else:  # the continuation's prompt holds the delivered text; the completion counts all
        assert stream.completion.usage.completion_tokens == 30
    assert [a.cause is None for a in stream.attempts] == [False, True]
    assert [r.outcome for r in sent] == [fault.partition("@")[0], "ok"]


async def test_a_stalled_live_stream_is_resumed_with_stall_detection() -> None:
    config = ms.MockConfig(seed=3, token_delay=0.01)
    timeouts = pt.Timeouts(stall_factor=5, stall_floor=0.3)
    async with ms.serve(config) as server:
        server.script(key_of("stalled"), ["stream_stall@6+30", "ok"])
        async with pt.Client(
            api_key="sk-restart", base_url=server.url, timeouts=timeouts, retry=RETRY
        ) as client:
            _, unbroken = await read(client, "whole")
            with trio.fail_after(20):  # (the stall lasts 30 s)
                deltas, stream = await read(client, "stalled")
    assert "".join(deltas) == unbroken.completion.text
    assert [a.cause for a in stream.attempts] == ["timeout", None]


async def test_restarts_within_the_attempts_then_the_error() -> None:
    async with ms.serve(ms.MockConfig(seed=5)) as server:
        server.script(key_of("cut"), ["stream_cut@2", "stream_cut@4", "stream_cut@6"])
        retry = pt.RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.05)
        async with pt.Client(api_key="sk-restart", base_url=server.url, retry=retry) as client:
            deltas: list[str] = []
            with pytest.raises(pt.IncompleteStreamError) as info:
                await collect(client.chat_stream(MESSAGES, custom_id="cut"), deltas)
            _, unbroken = await read(client, "whole")
    assert deltas
    assert unbroken.completion.text.startswith("".join(deltas))  # a prefix, no repeat
    assert len(info.value.attempts) == 3
    assert any("gave up after 3 attempt(s)" in note for note in info.value.__notes__)
