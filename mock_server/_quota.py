"""Requests-per-minute and tokens-per-minute quotas: token buckets on trio's clock."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["QuotaDecision", "TokenBucket", "format_duration"]


def format_duration(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` format: ``"250ms"``, ``"1s"``, ``"1.5s"``, ``"6m0s"``.

    Sub-second values are rounded *up* to the next millisecond; larger values
    keep millisecond precision.
    """
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class TokenBucket:
    """A bucket of ``capacity`` units refilled continuously at ``capacity / period`` per second.

    The bucket starts full.  Time is passed in explicitly (the mock uses
    ``trio.current_time()``), so the arithmetic is exact and testable.
    """

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: int, *, now: float, period: float = 60.0) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / period
        self.level = float(capacity)
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_time(self, amount: float, now: float) -> float | None:
        """Seconds until ``amount`` is available (0 if now), ``None`` if it never will be."""
        self.refill(now)
        if amount > self.capacity:
            return None
        missing = amount - self.level
        return 0.0 if missing <= 1e-9 else missing / self.rate

    def take(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level -= amount

    def remaining(self, now: float) -> int:
        self.refill(now)
        return max(0, math.floor(self.level + 1e-9))

    def reset_after(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self.refill(now)
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """Outcome of a quota check: admitted or not, when to retry, and the headers to send."""

    admitted: bool
    retry_after: float | None
    limited_by: str | None
    headers: dict[str, str]
