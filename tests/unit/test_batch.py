"""The batch engine: ``Client.chat_batch`` / ``Client.stream_batch`` on ``httpx2.MockTransport``
and the autojump clock: ordering, inputs, laziness, failure modes, deadlines, cancellation,
progress and statistics, the retry budget and the circuit breaker."""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

import paradigm_trio as pt
from paradigm_trio._engine._budget import RETRY_FLOOR

from .helpers import MESSAGES, Script, after, fixed, make_client, ok, status

pytestmark = pytest.mark.anyio


def msgs(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"item {i}"}]


class Echo:
    """A handler answering with the last message's content as the completion text.

    ``latency(text)`` gives the virtual seconds each answer takes; ``fail(text)`` may
    return a response (or an ``httpx2.RequestError`` class to raise) instead of the echo.
    Records arrival times, bodies, the peak in flight and the requests cancelled mid-way.
    """

    def __init__(
        self,
        latency: Callable[[str], float] = lambda text: 0.0,
        fail: Callable[[str, int], Any] = lambda text, n: None,
    ) -> None:
        self.latency = latency
        self.fail = fail
        self.times: list[float] = []
        self.texts: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak = 0
        self.cancelled: list[str] = []
        self.finished: list[str] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        text = body["messages"][-1]["content"]
        n = self.texts.count(text)
        self.times.append(trio.current_time())
        self.texts.append(text)
        self.bodies.append(body)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await trio.sleep(self.latency(text))
        except trio.Cancelled:
            self.cancelled.append(text)
            raise
        finally:
            self.in_flight -= 1
        self.finished.append(text)
        outcome = self.fail(text, n)
        if isinstance(outcome, type) and issubclass(outcome, httpx2.RequestError):
            raise outcome("simulated", request=request)
        if outcome is not None:
            assert isinstance(outcome, httpx2.Response)
            return outcome
        return ok(text=text, prompt_tokens=3, completion_tokens=len(text))

    @property
    def calls(self) -> int:
        return len(self.times)


def number(text: str) -> int:
    return int(text.split()[-1])


# ============================================================================ order and inputs


async def test_chat_batch_returns_results_in_input_order() -> None:
    n = 12
    echo = Echo(latency=lambda text: (n - number(text)) * 0.5)  # the last finishes first
    async with make_client(echo) as client:
        results = await client.chat_batch([msgs(i) for i in range(n)])
    assert isinstance(results, pt.BatchResults)
    assert [r.index for r in results] == list(range(n))
    assert [r.completion.text for r in results if r.completion] == [f"item {i}" for i in range(n)]
    assert all(r.ok and r.error is None and r.attempts == 1 for r in results)
    assert trio.current_time() == n * 0.5


async def test_stream_batch_yields_in_completion_order() -> None:
    n = 10
    latencies = [3, 1, 4, 1.5, 5, 9, 2, 6, 5.5, 3.5]
    echo = Echo(latency=lambda text: latencies[number(text)])
    async with make_client(echo) as client, client.stream_batch(msgs(i) for i in range(n)) as rs:
        seen = [(r.index, trio.current_time()) async for r in rs]
    assert [i for i, _ in seen] == sorted(range(n), key=lambda i: latencies[i])
    assert [t for _, t in seen] == sorted(latencies)


def _as_list(items: list[Any]) -> Any:
    return list(items)


def _as_generator(items: list[Any]) -> Any:
    return (item for item in items)


def _as_tuple(items: list[Any]) -> Any:
    return tuple(items)


def _as_async_generator(items: list[Any]) -> Any:
    async def gen() -> AsyncIterator[Any]:
        for item in items:
            await trio.lowlevel.checkpoint()
            yield item

    return gen()


@pytest.mark.parametrize("kind", [_as_list, _as_generator, _as_tuple, _as_async_generator])
async def test_accepts_any_iterable_or_async_iterable(kind: Callable[[list[Any]], Any]) -> None:
    items: list[Any] = []
    for i in range(9):
        if i % 3 == 0:
            items.append(pt.ChatRequest(messages=msgs(i), custom_id=f"c{i}"))
        elif i % 3 == 1:
            items.append(msgs(i))
        else:
            items.append(tuple(msgs(i)))  # any sequence of messages
    echo = Echo()
    async with make_client(echo) as client:
        results = await client.chat_batch(kind(items))
    assert len(results) == 9
    assert [r.completion.text for r in results if r.completion] == [f"item {i}" for i in range(9)]
    assert [r.custom_id for r in results] == [f"c{i}" if i % 3 == 0 else None for i in range(9)]
    assert all(isinstance(r.request, pt.ChatRequest) for r in results)
    assert sorted(echo.texts) == sorted(f"item {i}" for i in range(9))


async def test_empty_batch() -> None:
    echo = Echo()
    async with make_client(echo) as client:
        results = await client.chat_batch([])
        async with client.stream_batch(iter(())) as rs:
            streamed = [r async for r in rs]
    assert results == []
    assert results.statistics.done == 0
    assert streamed == []
    assert echo.calls == 0


