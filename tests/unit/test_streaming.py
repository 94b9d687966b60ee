"""``Client.chat_stream``: SSE streaming over ``httpx2.MockTransport`` on trio's MockClock.

A stream body is a list of *pieces*: bytes (sent as one network chunk), a number (sleep that
many virtual seconds), :data:`HANG` (never send anything more), or an exception instance
(raised from the body, like a connection that breaks).  The body records, in ``closed``,
the virtual time at which the client closed it, which is how these tests see a disconnect.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._endpoints._chunks import DRAIN_GRACE
from paradigm_trio._endpoints._streaming import ChatStream

from .helpers import API_KEY, MESSAGES, Events, Script, fixed, make_client, status

HANG = object()


def chunk(
    delta: str | None = None,
    *,
    role: str | None = None,
    finish: str | None = None,
    usage: tuple[int, int] | None = None,
    id: str = "chatcmpl-s1",
) -> bytes:
    """One ``data:`` event holding a ``chat.completion.chunk``."""
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "alfred-4.2",
        "choices": [],
    }
    if usage is None:
        d: dict[str, Any] = {}
        if role is not None:
            d["role"] = role
        if delta is not None:
            d["content"] = delta
        body["choices"] = [{"index": 0, "delta": d, "finish_reason": finish}]
        body["usage"] = None
    else:
        body["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def answer(*words: str, usage: tuple[int, int] | None = (5, 3)) -> list[bytes]:
    """The events of a complete answer: role chunk, one chunk a word, finish, usage, DONE."""
    events = [chunk("", role="assistant")]
    events += [chunk(w) for w in words]
    events.append(chunk(finish="stop"))
    if usage is not None:
        events.append(chunk(usage=usage))
    events.append(DONE)
    return events


class Body:
    """A streamed response body; records when the client closed it."""

    def __init__(self, *pieces: object) -> None:
        self.pieces = pieces
        self.closed: list[float] = []
        self.finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            for piece in self.pieces:
                if piece is HANG:
                    await trio.sleep_forever()
                elif isinstance(piece, int | float):
                    await trio.sleep(piece)
                elif isinstance(piece, BaseException):
                    raise piece
                else:
                    assert isinstance(piece, bytes)
                    yield piece
            self.finished = True
        finally:
            self.closed.append(trio.current_time())


def sse(
    *pieces: object,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "text/event-stream",
) -> tuple[httpx2.Response, Body]:
    body = Body(*pieces)
    response = httpx2.Response(
        status,
        headers={"content-type": content_type, "x-request-id": "req-1", **(headers or {})},
        content=body.__aiter__(),
    )
    return response, body


def cut_error() -> httpx2.RemoteProtocolError:
    return httpx2.RemoteProtocolError("peer closed connection without sending complete body")


async def consume(stream: ChatStream) -> list[pt.ChatCompletionChunk]:
    return [c async for c in stream]


async def collect(stream: ChatStream, deltas: list[str] | None = None) -> ChatStream:
    """Enter ``stream`` and read it to its end, appending each delta to ``deltas``."""
    async with stream:
        async for c in stream:
            if deltas is not None:
                deltas.append(c.delta)
    return stream


# --------------------------------------------------------------------------- the happy path


@pytest.mark.anyio
async def test_stream_yields_typed_chunks_and_assembles_the_completion() -> None:
    response, body = sse(*answer("Hel", "lo ", "wörld"))
    script = Script(response)
    events = Events()
    async with make_client(script, on_event=events) as client:
        async with client.chat_stream(MESSAGES, temperature=0.2, custom_id="s-1") as stream:
            chunks = await consume(stream)
        assert [c.delta for c in chunks] == ["", "Hel", "lo ", "wörld", "", ""]
        assert chunks[0].role == "assistant"
        assert chunks[1].role is None
        assert chunks[4].finish_reason == "stop"
        assert [c.usage for c in chunks[:5]] == [None] * 5
        assert chunks[5].usage == pt.Usage(5, 3, 8)
        assert chunks[1].id == "chatcmpl-s1"
        assert chunks[1].model == "alfred-4.2"
        assert chunks[1].raw["object"] == "chat.completion.chunk"
        assert isinstance(chunks[0], pt.ChatCompletionChunk)
        with pytest.raises(AttributeError):
            chunks[0].delta = "x"  # type: ignore[misc]

        completion = stream.completion
        assert isinstance(completion, pt.ChatCompletion)
        assert completion.text == "Hello wörld" == stream.text
        assert completion.finish_reason == "stop"
        assert completion.usage == pt.Usage(5, 3, 8)
        assert completion.id == "chatcmpl-s1"
        assert completion.model == "alfred-4.2"
        assert completion.request_id == "req-1"
        assert completion.choices[0].message.role == "assistant"
        assert completion.raw["choices"][0]["message"]["content"] == "Hello wörld"
        assert completion.raw["usage"]["total_tokens"] == 8
        assert [a.status for a in stream.attempts] == [200]

        stats = client.statistics()
        assert (stats.started, stats.succeeded, stats.failed, stats.cancelled) == (1, 1, 0, 0)
        assert (stats.attempts, stats.retries, stats.in_flight) == (1, 0, 0)
        assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (5, 3, 8)
    assert body.finished
    assert events.kinds() == ["AttemptStarted", "RequestFinished"]
    finished = events.of(pt.RequestFinished)[0]
    assert finished.ok
    assert finished.total_tokens == 8
    assert finished.custom_id == "s-1"

    sent = script.bodies()[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["temperature"] == 0.2
    assert sent["messages"] == MESSAGES
    request = script.requests[0]
    assert request.url.path == "/api/v2/chat/completions"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["idempotency-key"].startswith("pt-")


@pytest.mark.anyio
async def test_include_usage_false_and_a_chat_request() -> None:
    script = Script(sse(*answer("a", usage=None))[0])
    request = pt.ChatRequest(messages=MESSAGES, max_tokens=9, extra={"guided_json": {}})
    async with make_client(script) as client:
        async with client.chat_stream(request, include_usage=False, model="m2") as stream:
            chunks = await consume(stream)
        assert all(c.usage is None for c in chunks)
        assert stream.completion.usage is None  # unknown, not zero
        assert "usage" not in stream.completion.raw
        stats = client.statistics()
        assert (stats.succeeded, stats.unknown_usage, stats.total_tokens) == (1, 1, 0)
        assert stream.request.model == "m2"
    sent = script.bodies()[0]
    assert "stream_options" not in sent
    assert (sent["model"], sent["max_tokens"], sent["guided_json"]) == ("m2", 9, {})


@pytest.mark.anyio
async def test_stream_options_given_in_extra_are_kept() -> None:
    script = Script(sse(*answer("a"))[0])
    extra = {"stream_options": {"x": 1}}
    async with make_client(script) as client, client.chat_stream(MESSAGES, extra=extra) as s:
        await consume(s)
    assert script.bodies()[0]["stream_options"] == {"x": 1, "include_usage": True}


@pytest.mark.anyio
async def test_events_split_at_every_byte_with_crlf_comments_and_multiline_data() -> None:
    text = "Grüße, 世界 🎉"
    whole = b": hello\r\n\r\n" + b"".join(answer(*text.split(" "))).replace(b"\n", b"\r\n")
    # One data field split over two lines (JSON allows the newline).
    whole = whole.replace(b'data: {"id"', b'data: {\r\ndata: "id"', 1)
    pieces = [whole[i : i + 1] for i in range(len(whole))]
    script = Script(sse(*pieces)[0])
    async with make_client(script) as client, client.chat_stream(MESSAGES) as stream:
        chunks = await consume(stream)
    assert stream.completion.text == "Grüße,世界🎉"
    assert len(chunks) == 6


@pytest.mark.anyio
async def test_ping_events_and_empty_data_are_not_chunks() -> None:
    script = Script(
        sse(b"event: ping\ndata: {}\n\n", b"data:\n\n", chunk("x"), b": c\n\n", DONE)[0]
    )
    async with make_client(script) as client, client.chat_stream(MESSAGES) as stream:
        chunks = await consume(stream)
    assert [c.delta for c in chunks] == ["x"]


@pytest.mark.anyio
async def test_done_alone_is_an_empty_complete_answer() -> None:
    script = Script(sse(DONE)[0])
    async with make_client(script) as client:
        async with client.chat_stream(MESSAGES) as stream:
            assert await consume(stream) == []
        assert stream.completion.text == ""
        assert client.statistics().succeeded == 1


@pytest.mark.anyio
async def test_events_after_done_are_ignored_and_the_body_is_drained() -> None:
    response, body = sse(chunk("a"), DONE, chunk("b"), b"event: error\ndata: {}\n\n")
    async with make_client(Script(response)) as client, client.chat_stream(MESSAGES) as stream:
        assert [c.delta for c in await consume(stream)] == ["a"]
    assert body.finished


@pytest.mark.anyio
async def test_a_server_that_hangs_after_done_costs_only_the_drain_grace() -> None:
    response, body = sse(chunk("a"), DONE, HANG)
    async with make_client(Script(response)) as client:
        async with client.chat_stream(MESSAGES) as stream:
            start = trio.current_time()
            await consume(stream)
            assert trio.current_time() - start == pytest.approx(DRAIN_GRACE)
        assert stream.completion.text == "a"
    assert body.closed


@pytest.mark.anyio
async def test_a_streamed_batch_item_assembles_the_completion() -> None:
    script = Script(sse(*answer("one", "two"))[0])
    async with make_client(script) as client:
        [result] = await client.chat_batch([MESSAGES], stream=True)
    assert result.completion is not None
    assert result.completion.text == "onetwo"
    assert result.attempts == 1


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.anyio
async def test_leaving_early_closes_the_response_at_once() -> None:
    paced = [p for event in answer("a", "b", "c") for p in (0.5, event)]  # tokens take time
    response, body = sse(*paced)
    async with make_client(Script(response)) as client:
        async with client.chat_stream(MESSAGES) as stream:
            async for c in stream:
                if c.delta == "a":
                    break
            assert not body.closed  # still open inside the block
        assert body.closed == [trio.current_time()]
        assert not body.finished
        with pytest.raises(RuntimeError, match="not been read to its end"):
            _ = stream.completion
        stats = client.statistics()
        assert (stats.succeeded, stats.failed, stats.cancelled, stats.in_flight) == (0, 0, 1, 0)
        assert client._limiter.borrowed_tokens == 0
        with pytest.raises(RuntimeError, match="closed"):
            await stream.__anext__()


@pytest.mark.anyio
async def test_an_exception_in_the_block_closes_the_stream() -> None:
    response, body = sse(chunk("a"), HANG)
    async with make_client(Script(response)) as client:

        async def fail_in_the_block() -> None:
            async with client.chat_stream(MESSAGES) as stream:
                async for _ in stream:
                    raise KeyError("boom")

        with pytest.raises(KeyError):
            await fail_in_the_block()
        assert body.closed
        assert client.statistics().cancelled == 1


@pytest.mark.anyio
async def test_cancellation_from_outside_closes_the_stream() -> None:
    response, body = sse(chunk("a"), 1.0, chunk("b"), HANG)
    async with make_client(Script(response), timeouts=pt.Timeouts(read=100)) as client:
        received: list[str] = []
        with trio.move_on_after(5) as scope:
            async with client.chat_stream(MESSAGES) as stream:
                async for c in stream:
                    received.append(c.delta)
        assert scope.cancelled_caught
        assert received == ["a", "b"]
        assert body.closed == [pytest.approx(5.0)]
        stats = client.statistics()
        assert (stats.cancelled, stats.failed, stats.in_flight) == (1, 0, 0)
        assert client._limiter.borrowed_tokens == 0


@pytest.mark.anyio
async def test_cancellation_while_waiting_for_the_first_chunk() -> None:
    response, body = sse(HANG)
    async with make_client(Script(response)) as client:
        with trio.move_on_after(3):
            async with client.chat_stream(MESSAGES):
                raise AssertionError("never entered")
        assert body.closed
        assert client.statistics().cancelled == 1
        assert client._limiter.borrowed_tokens == 0


@pytest.mark.anyio
async def test_misuse_is_refused() -> None:
    async with make_client(Script(sse(*answer("a"))[0])) as client:
        stream = client.chat_stream(MESSAGES)
        with pytest.raises(RuntimeError, match="enter the stream first"):
            await stream.__anext__()
        async with stream:
            await consume(stream)
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()
        with pytest.raises(RuntimeError, match="only once"):
            async with stream:
                pass
        assert "finished" in repr(stream)
    with pytest.raises(RuntimeError, match="closed"):
        async with client.chat_stream(MESSAGES):
            pass
    with pytest.raises(ValueError, match="temperature"):
        client.chat_stream(MESSAGES, temperature=5)


@pytest.mark.anyio
async def test_the_concurrency_slot_is_held_while_the_stream_is_open() -> None:
    first, _ = sse(chunk("a"), 10.0, chunk("b"), DONE)
    second, _ = sse(*answer("c"))
    script = Script(first, second)
    async with make_client(script, limits=pt.Limits(concurrency=1)) as client:
        done: list[float] = []

        async def other() -> None:
            async with client.chat_stream(MESSAGES) as stream:
                await consume(stream)
            done.append(trio.current_time())

        async with trio.open_nursery() as nursery, client.chat_stream(MESSAGES) as stream:
            nursery.start_soon(other)
            await trio.sleep(1)
            assert client.statistics().in_flight == 1
            assert script.calls == 1
            await consume(stream)
        # The body's 10 s pause starts when the first chunk is read, after the 1 s sleep.
        assert script.times[1] == pytest.approx(11.0)
        assert done == [pytest.approx(11.0)]
        assert client.statistics().succeeded == 2


# --------------------------------------------------------------------------- no [DONE]


def choices_chunk(*choices: tuple[int, str | None, str | None]) -> bytes:
    """One chunk with several choices, each ``(index, content, finish_reason)``."""
    body = {
        "id": "chatcmpl-n",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "alfred-4.2",
        "choices": [
            {"index": i, "delta": {} if text is None else {"content": text}, "finish_reason": f}
            for i, text, f in choices
        ],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@pytest.mark.anyio
async def test_a_complete_stream_without_done_is_accepted_with_an_event() -> None:
    response, body = sse(*answer("ab", "cde")[:-1])  # finish and usage, but no [DONE]
    events = Events()
    async with make_client(Script(response), on_event=events) as client:
        received: list[str] = []
        stream = await collect(client.chat_stream(MESSAGES, custom_id="nd"), received)
        stats = client.statistics()
    assert received == ["", "ab", "cde", "", ""]
    completion = stream.completion
    assert (completion.text, completion.finish_reason) == ("abcde", "stop")
    assert completion.usage == pt.Usage(5, 3, 8)
    assert (stats.succeeded, stats.failed, stats.total_tokens, stats.in_flight) == (1, 0, 8, 0)
    assert events.kinds() == ["AttemptStarted", "StreamEndedWithoutDone", "RequestFinished"]
    (ended,) = events.of(pt.StreamEndedWithoutDone)
    key = events.of(pt.AttemptStarted)[0].idempotency_key
    assert ended == pt.StreamEndedWithoutDone("nd", key, 1, connection_error=None)
    assert events.of(pt.RequestFinished)[0].total_tokens == 8
    assert body.finished
    assert len(body.closed) == 1


@pytest.mark.anyio
async def test_a_hook_raising_on_the_no_done_event_still_ends_the_request() -> None:
    def hook(event: pt.Event) -> None:
        if isinstance(event, pt.StreamEndedWithoutDone):
            raise RuntimeError("hook failed")

    response, body = sse(*answer("ab")[:-1])
    async with make_client(Script(response), on_event=hook) as client:
        with pytest.raises(RuntimeError, match="hook failed"):
            await collect(client.chat_stream(MESSAGES))
        stats = client.statistics()
    assert (stats.in_flight, stats.succeeded) == (0, 1)  # the lease was given back
    assert len(body.closed) == 1


@pytest.mark.anyio
async def test_a_stream_ending_after_its_finish_but_before_usage_has_unknown_usage() -> None:
    response, _ = sse(*answer("ab", "cde")[:-2])  # the finish chunk, then the end
    events = Events()
    async with make_client(Script(response), on_event=events) as client:
        stream = await collect(client.chat_stream(MESSAGES))
        stats = client.statistics()
    assert stream.completion.text == "abcde"
    assert stream.completion.usage is None
    assert "usage" not in stream.completion.raw
    assert (stats.succeeded, stats.unknown_usage, stats.total_tokens) == (1, 1, 0)
    assert events.kinds()[-2:] == ["StreamEndedWithoutDone", "RequestFinished"]
    assert events.of(pt.RequestFinished)[0].total_tokens is None


@pytest.mark.anyio
async def test_a_usage_chunk_cut_after_the_finish_is_dropped_not_an_error() -> None:
    partial = chunk(usage=(5, 3))[:30]  # the body ends inside the usage event
    response, _ = sse(chunk("a", role="assistant"), chunk(finish="stop"), partial)
    async with make_client(Script(response)) as client:
        stream = await collect(client.chat_stream(MESSAGES))
    assert (stream.completion.text, stream.completion.usage) == ("a", None)


@pytest.mark.anyio
async def test_every_choice_must_finish_for_a_stream_without_done() -> None:
    both = sse(choices_chunk((0, "x", None), (1, "y", None)), choices_chunk((0, None, "stop")))
    script = Script(both[0])
    async with make_client(script) as client:
        with pytest.raises(pt.IncompleteStreamError, match=r"before choice\(s\) 1 finished"):
            await collect(client.chat_stream(MESSAGES, restart=None))
    finished = sse(
        choices_chunk((0, "x", None), (1, "y", None)),
        choices_chunk((1, None, "length")),
        choices_chunk((0, None, "stop")),
    )
    events = Events()
    async with make_client(Script(finished[0]), on_event=events) as client:
        stream = await collect(client.chat_stream(MESSAGES, restart=None))
    assert stream.completion.text == "x"  # only the first choice is assembled
    assert "StreamEndedWithoutDone" in events.kinds()


@pytest.mark.anyio
async def test_a_stream_with_only_a_usage_chunk_and_no_done_is_incomplete() -> None:
    script = Script(sse(chunk(usage=(5, 3)))[0])
    async with make_client(script) as client:
        with pytest.raises(pt.IncompleteStreamError, match="or a finish_reason"):
            await collect(client.chat_stream(MESSAGES, restart=None))


@pytest.mark.anyio
async def test_a_streamed_batch_item_without_done_is_accepted_with_an_event() -> None:
    cut = sse(*answer("a", "b")[:-3])[0]  # no finish: an incomplete attempt, retried
    complete = sse(*answer("a", "b")[:-1])[0]  # complete, but no [DONE]
    events = Events()
    async with make_client(Script(cut, complete), retry=fixed(), on_event=events) as client:
        [result] = await client.chat_batch(
            [pt.ChatRequest(messages=MESSAGES, custom_id="b1")], stream=True
        )
    assert result.completion is not None
    assert (result.completion.text, result.attempts) == ("ab", 2)
    assert result.usage == pt.Usage(5, 3, 8)
    assert result.error is None
    (ended,) = events.of(pt.StreamEndedWithoutDone)
    assert (ended.custom_id, ended.attempt) == ("b1", 2)
    assert events.kinds()[-2:] == ["StreamEndedWithoutDone", "RequestFinished"]
    assert events.of(pt.AttemptFailed)[0].attempt.cause == "connection"


# --------------------------------------------------------------------------- broken streams


@pytest.mark.anyio
async def test_an_end_before_any_finish_reason_is_an_error_that_says_how_much_arrived() -> None:
    response, _ = sse(*answer("ab", "cde")[:-3])  # no finish chunk, no usage, no [DONE]
    script = Script(response, default=sse(*answer("x"))[0])
    events = Events()
    async with make_client(script, on_event=events) as client:
        received: list[str] = []
        stream = client.chat_stream(MESSAGES, restart=None)
        with pytest.raises(pt.IncompleteStreamError) as info:
            await collect(stream, received)
        err = info.value
        assert isinstance(err, pt.APIConnectionError)
        assert "ended without [DONE] or a finish_reason" in str(err)
        assert "3 chunk(s), 5 character(s)" in str(err)
        assert (err.chunks, err.characters, err.text) == (3, 5, "abcde")
        assert received == ["", "ab", "cde"]
        assert script.calls == 1  # never restarted after chunks were delivered
        assert [a.cause for a in err.attempts] == ["connection"]
        assert any("not retried" in note for note in err.__notes__)
        with pytest.raises(RuntimeError):
            _ = stream.completion
        stats = client.statistics()
        assert (stats.failed, stats.succeeded, stats.total_tokens, stats.retries) == (1, 0, 0, 0)
    assert events.kinds() == ["AttemptStarted", "AttemptFailed", "RequestFinished"]
    assert events.of(pt.AttemptFailed)[0].will_retry is False
    assert events.of(pt.RequestFinished)[0].ok is False


@pytest.mark.anyio
async def test_a_stream_cut_mid_event() -> None:
    partial = chunk("never")[:25]
    script = Script(sse(chunk("a"), partial)[0])
    async with make_client(script) as client:
        with pytest.raises(pt.IncompleteStreamError, match="cut in the middle of an event"):
            async with client.chat_stream(MESSAGES, restart=None) as stream:
                await consume(stream)
    assert script.calls == 1


@pytest.mark.anyio
async def test_a_connection_that_breaks_mid_stream() -> None:
    script = Script(sse(chunk("a"), chunk("b"), cut_error())[0])
    async with make_client(script) as client:
        with pytest.raises(
            pt.IncompleteStreamError, match="connection broke after 2 chunk"
        ) as info:
            async with client.chat_stream(MESSAGES, restart=None) as stream:
                await consume(stream)
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert info.value.text == "ab"


@pytest.mark.anyio
async def test_a_connection_that_breaks_after_every_choice_finished_is_a_whole_answer() -> None:
    response, body = sse(*answer("ab", "cde")[:-2], cut_error())  # finish, then it broke
    events = Events()
    async with make_client(Script(response), on_event=events) as client:
        stream = await collect(client.chat_stream(MESSAGES, custom_id="br"))
        stats = client.statistics()
    assert (stream.completion.text, stream.completion.finish_reason) == ("abcde", "stop")
    assert stream.completion.usage is None  # the usage chunk never came
    assert (stats.succeeded, stats.failed, stats.retries) == (1, 0, 0)
    (ended,) = events.of(pt.StreamEndedWithoutDone)
    assert ended.connection_error is not None
    assert ended.connection_error.startswith("RemoteProtocolError: peer closed connection")
    assert events.kinds() == ["AttemptStarted", "StreamEndedWithoutDone", "RequestFinished"]
    assert len(body.closed) == 1


@pytest.mark.anyio
async def test_a_streamed_batch_item_broken_after_its_finish_is_not_resent() -> None:
    broken = sse(*answer("a", "b")[:-1], cut_error())[0]  # finish and usage, then it broke
    script = Script(broken, default=sse(*answer("never"))[0])
    events = Events()
    async with make_client(script, retry=fixed(), on_event=events) as client:
        [result] = await client.chat_batch(
            [pt.ChatRequest(messages=MESSAGES, custom_id="b2")], stream=True
        )
    assert result.completion is not None
    assert (result.completion.text, result.attempts, script.calls) == ("ab", 1, 1)
    assert result.usage == pt.Usage(5, 3, 8)
    (ended,) = events.of(pt.StreamEndedWithoutDone)
    assert (ended.custom_id, ended.attempt) == ("b2", 1)
    assert ended.connection_error is not None


@pytest.mark.anyio
async def test_a_connection_broken_before_every_choice_finished_is_still_incomplete() -> None:
    both = choices_chunk((0, "x", None), (1, "y", None))
    script = Script(sse(both, choices_chunk((0, None, "stop")), cut_error())[0])
    async with make_client(script) as client:
        with pytest.raises(pt.IncompleteStreamError, match="connection broke after 2 chunk"):
            await collect(client.chat_stream(MESSAGES, restart=None))


@pytest.mark.anyio
async def test_an_error_event_mid_stream_is_raised() -> None:
    error = {"error": {"message": "overloaded", "type": "server_error", "code": 503}}
    script = Script(
        sse(chunk("a"), b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n")[0]
    )
    async with make_client(script) as client:
        with pytest.raises(pt.InternalServerError) as info:
            async with client.chat_stream(MESSAGES, restart=None) as stream:
                await consume(stream)
        err = info.value
        assert err.status_code == 503
        assert err.type == "server_error"
        assert "overloaded" in str(err)
        assert "after 1 chunk(s)" in str(err)
        assert err.body == error
        assert [a.cause for a in err.attempts] == ["503"]
        assert script.calls == 1
        assert client.statistics().failed == 1


@pytest.mark.anyio
async def test_an_error_payload_without_a_status_is_an_api_error() -> None:
    error = {"error": {"message": "model crashed", "type": "server_error", "code": "stream_error"}}
    script = Script(sse(chunk("a"), b"data: " + json.dumps(error).encode() + b"\n\n")[0])
    async with make_client(script) as client:
        with pytest.raises(pt.APIError, match="model crashed") as info:
            async with client.chat_stream(MESSAGES, restart=None) as stream:
                await consume(stream)
    assert type(info.value) is pt.APIError
    assert info.value.attempts[0].cause == "stream_error"


@pytest.mark.anyio
async def test_an_error_event_with_plain_text_data() -> None:
    script = Script(sse(chunk("a"), b"event: error\ndata: it broke\n\n")[0])
    async with make_client(script) as client:
        with pytest.raises(pt.APIError, match="it broke"):
            async with client.chat_stream(MESSAGES, restart=None) as stream:
                await consume(stream)


@pytest.mark.anyio
async def test_invalid_chunks_are_validation_errors() -> None:
    script = Script(
        sse(chunk("a"), b"data: {not json\n\n")[0],
        sse(chunk("a"), b'data: {"choices": [{"delta": {"content": 5}}]}\n\n')[0],
    )
    async with make_client(script) as client:
        for match in ("not JSON", "delta.content"):
            with pytest.raises(pt.APIResponseValidationError, match=match):
                async with client.chat_stream(MESSAGES, restart=None) as stream:
                    await consume(stream)


@pytest.mark.anyio
async def test_a_json_answer_instead_of_a_stream() -> None:
    script = Script(default=sse(b"{}", content_type="application/json")[0])
    async with make_client(script, retry=fixed(attempts=2)) as client:
        with pytest.raises(pt.APIResponseValidationError, match="text/event-stream"):
            async with client.chat_stream(MESSAGES):
                pass
    assert script.calls == 2  # an invalid response is retried (before any chunk)


# --------------------------------------------------------------------------- retries


@pytest.mark.anyio
async def test_failures_before_the_first_chunk_are_retried_with_the_same_key() -> None:
    error_event = b'event: error\ndata: {"error": {"message": "busy", "code": 503}}\n\n'
    script = Script(
        status(503),
        httpx2.ConnectError,
        sse()[0],  # ends before any chunk
        sse(cut_error())[0],
        sse(error_event)[0],
        sse(*answer("ok"))[0],
    )
    events = Events()
    policy = fixed(attempts=6, initial_delay=1, multiplier=1)
    async with make_client(script, on_event=events, retry=policy) as client:
        async with client.chat_stream(MESSAGES, custom_id="job-7") as stream:
            chunks = await consume(stream)
        assert stream.completion.text == "ok"
        assert [c.delta for c in chunks][:2] == ["", "ok"]
        assert [a.cause for a in stream.attempts] == [
            "503",
            "connection",
            "connection",
            "connection",
            "503",
            None,
        ]
        stats = client.statistics()
        assert (stats.attempts, stats.retries, stats.succeeded) == (6, 5, 1)
        assert dict(stats.retries_by_cause) == {"503": 2, "connection": 3}
    keys = set(script.header("idempotency-key"))
    assert len(keys) == 1
    assert script.gaps() == [pytest.approx(1.0)] * 5
    assert events.kinds().count("RetryScheduled") == 5
    assert events.kinds()[-1] == "RequestFinished"


@pytest.mark.anyio
async def test_a_non_retryable_status_is_raised_at_once() -> None:
    script = Script(status(400, {"error": {"message": "bad model", "param": "model"}}))
    async with make_client(script) as client:
        with pytest.raises(pt.BadRequestError, match="bad model") as info:
            async with client.chat_stream(MESSAGES):
                pass
        assert info.value.param == "model"
        assert script.calls == 1
        assert client.statistics().failed == 1
        assert client._limiter.borrowed_tokens == 0


@pytest.mark.anyio
async def test_429_honours_retry_after_and_emits_rate_limited() -> None:
    script = Script(status(429, headers={"retry-after": "3"}), sse(*answer("a"))[0])
    events = Events()
    async with make_client(script, on_event=events) as client:
        await collect(client.chat_stream(MESSAGES))
    assert script.gaps() == [pytest.approx(3.0)]
    assert events.of(pt.RateLimited)[0].retry_after == 3.0
    assert events.of(pt.RetryScheduled)[0].server_requested


@pytest.mark.anyio
async def test_retries_give_up_after_the_policy() -> None:
    script = Script(default=lambda request: status(502))
    async with make_client(script, retry=fixed(attempts=3, initial_delay=0.5)) as client:
        with pytest.raises(pt.InternalServerError) as info:
            async with client.chat_stream(MESSAGES):
                pass
    assert script.calls == 3
    assert len(info.value.attempts) == 3
    assert any("gave up after 3" in n for n in info.value.__notes__)


# --------------------------------------------------------------------------- timeouts


@pytest.mark.anyio
async def test_first_token_timeout_is_retried_then_raised() -> None:
    script = Script(default=lambda request: sse(100.0, *answer("late"))[0])
    timeouts = pt.Timeouts(first_token=2.0, read=50)
    async with make_client(script, retry=fixed(attempts=2, initial_delay=1)) as client:
        start = trio.current_time()
        with pytest.raises(pt.APITimeoutError) as info:
            async with client.chat_stream(MESSAGES, timeouts=timeouts):
                pass
        assert trio.current_time() - start == pytest.approx(5.0)  # 2 + 1 + 2
        assert info.value.which == "first_token"
        assert "Timeouts.first_token=2s" in str(info.value)
        assert [a.cause for a in info.value.attempts] == ["timeout", "timeout"]
        assert script.calls == 2
        assert client.statistics().in_flight == 0


@pytest.mark.anyio
async def test_first_token_covers_waiting_for_the_headers() -> None:
    async def slow(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(100)
        raise AssertionError("unreachable")

    script = Script(slow)
    async with make_client(script, retry=pt.RetryPolicy.no_retries()) as client:
        with pytest.raises(pt.APITimeoutError, match="no response") as info:
            async with client.chat_stream(MESSAGES, timeouts=pt.Timeouts(first_token=4)):
                pass
    assert info.value.which == "first_token"
    assert trio.current_time() == pytest.approx(4.0, abs=0.01)


@pytest.mark.anyio
async def test_first_token_then_a_slow_but_steady_stream() -> None:
    # Chunks every 3 s for 30 s: within first_token and read, far beyond either alone.
    pieces: list[object] = [1.0, chunk("", role="assistant")]
    for i in range(10):
        pieces += [3.0, chunk(str(i))]
    pieces.append(DONE)
    script = Script(sse(*pieces)[0])
    timeouts = pt.Timeouts(first_token=2, read=5, attempt=10)
    async with make_client(script) as client:
        stream = await collect(client.chat_stream(MESSAGES, timeouts=timeouts))
    assert stream.completion.text == "0123456789"
    assert trio.current_time() == pytest.approx(31.0, abs=0.01)  # attempt does not cap it


@pytest.mark.anyio
async def test_inactivity_after_the_first_chunk_raises_stream_timeout() -> None:
    response, body = sse(chunk("a"), chunk("b"), HANG)
    script = Script(response, default=sse(*answer("x"))[0])
    async with make_client(script) as client:
        received: list[str] = []
        with pytest.raises(pt.APITimeoutError) as info:
            await collect(
                client.chat_stream(MESSAGES, timeouts=pt.Timeouts(read=7), restart=None), received
            )
        assert info.value.which == "stream"
        assert "silent for Timeouts.read=7s after 2 chunk(s)" in str(info.value)
        assert received == ["a", "b"]
        assert script.calls == 1
        assert body.closed == [pytest.approx(7.0)]
        assert client.statistics().failed == 1


@pytest.mark.anyio
async def test_keep_alive_comments_do_not_count_as_activity() -> None:
    pieces: list[object] = [chunk("a")]
    pieces += [1.0, b": ping\n\n"] * 20
    script = Script(sse(*pieces)[0])
    async with make_client(script) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            async with client.chat_stream(
                MESSAGES, timeouts=pt.Timeouts(read=5), restart=None
            ) as stream:
                await consume(stream)
    assert info.value.which == "stream"
    assert trio.current_time() == pytest.approx(5.0)


@pytest.mark.anyio
async def test_a_slow_consumer_does_not_trip_the_inactivity_timeout() -> None:
    script = Script(sse(*answer("a", "b", "c"))[0])
    async with make_client(script, timeouts=pt.Timeouts(read=1)) as client:
        async with client.chat_stream(MESSAGES) as stream:
            async for _ in stream:
                await trio.sleep(10)
        assert stream.completion.text == "abc"


@pytest.mark.anyio
async def test_read_bounds_the_first_chunk_when_first_token_is_none() -> None:
    script = Script(sse(HANG)[0])
    timeouts = pt.Timeouts(first_token=None, read=3)
    async with make_client(script, retry=pt.RetryPolicy.no_retries()) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            async with client.chat_stream(MESSAGES, timeouts=timeouts):
                pass
    assert info.value.which == "stream"
    assert trio.current_time() == pytest.approx(3.0)


@pytest.mark.anyio
async def test_attempt_timeout_before_the_first_chunk() -> None:
    script = Script(sse(HANG)[0])
    timeouts = pt.Timeouts(first_token=20, attempt=6)
    async with make_client(script, retry=pt.RetryPolicy.no_retries()) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            async with client.chat_stream(MESSAGES, timeouts=timeouts):
                pass
    assert info.value.which == "attempt"


@pytest.mark.anyio
async def test_total_timeout_bounds_the_whole_stream() -> None:
    pieces: list[object] = [chunk("a")]
    pieces += [2.0, chunk("b")] * 10
    script = Script(sse(*pieces)[0])
    async with make_client(script) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            async with client.chat_stream(
                MESSAGES, timeouts=pt.Timeouts(total=9, read=5)
            ) as stream:
                await consume(stream)
        assert info.value.which == "total"
        assert trio.current_time() == pytest.approx(9.0)
        assert client.statistics().failed == 1


@pytest.mark.anyio
async def test_total_timeout_during_retries() -> None:
    script = Script(default=lambda request: status(503))
    policy = fixed(attempts=10, initial_delay=2, multiplier=1)
    async with make_client(script, retry=policy) as client:
        with pytest.raises(pt.InternalServerError) as info:
            async with client.chat_stream(MESSAGES, timeouts=pt.Timeouts(total=5)):
                pass
    assert script.calls == 3  # at 0, 2, 4; a wait to 6 would pass the deadline
    assert any("deadline" in n for n in info.value.__notes__)


@pytest.mark.anyio
async def test_a_caller_deadline_cancels_the_request() -> None:
    script = Script(sse(chunk("a"), 10.0, chunk("b"), DONE)[0])
    async with make_client(script) as client:
        request = client.make_request(MESSAGES)
        plan = client._plan(client._chat, request, None, None, trio.current_time() + 4, stream=True)
        with pytest.raises(pt.RequestCancelled) as info:
            async with ChatStream(client._sender, client._chat, request, plan) as stream:
                await consume(stream)
        assert info.value.reason == "deadline"
        assert info.value.sent
        assert client.statistics().cancelled == 1


@pytest.mark.anyio
async def test_timeouts_none_waits_as_long_as_it_takes() -> None:
    script = Script(sse(1000.0, chunk("a"), 5000.0, DONE)[0])
    async with make_client(script) as client:
        stream = await collect(client.chat_stream(MESSAGES, timeouts=pt.Timeouts.none()))
    assert stream.completion.text == "a"
    assert math.isclose(trio.current_time(), 6000.0, abs_tol=0.01)


@pytest.mark.anyio
async def test_the_api_key_is_not_in_stream_errors() -> None:
    leaked = json.dumps({"error": {"message": f"bad key {API_KEY}", "code": 401}}).encode()
    script = Script(sse(chunk("a"), b"data: " + leaked + b"\n\n")[0])
    async with make_client(script) as client:
        with pytest.raises(pt.AuthenticationError) as info:
            async with client.chat_stream(MESSAGES) as stream:
                await consume(stream)
    assert API_KEY not in str(info.value)
    assert API_KEY not in repr(info.value)


class _WrappingStream(httpx2.AsyncByteStream):
    """Like httpx2's transport stream: an outer generator that never closes the inner one."""

    def __init__(self, body: Body) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self.body:  # the inner generator is not closed on GeneratorExit
            yield part


@pytest.mark.anyio
async def test_leaving_early_leaves_no_unfinished_generator_behind() -> None:
    # Warnings are errors: trio's ResourceWarning for a collected, unfinished async generator
    # (the inner one here, httpcore2's in real life) would fail this test.
    body = Body(chunk("a"), 1.0, chunk("b"), DONE)  # the pause: a read that would wait
    response = httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, stream=_WrappingStream(body)
    )
    async with make_client(Script(response)) as client:
        async with client.chat_stream(MESSAGES) as stream:
            async for _ in stream:
                break
        assert body.closed
        assert not body.finished
