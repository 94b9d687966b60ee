"""``_loop.Loop``, the SyncClient's trio thread: interrupts while it starts, jobs that
raise what is no ``Exception``, interrupts while a job is handed over or cancelled, a
cancel that gives up.

Real threads, trio's real clock on the loop: the tests wait for events, never for time.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from paradigm_trio import _loop
from paradigm_trio._loop import Job, Loop
from paradigm_trio._sync import _Finished

from .helpers import InterruptedHandOver

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


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop(nothing, name=NAME)
    try:
        yield running
    finally:
        assert running.stop(30)


def endless() -> tuple[Job[None], threading.Event]:
    """A job that runs until it is cancelled, and the event it sets once running."""
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await trio.sleep_forever()

    return Job(forever), started


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


def test_a_job_cancelled_by_its_caller_ends_cancelled(loop: Loop) -> None:
    job, started = endless()
    loop.submit(job)
    assert started.wait(30)
    loop.cancel(job)
    assert isinstance(job.future.exception(), KeyboardInterrupt)


@pytest.mark.parametrize("running", [True, False], ids=["running", "queued"])
def test_an_interrupt_while_a_job_is_handed_over_cancels_it(loop: Loop, running: bool) -> None:
    # Ctrl-C inside submit, once the job is queued (the loop may even have run it):
    # the job ends before the interrupt goes on, as it does for one while waiting.
    job, started = endless()
    InterruptedHandOver(loop, before=lambda: running and started.wait(30))
    with pytest.raises(KeyboardInterrupt):
        loop.submit(job)
    assert job.future.done()
    assert isinstance(job.future.exception(), KeyboardInterrupt)


def test_cancelling_a_job_that_never_reached_the_loop_waits_for_nothing(
    monkeypatch: pytest.MonkeyPatch, loop: Loop
) -> None:
    # Ctrl-C before submit queued the job: nothing runs, so nothing is waited for.
    monkeypatch.setattr(_loop, "CANCEL_WAIT", 0.5)  # (before the fix: it waited this long)
    job, started = endless()
    loop.cancel(job)
    assert isinstance(job.future.exception(timeout=0), KeyboardInterrupt)
    loop.submit(job)  # (a late hand-over of the same job starts nothing)
    loop.run(Job(trio.lowlevel.checkpoint))  # (after it, on the loop: FIFO)
    assert not started.is_set()


def test_a_second_interrupt_during_a_cancel_is_raised_once_the_job_has_ended(
    loop: Loop,
) -> None:
    # Ctrl-C twice: the second lands while the caller waits for the cancelled job; the
    # wait goes on until the job has ended, then the second interrupt goes on.
    delivered = threading.Event()

    def on_interrupt(signum: int, frame: object) -> None:
        delivered.set()
        raise KeyboardInterrupt

    started = threading.Event()

    async def slow_to_end() -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                # The second Ctrl-C, while the job cleans up (until its caller saw it).
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
                await trio.to_thread.run_sync(delivered.wait, 30)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        job = Job(slow_to_end)
        loop.submit(job)
        assert started.wait(30)
        with pytest.raises(KeyboardInterrupt):
            loop.cancel(job)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert delivered.is_set()
    assert job.future.done()


def test_results_taken_after_a_cancel_that_gave_up_get_no_more_added() -> None:
    # An interrupted blocking batch whose job outlived CANCEL_WAIT: the results it hands
    # out are a copy of those added before, and the loop, still running, adds no more.
    finished = _Finished()
    finished.add("a")
    taken = finished.close()
    finished.add("b")  # the loop thread, later
    assert taken == ["a"]
    assert list(finished) == ["a"]
