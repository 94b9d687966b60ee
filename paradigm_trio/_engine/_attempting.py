"""The attempt under way (:class:`Attempting`): what its attempt function sees and reports,
and what it holds, a concurrency slot and a rate-limit permit.

Apart from :mod:`._attempts` (the engine's ``Call``, which makes the attempts and decides
after each) because it is what an attempt function is handed: it knows nothing of retries,
deadlines or the request's outcome.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import trio

from ._ratelimit import AdaptiveController, Rates, SendMark

__all__ = ["Attempting"]


class Attempting:
    """The attempt under way, as its attempt function sees it, and what it holds: a
    concurrency slot and a rate-limit permit (:meth:`take`, :meth:`release`; one object
    per attempt rather than two: each is held while the request waits).

    The attempt function reports what it learns: :meth:`responded` when a response head
    arrives (its status, request id and headers, which the rate limiter reads),
    ``progress``, a short description of what arrived, used in deadline errors, and, for a
    stream, ``first_chunk``, when its first chunk arrived (trio time).

    ``until`` is the attempt's own deadline (``Timeouts.attempt``, trio time) when the
    request runs with ``bounded=True`` (:meth:`Call.run`): the attempt function ends every
    wait by then and raises :class:`~paradigm_trio._config.AttemptTimedOut`, instead of a
    cancel scope the engine would open around it; ``inf`` otherwise.
    """

    __slots__ = (
        "_adaptive",
        "_limiter",
        "deadline",
        "first_chunk",
        "mark",
        "number",
        "progress",
        "request_id",
        "started",
        "status",
        "until",
    )

    def __init__(self, adaptive: AdaptiveController, deadline: float, number: int) -> None:
        # No reference back to the Call: no reference cycle, so each request's objects are
        # freed by reference counting as soon as it ends (not by the cyclic GC).
        self._adaptive = adaptive
        self._limiter: trio.CapacityLimiter | None = None
        self.mark: SendMark | None = None
        self.deadline = deadline
        """The request's deadline (trio time)."""
        self.number = number
        self.started = 0.0
        """When the attempt started: once it holds its slot and permit (trio time)."""
        self.status: int | None = None
        self.request_id: str | None = None
        self.progress: Callable[[], str] | None = None
        self.first_chunk: float | None = None
        self.until = math.inf

    async def take(self, limiter: trio.CapacityLimiter, rates: Rates, tokens: int) -> None:
        """Take a slot of ``limiter``, then a permit of ``rates`` for ``tokens`` tokens:
        both, or neither (the slot is given back if the permit's wait fails or is
        cancelled)."""
        # The slot without a trip through the scheduler when one is free: the attempt's
        # I/O checkpoints right after (the fast lane's socket writes, ``HTTP.send``).
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            limiter.acquire_on_behalf_of_nowait(self)
        except trio.WouldBlock:
            await limiter.acquire_on_behalf_of(self)
        self._limiter = limiter
        try:
            self.mark = rates.try_acquire(tokens) or await rates.acquire(tokens)
        except BaseException:
            self.release()
            raise

    @property
    def held(self) -> bool:
        """Whether it holds its slot (taken, not yet given back)."""
        return self._limiter is not None

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release_on_behalf_of(self)

    def responded(self, status: int, request_id: str | None, headers: Mapping[str, str]) -> None:
        self.status = status
        self.request_id = request_id
        self._adaptive.on_headers(headers, self.mark)
