"""Timed socket waits kept by one watcher task (``_transport._waits``), on trio's MockClock.

Each test uses a real socket pair (nothing leaves the process): a wait ends when the
other end writes, or when its deadline passes on the virtual clock.
"""

from __future__ import annotations

import math
import random
import socket
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from paradigm_trio._transport import _waits
from paradigm_trio._transport._exchange import receive
from paradigm_trio._transport._pool import Connection

pytestmark = pytest.mark.anyio


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Socket pairs made with :func:`make`; all closed at the end."""
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for a, b in made:
        a.close()
        b.close()


def make(pairs: list[tuple[socket.socket, socket.socket]]) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    pairs.append((a, b))
    return a, b


def connection(pairs: list) -> tuple[Connection, socket.socket]:
    """A plain connection (the fast lane's path: ``Connection.raw``) and its other end."""
    a, b = make(pairs)
    conn = Connection(trio.SocketStream(trio.socket.from_stdlib_socket(a)), ("http", "x", 80))
    assert conn.raw is not None
    pairs.append((conn.raw, b))  # (``a`` was detached into ``conn.raw``: close that)
    return conn, b


def watch() -> _waits._Watch:
    return _waits._WATCH.get()


async def test_a_wait_past_its_deadline_returns_false_at_the_deadline(pairs: list) -> None:
    a, _ = make(pairs)
    start = trio.current_time()
    assert await _waits.wait_readable(a, start + 5) is False
    assert trio.current_time() - start == pytest.approx(5)
    a.close()  # (as the caller must: the socket is no longer registered with trio)


async def test_a_wait_woken_by_data_returns_true_and_the_watcher_ends_later(pairs: list) -> None:
    a, b = make(pairs)
    start = trio.current_time()

    async def answer() -> None:
        await trio.sleep(1)
        b.send(b"x")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        assert await _waits.wait_readable(a, start + 30) is True
    assert trio.current_time() - start == pytest.approx(1)
    assert a.recv(10) == b"x"
    state = watch()
    assert state.deadlines.items == {}
    assert state.running  # it sleeps until the (ended) wait's deadline
    await trio.sleep(30)
    assert not state.running
    assert state.deadlines.heap == []
    # A new wait starts it again.
    b.send(b"y")
    assert await _waits.wait_readable(a, trio.current_time() + 5) is True


async def test_an_earlier_deadline_wakes_the_watcher_earlier(pairs: list) -> None:
    (a, _), (c, _) = make(pairs), make(pairs)
    start = trio.current_time()
    ends: dict[str, float] = {}

    async def wait(name: str, sock: socket.socket, after: float) -> None:
        assert await _waits.wait_readable(sock, start + after) is False
        ends[name] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "late", a, 100.0)
        await trio.sleep(1)  # the watcher now sleeps until 100
        nursery.start_soon(wait, "early", c, 3.0)
    assert ends == {"early": pytest.approx(3), "late": pytest.approx(100)}


async def test_cancelling_a_wait_propagates_and_forgets_it(pairs: list) -> None:
    a, _ = make(pairs)
    with trio.move_on_after(2) as scope:
        await _waits.wait_readable(a, trio.current_time() + 60)
    assert scope.cancelled_caught
    assert watch().deadlines.items == {}


async def test_many_ended_waits_do_not_pile_up(pairs: list) -> None:
    """Each wait that ends leaves a marked entry; the heap is compacted when they are
    more than half of it, so it stays within about twice the waits under way."""
    a, b = make(pairs)
    biggest = 0
    for i in range(2_000):
        b.send(b"x")
        assert await _waits.wait_readable(a, trio.current_time() + 3_600 + i)
        a.recv(10)
        biggest = max(biggest, len(watch().deadlines.heap))
    assert biggest <= 2 * _waits._COMPACT_AFTER + 2


async def test_the_fast_lane_read_times_out_and_leaves_cancellation_alone(pairs: list) -> None:
    import httpx2

    conn, _ = connection(pairs)
    start = trio.current_time()
    with pytest.raises(httpx2.ReadTimeout):
        await receive(conn, 4, math.inf)  # the read timeout
    assert trio.current_time() - start == pytest.approx(4)
    conn, _ = connection(pairs)
    start = trio.current_time()
    with pytest.raises(httpx2.ReadTimeout):
        await receive(conn, 60, start + 3)  # the attempt's deadline, first
    assert trio.current_time() - start == pytest.approx(3)
    conn, other = connection(pairs)
    with trio.move_on_after(1) as scope:
        await receive(conn, 10, math.inf)
    assert scope.cancelled_caught  # Cancelled, not a ReadTimeout, even with a deadline set
    other.send(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    conn.reader.start()
    await receive(conn, 10, math.inf)  # readable: read and parsed
    assert conn.reader.status == 200
    assert watch().deadlines.items == {}


async def test_another_task_closing_the_socket_is_a_read_error_not_a_timeout(
    pairs: list,
) -> None:
    import httpx2

    conn, _ = connection(pairs)

    async def close_soon() -> None:
        await trio.sleep(1)
        trio.lowlevel.notify_closing(conn.raw)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_soon)
        with pytest.raises(httpx2.ReadError):
            await receive(conn, 60, math.inf)
    assert watch().deadlines.items == {}


