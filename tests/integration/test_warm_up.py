"""Connection warm-up against a real server on 127.0.0.1 (and against none)."""

from __future__ import annotations

import logging
import socket

import pytest
import trio

import paradigm_trio as pt

from ..fakenet import ANSWER as COMPLETION
from .rawserver import raw_server

pytestmark = pytest.mark.anyio

KEY = "sk-warm-up-test-key-0123456789"
HI = [{"role": "user", "content": "Hi"}]


async def answer(stream: trio.abc.Stream, head: bytes) -> bool:
    await trio.sleep(0.05)
    await stream.send_all(COMPLETION)
    return True


def client(port: int, concurrency: int, **keywords: object) -> pt.Client:
    return pt.Client(
        api_key=KEY,
        base_url=f"http://127.0.0.1:{port}/v1",
        limits=pt.Limits(concurrency=concurrency),
        **keywords,  # type: ignore[arg-type]
    )


async def test_a_warmed_up_client_sends_its_first_wave_on_those_connections() -> None:
    async with raw_server(answer) as (server, port), client(port, 8) as c:
        assert await c.warm_up() == 8
        results = await c.chat_batch([HI] * 16)
        assert all(r.ok for r in results)
        assert server.connections == 8
        assert server.requests == 16


async def test_a_batch_warms_up_no_more_connections_than_it_has_items(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="paradigm_trio")
    async with raw_server(answer) as (server, port), client(port, 10) as c:
        results = await c.chat_batch([HI] * 5, warm_up=True)
        assert all(r.ok for r in results)
        assert server.connections == 5  # taken by the requests: none opened twice
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "connections_warmed"]
    assert (record.wanted, record.opened, record.failed) == (5, 5, 0)  # type: ignore[attr-defined]


async def test_with_the_server_down_the_errors_and_their_timing_are_the_same() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcomes = {}
    for warm_up in (False, True):
        async with client(port, 4, retry=pt.RetryPolicy(attempts=1)) as c:
            start = trio.current_time()
            results = await c.chat_batch([HI] * 8, warm_up=warm_up)
            elapsed = trio.current_time() - start
        outcomes[warm_up] = ({str(r.error) for r in results}, elapsed)
    assert outcomes[True][0] == outcomes[False][0]
    (message,) = outcomes[True][0]
    assert f"cannot connect to 127.0.0.1:{port}" in message
    assert outcomes[True][1] < outcomes[False][1] + 1.0
