"""Connection warm-up: ``TrioTransport.warm_up``, ``Client.warm_up``, ``BatchOptions.warm_up``.

The transport runs on a fake network (````tests/fakenet.py``): the server ``api.example`` has one
address, each connection to it takes ``CONNECT`` seconds of the virtual clock, and every
request written to a connection is answered at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

import paradigm_trio as pt
from paradigm_trio._endpoints import _chat_kind, _embedding_kind
from paradigm_trio._engine._batch import run_batch

from ..fakenet import FakeResolver, Scenario
from .helpers import API_KEY, MESSAGES, Script, Status, completion_json, ok

pytestmark = pytest.mark.anyio

URL = "http://api.example/v1"
ORIGIN = ("http", "api.example", 80)
CONNECT = 1.0
TIMEOUTS = (10.0, 10.0, 10.0)
GET = b"GET /v1/models HTTP/1.1\r\nHost: api.example\r\n\r\n"


def network(result: str = "success", connect: float = CONNECT) -> Scenario:
    scenario = Scenario([("10.0.0.1", connect, result)]).install()
    FakeResolver(scenario.ips, delay=0.0).install()
    return scenario


async def fetch(transport: pt.TrioTransport, timeout: float = 10.0) -> int:
    return await transport.fetch(ORIGIN, GET, (timeout, 10.0, 10.0), Status(), None)


async def test_opens_the_connections_at_once_and_keeps_them() -> None:
    scenario = network()
    async with pt.TrioTransport() as transport:
        start = trio.current_time()
        assert await transport.warm_up(URL, 10, connect_timeout=10) == 10
        assert trio.current_time() - start == pytest.approx(CONNECT)  # at once, not 10 s
        assert len(scenario.connected) == 10
        assert transport._pool.idle_count == 10
        # Requests take them: no new connection.
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(fetch, transport)
        assert len(scenario.connected) == 10


async def test_counts_the_idle_connections_already_kept() -> None:
    scenario = network()
    async with pt.TrioTransport() as transport:
        await transport.warm_up(URL, 4, connect_timeout=10)
        assert await transport.warm_up(URL, 6, connect_timeout=10) == 2
        assert await transport.warm_up(URL, 6, connect_timeout=10) == 0
        assert len(scenario.connected) == 6
        # An idle connection past its expiry is not counted (and is dropped).
        await trio.sleep(10)
        assert await transport.warm_up(URL, 6, connect_timeout=10) == 6
        assert transport._pool.idle_count == 6


async def test_connections_being_opened_count_too() -> None:
    scenario = network()
    async with pt.TrioTransport() as transport, trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(partial(transport.warm_up, URL, 5, connect_timeout=10))
    assert len(scenario.connected) == 5


async def test_never_more_than_the_pool_keeps() -> None:
    scenario = network()
    async with pt.TrioTransport(max_keepalive=3) as transport:
        assert await transport.warm_up(URL, 10, connect_timeout=10) == 3
        assert await transport.warm_up("http://other.example", 10, connect_timeout=10) == 0
    assert len(scenario.connected) == 3


async def test_one_lookup_of_the_name_for_every_connection() -> None:
    network()
    resolver = FakeResolver(["10.0.0.1"], delay=0.5).install()
    async with pt.TrioTransport() as transport:
        await transport.warm_up(URL, 50, connect_timeout=10)
    assert resolver.lookups == [(b"api.example", 80)]


async def test_failures_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="paradigm_trio")
    network("error")
    async with pt.TrioTransport() as transport:
        assert await transport.warm_up(URL, 5, connect_timeout=10) == 0
        assert transport._pool.idle_count == 0
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "connections_warmed"]
    assert record.levelno == logging.DEBUG
    assert (record.wanted, record.opened, record.failed) == (5, 0, 5)  # type: ignore[attr-defined]
    assert "cannot connect to api.example:80" in record.getMessage()


async def test_cancelling_it_closes_what_it_was_opening() -> None:
    scenario = network(connect=100)
    async with pt.TrioTransport() as transport:
        with trio.move_on_after(1) as scope:
            await transport.warm_up(URL, 5, connect_timeout=10)
        assert scope.cancelled_caught
        assert len(scenario.connected) == 5
        assert all(sock.closed for sock in scenario.connected)
        assert transport._pool.idle_count == 0
        assert not transport._pool._dialing[ORIGIN]


async def test_a_checkpoint_even_with_nothing_to_open() -> None:
    network()
    async with pt.TrioTransport() as transport:
        with trio.testing.assert_checkpoints():
            assert await transport.warm_up(URL, 0, connect_timeout=10) == 0


async def test_bad_arguments() -> None:
    transport = pt.TrioTransport()
    with pytest.raises(ValueError, match="connections must be an int >= 0"):
        await transport.warm_up(URL, -1, connect_timeout=10)
    with pytest.raises(httpx2.UnsupportedProtocol):
        await transport.warm_up("ftp://api.example", 1, connect_timeout=10)
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.warm_up(URL, 1, connect_timeout=10)


# ---------------------------------------------------------------------- handing over


async def test_a_request_takes_a_connection_being_opened() -> None:
    scenario = network()
    async with pt.TrioTransport() as transport, trio.open_nursery() as nursery:
        await nursery.start(partial(transport.warm_up, URL, 3, connect_timeout=10))
        start = trio.current_time()
        async with trio.open_nursery() as requests:
            for _ in range(3):
                requests.start_soon(fetch, transport)
        assert trio.current_time() - start == pytest.approx(CONNECT)  # no second wait
    assert len(scenario.connected) == 3  # each request took one: none opened twice


async def test_a_request_gets_the_error_of_the_connection_it_took() -> None:
    scenario = network("error")
    async with pt.TrioTransport() as transport:
        with pytest.raises(httpx2.ConnectError) as alone:
            await fetch(transport)
    async with pt.TrioTransport() as transport, trio.open_nursery() as nursery:
        await nursery.start(partial(transport.warm_up, URL, 1, connect_timeout=10))
        with pytest.raises(httpx2.ConnectError) as taken:
            await fetch(transport)
    assert str(taken.value) == str(alone.value)
    # (one address: the socket's own error, not trio's "all attempts ... failed")
    assert str(taken.value) == "cannot connect to api.example:80: connection to 10.0.0.1 refused"
    assert len(scenario.connected) == 2  # one without warm-up, one with: not opened again


async def test_a_request_cancelled_while_waiting_leaves_the_connection_to_the_pool() -> None:
    network()
    async with pt.TrioTransport() as transport, trio.open_nursery() as nursery:
        await nursery.start(partial(transport.warm_up, URL, 1, connect_timeout=10))
        with trio.move_on_after(CONNECT / 2):
            await fetch(transport)
        await trio.sleep(CONNECT)
        assert transport._pool.idle_count == 1


async def test_a_connection_slower_than_the_request_allows_is_not_taken() -> None:
    scenario = network()
    async with pt.TrioTransport() as transport, trio.open_nursery() as nursery:
        # No connect timeout for the warm-up: it may take longer than the request's 5 s.
        await nursery.start(partial(transport.warm_up, URL, 1, connect_timeout=None))
        assert await fetch(transport, timeout=5.0) == 200
    assert len(scenario.connected) == 2


async def test_a_cancelled_warm_up_lets_its_takers_open_their_own() -> None:
    scenario = network(connect=3.0)
    async with pt.TrioTransport() as transport, trio.open_nursery() as nursery:
        warming = trio.CancelScope()

        async def warm(task_status: trio.TaskStatus[None]) -> None:
            with warming:
                await transport.warm_up(URL, 1, connect_timeout=1.0, task_status=task_status)

        await nursery.start(warm)
        async with trio.open_nursery() as requests:
            requests.start_soon(fetch, transport)
            await trio.sleep(0.5)
            warming.cancel()
    assert len(scenario.connected) == 2
    assert scenario.connected[0].closed


# ---------------------------------------------------------------------- the client and batches


async def test_client_warm_up_on_its_own_transport() -> None:
    scenario = network()
    limits = pt.Limits(concurrency=8)
    async with pt.Client(api_key=API_KEY, base_url=URL, limits=limits) as client:
        assert await client.warm_up() == 8
        assert await client.warm_up(10) == 0  # the pool keeps as many as the concurrency
        assert len(scenario.connected) == 8


async def test_client_warm_up_uses_the_connect_timeout() -> None:
    network(connect=100)
    timeouts = pt.Timeouts(connect=2.0)
    async with pt.Client(api_key=API_KEY, base_url=URL, timeouts=timeouts) as client:
        start = trio.current_time()
        assert await client.warm_up(3) == 0
        assert trio.current_time() - start == pytest.approx(2.0)
        assert await client.warm_up(3, timeouts=pt.Timeouts(connect=0.5)) == 0
        assert trio.current_time() - start == pytest.approx(2.5)


async def test_client_warm_up_with_another_transport_does_nothing() -> None:
    transport = httpx2.MockTransport(Script(default=lambda request: ok()))
    async with pt.Client(api_key=API_KEY, base_url=URL, transport=transport) as client:
        with trio.testing.assert_checkpoints():
            assert await client.warm_up() == 0
        async with trio.open_nursery() as nursery:
            assert await nursery.start(client.warm_up) is None


def test_batch_option_is_off_by_default_and_checked() -> None:
    assert pt.BatchOptions().warm_up is False
    with pytest.raises(ValueError, match="warm_up must be True or False"):
        pt.BatchOptions(warm_up="yes")  # type: ignore[arg-type]


class Warmer:
    """A ``_batch.WarmUp`` that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, pt.Timeouts | None]] = []

    async def __call__(
        self, connections: int, *, timeouts: pt.Timeouts | None, task_status: Any
    ) -> int:
        self.calls.append((connections, timeouts))
        task_status.started()
        await trio.lowlevel.checkpoint()
        return connections


