"""The default transport's fast lane (``_http.FastLane`` and ``TrioTransport.fetch``).

A client on its own :class:`TrioTransport` sends plain requests as bytes it writes itself
and reads the answer without ``httpx2`` objects.  These tests hold it to the general path
(``httpx2.Request`` through ``handle_async_request``, which a subclass of the transport
takes): the same request on the wire, the same answers and errors, on raw servers on
127.0.0.1.
"""

from __future__ import annotations

import gzip
import json

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._transport._lane import FastLane

from .rawserver import raw_server

pytestmark = pytest.mark.anyio

KEY = "sk-fast-lane-0123456789"
MESSAGES = [{"role": "user", "content": "héllo"}]
COMPLETION = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "alfred-4.2",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
).encode()


class GeneralPath(pt.TrioTransport):
    """The same transport, but a subclass: no fast lane, every request as ``httpx2`` sees it."""


def answer(status: str, body: bytes, *headers: bytes) -> bytes:
    head = [b"HTTP/1.1 " + status.encode(), b"Content-Length: %d" % len(body), *headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def replying(*answers: bytes, heads: list[bytes] | None = None):  # type: ignore[no-untyped-def]
    queue = list(answers)

    async def handler(stream: trio.abc.Stream, head: bytes) -> bool:
        if heads is not None:
            heads.append(head)
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        await stream.send_all(reply)
        return b"Connection: close" not in reply

    return handler


def header_set(head: bytes) -> tuple[bytes, set[tuple[bytes, bytes]]]:
    line, *fields = head.split(b"\r\n")
    pairs = {(n.strip().lower(), v.strip()) for n, _, v in (f.partition(b":") for f in fields)}
    return line, pairs


def client(port: int, transport: pt.TrioTransport | None = None, **kw: object) -> pt.Client:
    return pt.Client(
        api_key=KEY,
        base_url=f"http://127.0.0.1:{port}/api/v2",
        transport=transport,
        retry=pt.RetryPolicy(attempts=1),
        **kw,  # type: ignore[arg-type]
    )


async def test_the_fast_lane_is_taken_by_the_default_transport_only() -> None:
    async with raw_server(replying(answer("200 OK", COMPLETION))) as (_, port):
        async with client(port) as default, client(port, GeneralPath()) as general:
            assert default._http.lane is not None
            assert general._http.lane is None


async def test_the_fast_lane_sends_what_the_general_path_sends() -> None:
    heads: list[bytes] = []
    bodies: list[bytes] = []
    handler = replying(answer("200 OK", COMPLETION), heads=heads)
    async with raw_server(handler) as (server, port):
        for transport in (None, GeneralPath()):
            async with client(port, transport) as c:
                completion = await c.chat(MESSAGES, custom_id="same")
                bodies.append(server.last_body)
            assert completion.text == "hi"
    fast, general = (header_set(head) for head in heads)
    assert fast == general
    assert fast[0] == b"POST /api/v2/chat/completions HTTP/1.1"
    assert (b"host", b"127.0.0.1:%d" % port) in fast[1]
    assert (b"authorization", b"Bearer " + KEY.encode()) in fast[1]
    assert bodies[0] == bodies[1]
    assert json.loads(bodies[0])["messages"] == MESSAGES


async def test_a_get_without_body_has_no_content_type_or_length() -> None:
    models = json.dumps({"object": "list", "data": [{"id": "alfred-4.2", "object": "model"}]})
    heads: list[bytes] = []
    handler = replying(answer("200 OK", models.encode()), heads=heads)
    async with raw_server(handler) as (_, port):
        for transport in (None, GeneralPath()):
            async with client(port, transport) as c:
                assert [m.id for m in await c.models()] == ["alfred-4.2"]
    fast, general = (header_set(head) for head in heads)
    unique = {pair for pair in fast[1] | general[1] if pair[0] == b"idempotency-key"}
    assert (fast[0], fast[1] - unique) == (general[0], general[1] - unique)
    assert len(unique) == 2  # one key per logical request (no custom_id here)
    names = {name for name, _ in fast[1]}
    assert b"content-type" not in names
    assert b"content-length" not in names


@pytest.mark.parametrize("transport", [None, GeneralPath], ids=["fast", "general"])
async def test_error_answers_are_the_same_on_both_paths(transport: type | None) -> None:
    body = json.dumps({"error": {"message": "slow down", "type": "rate_limit_error"}}).encode()
    reply = answer(
        "429 Too Many Requests", body,
        b"Retry-After: 7", b"x-ratelimit-remaining-requests: 0", b"x-request-id: req-9",
        b"Content-Type: application/json",
    )  # fmt: skip
    async with raw_server(replying(reply)) as (_, port):
        async with client(port, transport() if transport else None) as c:
            with pytest.raises(pt.RateLimitError) as info:
                await c.chat(MESSAGES)
    error = info.value
    assert error.status_code == 429
    assert error.request_id == "req-9"
    assert "slow down" in str(error)
    assert error.headers is not None
    assert error.headers["retry-after"] == "7"
    assert error.attempts[0].status == 429


async def test_chunked_and_gzip_answers_on_the_fast_lane() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (COMPLETION[:40], COMPLETION[40:]))
        + b"0\r\n\r\n"
    )
    zipped = answer("200 OK", gzip.compress(COMPLETION), b"Content-Encoding: gzip")
    async with raw_server(replying(chunked, zipped)) as (server, port):
        async with client(port) as c:
            assert (await c.chat(MESSAGES)).text == "hi"
            assert (await c.chat(MESSAGES)).text == "hi"
    assert server.connections == 1  # both framings leave the connection reusable