async def test_batch_keywords_fill_unset_fields_but_never_override() -> None:
    echo = Echo()
    items: list[Any] = [
        pt.ChatRequest(messages=msgs(0), temperature=0.9, model="own-model"),
        pt.ChatRequest(messages=msgs(1), max_tokens=7, seed=1),
        msgs(2),
    ]
    async with make_client(echo) as client:
        results = await client.chat_batch(
            items, model="batch-model", temperature=0.1, max_tokens=50, top_p=0.5, seed=42
        )
    bodies = {b["messages"][0]["content"]: b for b in echo.bodies}
    first, second, third = (bodies[f"item {i}"] for i in range(3))
    assert first["temperature"] == 0.9
    assert first["model"] == "own-model"
    assert first["max_tokens"] == 50
    assert first["seed"] == 42
    assert second == {**second, "model": "batch-model", "temperature": 0.1, "max_tokens": 7}
    assert second["seed"] == 1
    assert second["top_p"] == 0.5
    assert third["model"] == "batch-model"
    assert third["temperature"] == 0.1
    assert third["max_tokens"] == 50
    # the result carries the request as sent
    assert results[0].request is not None
    assert results[0].request.temperature == 0.9
    assert results[0].request.max_tokens == 50


async def test_without_batch_keywords_requests_are_sent_as_they_are() -> None:
    echo = Echo()
    async with make_client(echo, model="client-model") as client:
        await client.chat_batch([pt.ChatRequest(messages=msgs(0)), msgs(1)])
    for body in echo.bodies:
        assert body["model"] == "client-model"
        assert "temperature" not in body
        assert "max_tokens" not in body


async def test_invalid_items_become_value_error_results_and_the_rest_run() -> None:
    items: list[Any] = [
        msgs(0),
        {"role": "user", "content": "a dict, not a list"},
        "a string",
        [{"role": "user"}],  # no content
        [{"role": "wizard", "content": "x"}],
        [],
        42,
        None,
        [{"role": "user", "content": "x"}, "not a message"],
        msgs(9),
    ]
    echo = Echo()
    async with make_client(echo) as client:
        results = await client.chat_batch(items)
    assert len(results) == len(items)
    assert [r.index for r in results] == list(range(len(items)))
    assert results[0].ok
    assert results[-1].ok
    for r in results[1:-1]:
        assert isinstance(r.error, ValueError), r
        assert not isinstance(r.error, pt.APIError)
        assert r.request is None
        assert r.attempts == 0
        assert not r.ok
        assert not r.cancelled
        assert r.usage is None
    assert "dict" in str(results[1].error)
    assert "str" in str(results[2].error)
    assert sorted(echo.texts) == ["item 0", "item 9"]
    assert results.statistics.failed == len(items) - 2
    assert results.statistics.succeeded == 2


async def test_invalid_batch_keyword_fails_every_item_without_sending() -> None:
    echo = Echo()
    async with make_client(echo) as client:
        results = await client.chat_batch([msgs(0), msgs(1)], temperature=7.0)
    assert all(isinstance(r.error, ValueError) for r in results)
    assert "temperature" in str(results[0].error)
    assert echo.calls == 0


@pytest.mark.parametrize("seed", range(6))
async def test_exactly_one_result_per_input_under_random_failures(seed: int) -> None:
    rng = random.Random(seed)
    faults: list[Any] = [
        None,
        None,
        None,
        status(500),
        status(503),
        status(400),
        status(429, headers={"retry-after-ms": "50"}),
        httpx2.Response(200, text="{not json"),
        httpx2.ConnectError,
        httpx2.ReadTimeout,
    ]

    def fail(text: str, n: int) -> Any:
        fault = rng.choice(faults)
        return fault() if callable(fault) and not isinstance(fault, type) else fault

    def latency(text: str) -> float:
        return rng.choice([0.0, 0.01, 0.1, 1.0])

    echo = Echo(latency=latency, fail=fail)
    n = 150
    items: list[Any] = [msgs(i) for i in range(n)]
    items[rng.randrange(n)] = {"bad": "item"}
    async with make_client(
        echo, limits=pt.Limits(concurrency=rng.choice([1, 4, 16, 64])), retry=fixed(attempts=3)
    ) as client:
        results = await client.chat_batch(iter(items), retry_budget=None)
        stats = client.statistics()
    assert len(results) == n
    assert [r.index for r in results] == list(range(n))
    for r in results:
        assert r.ok != (r.error is not None)
        if r.ok:
            assert r.completion is not None
            assert r.completion.text == f"item {r.index}"
        else:
            assert isinstance(r.error, pt.APIError | ValueError)
            assert not r.cancelled
    s = results.statistics
    assert s.done == s.submitted == n
    assert s.succeeded + s.failed == n
    assert s.cancelled == 0
    assert s.in_flight == 0
    assert s.succeeded == sum(r.ok for r in results)
    assert stats.in_flight == 0
    assert echo.in_flight == 0
    assert echo.calls == sum(r.attempts for r in results)


async def test_server_never_sees_more_than_the_concurrency() -> None:
    echo = Echo(latency=lambda text: 1.0 + (number(text) % 3) * 0.25)
    async with make_client(echo, limits=pt.Limits(concurrency=7)) as client:
        results = await client.chat_batch(msgs(i) for i in range(100))
    assert all(r.ok for r in results)
    assert echo.peak == 7


async def test_batches_share_the_clients_rate_limit() -> None:
    echo = Echo()
    async with (
        make_client(echo, limits=pt.Limits(requests_per_minute=10)) as client,
        trio.open_nursery() as nursery,
    ):
        for batch in range(2):
            nursery.start_soon(client.chat_batch, [msgs(batch * 100 + i) for i in range(10)])
    times = sorted(echo.times)
    assert times[:10] == [0.0] * 10
    assert times[10:] == pytest.approx([6.0 * k for k in range(1, 11)])