async def _run(items: Any, warmer: Warmer, **keywords: Any) -> list[Any]:
    async def send_one(request: Any, **_: Any) -> Any:
        await trio.sleep(0.1)
        return pt.ChatCompletion.from_json(completion_json(), None)

    options = pt.BatchOptions(**keywords)
    batch = _chat_kind.stream_batch(send_one, items, options, width=8, observers=(), warm_up=warmer)
    async with batch as results:
        return [r async for r in results]


async def _items(n: int) -> AsyncIterator[Any]:
    for _ in range(n):
        yield MESSAGES
        await trio.lowlevel.checkpoint()


async def test_a_batch_warms_up_as_many_connections_as_it_needs() -> None:
    warmer = Warmer()
    timeouts = pt.Timeouts(connect=3.0)
    assert len(await _run([MESSAGES] * 3, warmer, warm_up=True, timeouts=timeouts)) == 3
    assert len(await _run([MESSAGES] * 30, warmer, warm_up=True)) == 30
    assert len(await _run(_items(5), warmer, warm_up=True)) == 5  # not Sized: the width
    assert warmer.calls == [(3, timeouts), (8, None), (8, None)]
    await _run([MESSAGES] * 3, warmer)  # off by default
    await _run([MESSAGES] * 3, warmer, warm_up=False)
    assert len(warmer.calls) == 3


