"""The client and the batch engine judged from the mock server's side (real sockets, 127.0.0.1)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
import trio

import mock_server as ms
import paradigm_trio as pt

from .. import pace
from ..pace import slack

pytestmark = pytest.mark.anyio

FAST_RETRY = pt.RetryPolicy(attempts=6, initial_delay=0.01, max_delay=0.05, jitter=0.5)


def key_of(custom_id: str) -> str:
    """The Idempotency-Key the client derives from a custom_id (documented as stable)."""
    return "pt-" + hashlib.sha256(custom_id.encode()).hexdigest()[:32]


def requests(n: int, prefix: str = "r") -> list[pt.ChatRequest]:
    return [
        pt.ChatRequest(
            messages=({"role": "user", "content": f"Hello number {i}"},),
            custom_id=f"{prefix}{i}",
            max_tokens=20,
        )
        for i in range(n)
    ]


@pytest.fixture
async def server() -> AsyncIterator[ms.MockServer]:
    async with ms.serve(ms.MockConfig(seed=7)) as srv:
        yield srv


def client_for(server: ms.MockServer, **kwargs: object) -> pt.Client:
    return pt.Client(api_key="test-key", base_url=server.url, **kwargs)  # type: ignore[arg-type]


async def test_chat_against_the_mock(server: ms.MockServer) -> None:
    async with client_for(server) as client:
        completion = await client.chat(
            [{"role": "user", "content": "Say hello. Welcome to: Alice"}], max_tokens=50
        )
        models = await client.models()
    assert "Alice" in completion.text
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.request_id
    assert models
    assert all(m.id for m in models)


async def test_scripted_retries_seen_by_the_server(server: ms.MockServer) -> None:
    server.script(key_of("s1"), ["503", "rate_limit", "ok"])
    server.script(key_of("s2"), ["400"])
    server.configure(retry_after=0.05)
    async with client_for(server, retry=FAST_RETRY) as client:
        ok = await client.chat([{"role": "user", "content": "x"}], custom_id="s1")
        with pytest.raises(pt.BadRequestError) as info:
            await client.chat([{"role": "user", "content": "y"}], custom_id="s2")
    assert ok.text
    log = server.requests()
    s1 = [r for r in log if r.key == key_of("s1")]
    s2 = [r for r in log if r.key == key_of("s2")]
    assert [r.outcome for r in s1] == ["503", "rate_limit", "ok"] or [r.status for r in s1] == [
        503,
        429,
        200,
    ]
    assert len(s2) == 1  # a 400 is never retried
    assert len(info.value.attempts) == 1
    # the wait after the 429 honoured its Retry-After (0.05 s)
    assert s1[2].arrival - s1[1].finish >= 0.05 - 0.005


async def test_batch_complete_and_ordered_under_faults(server: ms.MockServer) -> None:
    server.configure(
        faults=ms.FaultRates(
            rate_limit=0.05,
            server_error=0.1,
            reset=0.03,
            close=0.03,
            malformed=0.03,
            truncated=0.03,
        ),
        retry_after=0.02,
    )
    batch = requests(200)
    async with client_for(server, retry=FAST_RETRY, limits=pt.Limits(concurrency=16)) as client:
        results = await client.chat_batch(batch, retry_budget=None, circuit_breaker=None)
    assert [r.index for r in results] == list(range(200))
    assert [r.custom_id for r in results] == [f"r{i}" for i in range(200)]
    assert all((r.completion is None) != (r.error is None) for r in results)
    assert sum(r.ok for r in results) >= 190
    # Nothing lost, nothing duplicated: the server saw exactly the attempts each result reports.
    seen: dict[str, int] = {}
    for record in server.requests():
        seen[record.key] = seen.get(record.key, 0) + 1
    for r in results:
        assert seen[key_of(r.custom_id or "")] == r.attempts, r
    assert results.statistics.done == 200


async def test_server_observed_concurrency_never_exceeds_the_limit(
    server: ms.MockServer,
) -> None:
    server.configure(latency=ms.Latency.fixed(0.05))
    async with client_for(server, limits=pt.Limits(concurrency=7)) as client:
        results = await client.chat_batch(requests(60))
    assert all(r.ok for r in results)
    assert server.stats().max_in_flight == 7


async def test_cancelled_requests_do_not_leak_pool_slots(server: ms.MockServer) -> None:
    """1,000 requests cancelled mid-flight, then the client still runs at full concurrency."""
    window = slack(0.15, await pace.round_trip(server.url + "/models"))  # to reach the server
    server.configure(latency=ms.Latency.fixed(5.0 + window))
    concurrency = 50
    async with client_for(server, limits=pt.Limits(concurrency=concurrency)) as client:
        for _ in range(1000 // concurrency):
            with trio.move_on_after(window):
                async with trio.open_nursery() as nursery:
                    for _ in range(concurrency):
                        nursery.start_soon(client.chat, [{"role": "user", "content": "x"}])
        assert client.statistics().cancelled == 1000
        assert client.statistics().in_flight == 0
        with trio.fail_after(10):
            while server.stats().in_flight:  # the server notices the disconnects
                await trio.sleep(0.05)
        # Every request that reached the server was cut off (none was answered); how
        # many reached it in each window depends on the machine's speed.
        stats = server.stats()
        assert stats.disconnects == stats.total >= concurrency
        server.reset()
        # Long enough for the whole first wave to be in flight at once.
        latency = slack(0.3, await pace.round_trip(server.url + "/models"))
        server.configure(latency=ms.Latency.fixed(latency))
        with trio.fail_after(20 + 2 * latency):
            results = await client.chat_batch(requests(2 * concurrency, prefix="after"))
    assert all(r.ok for r in results)
    assert server.stats().max_in_flight == concurrency


async def test_fail_fast_cancels_the_rest(server: ms.MockServer) -> None:
    # The others take long enough to be in flight still when the client has seen r3 fail.
    latency = slack(0.5, await pace.round_trip(server.url + "/models"))
    server.configure(latency=ms.Latency.fixed(latency))
    server.script(key_of("r3"), [ms.Fault("400", latency=0.05)])
    async with client_for(server, limits=pt.Limits(concurrency=10)) as client:
        with pytest.raises(pt.BatchError) as info:
            await client.chat_batch(requests(40), on_error="raise")
        assert client.statistics().in_flight == 0
    assert isinstance(info.value.error, pt.BadRequestError)
    assert [r.custom_id for r in info.value.results] == ["r3"]
    with trio.fail_after(5):
        while server.stats().in_flight:
            await trio.sleep(0.02)
    # Nothing was sent after the failure (at most the first ten), and the others in flight
    # were cut off: the server saw every one of them go.
    stats = server.stats()
    assert stats.total <= 10
    assert stats.disconnects == stats.total - 1


async def test_deadline_reports_every_item(server: ms.MockServer) -> None:
    now = await pace.round_trip(server.url + "/models")
    server.configure(latency=ms.Latency.fixed(0.2))
    sends: list[float] = []

    def on_event(event: pt.Event) -> None:
        if isinstance(event, pt.AttemptStarted):
            sends.append(event.time)

    async with client_for(server, limits=pt.Limits(concurrency=5), on_event=on_event) as client:
        start = trio.current_time()
        deadline = start + 0.5
        results = await client.chat_batch(requests(50), deadline=deadline)
        elapsed = trio.current_time() - start
    assert len(results) == 50
    assert [r.index for r in results] == list(range(50))
    ok = [r for r in results if r.ok]
    cancelled = [r for r in results if r.cancelled]
    assert len(ok) + len(cancelled) == 50
    assert 1 <= len(ok) <= 15  # at most three waves of five fit in 0.5 s
    assert elapsed < slack(2.0, now)
    # Nothing was sent after the deadline: exactly, on the client's clock...
    assert sends
    assert max(sends) <= deadline
    # ...and as the server saw it (same process, so allow for a busy loop's lag).
    assert all(rec.arrival <= deadline + 0.25 for rec in server.requests())
    assert len(sends) == len(ok) + sum(r.attempts for r in cancelled)
    assert len(server.requests()) <= len(sends)


async def test_outside_cancellation_leaves_nothing_running(server: ms.MockServer) -> None:
    server.configure(latency=ms.Latency.fixed(1.0))
    async with client_for(server, limits=pt.Limits(concurrency=8)) as client:
        with trio.move_on_after(0.2) as scope:
            await client.chat_batch(requests(100))
        assert scope.cancelled_caught
        assert client.statistics().in_flight == 0
        with trio.fail_after(5):
            while server.stats().in_flight:
                await trio.sleep(0.02)
        # the client still works
        server.configure(latency=ms.Latency.fixed(0.0))
        assert (await client.chat([{"role": "user", "content": "again"}])).text
    stats = server.stats()
    assert 1 <= stats.disconnects <= 8  # every request in flight at the cancel went away
    assert stats.disconnects == stats.total - 1  # all but the "again" request


async def dead_server_client(*, attempts: int, concurrency: int) -> pt.Client:
    """A client of a port nobody listens on (bound to find a free one, then closed)."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return pt.Client(
        api_key="test-key",
        base_url=f"http://127.0.0.1:{port}/api/v2",
        retry=pt.RetryPolicy(attempts=attempts, initial_delay=0.01, max_delay=0.1),
        limits=pt.Limits(concurrency=concurrency),
    )