# ============================================================================ laziness


def counting(n: int, pulled: list[int]) -> Iterator[list[dict[str, str]]]:
    for i in range(n):
        pulled[0] += 1
        yield msgs(i)


async def test_chat_batch_reads_a_generator_lazily() -> None:
    concurrency = 5
    pulled = [0]
    ahead: list[int] = []
    echo = Echo(latency=lambda text: 1.0)

    def progress(s: pt.BatchStatistics) -> None:
        ahead.append(pulled[0] - s.done)

    async with make_client(echo, limits=pt.Limits(concurrency=concurrency)) as client:
        results = await client.chat_batch(counting(200, pulled), on_progress=progress)
    assert len(results) == 200
    assert max(ahead) <= 2 * concurrency + 1


@pytest.mark.parametrize("consumer_delay", [0.0, 0.5, 10.0])
async def test_stream_batch_reads_no_further_ahead_than_the_concurrency(
    consumer_delay: float,
) -> None:
    """Memory is bounded by the concurrency, whatever the pace of the consumer: the input is
    read at most about ``concurrency`` items (in flight, plus as many results waiting in the
    channel) ahead of what the consumer has taken."""
    concurrency = 4
    pulled = [0]
    taken = 0
    worst = 0
    echo = Echo(latency=lambda text: 0.1)
    async with (
        make_client(echo, limits=pt.Limits(concurrency=concurrency)) as client,
        client.stream_batch(counting(100, pulled)) as rs,
    ):
        async for _ in rs:
            taken += 1
            worst = max(worst, pulled[0] - taken)
            await trio.sleep(consumer_delay)
            worst = max(worst, pulled[0] - taken)
    assert taken == 100
    assert worst <= 2 * concurrency + 1, f"read {worst} items ahead of the consumer"


async def test_items_are_not_read_before_the_batch_needs_them() -> None:
    pulled = [0]
    echo = Echo(latency=lambda text: 100.0)
    async with (
        make_client(echo, limits=pt.Limits(concurrency=3)) as client,
        client.stream_batch(counting(1_000, pulled)) as rs,
    ):
        await trio.sleep(50)
        assert pulled[0] == 3
        assert rs.statistics().submitted == 3
        assert rs.statistics().in_flight == 3
        first = await rs.__anext__()
        assert first.ok
        await trio.sleep(0.001)
        assert pulled[0] <= 3 + 3
        await trio.sleep(1)  # leaving early
    assert pulled[0] <= 6


async def test_finished_results_are_handed_over_in_runs_bounded_by_yield_every() -> None:
    # Results already in are taken without waiting a turn of the scheduler each (one per
    # turn let them pile up, their workers waiting with their slots); the loop still lets
    # other tasks run (yields) at least every YIELD_EVERY results.
    every = pt.BatchStream.YIELD_EVERY
    n = 3 * every
    consumer = trio.lowlevel.current_task()

    class Steps(trio.abc.Instrument):
        """Counts the consumer's steps (its runs between two yields)."""

        count = 0

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            if task is consumer:
                self.count += 1

    steps = Steps()
    runs: dict[int, int] = {}
    limits = pt.Limits(concurrency=n)
    async with make_client(Echo(latency=lambda text: 1.0), limits=limits) as client:
        trio.lowlevel.add_instrument(steps)
        try:
            async with client.stream_batch(msgs(i) for i in range(n)) as rs:
                async for _ in rs:  # every answer comes at t=1, in one go
                    runs[steps.count] = runs.get(steps.count, 0) + 1
        finally:
            trio.lowlevel.remove_instrument(steps)
    assert sum(runs.values()) == n
    # after ``every`` results handed over at once, the next step yields before its own
    assert max(runs.values()) == every + 1  # before: 1
    assert len(runs) <= 4  # each run ends with the wait for a result, or every + 1


async def test_a_cancelled_loop_stops_even_with_results_waiting() -> None:
    got = 0
    async with make_client(
        Echo(latency=lambda text: 1.0), limits=pt.Limits(concurrency=8)
    ) as client:
        with trio.CancelScope() as scope:
            async with client.stream_batch(msgs(i) for i in range(8)) as rs:
                async for _ in rs:
                    got += 1
                    scope.cancel()  # seven more are waiting in the channel
    assert scope.cancelled_caught
    assert got == 1


# ============================================================================ fail fast


async def test_on_error_raise_cancels_the_rest_and_carries_finished_results() -> None:
    def latency(text: str) -> float:
        i = number(text)
        return {0: 0.5, 1: 0.7, 3: 1.0}.get(i, 10.0)

    echo = Echo(latency=latency, fail=lambda text, n: status(400) if text == "item 3" else None)
    async with make_client(echo, limits=pt.Limits(concurrency=5)) as client:
        with pytest.raises(pt.BatchError) as info:
            await client.chat_batch([msgs(i) for i in range(20)], on_error="raise")
        assert client.statistics().in_flight == 0
        await trio.sleep(60)  # nothing else is sent later, either
    err = info.value
    assert isinstance(err.error, pt.BadRequestError)
    assert err.__cause__ is err.error
    assert [r.index for r in err.results] == [0, 1, 3]  # finished so far, input order
    assert err.results[0].ok
    assert err.results[2].error is err.error
    assert trio.current_time() == 61.0
    # the others were cancelled while the server was working on them
    assert sorted(echo.cancelled) == ["item 2", "item 4", "item 5", "item 6"]
    assert max(echo.times) <= 1.0
    assert echo.calls == 7  # 0-4, then 5 and 6 in the slots 0 and 1 freed