async def test_a_batch_with_warm_up_sends_the_same_requests() -> None:
    scenario = network()
    limits = pt.Limits(concurrency=4)
    async with pt.Client(api_key=API_KEY, base_url=URL, limits=limits) as client:
        results = await client.chat_batch([MESSAGES] * 10, warm_up=True)
    assert all(r.ok for r in results)
    assert len(scenario.connected) == 4  # the warm-up's, taken by the first wave


async def test_a_batch_deadline_stops_its_warm_up() -> None:
    network(connect=math.inf)
    async with pt.Client(api_key=API_KEY, base_url=URL, timeouts=pt.Timeouts.none()) as client:
        deadline = trio.current_time() + 5
        results = await client.chat_batch([MESSAGES] * 2, warm_up=True, deadline=deadline)
        assert trio.current_time() == pytest.approx(deadline)
    assert all(isinstance(r.error, pt.RequestCancelled) for r in results)


PACKING = {"pack_inputs": pt.DEFAULT_PACK_INPUTS, "pack_tokens": pt.DEFAULT_PACK_TOKENS}


async def _run_embeddings(items: Any, warmer: Warmer, **packing: int) -> list[Any]:
    """A batch of embeddings (``run_batch`` with the embeddings' kind), at width 8."""

    async def send_one(request: Any, **_: Any) -> Any:
        await trio.sleep(0.1)
        data = [{"index": i, "embedding": [0.5]} for i in range(len(request.inputs))]
        return pt.Embeddings.from_json({"data": data}, None)

    kind = _embedding_kind.EmbeddingKind(send_one, {}, **{**PACKING, **packing})
    options = pt.BatchOptions(warm_up=True)
    batch = run_batch(
        kind,
        items,
        options,
        width=8,
        stream=_embedding_kind.EmbeddingStream,
        observers=(),
        warm_up=warmer,
    )
    async with batch as results:
        return [r async for r in results]


async def _texts(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield "text"
        await trio.lowlevel.checkpoint()


async def test_a_packed_batch_warms_up_a_connection_per_request_of_its_first_wave() -> None:
    warmer = Warmer()
    assert len(await _run_embeddings(["text"] * 100, warmer, pack_inputs=32)) == 100
    assert len(await _run_embeddings(["text"] * 5, warmer)) == 5  # one request
    assert len(await _run_embeddings(["text"] * 1000, warmer, pack_inputs=32)) == 1000
    assert len(await _run_embeddings(["text"] * 20, warmer, pack_inputs=1)) == 20
    assert len(await _run_embeddings(_texts(20), warmer)) == 20  # not Sized: the width
    assert [connections for connections, _ in warmer.calls] == [4, 1, 8, 8, 8]


async def test_a_packed_batch_opens_only_the_connections_it_needs() -> None:
    scenario = network()
    limits = pt.Limits(concurrency=8)
    async with pt.Client(api_key=API_KEY, base_url=URL, limits=limits) as client:
        # (The fake server answers a chat completion: each request fails, once.)
        retry = pt.RetryPolicy(attempts=1)
        await client.embed_batch(["text"] * 100, pack_inputs=32, warm_up=True, retry=retry)
    assert len(scenario.connected) == 4  # 4 requests of 32 inputs at most, not 8