async def test_dead_server_trips_the_breaker() -> None:
    async with await dead_server_client(attempts=1000, concurrency=4) as client:
        with trio.fail_after(15):
            results = await client.chat_batch(
                requests(500), circuit_breaker=5, unreachable_after=1.0, retry_budget=None
            )
    assert len(results) == 500
    assert all(isinstance(r.error, pt.APIConnectionError) for r in results)
    assert sum(isinstance(r.error, pt.ServerUnreachableError) for r in results) >= 490


async def test_adapts_to_a_server_quota(server: ms.MockServer) -> None:
    """Quota Q=120/min (2/s, a burst of 120): few 429s, throughput near Q."""
    q = 120
    server.configure(rpm=q, latency=ms.Latency.fixed(0.02), retry_after=0.5)
    n = q + 20  # the burst, then 10 s at the quota's rate
    async with client_for(server, limits=pt.Limits(concurrency=32)) as client:
        start = trio.current_time()
        results = await client.chat_batch(requests(n), retry_budget=None)
        elapsed = trio.current_time() - start
    assert all(r.ok for r in results)
    log = server.requests()
    limited = sum(1 for rec in log if rec.status == 429)
    rate_429 = limited / len(log)
    # Goodput once the quota's burst is spent: the successes that arrived after the q-th,
    # over the time they took, against the quota's rate (q per minute).
    arrivals = sorted(rec.arrival for rec in log if rec.status == 200)
    paced = arrivals[q:]
    goodput = (len(paced) / (paced[-1] - arrivals[q - 1])) / (q / 60)
    print(f"quota {q}/min: {len(log)} sent, {limited} 429s ({rate_429:.1%}), "
          f"{elapsed:.1f}s for {n}; after the burst {len(paced)} in "
          f"{paced[-1] - arrivals[q - 1]:.1f}s: goodput {goodput:.0%} of Q")  # fmt: skip
    assert rate_429 < 0.10
    assert goodput > 0.80


