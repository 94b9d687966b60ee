"""The property harness's guard against a starved machine (``strategies.run_trio``): a
failing example is discarded only when the process was stopped long enough to cross the
examples' bounds of real time."""

from __future__ import annotations

import time

import pytest
import trio
from hypothesis.errors import UnsatisfiedAssumption

from .strategies import FROZEN, run_trio


# (``reject`` outside a property warns: here it is called from a plain test on purpose)
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_a_failure_after_the_process_stopped_is_discarded() -> None:
    async def stopped() -> None:
        await trio.sleep(0.02)  # (the loop's watch has started)
        time.sleep(2 * FROZEN)  # the process does not run its loop: as if descheduled
        await trio.sleep(0.02)
        raise AssertionError("an answer took longer than a hang's bound")

    with pytest.raises(UnsatisfiedAssumption):
        run_trio(stopped)


def test_a_failure_on_a_loop_that_was_never_late_stands() -> None:
    async def fails() -> None:
        raise AssertionError("a real failure")

    with pytest.raises(AssertionError, match="a real failure"):
        run_trio(fails)


def test_a_success_is_returned() -> None:
    async def answer() -> int:
        await trio.sleep(0)
        return 42

    assert run_trio(answer) == 42
