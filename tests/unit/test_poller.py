"""Answer waits in one epoll of our own per trio run (``_transport._poller``).

Real socket pairs (nothing leaves the process): the client's end is a pooled plain
connection, the other end plays the server.  Time is trio's autojumping ``MockClock``.
"""

from __future__ import annotations

import gc
import math
import os
import select
import socket
import warnings
from functools import partial

import httpx2
import pytest
import trio
import trio.testing

import paradigm_trio as pt
from paradigm_trio._transport import _outbox, _poller, _pool, _waits
from paradigm_trio._transport._exchange import receive
from paradigm_trio._transport._pool import Connection, Pool

from .helpers import ORIGIN, Status, pair

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(select, "epoll"), reason="the poller is Linux's (epoll)"),
]

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
REQUEST = b"GET /v1/models HTTP/1.1\r\nHost: api.example\r\n\r\n"
TIMEOUTS = (10.0, 10.0, 10.0)


def waiting_read() -> int:
    """How many tasks wait on a file descriptor through trio's own waits."""
    return trio.lowlevel.current_statistics().io_statistics.tasks_waiting_read  # type: ignore[no-any-return]


async def wait_answer(conn: Connection, until: float = math.inf, read_timeout: float = 10.0) -> int:
    """Post a request on ``conn`` and read the answer's status, as ``TrioTransport.fetch``
    does among other requests."""
    conn.reader.start()
    assert _outbox.post(conn, REQUEST)
    await receive(conn, read_timeout, until, posted=True)
    while not conn.reader.head:
        await receive(conn, read_timeout, until)
    return conn.reader.status


async def answered_once(ends: list) -> tuple[Connection, socket.socket]:
    """A connection that has waited in the poller once (answered), and its server's end."""
    conn, server = pair(ends)
    server.send(OK)
    assert await wait_answer(conn) == 200
    return conn, server


async def answered_anew(ends: list, fd: int, poller: object) -> None:
    """A new connection gets descriptor ``fd`` (a closed socket's), and waits in ``poller``
    (registered anew) for its answer."""
    again, server = pair(ends)
    assert again.raw is not None
    assert again.raw.fileno() == fd
    server.send(OK)
    assert await wait_answer(again) == 200
    assert again.poller is poller


async def answered_together(ends: list, count: int) -> tuple[int, list[Connection]]:
    """Wait for ``count`` answers at once and send them once all wait; how many more
    descriptors trio watched meanwhile, and the connections (each answered 200)."""
    conns = [pair(ends) for _ in range(count)]
    statuses: list[int] = []
    before = waiting_read()

    async def one(conn: Connection) -> None:
        statuses.append(await wait_answer(conn))

    async with trio.open_nursery() as nursery:
        for conn, _ in conns:
            nursery.start_soon(one, conn)
        await trio.testing.wait_all_tasks_blocked()
        watched = waiting_read() - before
        for conn, server in conns:
            assert (conn.task is not None) == (watched == 1)  # (waits in the poller)
            server.send(OK)
    assert statuses == [200] * count
    return watched, [conn for conn, _ in conns]


async def test_many_waits_are_one_wait_of_trio(ends: list) -> None:
    # Five waits for an answer, and trio watches one descriptor: the poller's epoll.
    watched, conns = await answered_together(ends, 5)
    assert watched == 1
    assert all(conn.task is None for conn in conns)


async def test_a_wait_whose_deadline_passes_is_a_read_timeout(ends: list) -> None:
    conn, _ = pair(ends)
    start = trio.current_time()
    with trio.fail_after(1_000), pytest.raises(httpx2.ReadTimeout):  # (not a hang if broken)
        await wait_answer(conn, read_timeout=3.0)
    assert trio.current_time() - start == pytest.approx(3.0)
    assert conn.task is None
    # The attempt's deadline, when it comes first.
    conn, _ = pair(ends)
    start = trio.current_time()
    with trio.fail_after(1_000), pytest.raises(httpx2.ReadTimeout):
        await wait_answer(conn, until=start + 1.5, read_timeout=3.0)
    assert trio.current_time() - start == pytest.approx(1.5)