async def test_when_no_watcher_can_start_a_cancel_scope_keeps_the_deadline(
    pairs: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx2

    def closed(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Nursery is closed to new arrivals")

    monkeypatch.setattr(trio.lowlevel, "spawn_system_task", closed)
    a, b = make(pairs)
    start = trio.current_time()
    assert await _waits.wait_readable(a, start + 2) is False
    assert trio.current_time() - start == pytest.approx(2)
    b.send(b"x")
    assert await _waits.wait_readable(a, trio.current_time() + 2) is True
    conn, _ = connection(pairs)
    start = trio.current_time()
    with pytest.raises(httpx2.ReadTimeout):
        await receive(conn, 2, math.inf)
    assert trio.current_time() - start == pytest.approx(2)


def test_the_watcher_ends_with_the_run(pairs: list) -> None:
    """A wait's watcher left sleeping when the program ends is cancelled with the run."""
    a, b = make(pairs)

    async def main() -> None:
        b.send(b"x")
        assert await _waits.wait_readable(a, trio.current_time() + 3_600)
        assert watch().running

    trio.run(main, clock=trio.testing.MockClock())


async def test_a_nan_deadline_is_refused_by_the_wait_not_the_watcher(pairs: list) -> None:
    a, b = make(pairs)
    with pytest.raises(ValueError, match="NaN"):
        await _waits.wait_readable(a, math.nan)
    b.send(b"x")  # the watcher (and the run) still work
    assert await _waits.wait_readable(a, trio.current_time() + 5) is True


async def test_waits_left_when_the_watcher_is_cancelled_are_woken_as_timed_out(
    pairs: list,
) -> None:
    """As the run ends, trio cancels its system tasks: a wait left then (a shielded
    clean-up) must not be left with no deadline at all."""
    a, _ = make(pairs)
    own = _waits._Watch()
    own.running = True  # its watcher runs here, where the test can cancel it
    _waits._WATCH.set(own)
    outcome: list[bool] = []

    async def wait() -> None:
        with trio.fail_after(7_200):  # (a wait left with no deadline fails here, not hangs)
            outcome.append(await _waits.wait_readable(a, trio.current_time() + 3_600))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        watcher = trio.CancelScope()

        async def run_watcher() -> None:
            with watcher:
                await own.watch()

        nursery.start_soon(wait)
        await trio.sleep(1)
        nursery.start_soon(run_watcher)  # (it sleeps until the wait's deadline)
        await trio.sleep(1)
        assert own.running
        watcher.cancel()
    assert outcome == [False]
    assert trio.current_time() - start == pytest.approx(2)  # woken then, not at 3,600
    assert own.deadlines.items == {}
    assert not own.running


async def test_a_read_with_no_deadline_does_not_involve_the_watcher(pairs: list) -> None:
    conn, other = connection(pairs)

    async def answer() -> None:
        await trio.sleep(2)
        other.send(b"HTTP/1.1 204 No Content\r\n\r\n")

    conn.reader.start()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        await receive(conn, math.inf, math.inf)
    assert conn.reader.status == 204
    with pytest.raises(LookupError):
        _waits._WATCH.get()  # never started in this run


def test_deadlines_stay_in_order_when_compacted() -> None:
    # The heap of deadlines drops the entries of ended waits all at once when they are
    # most of it: what is left must still come out earliest first.
    deadlines: _waits.Deadlines[int] = _waits.Deadlines()
    rng = random.Random(30)
    live = {deadlines.add(rng.uniform(0, 100), item): item for item in range(1_000)}
    at = {item: entry[0] for entry in deadlines.heap for item in [live[entry[1]]]}
    for number in rng.sample(sorted(live), 700):
        assert deadlines.pop(number) == live.pop(number)
    assert len(deadlines.heap) < 1_000  # (compacted)
    left = set(live.values())
    for now in range(0, 101, 5):
        due = deadlines.due(now)
        assert sorted(due) == sorted(item for item in left if at[item] <= now)
        left -= set(due)
    assert not left
    assert deadlines.heap == []
