"""Every fault kind, as a real client sees it; rates, determinism and scripts."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import httpx2
import pytest
import trio

import mock_server as ms
from mock_server._determinism import unit

from .. import pace
from ..pace import slack
from ._helpers import assert_error_envelope, chat_body, keyed, parse_sse, stream_chunks, wait_until

pytestmark = pytest.mark.anyio

STREAM_BODY = chat_body("Tell me a story", stream=True)


async def test_rate_limit_fault_has_retry_after_headers() -> None:
    async with ms.serve(ms.MockConfig(retry_after=2.5)) as server:
        server.script("a", ["rate_limit", ms.Fault("429", retry_after=0.25), "429"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            responses = [
                await client.post("/chat/completions", json=chat_body(), headers=keyed("a"))
                for _ in range(3)
            ]
    first, second, third = responses
    error = assert_error_envelope(first, 429, "rate_limit_exceeded")
    assert error["type"] == "requests"
    assert (first.headers["retry-after"], first.headers["retry-after-ms"]) == ("3", "2500")
    assert (second.headers["retry-after"], second.headers["retry-after-ms"]) == ("1", "250")
    assert third.headers["retry-after-ms"] == "2500"
    assert [r.outcome for r in server.requests()] == ["429", "429", "429"]


async def test_server_errors_and_should_retry_header() -> None:
    async with ms.serve() as server:
        keys = [f"se-{i}" for i in range(24)]
        for key in keys:
            server.script(key, ["server_error"])
        server.script("s503", ["503", ms.Fault("500", should_retry=True, retry_after=1.5)])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            by_status: dict[int, list[httpx2.Response]] = {}
            for key in keys:
                r = await client.post("/chat/completions", json=chat_body(), headers=keyed(key))
                by_status.setdefault(r.status_code, []).append(r)
            plain_503 = await client.post(
                "/chat/completions", json=chat_body(), headers=keyed("s503")
            )
            custom = await client.post("/chat/completions", json=chat_body(), headers=keyed("s503"))
    assert set(by_status) == {500, 502, 503, 504}  # all four drawn across 24 keys
    for status, responses in by_status.items():
        for response in responses:
            error = assert_error_envelope(response, status)
            assert error["type"] == "server_error"
            expected = "true" if status in (502, 503) else None
            assert response.headers.get("x-should-retry") == expected
    assert_error_envelope(plain_503, 503)
    assert "x-should-retry" not in plain_503.headers
    assert_error_envelope(custom, 500)
    assert custom.headers["x-should-retry"] == "true"
    assert custom.headers["retry-after-ms"] == "1500"
    outcomes = {r.key: r.outcome for r in server.requests() if r.key.startswith("se-")}
    assert {int(o) for o in outcomes.values()} == {500, 502, 503, 504}


async def test_hang_never_answers_and_records_the_disconnect() -> None:
    async with ms.serve() as server:
        server.script("h", ["hang"])
        async with httpx2.AsyncClient(base_url=server.url, timeout=0.3) as client:
            start = trio.current_time()
            with pytest.raises(httpx2.ReadTimeout):
                await client.post("/chat/completions", json=chat_body(), headers=keyed("h"))
            assert trio.current_time() - start >= 0.3
        await wait_until(lambda: server.stats().in_flight == 0)
        [record] = server.requests()
        stats = server.stats()
    assert record.outcome == "hang"
    assert record.status is None
    assert record.disconnected is True
    assert record.finish is not None
    assert record.finish - record.arrival >= 0.25
    assert stats.disconnects == 1
    assert stats.by_outcome == {"hang": 1}


async def test_client_leaving_during_latency_is_recorded() -> None:
    async with ms.serve(ms.MockConfig(latency=ms.Latency.fixed(5.0))) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=0.2) as client:
            with pytest.raises(httpx2.ReadTimeout):
                await client.post("/chat/completions", json=chat_body())
        await wait_until(lambda: server.stats().in_flight == 0)
    [record] = server.requests()
    assert record.disconnected
    assert record.outcome == "ok"
    assert record.finish is not None
    assert record.finish - record.arrival < 2.0
    assert server.stats().disconnects == 1


async def _raw_exchange(root_url: str, key: str) -> tuple[bytes, BaseException | None]:
    """Send one request on a raw socket; return what came back and how it ended."""
    host, port = root_url.removeprefix("http://").split(":")
    body = json.dumps(chat_body()).encode()
    request = (
        f"POST /api/v2/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = trio.socket.socket()
    with sock:
        await sock.connect((host, int(port)))
        await sock.send(request)
        received = b""
        try:
            with trio.fail_after(5):
                while chunk := await sock.recv(65536):
                    received += chunk
        except OSError as exc:
            return received, exc
    return received, None


async def test_reset_is_a_real_tcp_rst_and_close_is_a_fin() -> None:
    async with ms.serve() as server:
        server.script("r", ["reset"])
        server.script("c", ["close"])
        received, error = await _raw_exchange(server.root_url, "r")
        assert received == b""
        assert isinstance(error, ConnectionResetError)
        received, error = await _raw_exchange(server.root_url, "c")
        assert received == b""
        assert error is None
        async with httpx2.AsyncClient(base_url=server.url) as client:
            server.script("r2", ["reset"])
            server.script("c2", ["close"])
            with pytest.raises(httpx2.ReadError):
                await client.post("/chat/completions", json=chat_body(), headers=keyed("r2"))
            with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
                await client.post("/chat/completions", json=chat_body(), headers=keyed("c2"))
            # the server is still fine afterwards
            ok = await client.post("/chat/completions", json=chat_body())
        assert ok.status_code == 200
    outcomes = [(r.outcome, r.status, r.disconnected) for r in server.requests()]
    assert outcomes == [
        ("reset", None, False),
        ("close", None, False),
        ("reset", None, False),
        ("close", None, False),
        ("ok", 200, False),
    ]


async def test_malformed_is_a_complete_200_with_invalid_json() -> None:
    async with ms.serve() as server:
        server.script("m", ["malformed"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            response = await client.post("/chat/completions", json=chat_body(), headers=keyed("m"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert server.requests()[0].outcome == "malformed"


async def _drain(response: httpx2.Response, into: bytearray) -> None:
    async for chunk in response.aiter_raw():
        into += chunk


async def test_truncated_body_stops_short_of_content_length() -> None:
    async with ms.serve() as server:
        server.script("t", ["truncated"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            received = bytearray()
            async with client.stream(
                "POST", "/chat/completions", json=chat_body(), headers=keyed("t")
            ) as response:
                assert response.status_code == 200
                declared = int(response.headers["content-length"])
                with pytest.raises(httpx2.RemoteProtocolError, match=r"complete message"):
                    await _drain(response, received)
    assert 0 < len(received) < declared
    record = server.requests()[0]
    assert (record.outcome, record.status, record.disconnected) == ("truncated", 200, False)


async def test_stream_cut_closes_mid_stream() -> None:
    async with ms.serve() as server:
        server.script("sc", ["stream_cut"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            received = bytearray()
            async with client.stream(
                "POST", "/chat/completions", json=STREAM_BODY, headers=keyed("sc")
            ) as response:
                assert response.status_code == 200
                with pytest.raises(httpx2.RemoteProtocolError):
                    await _drain(response, received)
    events = parse_sse(received.decode())
    assert len(events) >= 2
    assert all(data != "[DONE]" for _, data in events)
    chunks = [json.loads(data) for _, data in events]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert server.requests()[0].outcome == "stream_cut"


async def test_stream_error_event_mid_stream() -> None:
    async with ms.serve() as server:
        server.script("se", ["stream_error"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            response = await client.post("/chat/completions", json=STREAM_BODY, headers=keyed("se"))
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert events[0][0] is None
    assert events[-1][0] == "error"
    error = json.loads(events[-1][1])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert all(data != "[DONE]" for _, data in events)
    assert len(events) > 2  # some content came before the error


async def test_stream_no_done_sends_everything_but_done() -> None:
    async with ms.serve() as server:
        server.script("nd", ["stream_no_done"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            cut = await client.post("/chat/completions", json=STREAM_BODY, headers=keyed("nd"))
            full = await client.post("/chat/completions", json=STREAM_BODY)
    assert cut.status_code == 200
    assert "[DONE]" not in cut.text
    assert full.text.endswith("data: [DONE]\n\n")
    cut_choices = [c["choices"] for c in stream_chunks(cut.text)]
    assert cut_choices == [c["choices"] for c in stream_chunks(full.text)]
    assert cut_choices[-1][0]["finish_reason"] == "stop"


async def test_malformed_and_truncated_on_streams() -> None:
    async with ms.serve() as server:
        server.script("mal", ["malformed"])
        server.script("tru", ["truncated"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            response = await client.post(
                "/chat/completions", json=STREAM_BODY, headers=keyed("mal")
            )
            with pytest.raises(httpx2.RemoteProtocolError):
                await client.post("/chat/completions", json=STREAM_BODY, headers=keyed("tru"))
    bad = []
    for _, data in parse_sse(response.text)[:-1]:
        try:
            json.loads(data)
        except json.JSONDecodeError:
            bad.append(data)
    assert len(bad) == 1
    assert response.text.endswith("data: [DONE]\n\n")


async def test_stream_only_faults_do_not_affect_plain_requests() -> None:
    async with ms.serve() as server:
        server.script("k", ["stream_cut", "stream_error", "stream_no_done"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            responses = [
                await client.post("/chat/completions", json=chat_body(), headers=keyed("k"))
                for _ in range(3)
            ]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all(r.json()["object"] == "chat.completion" for r in responses)
    assert [r.outcome for r in server.requests()] == ["ok", "ok", "ok"]


async def test_script_runs_out_then_normal_behaviour() -> None:
    config = ms.MockConfig(faults=ms.FaultRates(server_error=1.0))
    async with ms.serve(config) as server:
        server.script("k", ["503", "503", "ok"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            statuses = [
                (
                    await client.post("/chat/completions", json=chat_body(), headers=keyed("k"))
                ).status_code
                for _ in range(4)
            ]
    assert statuses[:3] == [503, 503, 200]
    assert statuses[3] in (500, 502, 503, 504)  # back to the configured fault rates
    assert [(r.attempt, r.outcome) for r in server.requests()][:3] == [
        (1, "503"),
        (2, "503"),
        (3, "ok"),
    ]


async def test_scripted_fault_latency_overrides_the_sampled_latency() -> None:
    config = ms.MockConfig(latency=ms.Latency.fixed(3.0))
    async with ms.serve(config) as server:
        server.script("fast", [ms.Fault("ok", latency=0.0), ms.Fault("400", latency=0.2)])
        now = await pace.round_trip(server.url + "/models")
        async with httpx2.AsyncClient(base_url=server.url) as client:
            start = trio.current_time()
            first = await client.post("/chat/completions", json=chat_body(), headers=keyed("fast"))
            middle = trio.current_time()
            second = await client.post("/chat/completions", json=chat_body(), headers=keyed("fast"))
            end = trio.current_time()
    assert first.status_code == 200
    assert middle - start < slack(1.0, now)
    assert_error_envelope(second, 400)
    assert 0.2 <= end - middle < slack(1.0, now)


def _observe(response: httpx2.Response) -> str:
    if response.status_code != 200:
        return str(response.status_code)
    try:
        response.json()
    except json.JSONDecodeError:
        return "malformed"
    return "ok"


async def _drive(url: str, keys: list[str], concurrency: int) -> dict[str, str]:
    """Send one request per key (in the given order) and report what the client saw."""
    seen: dict[str, str] = {}
    limiter = trio.CapacityLimiter(concurrency)

    async def one(client: httpx2.AsyncClient, key: str) -> None:
        async with limiter:
            try:
                response = await client.post(
                    "/chat/completions", json=chat_body(key), headers=keyed(key)
                )
                seen[key] = _observe(response)
            except httpx2.ReadError:
                seen[key] = "reset"
            except httpx2.RemoteProtocolError:
                seen[key] = "close"

    limits = httpx2.Limits(max_connections=concurrency)
    async with (
        httpx2.AsyncClient(base_url=url, limits=limits, timeout=10) as client,
        trio.open_nursery() as nursery,
    ):
        for key in keys:
            nursery.start_soon(one, client, key)
    return seen


RATES = ms.FaultRates(rate_limit=0.1, server_error=0.1, malformed=0.1, close=0.05, reset=0.05)


async def test_fault_rates_are_exact_functions_of_seed_key_attempt() -> None:
    n = 300
    keys = [f"key-{i}" for i in range(n)]
    async with ms.serve(ms.MockConfig(seed=42, faults=RATES)) as server:
        seen = await _drive(server.url, keys, concurrency=32)
    records = {r.key: r for r in server.requests()}
    counts: dict[str, int] = {}
    for key in keys:
        record = records[key]
        expected = RATES.pick(unit(42, key, 1, "fault")) or "ok"
        observed = record.outcome
        if expected == "server_error":
            assert observed in ("500", "502", "503", "504")
        elif expected == "rate_limit":
            assert observed == "429"
        else:
            assert observed == expected
        assert seen[key] == observed  # the client saw exactly what the server logged
        counts[expected] = counts.get(expected, 0) + 1
    for kind, p in RATES.items().items():
        if p:
            sd = math.sqrt(n * p * (1 - p))
            assert abs(counts.get(kind, 0) - n * p) <= 4.5 * sd, (kind, counts)


async def test_outcomes_do_not_depend_on_order_or_concurrency() -> None:
    keys = [f"k{i}" for i in range(80)]
    shuffled = keys[:]
    random.Random(7).shuffle(shuffled)
    outcomes = []
    for order, concurrency in ((keys, 1), (shuffled, 40)):
        async with ms.serve(ms.MockConfig(seed=3, faults=RATES)) as server:
            await _drive(server.url, order, concurrency)
            await _drive(server.url, order[::-1], concurrency)  # attempt 2 of every key
        outcomes.append({(r.key, r.attempt): r.outcome for r in server.requests()})
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0]) == 160
    # attempts are drawn independently: some keys change outcome on their second attempt
    assert any(outcomes[0][(k, 1)] != outcomes[0][(k, 2)] for k in keys)
    # another seed gives another pattern
    async with ms.serve(ms.MockConfig(seed=4, faults=RATES)) as server:
        await _drive(server.url, keys, 40)
    other = {r.key: r.outcome for r in server.requests()}
    assert other != {k: outcomes[0][(k, 1)] for k in keys}


async def test_stream_fault_rates_on_streams() -> None:
    rates = ms.FaultRates(stream_error=0.5, stream_no_done=0.5)
    async with (
        ms.serve(ms.MockConfig(faults=rates)) as server,
        httpx2.AsyncClient(base_url=server.url) as client,
    ):
        for i in range(20):
            body = chat_body(f"s{i}", stream=True)
            response = await client.post("/chat/completions", json=body)
            assert response.status_code == 200
            assert "[DONE]" not in response.text
    kinds = {r.outcome for r in server.requests()}
    assert kinds == {"stream_error", "stream_no_done"}


async def test_connection_faults_leave_the_listener_healthy() -> None:
    rates = ms.FaultRates(reset=0.3, close=0.3, truncated=0.3)
    async with ms.serve(ms.MockConfig(faults=rates)) as server:
        seen = await _drive(server.url, [f"x{i}" for i in range(60)], concurrency=16)
        async with httpx2.AsyncClient(base_url=server.url) as client:
            server.configure(faults=ms.FaultRates())
            ok = await client.post("/chat/completions", json=chat_body())
        stats = server.stats()
    assert ok.status_code == 200
    assert stats.in_flight == 0
    assert stats.total == 61
    assert {"reset", "close"} <= set(seen.values())


async def _stalled_events(
    server: ms.MockServer, key: str, count: int, *, body: dict[str, object] = STREAM_BODY
) -> list[tuple[str | None, str]]:
    """Read a stream until ``count`` events, check that nothing more comes, then leave."""
    received = bytearray()
    async with (
        httpx2.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("POST", "/chat/completions", json=body, headers=keyed(key)) as response,
    ):
        assert response.status_code == 200
        chunks = response.aiter_raw()
        with trio.fail_after(5):
            while received.count(b"\n\n") < count:
                received += await chunks.__anext__()
        with trio.move_on_after(0.5) as quiet:
            received += await chunks.__anext__()  # the stall: this never returns
        assert quiet.cancelled_caught, bytes(received)
        [record] = [r for r in server.requests() if r.key == key]
        assert record.finish is None  # the server holds the connection open
        assert server.stats().in_flight == 1
    await wait_until(lambda: server.stats().in_flight == 0)
    return parse_sse(received.decode())


async def test_stream_stall_sends_n_chunks_then_nothing_until_the_client_leaves() -> None:
    async with ms.serve(ms.MockConfig(token_delay=0.01)) as server:
        server.script("st", [ms.Fault("stream_stall", stall_after=3)])
        events = await _stalled_events(server, "st", 3)
        [record] = server.requests()
        stats = server.stats()
    chunks = [json.loads(data) for _, data in events]
    assert len(chunks) == 3
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert (record.outcome, record.status, record.disconnected) == ("stream_stall", 200, True)
    assert record.completion_tokens == 2
    assert record.finish is not None
    assert stats.by_outcome == {"stream_stall": 1}
    assert stats.disconnects == 1


async def test_stream_stall_defaults_to_half_the_stream_like_stream_cut() -> None:
    async with ms.serve() as server:
        server.script("cut", ["stream_no_done"])
        server.script("st", ["stream_stall"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            full = await client.post("/chat/completions", json=STREAM_BODY, headers=keyed("cut"))
        pieces = len(stream_chunks(full.text)) - 2  # role and finish chunks
        expected = 1 + pieces // 2
        events = await _stalled_events(server, "st", expected)
    assert len(events) == expected
    assert [json.loads(d)["choices"] for _, d in events] == [
        c["choices"] for c in stream_chunks(full.text)[:expected]
    ]


async def test_stream_stall_after_every_chunk_or_before_any() -> None:
    body = chat_body("Tell me a story", stream=True, stream_options={"include_usage": True})
    async with ms.serve() as server:
        server.script("all", [ms.Fault("stream_stall", stall_after=10_000)])
        server.script("none", [{"kind": "stream_stall", "stall_after": 0}])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            full = await client.post("/chat/completions", json=body)
        everything = await _stalled_events(server, "all", len(stream_chunks(full.text)), body=body)
        nothing = await _stalled_events(server, "none", 0, body=body)

    def content(chunks: list[dict[str, Any]]) -> list[tuple[object, object]]:
        return [(c["choices"], c["usage"]) for c in chunks]

    assert content([json.loads(data) for _, data in everything]) == content(
        stream_chunks(full.text)
    )
    assert everything[-1][1] != "[DONE]"  # every chunk, the usage one included, but [DONE]
    assert nothing == []


async def test_stream_stall_by_rate_uses_the_configured_count_and_spares_plain_requests() -> None:
    config = ms.MockConfig(faults=ms.FaultRates(stream_stall=1.0), stall_after=2)
    async with ms.serve(config) as server:
        events = await _stalled_events(server, "rated", 2)
        async with httpx2.AsyncClient(base_url=server.url, timeout=0.3) as client:
            plain = await client.post("/chat/completions", json=chat_body(), headers=keyed("p"))
            with pytest.raises(httpx2.ReadTimeout):  # what a client with a read timeout sees
                await client.post("/chat/completions", json=STREAM_BODY, headers=keyed("t"))
    assert len(events) == 2
    assert plain.status_code == 200
    assert [r.outcome for r in server.requests()] == ["stream_stall", "ok", "stream_stall"]


async def test_stopping_the_server_ends_a_stalled_stream_promptly() -> None:
    errors: list[Exception] = []
    first = trio.Event()
    async with httpx2.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        async with ms.serve() as server:
            server.script("st", [ms.Fault("stream_stall", stall_after=1)])

            async def read() -> None:
                async with client.stream(
                    "POST", server.url + "/chat/completions", json=STREAM_BODY, headers=keyed("st")
                ) as response:
                    try:
                        async for _ in response.aiter_raw():
                            first.set()
                    except httpx2.TransportError as exc:
                        errors.append(exc)

            nursery.start_soon(read)
            with trio.fail_after(5):
                await first.wait()
            now = await pace.round_trip(server.url + "/models")
            stopping = trio.current_time()
        stopped = trio.current_time() - stopping
    assert stopped < slack(0.5, now)
    assert len(errors) == 1  # the client saw the stream end without its last chunk
    assert server.stats().in_flight == 0


async def test_stragglers_multiply_the_delay_deterministically_per_key_and_attempt() -> None:
    stragglers = ms.Stragglers(share=0.3, factor=50.0)
    config = ms.MockConfig(seed=7, latency=ms.Latency.fixed(0.01), stragglers=stragglers)
    keys = [f"k{i}" for i in range(12)]
    async with ms.serve(config) as server:
        async with httpx2.AsyncClient(base_url=server.url) as client:
            for _ in (1, 2):
                for key in keys:
                    response = await client.post(
                        "/chat/completions", json=chat_body(), headers=keyed(key)
                    )
                    assert response.status_code == 200  # a straggler is an ordinary answer
    records = server.requests()
    expected = [unit(7, key, attempt, "straggler") < 0.3 for attempt in (1, 2) for key in keys]
    assert [r.straggler for r in records] == expected
    assert 0 < sum(expected) < len(expected)  # both kinds drawn, a resend draws again
    for record in records:
        assert record.finish is not None
        if record.straggler:  # a lower bound only: the machine may be slow, never fast
            assert record.finish - record.arrival >= 0.5


async def test_a_scripted_straggler_is_slow_and_a_scripted_answer_never_straggles() -> None:
    config = ms.MockConfig(
        latency=ms.Latency.fixed(0.01), stragglers=ms.Stragglers(share=1.0, factor=30.0)
    )
    async with ms.serve(config) as server:
        server.script("s", ["straggler", "ok"])
        async with httpx2.AsyncClient(base_url=server.url) as client:
            for _ in range(2):
                response = await client.post(
                    "/chat/completions", json=chat_body(), headers=keyed("s")
                )
                assert response.status_code == 200
    first, second = server.requests()
    assert (first.straggler, first.outcome, second.straggler) == (True, "ok", False)
    assert first.finish is not None
    assert first.finish - first.arrival >= 0.3