async def test_a_socket_ready_as_its_deadline_passes_is_read(ends: list) -> None:
    # Both in the same step of the poller: the answer wins, as with trio's own wait.
    conn, server = pair(ends)
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    statuses: list[int] = []

    async def waits() -> None:
        statuses.append(await wait_answer(conn, read_timeout=1.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waits)
        await trio.testing.wait_all_tasks_blocked()
        server.send(OK)
        clock.jump(2.0)
    assert statuses == [200]


async def test_an_earlier_deadline_wakes_the_poller_sooner(ends: list) -> None:
    # A first wait of 100 s puts the poller to sleep until then; a second of 2 s must still
    # end at 2 s.
    (slow, _), (fast, _) = pair(ends), pair(ends)
    ended: dict[str, float] = {}
    start = trio.current_time()

    async def one(name: str, conn: Connection, read_timeout: float) -> None:
        with pytest.raises(httpx2.ReadTimeout):
            await wait_answer(conn, read_timeout=read_timeout)
        ended[name] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "slow", slow, 100.0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, "fast", fast, 2.0)
        nursery.cancel_scope.deadline = start + 1_000  # (a failure, not a hang, if broken)
    assert ended == {"fast": pytest.approx(2.0), "slow": pytest.approx(100.0)}


async def test_a_cancelled_wait_takes_itself_off(ends: list) -> None:
    conn, server = pair(ends)
    with trio.CancelScope() as scope:
        scope.deadline = trio.current_time() + 1.0  # (the caller's scope, not the read timeout)
        await wait_answer(conn)
    assert scope.cancelled_caught
    assert conn.task is None
    poller = conn.poller
    assert poller is not None
    assert not poller.ready
    assert not poller.deadlines.items
    # The answer comes after all: nobody waits, so the connection is marked.
    server.send(OK)
    await trio.testing.wait_all_tasks_blocked()
    assert conn.task is None
    assert _stirred(conn)
    # Another wait on the same connection looks first, and reads what came.
    assert await wait_answer(conn) == 200
    assert not _stirred(conn)
    # And the next waits in the poller, as usual.
    server.send(OK)
    assert await wait_answer(conn) == 200


