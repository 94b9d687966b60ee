"""A stream's pace, and when its silence is a stall (``Timeouts.stall_factor``).

No I/O and no clock: the reader gives :class:`StallWatch` each gap it waited for a chunk,
and asks it how long the next wait may last.
"""

from __future__ import annotations

from typing import Final

from .._config import Timeouts

__all__ = ["StallWatch"]

WARM_UP: Final = 3
"""Gaps a stream shows before its pace sets a limit (until then only ``read`` applies)."""


class StallWatch:
    """The idle limit of one stream, derived from its own pace.

    A silence is a stall when it lasts more than ``factor`` times the longest gap between
    the stream's chunks so far, and at least ``floor`` seconds; there is no limit before
    the stream has shown :data:`WARM_UP` gaps.  The longest gap, not a mean: one slow
    patch (a server pausing under load) raises the limit for the rest of the stream, so
    a stream is called stalled only when it is silent far beyond anything it did before.
    """

    __slots__ = ("factor", "floor", "gaps", "longest")

    def __init__(self, factor: float, floor: float) -> None:
        self.factor = factor
        self.floor = floor
        self.gaps = 0
        self.longest = 0.0

    @classmethod
    def of(cls, timeouts: Timeouts) -> StallWatch | None:
        """The watch ``timeouts`` ask for (``None``: no stall detection)."""
        if timeouts.stall_factor is None:
            return None
        return cls(timeouts.stall_factor, timeouts.stall_floor or 0.0)

    def observe(self, gap: float) -> None:
        """One more gap between chunks, in seconds."""
        self.gaps += 1
        self.longest = max(self.longest, gap)

    def limit(self) -> float | None:
        """The longest silence allowed now, in seconds (``None``: no limit yet)."""
        if self.gaps < WARM_UP:
            return None
        return max(self.floor, self.factor * self.longest)

    def describe(self, gap: float) -> str:
        """Why a silence of ``gap`` seconds is a stall, in words."""
        return (
            f"the stream stalled: silent for {gap:.3g}s, more than Timeouts.stall_factor="
            f"{self.factor:g} times its longest gap so far ({self.longest:.3g}s, and at "
            f"least Timeouts.stall_floor={self.floor:g}s)"
        )
