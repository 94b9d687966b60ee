"""``_loop.Loop``, the SyncClient's trio thread: interrupts while it starts, jobs that
raise what is no ``Exception``, a cancel that gives up.

Real threads, trio's real clock on the loop: the tests wait for events, never for time.
"""

from __future__ import annotations

import _thread
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from paradigm_trio._loop import Job, Loop
from paradigm_trio._sync import _Finished

NAME = "paradigm-trio test loop"


def loops() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == NAME]


@pytest.fixture(autouse=True)
def _no_thread_left() -> Iterator[None]:
    yield
    assert loops() == [], "a loop's thread was left running"


# ============================================================================ interrupted start


def test_an_interrupt_while_entering_cancels_the_entering_and_ends_the_thread() -> None:
    steps: list[str] = []

    @contextlib.asynccontextmanager
    async def slow() -> AsyncIterator[str]:
        steps.append("entering")
        _thread.interrupt_main()  # Ctrl-C while, e.g., a shared quota reaches Redis
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            steps.append("cancelled")
            raise
        yield "never"  # pragma: no cover

    with pytest.raises(KeyboardInterrupt):
        Loop(slow, name=NAME)
    assert steps == ["entering", "cancelled"]


def test_an_interrupt_once_entered_leaves_the_context_and_ends_the_thread() -> None:
    steps: list[str] = []
    left = threading.Event()

    @contextlib.asynccontextmanager
    async def quick() -> AsyncIterator[str]:
        steps.append("entered")
        _thread.interrupt_main()  # lands once the constructor runs again
        try:
            yield "client"
        finally:
            steps.append("left")
            left.set()

    with pytest.raises(KeyboardInterrupt):
        Loop(quick, name=NAME)
    assert left.is_set()
    assert steps == ["entered", "left"]


# ============================================================================ jobs


@contextlib.asynccontextmanager
async def nothing() -> AsyncIterator[None]:
    yield None


@pytest.mark.parametrize(
    "error", [SystemExit(3), GeneratorExit(), BaseExceptionGroup("g", [SystemExit(4)])]
)
def test_a_job_raising_a_base_exception_is_its_callers_alone(error: BaseException) -> None:
    loop = Loop(nothing, name=NAME)
    try:
        other_started = threading.Event()
        release = trio.Event()

        async def other() -> str:
            other_started.set()
            await release.wait()
            return "other"

        async def failing() -> None:
            raise error

        beside = Job(other)
        loop.submit(beside)
        assert other_started.wait(30)
        job = Job(failing)
        loop.submit(job)
        with pytest.raises(type(error)):
            loop.wait(job)
        loop.soon(release.set)
        assert loop.wait(beside) == "other"  # the other job, and the loop, lived on

        async def after() -> int:
            await trio.lowlevel.checkpoint()
            return 1

        later = Job(after)
        loop.submit(later)
        assert loop.wait(later) == 1
    finally:
        assert loop.stop(30)


def test_a_job_cancelled_by_its_caller_ends_cancelled() -> None:
    loop = Loop(nothing, name=NAME)
    try:
        started = threading.Event()

        async def forever() -> None:
            started.set()
            await trio.sleep_forever()

        job = Job(forever)
        loop.submit(job)
        assert started.wait(30)
        loop.cancel(job)
        assert isinstance(job.future.exception(), KeyboardInterrupt)
    finally:
        assert loop.stop(30)


def test_results_taken_after_a_cancel_that_gave_up_get_no_more_added() -> None:
    # An interrupted blocking batch whose job outlived CANCEL_WAIT: the results it hands
    # out are a copy of those added before, and the loop, still running, adds no more.
    finished = _Finished()
    finished.add("a")
    taken = finished.close()
    finished.add("b")  # the loop thread, later
    assert taken == ["a"]
    assert list(finished) == ["a"]