async def test_a_socket_stays_registered_between_waits(
    ends: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Edge-triggered and registered once: no epoll_ctl per wait (trio's wait makes one).
    conn, server = await answered_once(ends)
    assert server.recv(1 << 16) == REQUEST
    poller = conn.poller
    assert poller is not None
    assert poller.epoll is not None
    calls: list[str] = []

    class Counted:
        def __init__(self, epoll: select.epoll) -> None:
            self.epoll = epoll

        def __getattr__(self, name: str) -> object:
            if name in ("register", "modify", "unregister"):
                calls.append(name)
            return getattr(self.epoll, name)

    monkeypatch.setattr(poller, "epoll", Counted(poller.epoll))
    looks = _count_looks(monkeypatch)
    for _ in range(3):
        conn.reader.start()
        assert _outbox.post(conn, REQUEST)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(receive, conn, 10.0, posted=True))
            await trio.testing.wait_all_tasks_blocked()
            assert conn.task is not None  # (waiting in the poller)
            server.send(OK)
        assert conn.reader.status == 200
        assert not conn.socket_readable()  # (answered, nothing more: no call either)
        assert server.recv(1 << 16) == REQUEST
    assert calls == []
    assert looks == []


def _count_looks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The pool's looks at an idle socket (a system call each), from now on."""
    looks: list[object] = []
    readable = _pool._readable

    def counted(sock: socket.socket) -> bool:
        looks.append(sock)
        return readable(sock)

    monkeypatch.setattr(_pool, "_readable", counted)
    return looks


async def test_a_closed_idle_connection_wakes_the_poller_once(ends: list) -> None:
    # An idle connection that the server closes (EOF: readable for good) wakes the poller
    # once, not over and over; it is marked, and the pool then drops it.
    conn, server = await answered_once(ends)
    assert not conn.socket_readable()
    steps = _Steps()
    trio.lowlevel.add_instrument(steps)
    try:
        server.close()
        for _ in range(20):  # (steps of the scheduler, each with a look at the sockets)
            await trio.lowlevel.cancel_shielded_checkpoint()
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert steps.poller == 1
    assert _stirred(conn)
    pool = Pool(10, 60.0)
    assert pool.keep(conn)
    assert pool.checkout(ORIGIN) is None  # (looked at: the end of the stream; dropped)
    assert conn.raw is not None
    assert conn.raw.fileno() == -1


async def test_bytes_read_before_the_poller_looked_cost_one_look(
    ends: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The poller saw bytes come after the task had read them (a stale report): the
    # connection is marked, and the pool's look (a system call) finds nothing: it is kept.
    conn, server = await answered_once(ends)
    looks = _count_looks(monkeypatch)
    assert not conn.socket_readable()
    assert looks == []
    _stir(conn)  # (as the poller leaves it then)
    assert not conn.socket_readable()
    assert looks == [conn.raw]
    assert not _stirred(conn)
    # A wait that starts marked looks, finds nothing, and waits in the poller.
    _stir(conn)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_answer, conn)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.task is not None
        assert not _stirred(conn)
        server.send(OK)
    assert conn.reader.status == 200


async def test_an_answer_that_comes_with_the_close_leaves_the_connection_unused(
    ends: list,
) -> None:
    # The server answers and closes at once (a keep-alive limit, say): one edge for both.
    # The answer is read, and the connection is not given back to the pool.
    conn, server = await answered_once(ends)
    conn.reader.start()
    assert _outbox.post(conn, REQUEST)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(receive, conn, 10.0, posted=True))
        await trio.testing.wait_all_tasks_blocked()
        server.send(OK)
        server.shutdown(socket.SHUT_WR)
    while not conn.reader.complete:
        await receive(conn, 10.0)
    assert conn.reader.status == 200
    assert not conn.reusable
    assert not Pool(10, 60.0).checkin(conn)


async def test_a_close_since_the_poller_last_looked_is_seen_by_the_pool(ends: list) -> None:
    # The server closes an idle connection in the same step as the pool takes it: the
    # pool asks the poller's epoll first, so the close is seen without the poller's turn.
    conn, server = await answered_once(ends)
    pool = Pool(10, 60.0)
    assert pool.keep(conn)
    server.close()
    assert pool.checkout(ORIGIN) is None  # (no checkpoint since the close)
    assert conn.raw is not None
    assert conn.raw.fileno() == -1


async def test_a_connection_dropped_without_a_close_is_not_kept(ends: list) -> None:
    # The poller holds a connection only while a task waits on it: one dropped unclosed (a
    # transport never closed) is collected, its socket closed, and its descriptor free.
    client, server = socket.socketpair()
    client.setblocking(False)
    server.setblocking(False)
    ends.append(server)
    conn = Connection(trio.SocketStream(trio.socket.from_stdlib_socket(client)), ORIGIN)
    server.send(OK)
    assert await wait_answer(conn) == 200
    poller, fd = conn.poller, conn.fd
    assert poller is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # (the unclosed socket's)
        del conn
        gc.collect()
    with pytest.raises(OSError, match="Bad file descriptor"):  # (closed by the collector)
        os.fstat(fd)
    await answered_anew(ends, fd, poller)


async def test_a_lone_request_waits_through_trio_even_on_a_registered_connection(
    ends: list,
) -> None:
    # The poller would add a turn of the scheduler: a request written by its own task (the
    # only one under way) waits through trio, as on a connection never registered.
    conn, server = await answered_once(ends)
    poller = conn.poller
    assert poller is not None
    assert poller.registered == 1
    conn.reader.start()
    assert conn.raw is not None
    conn.raw.send(REQUEST)
    before = waiting_read()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(receive, conn, 10.0, sent=True))
        await trio.testing.wait_all_tasks_blocked()
        assert conn.task is None
        assert waiting_read() == before + 1
        server.send(OK)
    assert conn.reader.status == 200
    # And its socket was taken out of the epoll (its answer is not reported twice), until
    # it next waits there.
    assert conn.poller is None
    assert not poller.registered
    poller.look()  # (the answer not reported again)
    assert not poller.stirred
    server.send(OK)
    assert await wait_answer(conn) == 200
    assert conn.poller is poller
    assert poller.registered == 1


