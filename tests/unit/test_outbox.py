"""Small requests written together by one writer task per trio run (``_transport._outbox``).

Each test uses real socket pairs (nothing leaves the process): the client's end is a
pooled plain connection (``Connection.raw``), the other end plays the server.
"""

from __future__ import annotations

import socket

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._transport import _outbox
from paradigm_trio._transport._exchange import closed_unsent, receive, write_unsent
from paradigm_trio._transport._pool import Connection

from .helpers import ORIGIN, Status, arrived, pair

pytestmark = pytest.mark.anyio

REQUEST = b"GET /v1/models HTTP/1.1\r\nHost: api.example\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
TIMEOUTS = (10.0, 10.0, 10.0)


async def fetch(transport: pt.TrioTransport, data: bytes = REQUEST) -> int:
    return await transport.fetch(ORIGIN, data, TIMEOUTS, Status(), None)


def busy(transport: pt.TrioTransport) -> pt.TrioTransport:
    """The transport, as if another request were under way: a lone request is written by
    its own task, as nothing could join it."""
    transport._fetching += 1
    return transport


async def answer(server: socket.socket, size: int = len(REQUEST)) -> None:
    """Read the whole request, then answer 200."""
    got = b""
    while len(got) < size:
        await trio.lowlevel.wait_readable(server)
        got += server.recv(1 << 20)
    assert len(got) == size
    server.send(OK)


async def test_requests_made_together_are_sent_together(ends: list) -> None:
    # Two requests made in one scheduling step (as the answers that wake their workers
    # come together) are both made before either is written, so that a server on the
    # same machine is woken once for them, not once each (docs/performance.md, section 2).
    seen: list[bytes] = []
    async with pt.TrioTransport() as transport:
        busy(transport)  # (a batch under way: other requests wait for answers)
        conns = [pair(ends) for _ in range(2)]
        for conn, _ in conns:
            assert transport._pool.keep(conn)
        servers = [server for _, server in conns]

        async def make_and_send() -> None:
            # Made: nothing is on its way yet, the other task's request included.
            seen.extend(arrived(server) for server in servers)
            assert await fetch(transport) == 200

        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(make_and_send)
            for server in servers:
                nursery.start_soon(answer, server)
    assert seen == [b""] * 4


async def test_the_writer_writes_what_is_posted_in_its_next_step(ends: list) -> None:
    conns = [pair(ends) for _ in range(3)]
    for number, (conn, _) in enumerate(conns):
        assert _outbox.post(conn, b"request %d" % number)
    assert [arrived(server) for _, server in conns] == [b"", b"", b""]
    await trio.testing.wait_all_tasks_blocked()
    assert [arrived(server) for _, server in conns] == [b"request 0", b"request 1", b"request 2"]
    assert all(conn.outgoing is None and conn.unsent is None for conn, _ in conns)
    # It sleeps, and wakes for the next post.
    assert _outbox.post(conns[0][0], b" again")
    await trio.testing.wait_all_tasks_blocked()
    assert arrived(conns[0][1]) == b"request 0 again"


async def test_a_post_that_finds_enough_waiting_writes_them_itself(ends: list) -> None:
    # With many tasks in one step, none waits for all the others (the writer runs after
    # all of them): every _FLUSH_AT-th post writes those before it at once.
    conns = [pair(ends) for _ in range(_outbox._FLUSH_AT + 1)]
    for conn, _ in conns:
        assert _outbox.post(conn, REQUEST)
    firsts, last = conns[:-1], conns[-1]
    assert [arrived(server) for _, server in firsts] == [REQUEST] * _outbox._FLUSH_AT
    assert arrived(last[1]) == b""  # the writer's, in its next step
    await trio.testing.wait_all_tasks_blocked()
    assert arrived(last[1]) == REQUEST


async def test_a_request_given_up_is_not_written(ends: list) -> None:
    conn, server = pair(ends)
    assert _outbox.post(conn, REQUEST)
    conn.outgoing = None  # (what ``fetch`` does when its task stops waiting)
    await trio.testing.wait_all_tasks_blocked()
    assert arrived(server) == b""
    assert conn.unsent is None


async def test_a_failed_write_wakes_the_wait_with_its_error(ends: list) -> None:
    conn, _ = pair(ends)
    conn.raw.shutdown(socket.SHUT_WR)  # (the write fails; the socket is not readable)
    assert _outbox.post(conn, REQUEST)
    with pytest.raises(trio.ClosedResourceError):
        await trio.lowlevel.wait_readable(conn.raw)
    assert isinstance(conn.unsent, OSError)
    assert conn.unsent.__traceback__ is None  # (no frame of the writer's kept alive)