async def test_an_answer_read_until_the_close_ends_the_connection() -> None:
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + COMPLETION
    async with raw_server(replying(reply)) as (server, port):
        async with client(port) as c:
            for _ in range(2):
                assert (await c.chat(MESSAGES)).text == "hi"
    assert server.connections == 2


async def test_a_body_cut_after_the_head_is_a_failure_with_a_response() -> None:
    async def cut(stream: trio.abc.Stream, head: bytes) -> bool:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + COMPLETION[:50])
        return False

    async with raw_server(cut) as (_, port), client(port) as c:
        with pytest.raises(pt.APIConnectionError) as info:
            await c.chat(MESSAGES)
    (attempt,) = info.value.attempts
    assert attempt.status == 200  # the head arrived: the server answered
    assert attempt.cause == "connection"


async def test_a_header_that_cannot_be_sent_as_is_takes_the_general_path() -> None:
    lane = FastLane.of(pt.TrioTransport(), "http://127.0.0.1:1/api/v2", {"X-A": "1"})
    assert lane is not None
    assert lane.request("POST", "http://127.0.0.1:1/api/v2/x y", b"{}", "k") is None
    assert lane.request("POST", "http://127.0.0.1:1/api/v2/x", b"{}", "k\r\nX: 1") is None
    request = lane.request("POST", "http://127.0.0.1:1/api/v2/x", b"{}", "k")
    assert request is not None
    assert request.startswith(b"POST /api/v2/x HTTP/1.1\r\nHost: 127.0.0.1:1\r\nX-A: 1\r\n")
    assert request.endswith(b"Idempotency-Key: k\r\nContent-Length: 2\r\n\r\n{}")
    # The Host header is httpx2's: IPv6 in brackets, IDNA, a default port left out.
    for base, host in (
        ("http://[::1]:8000/api/v2", b"[::1]:8000"),
        ("https://bücher.example/api/v2", b"xn--bcher-kva.example"),
        ("http://h.example:80/api/v2", b"h.example"),
    ):
        lane = FastLane.of(pt.TrioTransport(), base, {})
        assert lane is not None
        request = lane.request("GET", base + "/models", None, "k")
        assert request is not None
        assert request.startswith(b"GET /api/v2/models HTTP/1.1\r\nHost: " + host + b"\r\n")
        assert host.decode() == httpx2.Request("GET", base).headers["host"]
    # Headers the lane cannot write as they are: no lane; the general path refuses them.
    assert FastLane.of(pt.TrioTransport(), "http://h/api", {"X-A": "é"}) is None
    assert FastLane.of(pt.TrioTransport(), "http://h/api", {"X-A": "1\r\nX-B: 2"}) is None
    assert FastLane.of(pt.TrioTransport(), "http://h/api?q=1", {}) is None
    assert FastLane.of(GeneralPath(), "http://h/api", {}) is None


@pytest.mark.parametrize("transport", [None, GeneralPath])
@pytest.mark.parametrize("stall", ["before the head", "after the head"])
async def test_timeouts_attempt_and_read_on_both_paths(transport: type | None, stall: str) -> None:
    """The fast lane keeps ``Timeouts.attempt`` in its own waits (no cancel scope around
    the attempt): the same errors as the general path, whichever timeout comes first, and
    an answer that came in time is not cut."""

    async def stalling(stream: trio.abc.Stream, head: bytes) -> bool:
        if stall == "after the head":
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{")
        await trio.sleep_forever()
        return False  # pragma: no cover

    async with raw_server(stalling) as (_, port):
        cases = [(pt.Timeouts(attempt=0.3, read=60), "attempt"),
                 (pt.Timeouts(attempt=60, read=0.3), "read")]  # fmt: skip
        for timeouts, which in cases:
            async with client(port, transport and transport(), timeouts=timeouts) as c:
                with pytest.raises(pt.APITimeoutError) as info:
                    await c.chat(MESSAGES)
            assert info.value.which == which
            if which == "attempt":
                assert "Timeouts.attempt=0.3s" in info.value.message
            (attempt,) = info.value.attempts
            assert attempt.cause == "timeout"
            assert attempt.status == (200 if stall == "after the head" else None)
    async with raw_server(replying(answer("200 OK", COMPLETION))) as (_, port):
        timeouts = pt.Timeouts(attempt=30, read=30)
        async with client(port, transport and transport(), timeouts=timeouts) as c:
            assert (await c.chat(MESSAGES)).text == "hi"