async def test_on_error_raise_in_stream_batch_yields_the_failure_then_raises() -> None:
    echo = Echo(
        latency=lambda text: 1.0 if text == "item 1" else 5.0,
        fail=lambda text, n: status(404) if text == "item 1" else None,
    )
    seen: list[pt.BatchResult] = []

    async def consume(client: pt.Client) -> None:
        async with client.stream_batch([msgs(i) for i in range(10)], on_error="raise") as rs:
            async for r in rs:
                seen.append(r)

    async with make_client(echo, limits=pt.Limits(concurrency=4)) as client:
        with pytest.raises(pt.BatchError) as info:
            await consume(client)
    assert type(info.value) is pt.BatchError  # unwrapped, not an ExceptionGroup
    assert [r.index for r in seen] == [1]
    assert seen[0].error is info.value.error
    assert isinstance(info.value.error, pt.NotFoundError)
    assert info.value.results == ()
    assert sorted(echo.cancelled) == ["item 0", "item 2", "item 3"]


async def test_on_error_raise_stops_at_an_invalid_item() -> None:
    echo = Echo(latency=lambda text: 5.0)
    items: list[Any] = [msgs(0), msgs(1), "oops", msgs(3)]
    async with make_client(echo) as client:
        with pytest.raises(pt.BatchError) as info:
            await client.chat_batch(items, on_error="raise")
    assert isinstance(info.value.error, ValueError)
    assert [r.index for r in info.value.results] == [2]
    assert echo.finished == []  # whatever had been sent was cancelled
    assert set(echo.cancelled) == set(echo.texts) <= {"item 0", "item 1"}
    assert trio.current_time() == 0.0


async def test_on_error_raise_without_failures_returns_everything() -> None:
    async with make_client(Echo()) as client:
        results = await client.chat_batch([msgs(i) for i in range(5)], on_error="raise")
    assert [r.ok for r in results] == [True] * 5


async def test_on_error_collect_keeps_going_after_failures() -> None:
    echo = Echo(fail=lambda text, n: status(400) if number(text) % 2 else None)
    async with make_client(echo) as client:
        results = await client.chat_batch([msgs(i) for i in range(6)])
    assert [r.ok for r in results] == [True, False] * 3
    assert all(isinstance(r.error, pt.BadRequestError) for r in results[1::2])


# ============================================================================ deadline


async def test_deadline_reports_interrupted_and_unread_items_as_cancelled() -> None:
    echo = Echo(latency=lambda text: 3.0)
    async with make_client(echo, limits=pt.Limits(concurrency=2)) as client:
        results = await client.chat_batch(
            (msgs(i) for i in range(7)), deadline=trio.current_time() + 4
        )
        assert client.statistics().in_flight == 0
        await trio.sleep(100)
    assert trio.current_time() == 104.0
    assert len(results) == 7
    assert [r.index for r in results] == list(range(7))
    assert [r.ok for r in results] == [True, True] + [False] * 5
    for r in results[2:]:
        assert r.cancelled
        assert isinstance(r.error, pt.RequestCancelled)
        assert r.error.reason == "deadline"
    interrupted, unread = results[2:4], results[4:]
    for r in interrupted:
        assert isinstance(r.error, pt.RequestCancelled)
        assert r.error.sent is True
        assert r.attempts == 1
    for r in unread:
        assert isinstance(r.error, pt.RequestCancelled)
        assert r.error.sent is False
        assert r.attempts == 0
    assert max(echo.times) < 4.0
    assert sorted(echo.cancelled) == ["item 2", "item 3"]
    assert echo.calls == 4
    s = results.statistics
    assert (s.succeeded, s.failed, s.cancelled, s.done, s.submitted) == (2, 0, 5, 7, 7)
    assert s.elapsed == 4.0


async def test_deadline_keeps_the_custom_ids_of_unsent_requests() -> None:
    echo = Echo(latency=lambda text: 3.0)
    items = [pt.ChatRequest(messages=msgs(i), custom_id=f"id-{i}") for i in range(4)]
    async with make_client(echo, limits=pt.Limits(concurrency=1)) as client:
        results = await client.chat_batch(items, deadline=trio.current_time() + 1)
    assert [r.custom_id for r in results] == ["id-0", "id-1", "id-2", "id-3"]
    assert all(r.cancelled for r in results)
    errors = [r.error for r in results if isinstance(r.error, pt.APIError)]
    assert [e.custom_id for e in errors] == ["id-0", "id-1", "id-2", "id-3"]


async def test_deadline_already_passed_sends_nothing() -> None:
    echo = Echo()
    async with make_client(echo) as client:
        results = await client.chat_batch([msgs(i) for i in range(5)], deadline=trio.current_time())
    assert echo.calls == 0
    assert len(results) == 5
    assert all(r.cancelled and r.attempts == 0 for r in results)


async def test_deadline_while_waiting_for_rate_reports_unsent() -> None:
    echo = Echo()
    limits = pt.Limits(requests_per_minute=2, concurrency=4)
    async with make_client(echo, limits=limits) as client:
        results = await client.chat_batch(
            [msgs(i) for i in range(4)], deadline=trio.current_time() + 10
        )
    assert [r.ok for r in results] == [True, True, False, False]
    for r in results[2:]:
        assert isinstance(r.error, pt.RequestCancelled)
        assert r.error.sent is False
        assert r.attempts == 0
    assert echo.calls == 2
    assert trio.current_time() == 10.0


