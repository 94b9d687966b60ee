"""Every request kind obeys the same rules: regression tests of the five defects of issue 11.

Before the attempt engine, ``chat``, ``chat_stream`` and streamed batch items had three retry
loops that disagreed.  Each test here failed on that code.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt

from .helpers import Events, Script, fixed, make_client, ok
from .test_streaming import answer, chunk, sse


@pytest.mark.anyio
async def test_total_covers_every_resend_of_a_streamed_batch_item() -> None:
    # One chunk, 2.5 s of silence, then the end without [DONE]: each attempt fails at 2.5 s.
    script = Script(default=lambda _: sse(chunk("a"), 2.5)[0])
    async with make_client(script) as client:
        start = trio.current_time()
        [result] = await client.chat_batch(
            [[{"role": "user", "content": "x"}]],
            stream=True,
            timeouts=pt.Timeouts(total=3, read=None),
            retry=fixed(attempts=6),
        )
        elapsed = trio.current_time() - start
    assert not result.ok
    assert elapsed <= 3.0
    # 2.5 s + a 0.5 s backoff would reach the deadline: no second attempt.
    assert result.attempts == script.calls == 1
    assert isinstance(result.error, pt.IncompleteStreamError)
    assert any("deadline" in note for note in result.error.__notes__)


@pytest.mark.anyio
async def test_total_cuts_a_resent_stream_that_would_run_past_it() -> None:
    # Each attempt: a chunk, then 1 s of silence, then cut.  total=2.2: the second attempt
    # starts at 1.5 s and is interrupted by the deadline at 2.2 s, not allowed to finish.
    script = Script(default=lambda _: sse(chunk("a"), 1.0)[0])
    async with make_client(script) as client:
        [result] = await client.chat_batch(
            [[{"role": "user", "content": "x"}]],
            stream=True,
            timeouts=pt.Timeouts(total=2.2, read=None),
            retry=fixed(attempts=6),
        )
    assert isinstance(result.error, pt.APITimeoutError)
    assert result.error.which == "total"
    assert result.elapsed == pytest.approx(2.2)
    assert [a.cause for a in result.error.attempts] == ["connection", "timeout"]
    assert result.error.attempts[-1].error == "interrupted by the deadline"


@pytest.mark.anyio
async def test_a_resent_stream_keeps_its_idempotency_key_and_tells_one_story() -> None:
    script = Script(sse(chunk("a"), 0.5)[0], sse(*answer("b"))[0])
    events = Events()
    async with make_client(script, on_event=events) as client:
        [result] = await client.chat_batch(
            [[{"role": "user", "content": "x"}]], stream=True, retry=fixed()
        )
        stats = client.statistics()
    assert result.ok
    assert result.attempts == 2
    keys = script.header("idempotency-key")
    assert keys[0] is not None
    assert keys == [keys[0], keys[0]]
    assert events.kinds() == [
        "AttemptStarted",
        "AttemptFailed",
        "RetryScheduled",
        "AttemptStarted",
        "RequestFinished",
    ]
    assert events.of(pt.AttemptFailed)[0].will_retry is True
    assert events.of(pt.RetryScheduled)[0].cause == "connection"
    assert events.of(pt.RequestFinished)[0].ok is True
    assert (stats.started, stats.succeeded, stats.failed, stats.cancelled) == (1, 1, 0, 0)
    assert (stats.attempts, stats.retries) == (2, 1)
    assert dict(stats.retries_by_cause) == {"connection": 1}


async def _one(client: pt.Client, kind: str, messages: Any, **kwargs: Any) -> list[str]:
    """Send ``messages`` with ``chat`` or ``chat_stream``; the deltas a caller saw."""
    if kind == "chat":
        return [(await client.chat(messages, **kwargs)).text]
    seen: list[str] = []
    async with client.chat_stream(messages, **kwargs) as stream:
        async for c in stream:
            seen.append(c.delta)
    return seen


@pytest.mark.parametrize("kind", ["chat", "chat_stream"])
@pytest.mark.anyio
async def test_a_request_that_never_got_a_slot_was_not_sent(kind: str) -> None:
    async def slow(_: httpx2.Request) -> httpx2.Response:
        await trio.sleep(100)
        return ok()

    script = Script(slow)
    messages = [{"role": "user", "content": "x"}]
    async with make_client(script, limits=pt.Limits(concurrency=1)) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.chat, messages)
            await trio.sleep(1)  # the only slot is now held
            with pytest.raises(pt.APITimeoutError) as info:
                await _one(client, kind, messages, timeouts=pt.Timeouts(total=5))
            nursery.cancel_scope.cancel()
        stats = client.statistics()
    assert info.value.which == "total"
    assert info.value.attempts == ()
    assert "after 0 attempt(s)" in str(info.value)
    assert script.calls == 1  # only the request holding the slot
    assert stats.attempts == 1


@pytest.mark.anyio
async def test_a_stream_waiting_for_a_slot_at_the_callers_deadline_is_unsent() -> None:
    async with make_client(Script(), limits=pt.Limits(concurrency=1)) as client:
        request = client.make_request([{"role": "user", "content": "x"}])
        plan = client._plan(client._chat, request, None, None, trio.current_time() + 2, stream=True)
        async with client._limiter:  # someone else holds the only slot
            with pytest.raises(pt.RequestCancelled) as info:
                async with pt.ChatStream(client._sender, client._chat, request, plan):
                    pass
    assert info.value.sent is False
    assert info.value.attempts == ()


def _malformed_then_ok() -> Script:
    broken = b"data: {not json\n\n"
    return Script(sse(chunk("", role="assistant"), chunk("a"), broken)[0], sse(*answer("ab"))[0])


@pytest.mark.anyio
async def test_a_malformed_chunk_midway_is_resent_in_a_batch() -> None:
    script = _malformed_then_ok()
    events = Events()
    async with make_client(script, on_event=events) as client:
        [result] = await client.chat_batch(
            [[{"role": "user", "content": "x"}]], stream=True, retry=fixed()
        )
        stats = client.statistics()
    assert result.ok, result.error
    assert result.completion is not None
    assert result.completion.text == "ab"
    assert result.attempts == script.calls == 2
    [scheduled] = events.of(pt.RetryScheduled)
    assert scheduled.cause == "invalid_response"
    assert stats.retries == 1
    assert dict(stats.retries_by_cause) == {"invalid_response": 1}


@pytest.mark.anyio
async def test_a_malformed_chunk_is_final_for_a_caller_who_saw_chunks_without_restart() -> None:
    script = _malformed_then_ok()
    async with make_client(script, retry=fixed()) as client:
        with pytest.raises(pt.APIResponseValidationError) as info:
            await _one(client, "chat_stream", [{"role": "user", "content": "x"}], restart=None)
        stats = client.statistics()
    assert info.value.attempts[0].cause == "invalid_response"
    assert (stats.failed, stats.retries) == (1, 0)
    assert script.calls == 1
    assert any("already delivered chunks" in note for note in info.value.__notes__)


@pytest.mark.anyio
async def test_a_malformed_chunk_after_chunks_is_a_retry_of_the_engine_that_resumes() -> None:
    script = _malformed_then_ok()
    events = Events()
    async with make_client(script, retry=fixed(), on_event=events) as client:
        seen = await _one(client, "chat_stream", [{"role": "user", "content": "x"}])
        stats = client.statistics()
    assert "".join(seen) == "ab"
    assert seen.count("a") == 1  # "a" once, then only "b"
    assert [e.cause for e in events.of(pt.RetryScheduled)] == ["invalid_response"]
    assert (stats.succeeded, stats.failed, stats.retries, stats.attempts) == (1, 0, 1, 2)
    assert script.calls == 2


@pytest.mark.anyio
async def test_every_mid_stream_resend_emits_retry_scheduled() -> None:
    error_event = b"event: error\ndata: " + json.dumps({"error": {"code": 503}}).encode() + b"\n\n"
    script = Script(
        sse(chunk("a"), error_event)[0],
        sse(chunk("a"), httpx2.RemoteProtocolError("cut"))[0],
        sse(*answer("a"))[0],
    )
    events = Events()
    async with make_client(script, on_event=events) as client:
        [result] = await client.chat_batch([[{"role": "user", "content": "x"}]], stream=True)
        stats = client.statistics()
    assert result.ok
    assert [e.cause for e in events.of(pt.RetryScheduled)] == ["503", "connection"]
    assert stats.retries == 2 == sum(stats.retries_by_cause.values())


def _fail_once_then(success: Any) -> Any:
    """Every request's first attempt is a connection error, its second a success."""
    seen: set[str] = set()

    def handler(request: httpx2.Request) -> httpx2.Response:
        key = request.headers["idempotency-key"]
        if key not in seen:
            seen.add(key)
            raise httpx2.ConnectError("refused", request=request)
        return success()

    return handler


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.anyio
async def test_breaker_open_connection_retries_spend_no_budget_plain_or_streamed(
    stream: bool,
) -> None:
    success = (lambda: sse(*answer("a"))[0]) if stream else ok
    items = [[{"role": "user", "content": f"q{i}"}] for i in range(15)]
    async with make_client(_fail_once_then(success), limits=pt.Limits(concurrency=1)) as client:
        results = await client.chat_batch(
            items, stream=stream, retry_budget=0.0, circuit_breaker=1, retry=fixed()
        )
    # 15 retries, more than the budget's 10: all exempt, because the breaker was open.
    assert [r.ok for r in results] == [True] * 15
    assert results.statistics.retries == 15
    assert dict(results.statistics.retries_by_cause) == {"connection": 15}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.anyio