async def test_streamed_batch_retries_broken_streams_and_applies_first_token(
    server: ms.MockServer,
) -> None:
    server.configure(ttft=ms.Latency.fixed(0.01), token_delay=0.0005)
    server.script(key_of("r1"), ["stream_cut", "stream_error", "ok"])
    server.script(key_of("r2"), ["stream_no_done"])  # complete, without [DONE]
    server.script(key_of("r3"), [ms.Fault("ok", latency=5.0), "ok"])  # slow first token
    policy = pt.RetryPolicy(attempts=3, initial_delay=0.01, jitter=0)
    timeouts = pt.Timeouts(first_token=0.3)
    async with client_for(server, retry=policy, timeouts=timeouts) as client:
        results = await client.chat_batch(requests(5), stream=True)
        stats = client.statistics()
    by_id = {r.custom_id: r for r in results}
    assert by_id["r0"].ok
    assert by_id["r0"].attempts == 1
    assert by_id["r1"].ok
    assert by_id["r1"].attempts == 3
    assert by_id["r2"].ok  # complete, though without [DONE]: accepted, not resent
    assert by_id["r2"].attempts == 1
    assert by_id["r3"].ok
    assert by_id["r3"].attempts == 2
    # the server saw streamed requests, and exactly the attempts reported
    log = server.requests()
    assert all(rec.stream for rec in log)
    for r in results:
        assert sum(1 for rec in log if rec.key == key_of(r.custom_id or "")) == r.attempts
    assert stats.started == 5
    assert stats.succeeded == 5
    assert stats.failed == 0


async def test_dead_server_is_reported_unreachable_with_default_budget() -> None:
    async with await dead_server_client(attempts=50, concurrency=8) as client:
        with trio.fail_after(15):
            results = await client.chat_batch(requests(300), unreachable_after=1.0)
    assert len(results) == 300
    unreachable = sum(isinstance(r.error, pt.ServerUnreachableError) for r in results)
    assert unreachable >= 250, unreachable