async def test_deadline_stops_retries_that_would_not_fit() -> None:
    echo = Echo(fail=lambda text, n: status(503))
    async with make_client(echo, retry=fixed(initial_delay=2, multiplier=1, attempts=10)) as client:
        results = await client.chat_batch([msgs(0)], deadline=trio.current_time() + 5)
    (r,) = results
    assert isinstance(r.error, pt.InternalServerError)
    assert echo.times == [0.0, 2.0, 4.0]
    assert any("deadline" in note for note in getattr(r.error, "__notes__", []))


async def test_deadline_with_a_slow_async_generator_loses_no_item() -> None:
    """An async input that takes time to produce items: at the deadline the batch still
    reports one result for every item of the input, none silently dropped."""

    async def slow_source() -> AsyncIterator[list[dict[str, str]]]:
        for i in range(10):
            await trio.sleep(1)
            yield msgs(i)

    echo = Echo()
    async with make_client(echo) as client:
        results = await client.chat_batch(slow_source(), deadline=trio.current_time() + 3.5)
    assert [r.ok for r in results[:3]] == [True, True, True]
    assert len(results) == 10
    assert all(r.cancelled for r in results[3:])


# ============================================================================ cancellation


async def test_outside_cancellation_propagates_and_cleans_up() -> None:
    echo = Echo(latency=lambda text: 1.0)
    async with make_client(echo, limits=pt.Limits(concurrency=4)) as client:
        with trio.move_on_after(2.5) as scope:
            await client.chat_batch(msgs(i) for i in range(100))
        assert scope.cancelled_caught
        assert trio.current_time() == 2.5
        stats = client.statistics()
        assert stats.in_flight == 0
        assert stats.succeeded == 8
        assert stats.cancelled == 4
        await trio.sleep(60)
        assert client.statistics() == stats
    assert echo.calls == 12
    assert echo.in_flight == 0
    assert len(echo.cancelled) == 4


async def test_outside_cancellation_of_stream_batch_propagates() -> None:
    echo = Echo(latency=lambda text: 1.0)
    seen = 0
    async with make_client(echo, limits=pt.Limits(concurrency=2)) as client:
        with trio.move_on_after(1.5) as scope:
            async with client.stream_batch(msgs(i) for i in range(10)) as rs:
                async for _ in rs:
                    seen += 1
        assert scope.cancelled_caught
        assert client.statistics().in_flight == 0
    assert seen == 2
    assert len(echo.cancelled) == 2


async def test_leaving_stream_batch_early_cancels_the_rest() -> None:
    echo = Echo(latency=lambda text: 1.0 + number(text))
    async with make_client(echo, limits=pt.Limits(concurrency=5)) as client:
        async with client.stream_batch(msgs(i) for i in range(50)) as rs:
            async for r in rs:
                assert r.index == 0
                break
        assert trio.current_time() == 1.0
        assert client.statistics().in_flight == 0
        await trio.sleep(100)
    assert echo.calls in (5, 6)  # 0-4, and maybe 5 in the slot 0 freed
    assert echo.finished == ["item 0"]
    # (in whatever order trio started them)
    assert sorted(echo.cancelled) == sorted(t for t in echo.texts if t != "item 0")


async def test_exception_in_the_stream_batch_body_comes_out_unwrapped() -> None:
    echo = Echo(latency=lambda text: 1.0 + number(text))

    async def consume(client: pt.Client) -> None:
        async with client.stream_batch(msgs(i) for i in range(10)) as rs:
            async for _ in rs:
                raise KeyError("mine")

    async with make_client(echo, limits=pt.Limits(concurrency=3)) as client:
        with pytest.raises(KeyError) as info:
            await consume(client)
        assert type(info.value) is KeyError
        assert info.value.args == ("mine",)
        assert client.statistics().in_flight == 0
    assert {"item 1", "item 2"} <= set(echo.cancelled)
    assert echo.finished == ["item 0"]


async def test_exception_in_the_body_before_iterating_comes_out_unwrapped() -> None:
    echo = Echo(latency=lambda text: 1.0)
    async with make_client(echo) as client:
        with pytest.raises(ZeroDivisionError):
            async with client.stream_batch([msgs(0)]):
                _ = 1 / 0


async def test_closed_client_refuses_a_batch() -> None:
    client = make_client(Echo())
    async with client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await client.chat_batch([msgs(0)])


# ============================================================================ progress, statistics


async def test_on_progress_is_called_once_per_result_with_increasing_done() -> None:
    echo = Echo(latency=lambda text: (number(text) % 4) * 0.5)
    calls: list[pt.BatchStatistics] = []
    async with make_client(echo, limits=pt.Limits(concurrency=6)) as client:
        results = await client.chat_batch([msgs(i) for i in range(30)], on_progress=calls.append)
    assert len(calls) == len(results) == 30
    assert [s.done for s in calls] == list(range(1, 31))
    assert all(isinstance(s, pt.BatchStatistics) for s in calls)
    assert [s.succeeded for s in calls] == list(range(1, 31))


async def test_on_progress_done_increases_with_a_slow_consumer() -> None:
    echo = Echo(latency=lambda text: 1.0)
    dones: list[int] = []
    async with (
        make_client(echo, limits=pt.Limits(concurrency=4)) as client,
        client.stream_batch(
            [msgs(i) for i in range(20)], on_progress=lambda s: dones.append(s.done)
        ) as rs,
    ):
        async for _ in rs:
            await trio.sleep(3)
    assert dones == list(range(1, 21))