def _stirred(conn: Connection) -> bool:
    """Whether the poller noted that ``conn``'s socket received something unawaited."""
    return conn.poller is not None and conn.fd in conn.poller.stirred


def _stir(conn: Connection) -> None:
    """Note it, as the poller does for bytes that came after its look and were read."""
    assert conn.poller is not None
    conn.poller.stirred.add(conn.fd)


class _Steps(trio.abc.Instrument):
    """Counts the steps of the poller task."""

    def __init__(self) -> None:
        self.poller = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == "paradigm_trio answer poller":
            self.poller += 1


@pytest.mark.parametrize("how", ["close", "close_nowait"])
async def test_a_connection_closed_by_another_task_ends_the_wait(ends: list, how: str) -> None:
    conn, _ = pair(ends)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def waits() -> None:
            with pytest.raises(httpx2.ReadError, match="closed"):
                await wait_answer(conn)

        nursery.start_soon(waits)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.task is not None
        if how == "close":
            await conn.close()
        else:
            conn.close_nowait()
    assert conn.task is None
    assert trio.current_time() == start


async def test_a_socket_closed_behind_the_connection_s_back(ends: list) -> None:
    # Not the library's way (it closes through the connection, which wakes the wait), but
    # no wait is lost if it happens: the next connection on the same descriptor takes it
    # over, and the one whose socket was closed ends as closed.
    conn, _ = pair(ends)
    results: list[object] = []

    async def waits(conn: Connection) -> None:
        try:
            results.append(await wait_answer(conn))
        except httpx2.ReadError as exc:
            results.append(str(exc))

    async with trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + 1_000
        nursery.start_soon(waits, conn)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.raw is not None
        conn.raw.close()
        again, server = pair(ends)
        assert again.raw is not None
        assert again.raw.fileno() == conn.fd
        nursery.start_soon(waits, again)
        await trio.testing.wait_all_tasks_blocked()
        server.send(OK)
    assert results == ["reading the response failed: the connection was closed", 200]
    # One socket registered, however often the first connection's close comes.
    conn.close_nowait()
    assert again.poller is not None
    assert again.poller.registered == 1


async def test_more_events_than_one_read_takes_are_all_handled_at_once(
    ends: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_poller, "_MOST", 2)
    steps = _Steps()
    trio.lowlevel.add_instrument(steps)
    try:
        watched, _ = await answered_together(ends, 5)
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert watched == 1
    assert steps.poller == 2  # (its first, to wait; then one that woke all five)


def test_a_wait_left_as_the_run_ends_ends_as_timed_out() -> None:
    # A shielded wait in a system task outlives the main task: the poller, cancelled as the
    # run ends, ends it as timed out rather than leave it with no deadline.
    client, server = socket.socketpair()
    ended: list[str] = []
    conn = Connection(trio.SocketStream(trio.socket.from_stdlib_socket(client)), ORIGIN)

    async def main() -> None:
        async def shielded() -> None:
            with trio.CancelScope(shield=True):
                try:
                    await wait_answer(conn)
                except httpx2.ReadTimeout:
                    ended.append("timed out")

        trio.lowlevel.spawn_system_task(shielded)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.task is not None

    try:
        trio.run(main)
    finally:
        conn.close_nowait()  # (its socket: the pair's first end, taken over)
        server.close()
    assert ended == ["timed out"]


def test_a_connection_waits_in_the_poller_of_each_run() -> None:
    # Pooled across trio runs (one after the other, as a blocking client's may be): each run
    # has its poller, and registers the socket in it.
    client, server = socket.socketpair()
    pollers: list[object] = []

    async def once(conn: Connection) -> None:
        server.setblocking(False)
        server.send(OK)
        assert await wait_answer(conn) == 200
        pollers.append(conn.poller)

    conn = Connection(trio.SocketStream(trio.socket.from_stdlib_socket(client)), ORIGIN)
    try:
        for _ in range(2):
            trio.run(once, conn)
    finally:
        conn.close_nowait()  # (its socket: the pair's first end, taken over)
        server.close()
    assert len(pollers) == 2
    assert pollers[0] is not pollers[1]


