"""A pooled plain connection (``_transport._pool.Connection``): the stdlib socket it holds,
and the trio stream over it made only when needed.

Real socket pairs (nothing leaves the process); time is trio's autojumping ``MockClock``.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from paradigm_trio._transport._exchange import write

from .helpers import pair

pytestmark = pytest.mark.anyio


async def test_a_plain_connection_makes_its_trio_stream_only_when_needed(ends: list) -> None:
    conn, server = pair(ends)
    assert conn._stream is None  # (three objects less per connection in flight)
    big = b"x" * (8 << 20)  # more than the socket takes at once: the rest goes by the stream
    got = bytearray()

    async def read_all() -> None:
        while len(got) < len(big):
            await trio.lowlevel.wait_readable(server)
            got.extend(server.recv(1 << 20))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await write(conn, big, 10.0)
    assert bytes(got) == big
    assert isinstance(conn._stream, trio.SocketStream)
    assert conn.stream is conn._stream
    await conn.close()
    assert conn.raw is not None
    assert conn.raw.fileno() == -1


async def test_closing_wakes_a_wait_of_trio_s_on_the_socket(ends: list) -> None:
    conn, _ = pair(ends)
    raw = conn.raw
    assert raw is not None
    woken: list[type[BaseException]] = []

    async def waits() -> None:
        with pytest.raises(trio.ClosedResourceError) as caught:
            await trio.lowlevel.wait_readable(raw)
        woken.append(caught.type)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waits)
        await trio.testing.wait_all_tasks_blocked()
        await conn.close()
        assert raw.fileno() == -1
        assert conn._stream is None  # (closed without making one)
    assert woken == [trio.ClosedResourceError]
    await conn.close()  # (twice is harmless)


async def test_an_idle_connection_the_server_closed_is_readable(ends: list) -> None:
    conn, server = pair(ends)
    assert not conn.socket_readable()
    server.shutdown(socket.SHUT_WR)
    assert conn.socket_readable()
    conn.close_nowait()
    assert conn.raw is not None
    assert conn.raw.fileno() == -1
    assert conn._stream is None