async def test_batch_statistics_are_consistent_with_the_results() -> None:
    # item i: 503 once when i % 5 == 1, 429 once when i % 5 == 2, a 400 when i % 5 == 3
    def fail(text: str, n: int) -> Any:
        i = number(text)
        if i % 5 == 1 and n == 0:
            return status(503)
        if i % 5 == 2 and n == 0:
            return status(429, headers={"retry-after": "1"})
        if i % 5 == 3:
            return status(400)
        return None

    echo = Echo(latency=lambda text: 0.2 + 0.1 * (number(text) % 7), fail=fail)
    async with make_client(
        echo, retry=fixed(initial_delay=0.5), limits=pt.Limits(concurrency=8)
    ) as client:
        results = await client.chat_batch([msgs(i) for i in range(40)])
    s = results.statistics
    good = [r for r in results if r.ok]
    assert s.submitted == s.done == 40
    assert s.succeeded == len(good) == 32
    assert s.failed == 8
    assert s.cancelled == 0
    assert s.in_flight == 0
    assert dict(s.retries_by_cause) == {"503": 8, "429": 8}
    assert s.retries == 16 == sum(r.attempts - 1 for r in results)
    assert s.prompt_tokens == sum(r.usage.prompt_tokens for r in good) == 3 * 32
    assert s.completion_tokens == sum(r.usage.completion_tokens for r in good)
    assert s.total_tokens == s.prompt_tokens + s.completion_tokens
    assert s.elapsed == trio.current_time()
    latencies = sorted(r.elapsed for r in good)
    assert s.latency_p50 == pytest.approx(statistics.median_low(latencies), rel=0.021)
    assert s.latency_p99 == pytest.approx(latencies[-1], rel=0.021)
    assert s.latency_p50 is not None
    assert s.latency_p90 is not None
    assert s.latency_p99 is not None
    assert s.latency_p50 <= s.latency_p90 <= s.latency_p99
    assert s.requests_per_minute == pytest.approx(32 / (s.elapsed / 60))
    assert s.tokens_per_minute == pytest.approx(s.total_tokens / (s.elapsed / 60))
    with pytest.raises(AttributeError):
        s.done = 0  # type: ignore[misc]


async def test_stream_statistics_while_running() -> None:
    echo = Echo(latency=lambda text: 10.0)
    async with (
        make_client(echo, limits=pt.Limits(concurrency=3)) as client,
        client.stream_batch(msgs(i) for i in range(5)) as rs,
    ):
        await trio.sleep(5)
        mid = rs.statistics()
        got = [r async for r in rs]
        end = rs.statistics()
    assert (mid.submitted, mid.in_flight, mid.done, mid.elapsed) == (3, 3, 0, 5.0)
    assert mid.latency_p50 is None
    assert mid.requests_per_minute == 0.0
    assert len(got) == 5
    assert (end.submitted, end.in_flight, end.done, end.succeeded) == (5, 0, 5, 5)


async def test_result_elapsed_includes_the_wait_for_the_rate_limit() -> None:
    # documented: from when the batch started working on it, rate-limit waits included
    echo = Echo()
    limits = pt.Limits(requests_per_minute=2, concurrency=4)
    async with make_client(echo, limits=limits) as client:
        results = await client.chat_batch([msgs(i) for i in range(4)])
    assert sorted(echo.times) == [0.0, 0.0, 30.0, 60.0]
    # (trio starts the items of a wave in any order: which two wait is not fixed)
    assert sorted(r.elapsed for r in results) == [0.0, 0.0, 30.0, 60.0]


async def test_retry_elapsed_and_attempts_are_per_item() -> None:
    script = Script(status(503), default=lambda r: ok())
    async with make_client(
        script, retry=fixed(initial_delay=2), limits=pt.Limits(concurrency=1)
    ) as client:
        results = await client.chat_batch([MESSAGES, MESSAGES])
    assert [r.attempts for r in results] == [2, 1]
    assert results[0].elapsed == 2.0
    assert results[1].elapsed == 0.0


# ============================================================================ retry budget


async def test_a_zero_retry_budget_paces_retries_beyond_the_reserve() -> None:
    # Every attempt fails: 30 requests at concurrency 5, 3 retries each (attempts=4).  The
    # reserve is 10 tokens (at least the concurrency); with no tokens per success the other
    # 80 retries come at the floor rate, 10 a second, in order: paced, never refused.
    echo = Echo(fail=lambda text, n: status(503))
    async with make_client(
        echo, retry=fixed(attempts=4, initial_delay=0.01), limits=pt.Limits(concurrency=5)
    ) as client:
        start = trio.current_time()
        results = await client.chat_batch([msgs(i) for i in range(30)], retry_budget=0)
        elapsed = trio.current_time() - start
    assert echo.calls == 30 * 4
    assert results.statistics.retries == 90
    assert dict(results.statistics.retries_by_cause) == {"503": 90}
    assert all(r.attempts == 4 for r in results)
    assert all(any("gave up after 4" in n for n in _notes(r)) for r in results)
    assert elapsed >= (90 - 10) / RETRY_FLOOR - 0.05  # the budget set the pace