async def test_a_descriptor_reused_by_a_new_connection_is_registered_again(ends: list) -> None:
    conn, _ = await answered_once(ends)
    fd = conn.fd
    poller = conn.poller
    await conn.close()
    # The next socket gets the same number; the kernel took the closed one out of the
    # epoll, so the new connection is registered anew.
    await answered_anew(ends, fd, poller)


async def test_the_writer_s_failure_wakes_the_wait(ends: list) -> None:
    conn, _ = pair(ends)
    assert conn.raw is not None
    conn.raw.shutdown(socket.SHUT_WR)  # (the write fails, and nothing turns readable)
    conn.reader.start()
    assert _outbox.post(conn, REQUEST)
    start = trio.current_time()
    with trio.fail_after(1_000):
        await receive(conn, 10.0, posted=True)
    assert trio.current_time() == start  # (woken by the writer, not by the read timeout)
    assert isinstance(conn.unsent, BrokenPipeError)
    assert conn.task is None


async def test_where_there_is_no_epoll_trio_s_waits_are_used(
    ends: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_poller, "_EPOLL", None)
    watched, _ = await answered_together(ends, 3)
    assert watched == 3


async def test_requests_under_way_together_wait_in_the_poller(ends: list) -> None:
    # Through the transport: two requests at once are posted, and wait in the poller.
    async with pt.TrioTransport() as transport:
        transport._fetching += 1  # (a batch under way: see ``test_outbox.busy``)
        before = waiting_read()
        conns = [pair(ends) for _ in range(2)]
        for conn, _ in conns:
            assert transport._pool.keep(conn)

        async def serve(server: socket.socket) -> None:
            await trio.lowlevel.wait_readable(server)
            assert server.recv(1 << 16) == REQUEST
            await trio.testing.wait_all_tasks_blocked()
            server.send(OK)

        seen: list[int] = []
        async with trio.open_nursery() as nursery:
            for _, server in conns:
                nursery.start_soon(serve, server)
            for _ in conns:
                nursery.start_soon(_fetch, transport, seen)
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(conn.task is not None for conn, _ in conns) == [True, True]
            assert waiting_read() == before + 1  # (the poller's epoll; the servers have read)
    assert seen == [200, 200]


async def _fetch(transport: pt.TrioTransport, seen: list[int]) -> None:
    seen.append(await transport.fetch(ORIGIN, REQUEST, TIMEOUTS, Status(), None))


async def test_a_poller_that_fails_leaves_the_waits_to_trio(
    ends: list, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug in the poller must not end the whole run (it is a system task): it says so, and
    # the waits under way go on through trio.
    (first, first_server), (second, second_server) = pair(ends), pair(ends)
    statuses: list[int] = []

    due = _waits.Deadlines.due

    def broken(self: object, now: float) -> list[Connection]:
        monkeypatch.setattr(_waits.Deadlines, "due", due)  # (once: trio's waits use it too)
        raise RuntimeError("a bug")

    async def one(conn: Connection) -> None:
        statuses.append(await wait_answer(conn))

    async with trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + 1_000
        for conn in (first, second):
            nursery.start_soon(one, conn)
        await trio.testing.wait_all_tasks_blocked()
        before = waiting_read()
        monkeypatch.setattr(_waits.Deadlines, "due", broken)
        first_server.send(OK)  # (the poller wakes, and fails after waking the first)
        await trio.testing.wait_all_tasks_blocked()
        assert second.task is None  # (out of the poller: waiting through trio)
        assert waiting_read() == before  # (the poller's wait gone, the second's come)
        second_server.send(OK)
    assert statuses == [200, 200]
    assert "the answer poller failed" in caplog.text
    # The run's later waits are trio's.
    third, third_server = pair(ends)
    third_server.send(OK)
    assert await wait_answer(third) == 200
    assert third.task is None
    assert third.poller is None
