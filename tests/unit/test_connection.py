"""A pooled plain connection (``_transport._pool.Connection``): the stdlib socket it holds,
and the trio stream over it made only when needed.

Real socket pairs (nothing leaves the process); time is trio's autojumping ``MockClock``.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

import paradigm_trio as pt
from paradigm_trio._transport._exchange import write
from paradigm_trio._transport._pool import Connection

from .helpers import ORIGIN, Status, pair

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


@pytest.mark.parametrize("pool_full", [False, True])
async def test_a_connection_opened_for_a_request_cancelled_meanwhile_is_not_dropped(
    ends: list, monkeypatch: pytest.MonkeyPatch, pool_full: bool
) -> None:
    # The request is cancelled while its connection is being opened, and the opening
    # ends all the same: the new connection is kept for another request (or closed when
    # the pool is full), never left for the garbage collector to close.
    async with pt.TrioTransport(max_keepalive=0 if pool_full else 10) as transport:
        conn, server = pair(ends)
        scope = trio.CancelScope()

        async def connect(origin: object, timeout: float) -> Connection:
            scope.cancel()  # (no checkpoint here: the opening ends as the cancel comes)
            return conn

        monkeypatch.setattr(transport, "_connect", connect)
        with scope:
            await transport.fetch(ORIGIN, b"GET / HTTP/1.1\r\n\r\n", (10.0,) * 3, Status(), None)
        assert scope.cancelled_caught
        assert server.recv(1, socket.MSG_PEEK) == b"" if pool_full else not _sent(server)
        assert conn.raw is not None
        assert (conn.raw.fileno() == -1) is pool_full
        assert transport._pool.idle_count == (0 if pool_full else 1)


def _sent(server: socket.socket) -> bool:
    """Whether anything was written to ``server``'s end."""
    try:
        return bool(server.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