async def test_successes_earn_retries_so_a_blip_costs_no_wait() -> None:
    # Every request fails once, then succeeds: with the default budget (one token per
    # success) and a reserve of at least the concurrency, no retry ever waits for a token.
    echo = Echo(fail=lambda text, n: status(503) if n == 0 else None)
    async with make_client(
        echo, retry=fixed(initial_delay=0.5), limits=pt.Limits(concurrency=20)
    ) as client:
        start = trio.current_time()
        results = await client.chat_batch([msgs(i) for i in range(200)])
        elapsed = trio.current_time() - start
    assert all(r.ok and r.attempts == 2 for r in results)
    assert results.statistics.retries == 200
    assert elapsed == pytest.approx(10 * 0.5)  # 10 waves of 20, each waiting only its backoff


def _notes(result: pt.BatchResult) -> list[str]:
    return list(getattr(result.error, "__notes__", []))


async def test_no_retry_budget_retries_everything() -> None:
    echo = Echo(fail=lambda text, n: status(502) if n < 3 else None)
    async with make_client(
        echo, retry=fixed(attempts=4, initial_delay=0.1), limits=pt.Limits(concurrency=10)
    ) as client:
        results = await client.chat_batch([msgs(i) for i in range(30)], retry_budget=None)
    assert all(r.ok and r.attempts == 4 for r in results)
    assert results.statistics.retries == 90


async def test_a_retry_the_budget_would_hold_past_the_deadline_is_final() -> None:
    echo = Echo(fail=lambda text, n: status(503))
    async with make_client(
        echo,
        retry=fixed(attempts=4, initial_delay=0.01),
        timeouts=pt.Timeouts(total=1.0),
        limits=pt.Limits(concurrency=40),
    ) as client:
        results = await client.chat_batch([msgs(i) for i in range(40)], retry_budget=0)
    # A reserve of 40 tokens pays the first round of retries; the second round's 40 come
    # at 10 a second: those that would wait past the 1 s deadline are final, and say why.
    held = [r for r in results if any("retry budget could hold" in n for n in _notes(r))]
    assert held
    assert all(isinstance(r.error, pt.InternalServerError) for r in results)
    assert all(r.elapsed <= 1.0 for r in results)


# ============================================================================ circuit breaker


async def test_breaker_opens_after_n_failures_and_waits_the_cooldown() -> None:
    script = Script(default=httpx2.ConnectError)
    async with make_client(
        script, retry=pt.RetryPolicy.no_retries(), limits=pt.Limits(concurrency=1)
    ) as client:
        results = await client.chat_batch(
            [msgs(i) for i in range(12)], circuit_breaker=3, unreachable_after=5.5
        )
    # three at once, then one probe per 1 s cooldown until 5.5 s of failures
    sent = script.calls
    assert script.times[:8] == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(gap >= 1.0 for gap in script.gaps()[2:])
    errors = [type(r.error) for r in results]
    assert errors == [pt.APIConnectionError] * sent + [pt.ServerUnreachableError] * (12 - sent)
    assert sent < 12
    for r in results[sent:]:
        assert r.attempts == 0
        assert "unreachable" in str(r.error)
        assert isinstance(r.error, pt.APIConnectionError)
    assert 5.5 <= trio.current_time() <= 5.5 + 1.0


async def test_breaker_sends_nothing_once_unreachable_after_has_passed() -> None:
    script = Script(default=httpx2.ConnectError)
    async with make_client(
        script, retry=pt.RetryPolicy.no_retries(), limits=pt.Limits(concurrency=1)
    ) as client:
        results = await client.chat_batch(
            [msgs(i) for i in range(12)], circuit_breaker=3, unreachable_after=4.5
        )
    # failing since t=0: after 4.5 s "every attempt not yet sent fails at once"
    assert max(script.times) < 4.5, script.times
    assert trio.current_time() == 4.5
    assert isinstance(results[-1].error, pt.ServerUnreachableError)


async def test_dead_server_fails_a_big_batch_in_seconds() -> None:
    script = Script(default=after(0.05, httpx2.ConnectError))
    async with make_client(
        script, retry=fixed(attempts=4, initial_delay=0.5), limits=pt.Limits(concurrency=10)
    ) as client:
        results = await client.chat_batch(
            (msgs(i) for i in range(10_000)), circuit_breaker=5, unreachable_after=3
        )
        assert client.statistics().in_flight == 0
    assert len(results) == 10_000
    assert all(isinstance(r.error, pt.APIConnectionError) for r in results)
    unreachable = [r for r in results if isinstance(r.error, pt.ServerUnreachableError)]
    assert len(unreachable) >= 10_000 - 20
    assert all(r.attempts == 0 for r in unreachable[20:])
    assert 3.0 <= trio.current_time() <= 3.0 + 2.0  # seconds, not hours
    assert script.calls < 100


async def test_any_http_response_resets_the_breaker() -> None:
    # two connection failures, then a 500, over and over: never three in a row
    steps: list[Any] = [
        after(1, httpx2.ConnectError),
        after(1, httpx2.ConnectError),
        after(1, status(500)),
    ] * 6
    script = Script(*steps)
    async with make_client(
        script, retry=pt.RetryPolicy.no_retries(), limits=pt.Limits(concurrency=1)
    ) as client:
        results = await client.chat_batch(
            [msgs(i) for i in range(18)], circuit_breaker=3, unreachable_after=2
        )
    assert script.times == [float(k) for k in range(18)]  # no cooldown waits
    assert not any(isinstance(r.error, pt.ServerUnreachableError) for r in results)
    assert [type(r.error) for r in results] == [
        pt.APIConnectionError,
        pt.APIConnectionError,
        pt.InternalServerError,
    ] * 6


