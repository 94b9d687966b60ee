"""``Client.chat_stream`` against the mock server (real sockets on 127.0.0.1, real clock).

Every stream fault of the mock, both stream timeouts, early exit and cancellation, each
judged from the server's side too (its request log records disconnects), plus the
official ``openai`` client streaming from the same mock.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import mock_server as ms
import paradigm_trio as pt

from .. import pace
from ..pace import slack

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Tell me a story about streams"}]
FAST_RETRY = pt.RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05, jitter=0)


def key_of(custom_id: str) -> str:
    """The Idempotency-Key the client derives from a custom_id."""
    return "pt-" + hashlib.sha256(custom_id.encode()).hexdigest()[:32]


@pytest.fixture
async def server() -> AsyncIterator[ms.MockServer]:
    async with ms.serve(ms.MockConfig(seed=11, reply_tokens=(20, 30))) as srv:
        yield srv


def client_for(server: ms.MockServer, **kwargs: object) -> pt.Client:
    return pt.Client(api_key="test-key", base_url=server.url, **kwargs)  # type: ignore[arg-type]


async def read_all(stream: pt.ChatStream, deltas: list[str] | None = None) -> None:
    async with stream:
        async for chunk in stream:
            if deltas is not None:
                deltas.append(chunk.delta)


async def finished_records(server: ms.MockServer, count: int) -> list[ms.RequestRecord]:
    """The request log once ``count`` requests are finished (the server may lag the client)."""
    with trio.fail_after(5):
        while True:
            log = server.requests()
            if len(log) >= count and all(r.finish is not None for r in log):
                return log
            await trio.sleep(0.01)


# --------------------------------------------------------------------------- the happy path


async def test_a_stream_from_the_mock(server: ms.MockServer) -> None:
    deltas: list[str] = []
    async with client_for(server) as client:
        stream = client.chat_stream(MESSAGES, max_tokens=100, custom_id="happy")
        await read_all(stream, deltas)
        completion = stream.completion
        plain = await client.chat(MESSAGES, max_tokens=100)
        stats = client.statistics()
    assert completion.text == "".join(deltas)
    assert completion.text
    assert completion.finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens == sum(1 for d in deltas if d)
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.request_id
    assert plain.text  # the same client serves plain requests afterwards
    assert (stats.succeeded, stats.failed, stats.cancelled, stats.in_flight) == (2, 0, 0, 0)
    record = (await finished_records(server, 2))[0]
    assert (record.key, record.stream, record.outcome) == (key_of("happy"), True, "ok")
    assert not record.disconnected


async def test_concurrent_streams_respect_the_concurrency_limit(server: ms.MockServer) -> None:
    server.configure(token_delay=0.01)
    texts: list[str] = []
    async with client_for(server, limits=pt.Limits(concurrency=3)) as client:

        async def one(i: int) -> None:
            stream = client.chat_stream(MESSAGES, custom_id=f"c{i}", max_tokens=10)
            await read_all(stream)
            texts.append(stream.completion.text)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(one, i)
    assert len(texts) == 10
    assert all(texts)
    stats = server.stats()
    assert stats.total == 10
    assert stats.max_in_flight <= 3
    assert stats.disconnects == 0


# --------------------------------------------------------------------------- stream faults


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        ("stream_cut", pt.IncompleteStreamError, "chunk"),
        ("stream_error", pt.APIError, "injected by mock_server"),
        ("malformed", pt.APIResponseValidationError, "not JSON"),
    ],
)
async def test_stream_faults_after_the_first_chunk_are_raised_without_restart(
    server: ms.MockServer, fault: str, error: type[pt.APIError], match: str
) -> None:
    # (with the default restart="replay", tests/integration/test_stream_restart_mock.py)
    server.script(key_of(fault), [fault, "ok"])
    deltas: list[str] = []
    async with client_for(server, retry=FAST_RETRY) as client:
        stream = client.chat_stream(MESSAGES, custom_id=fault, restart=None)
        with pytest.raises(error, match=match) as info:
            await read_all(stream, deltas)
        stats = client.statistics()
    assert deltas  # chunks had been delivered: so no retry
    assert len(info.value.attempts) == 1
    assert (stats.failed, stats.retries) == (1, 0)
    log = await finished_records(server, 1)
    assert [r.outcome for r in log] == [fault]
    if isinstance(info.value, pt.IncompleteStreamError):
        assert info.value.text == "".join(deltas)
        assert info.value.chunks == len(deltas)


@pytest.mark.parametrize("include_usage", [True, False])
async def test_a_complete_stream_without_done_succeeds_with_an_event(
    server: ms.MockServer, include_usage: bool
) -> None:
    # The mock's stream_no_done sends every chunk, the finish chunk (and the usage chunk,
    # if asked) included, then ends the body cleanly without [DONE].
    server.script(key_of("nd"), ["stream_no_done"])
    events: list[pt.Event] = []
    deltas: list[str] = []
    async with client_for(server, retry=FAST_RETRY, on_event=events.append) as client:
        stream = client.chat_stream(MESSAGES, custom_id="nd", include_usage=include_usage)
        await read_all(stream, deltas)
        stats = client.statistics()
    completion = stream.completion
    assert completion.text == "".join(deltas)
    assert completion.finish_reason in ("stop", "length")
    if include_usage:
        assert completion.usage is not None
        assert completion.usage.completion_tokens == sum(1 for d in deltas if d)
    else:
        assert completion.usage is None
    assert (stats.succeeded, stats.failed, stats.retries) == (1, 0, 0)
    assert stats.unknown_usage == (0 if include_usage else 1)
    ended = [e for e in events if isinstance(e, pt.StreamEndedWithoutDone)]
    assert ended == [pt.StreamEndedWithoutDone("nd", key_of("nd"), 1)]
    assert isinstance(events[-1], pt.RequestFinished)
    assert events[-1].ok
    (record,) = await finished_records(server, 1)
    assert record.outcome == "stream_no_done"
    assert not record.disconnected  # read to its end, not cut


@pytest.mark.parametrize("fault", ["reset", "close", "503", "rate_limit"])
async def test_failures_before_the_first_chunk_are_retried(
    server: ms.MockServer, fault: str
) -> None:
    server.configure(retry_after=0.02)
    server.script(key_of(fault), [fault, "ok"])
    async with client_for(server, retry=FAST_RETRY) as client:
        stream = client.chat_stream(MESSAGES, custom_id=fault)
        await read_all(stream)
        stats = client.statistics()
    assert stream.completion.text
    assert (stats.succeeded, stats.retries, stats.attempts) == (1, 1, 2)
    log = await finished_records(server, 2)
    assert [r.key for r in log] == [key_of(fault)] * 2  # one Idempotency-Key across retries
    assert log[1].outcome == "ok"


async def test_a_hang_is_a_first_token_timeout_then_retried(server: ms.MockServer) -> None:
    now = await pace.round_trip(server.url + "/models")
    server.script(key_of("hang"), ["hang", "ok"])
    timeouts = pt.Timeouts(first_token=0.3)
    async with client_for(server, retry=FAST_RETRY, timeouts=timeouts) as client:
        stream = client.chat_stream(MESSAGES, custom_id="hang")
        start = trio.current_time()
        await read_all(stream)
        elapsed = trio.current_time() - start
    assert stream.completion.text
    assert [a.cause for a in stream.attempts] == ["timeout", None]
    assert 0.3 <= elapsed < slack(2, now)
    log = await finished_records(server, 2)
    assert log[0].outcome == "hang"
    assert log[0].disconnected  # the client gave the hung request up


# --------------------------------------------------------------------------- timeouts


async def test_time_to_first_token_beyond_first_token(server: ms.MockServer) -> None:
    now = await pace.round_trip(server.url + "/models")
    server.configure(ttft=ms.Latency.fixed(5.0))
    timeouts = pt.Timeouts(first_token=0.25)
    async with client_for(server, retry=pt.RetryPolicy.no_retries(), timeouts=timeouts) as client:
        start = trio.current_time()
        with pytest.raises(pt.APITimeoutError) as info:
            await read_all(client.chat_stream(MESSAGES))
        elapsed = trio.current_time() - start
    assert info.value.which == "first_token"
    assert "status 200" in str(info.value)  # the headers came, the first chunk did not
    assert 0.25 <= elapsed < slack(1.5, now)
    log = await finished_records(server, 1)
    assert log[0].disconnected


async def test_ttft_within_first_token_is_fine(server: ms.MockServer) -> None:
    server.configure(ttft=ms.Latency.fixed(0.2), token_delay=0.01)
    timeouts = pt.Timeouts(first_token=1.0, read=0.5)
    async with client_for(server, timeouts=timeouts) as client:
        stream = client.chat_stream(MESSAGES)
        await read_all(stream)
    assert stream.completion.text


async def test_silence_between_chunks_is_a_stream_timeout(server: ms.MockServer) -> None:
    server.configure(token_delay=3.0)
    timeouts = pt.Timeouts(first_token=1.0, read=0.25)
    deltas: list[str] = []
    async with client_for(server, retry=FAST_RETRY, timeouts=timeouts) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            await read_all(client.chat_stream(MESSAGES, restart=None), deltas)
        stats = client.statistics()
    assert info.value.which == "stream"
    assert deltas == [""]  # the role chunk came at once, then silence
    assert (stats.failed, stats.retries) == (1, 0)
    log = await finished_records(server, 1)
    assert len(log) == 1
    assert log[0].disconnected


# --------------------------------------------------------------------------- leaving early


async def test_leaving_early_disconnects_at_once(server: ms.MockServer) -> None:
    now = await pace.round_trip(server.url + "/models")
    server.configure(token_delay=0.05)
    async with client_for(server) as client:
        async with client.chat_stream(MESSAGES, max_tokens=100) as stream:
            async for chunk in stream:
                if chunk.delta:
                    break
        left = trio.current_time()
        log = await finished_records(server, 1)
        stats = client.statistics()
    assert log[0].disconnected
    assert log[0].finish is not None
    # seen by the server within one token delay or so
    assert log[0].finish - left < slack(0.5, now)
    assert server.stats().disconnects == 1
    assert (stats.cancelled, stats.in_flight) == (1, 0)


async def test_cancellation_from_outside(server: ms.MockServer) -> None:
    server.configure(token_delay=0.1)  # 100 tokens: 10 s of stream
    deltas: list[str] = []
    async with client_for(server) as client:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all, client.chat_stream(MESSAGES, max_tokens=100), deltas)
                while len(deltas) < 3:  # cancelled mid-stream, however slow the machine
                    await trio.sleep(0.01)
                scope.cancel()
        stats = client.statistics()
        log = await finished_records(server, 1)
    assert scope.cancelled_caught
    assert 3 <= len(deltas) < 100
    assert (stats.cancelled, stats.failed, stats.in_flight) == (1, 0, 0)
    assert log[0].disconnected


async def test_cancellation_while_waiting_for_the_first_chunk(server: ms.MockServer) -> None:
    server.configure(ttft=ms.Latency.fixed(10.0))
    async with client_for(server) as client:
        with trio.move_on_after(0.2):
            await read_all(client.chat_stream(MESSAGES))
        log = await finished_records(server, 1)
        assert client.statistics().cancelled == 1
    assert log[0].disconnected


# --------------------------------------------------------------------------- openai client


async def test_the_official_openai_client_streams_from_the_mock(server: ms.MockServer) -> None:
    # The sync client, in a worker thread: openai's AsyncStream stops at [DONE] without
    # finishing its async generators, which trio reports as ResourceWarnings (an SDK issue).
    openai = pytest.importorskip("openai")
    server.configure(token_delay=0.001)

    def stream_with_openai() -> tuple[list[str], Any]:
        with openai.OpenAI(
            api_key="test-key", base_url=server.root_url + "/v1", max_retries=0
        ) as client:
            stream = client.chat.completions.create(
                model="alfred-4.2",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=50,
            )
            parts: list[str] = []
            usage = None
            with stream:
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                    if chunk.usage is not None:
                        usage = chunk.usage
            return parts, usage

    parts, usage = await trio.to_thread.run_sync(stream_with_openai)
    assert "".join(parts)
    assert usage is not None
    assert usage.completion_tokens == len(parts)
    # And ours reads the same stream for the same request.
    async with client_for(server) as ours:
        mine = ours.chat_stream(MESSAGES, max_tokens=50, model="alfred-4.2")
        await read_all(mine)
    assert mine.completion.text == "".join(parts)
    assert mine.completion.usage.completion_tokens == usage.completion_tokens