async def test_an_answer_sent_before_the_server_closed_is_read(
    ends: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server answered (a 413) and closed after the connection was taken: the write
    # fails, and the answer is what the request gets, as with a write of its own.
    conn, server = pair(ends)
    server.send(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
    server.close()
    monkeypatch.setattr(Connection, "socket_readable", lambda self: False)  # (taken before)
    async with pt.TrioTransport() as transport:
        busy(transport)
        assert transport._pool.keep(conn)
        assert await fetch(transport) == 413
        assert transport._pool.idle_count == 0  # not kept: its write failed


async def test_a_connection_the_server_closed_unanswered_is_replaced(
    ends: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closed by the server after it was taken (what ``Pool.checkout`` looks for, a moment
    # too early): nothing of the request went out, so it goes on another connection.
    healthy, healthy_server = pair(ends)
    stale, stale_server = pair(ends)
    stale_server.close()
    monkeypatch.setattr(Connection, "socket_readable", lambda self: False)  # (taken before)
    async with pt.TrioTransport() as transport:
        busy(transport)
        assert transport._pool.keep(healthy)
        assert transport._pool.keep(stale)  # (on top: taken first)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, healthy_server)
            assert await fetch(transport) == 200
        assert stale.raw.fileno() == -1  # closed
        assert transport._pool.idle_count == 1  # the healthy one, back


async def test_a_failed_write_with_no_answer_is_a_write_error(
    ends: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The connection taken instead is closed too: the request's write fails.
    conns = [pair(ends) for _ in range(2)]
    for _, server in conns:
        server.close()
    monkeypatch.setattr(Connection, "socket_readable", lambda self: False)
    async with pt.TrioTransport() as transport:
        busy(transport)
        for conn, _ in conns:
            assert transport._pool.keep(conn)
        with pytest.raises(httpx2.WriteError, match="sending the request failed"):
            await fetch(transport)
        assert transport._pool.idle_count == 0


async def test_a_posted_request_not_written_when_the_socket_turns_readable(ends: list) -> None:
    # (Each case set by hand, whatever the writer does.)  The wait returns without
    # reading; the request is then written first, and the answer read after it.
    conn, server = pair(ends)
    conn.outgoing = REQUEST
    server.send(OK)
    await receive(conn, 10, posted=True)
    assert not conn.reader.head  # nothing read
    assert not closed_unsent(conn)  # the server spoke: not closed without a word
    await write_unsent(conn, TIMEOUTS)
    assert conn.outgoing is None
    assert arrived(server) == REQUEST


async def test_what_a_failed_write_leaves_is_finished_by_the_task(ends: list) -> None:
    conn, server = pair(ends)
    conn.unsent = memoryview(REQUEST)[10:]
    await write_unsent(conn, TIMEOUTS)
    assert conn.unsent is None
    assert arrived(server) == REQUEST[10:]
    # A failed send, the server gone without a word: nothing went out.
    conn.unsent = BrokenPipeError(32, "Broken pipe")
    server.close()
    assert closed_unsent(conn)
    with pytest.raises(httpx2.WriteError, match="Broken pipe"):
        await write_unsent(conn, TIMEOUTS)
    assert not conn.reusable


async def test_a_cancelled_fetch_writes_its_request_whole_or_not_at_all(ends: list) -> None:
    conn, server = pair(ends)
    async with pt.TrioTransport() as transport:
        busy(transport)
        assert transport._pool.keep(conn)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch, transport)
                await trio.testing.wait_all_tasks_blocked()  # posted, and waiting
                scope.cancel()
        assert arrived(server) in (b"", REQUEST)
        assert conn.outgoing is None
        assert conn.raw.fileno() == -1  # closed, not back in the pool
        assert transport._pool.idle_count == 0


async def test_what_the_socket_did_not_take_is_written_by_the_task(
    ends: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A socket whose buffer is nearly full takes part of the request: the task writes the
    # rest itself, and the answer comes as usual.
    left: list[object] = []
    unsent = _outbox._unsent

    def record(conn: Connection, what: memoryview | OSError) -> None:
        left.append(what)
        unsent(conn, what)

    monkeypatch.setattr(_outbox, "_unsent", record)
    conn, server = pair(ends)
    conn.raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    data = REQUEST.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * 60_000 + b"\r\n\r\n")
    assert len(data) <= 64 * 1024  # (a small request: the writer's)
    async with pt.TrioTransport() as transport:
        busy(transport)
        assert transport._pool.keep(conn)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, server, len(data))
            assert await fetch(transport, data) == 200
    assert conn.unsent is None
    assert len(left) == 1  # (a part was left)
    assert isinstance(left[0], memoryview)
    assert 0 < len(left[0]) < len(data)


async def test_a_lone_request_is_written_by_its_own_task(ends: list) -> None:
    conn, server = pair(ends)
    async with pt.TrioTransport() as transport:
        assert transport._pool.keep(conn)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, server)
            assert await fetch(transport) == 200
    with pytest.raises(LookupError):
        _outbox._OUTBOX.get()  # no writer in this run
