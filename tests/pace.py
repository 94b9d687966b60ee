"""Bounds of real time that follow the machine's pace of the moment.

Integration tests run on the real clock, on machines that may be busy (two cores, other
processes CPU-bound).  A test that bounds how long something takes ("the server stops
within 0.5 s") writes the bound that holds on a quiet machine, and asserts against
``slack(written, pace)``: the written bound, raised to :data:`MARGIN` times a plain
loopback round trip measured just before (:func:`round_trip`).  On a quiet machine a
round trip takes a few milliseconds and the written bound stands; on a loaded one, the
bound grows with the measured slowness instead of with a guess.
"""

from __future__ import annotations

import httpx2
import trio

__all__ = ["MARGIN", "round_trip", "slack"]

MARGIN = 50
"""Plain round trips that a bounded operation of the tests (a few exchanges with a server
on the same loop, a cancellation, a stop) stays far below."""


async def round_trip(url: str) -> float:
    """The slowest of three ``GET url`` (after one that connects), in seconds of trio's
    clock."""
    slowest = 0.0
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as client:
        for n in range(4):
            start = trio.current_time()
            await client.get(url)  # any answer (a 401 too) is a round trip
            if n:
                slowest = max(slowest, trio.current_time() - start)
    return slowest


def slack(written: float, pace: float) -> float:
    """``written`` (the bound on a quiet machine), or :data:`MARGIN` round trips of
    ``pace`` seconds if that is more."""
    return max(written, MARGIN * pace)