async def test_without_responses_the_same_pace_trips_the_breaker() -> None:
    script = Script(default=after(1, httpx2.ConnectError))
    async with make_client(
        script, retry=pt.RetryPolicy.no_retries(), limits=pt.Limits(concurrency=1)
    ) as client:
        results = await client.chat_batch(
            [msgs(i) for i in range(18)], circuit_breaker=3, unreachable_after=2
        )
    assert isinstance(results[-1].error, pt.ServerUnreachableError)
    assert script.calls < 18


async def test_timeouts_count_as_connection_failures() -> None:
    script = Script(default=httpx2.ConnectTimeout)
    async with make_client(
        script, retry=pt.RetryPolicy.no_retries(), limits=pt.Limits(concurrency=1)
    ) as client:
        results = await client.chat_batch(
            [msgs(i) for i in range(10)], circuit_breaker=2, unreachable_after=2
        )
    assert isinstance(results[-1].error, pt.ServerUnreachableError)
    assert script.calls < 10


async def test_breaker_disabled_sends_everything() -> None:
    script = Script(default=httpx2.ConnectError)
    async with make_client(
        script, retry=pt.RetryPolicy.no_retries(), limits=pt.Limits(concurrency=1)
    ) as client:
        results = await client.chat_batch(
            [msgs(i) for i in range(40)], circuit_breaker=None, unreachable_after=0.1
        )
    assert script.calls == 40
    assert not any(isinstance(r.error, pt.ServerUnreachableError) for r in results)


# ============================================================================ validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"on_error": "ignore"},
        {"on_error": "RAISE"},
        {"retry_budget": -1},
        {"retry_budget": -0.01},
        {"retry_budget": float("nan")},
        {"circuit_breaker": 0},
        {"circuit_breaker": -3},
    ],
)
async def test_bad_batch_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    echo = Echo()
    async with make_client(echo) as client:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            await client.chat_batch([msgs(0)], **kwargs)
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            async with client.stream_batch([msgs(0)], **kwargs):
                pass
    assert echo.calls == 0


async def test_leaving_a_batch_while_a_worker_is_delivering_raises_nothing() -> None:
    # A worker woken just before the consumer leaves (its wait ended, it is scheduled)
    # resumes after the channel's receiving end is closed, with no checkpoint between its
    # answer and its delivery: that send found the channel closed (BrokenResourceError in
    # an ExceptionGroup, 1 early exit in 10).  Here the consumer itself wakes the worker,
    # so the order is certain.
    from paradigm_trio._endpoints import _embedding_kind as _embedder
    from paradigm_trio._engine._batch import run_batch

    gate = trio.Event()

    async def send_one(request: Any, **_: Any) -> Any:
        if request.inputs == ("late",):
            await gate.wait()
        data = [{"index": 0, "embedding": [0.5]}]
        return pt.Embeddings.from_json({"data": data}, None)

    kind = _embedder.EmbeddingKind(send_one, {}, pack_inputs=1, pack_tokens=1000)
    batch = run_batch(
        kind,
        ["first", "late"],
        pt.BatchOptions(),
        width=2,
        stream=_embedder.EmbeddingStream,
        observers=(),
    )
    async with batch as results:
        async for result in results:
            assert result.ok
            gate.set()  # the late worker is scheduled now, and runs after the exit below
            break


# ============================================================================ workers


def _counting_workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the batch's workers: each runs ``_Pool.pull`` once."""
    from paradigm_trio._engine import _batch

    started: list[int] = []
    pull = _batch._Pool.pull

    async def counted(self: Any) -> None:
        started.append(1)
        await pull(self)

    monkeypatch.setattr(_batch._Pool, "pull", counted)
    return started


async def test_workers_start_as_units_come_and_never_exceed_the_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workers = _counting_workers(monkeypatch)
    echo = Echo(latency=lambda text: 1.0)
    async with make_client(echo, limits=pt.Limits(concurrency=50)) as client:
        results = await client.chat_batch([msgs(i) for i in range(3)])
    assert [r.ok for r in results] == [True] * 3
    # Not 50 for three items: one per unit, and one more that finds the input's end.
    assert len(workers) == 4
    workers.clear()
    async with make_client(echo, limits=pt.Limits(concurrency=8)) as client:
        start = trio.current_time()
        results = await client.chat_batch([msgs(i) for i in range(40)])
        assert trio.current_time() - start == pytest.approx(5)  # 40 answers of 1 s, 8 at once
    assert len(results) == 40
    assert len(workers) == 8
    assert echo.peak == 8


async def test_a_worker_reads_its_next_unit_after_delivering_and_each_item_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers share one reader of the input: every item is read once, in order, and
    sent once, whatever the order in which the workers come back for more."""
    workers = _counting_workers(monkeypatch)
    read: list[int] = []

    async def source() -> AsyncIterator[list[dict[str, str]]]:
        for i in range(60):
            read.append(i)
            if i % 7 == 0:
                await trio.sleep(0.3)  # a slow item: the other workers wait to read
            yield msgs(i)

    echo = Echo(latency=lambda text: (number(text) * 37 % 11) / 10)
    async with make_client(echo, limits=pt.Limits(concurrency=6)) as client:
        results = await client.chat_batch(source())
    assert read == list(range(60))
    assert sorted(echo.texts) == sorted(f"item {i}" for i in range(60))
    assert [r.index for r in results] == list(range(60))
    assert all(r.ok for r in results)
    assert len(workers) == 6