async def test_the_budget_is_charged_by_cause_plain_or_streamed(stream: bool) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(503, json={"error": {"message": "busy"}})

    items = [[{"role": "user", "content": f"q{i}"}] for i in range(4)]
    async with make_client(handler, limits=pt.Limits(concurrency=1)) as client:
        results = await client.chat_batch(
            items,
            stream=stream,
            retry_budget=0.0,
            retry=fixed(attempts=4, initial_delay=0.01),
            timeouts=pt.Timeouts(total=0.6),
        )
    # The reserve of 10 tokens pays 3 + 3 + 3 + 1 retries; the 4th item's next retry must
    # wait for the floor's token, counted by cause the same way whether streamed or not.
    assert results.statistics.retries >= 10
    assert set(results.statistics.retries_by_cause) == {"503"}
    assert [r.attempts for r in results][:3] == [4, 4, 4]
    assert sum(results.statistics.retries_by_cause.values()) == results.statistics.retries


@pytest.mark.anyio
async def test_chat_stream_and_chat_send_through_the_same_transport_path() -> None:
    script = Script(ok(), sse(*answer("x"))[0])
    async with make_client(script) as client:
        await client.chat([{"role": "user", "content": "x"}])
        async with client.chat_stream([{"role": "user", "content": "x"}]) as stream:
            async for _ in stream:
                pass
    plain, streamed = script.requests
    assert plain.headers["user-agent"] == streamed.headers["user-agent"]
    assert plain.headers["accept"] == "application/json"
    assert streamed.headers["accept"] == "text/event-stream"
