"""Client-side rate limits and the adaptive controller, all on trio's clock.

* :class:`TokenBucket`: a continuous token bucket (``per_minute`` tokens a minute, holding
  at most a minute's worth).  A request larger than the whole bucket waits for a full
  bucket and then goes, leaving the bucket in debt: it is never refused and never
  deadlocks.
* :class:`RateLimiter`: the requests-per-minute and tokens-per-minute buckets of a client,
  plus a *pause* set by the server's ``Retry-After``.  Waiters are served first come, first
  served (a :class:`trio.Lock` is fair).
* :class:`AdaptiveController`: additive-increase / multiplicative-decrease of the
  client's :class:`trio.CapacityLimiter` (its ``total_tokens`` is resized; there is no
  second limiter).  A 429 halves the concurrency (at most once per cool-down) and pauses
  sending for the ``Retry-After``; every ``limit`` *clean* successes (first attempt, no
  retry) raise the limit by one, so it grows by one per round of clean successes.  When the
  server sends ``x-ratelimit-limit-requests`` / ``-tokens`` headers, their rates become
  client-side buckets, so the client paces itself below the quota instead of probing it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import trio

from .. import _log

__all__ = [
    "AdaptiveController",
    "CLUSTER_HALF_LIFE",
    "CLUSTER_MIN",
    "CLUSTER_SHARE",
    "RateLimiter",
    "RateLimiterStatistics",
    "Rates",
    "RecentShare",
    "SendMark",
    "TokenBucket",
    "parse_duration",
    "tally_wait",
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Parse an OpenAI-style duration (``"1s"``, ``"6m0s"``, ``"250ms"``, ``"0.5"``)."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:  # "inf" or "nan" in a header is no duration
        return max(0.0, number) if math.isfinite(number) else None
    total = 0.0
    pos = 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


class TokenBucket:
    """A continuous token bucket refilled at ``per_minute / 60`` tokens a second.

    ``level`` may go negative (debt) after a request larger than the capacity.
    """

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, per_minute: float, *, level: float | None = None, now: float) -> None:
        if not per_minute > 0:
            raise ValueError(f"per_minute must be positive, got {per_minute!r}")
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.level = self.capacity if level is None else min(float(level), self.capacity)
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def delay(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` can be taken (a full bucket for oversized amounts)."""
        self.refill(now)
        need = min(amount, self.capacity)
        # A shortfall of float dust would ask for a sleep too short to move the clock
        # (and spin forever under a MockClock): treat it as none.
        if self.level >= need - 1e-9:
            return 0.0
        return (need - self.level) / self.rate

    def take(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level -= amount

    def adjust(self, delta: float, now: float) -> None:
        """Give back (``delta > 0``) or charge (``delta < 0``) tokens after the fact."""
        self.refill(now)
        self.level = min(self.capacity, self.level + delta)


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """What the rate limiter is doing (part of the client's instrumentation).

    Attributes:
        requests_per_minute: the request rate in force (user's or learnt), or ``None``.
        tokens_per_minute: the token rate in force, or ``None``.
        paused_until: ``trio.current_time()`` until which sending is paused, or ``None``.
        waiting: tasks waiting for rate.
    """

    requests_per_minute: float | None
    tokens_per_minute: float | None
    paused_until: float | None
    waiting: int


SendMark: TypeAlias = tuple[float, int, int]
"""When a request was let through, and the totals sent up to and including it:
``(time, requests, tokens)``.

A plain tuple of numbers: the cyclic collector stops tracking it at the first collection
it survives, so the mark each request in flight holds is not walked again and again (it
would not stop tracking an instance of a class, even a ``NamedTuple``)."""


class Rates(Protocol):
    """What the engine and the controller ask of rate limits: :class:`RateLimiter` (one
    client's own buckets) and ``_shared.SharedRateLimiter`` (a quota shared in Redis).

    ``waits`` and ``waited``: how many acquisitions had to wait, and for how long in all
    (seconds), as metrics report them."""

    waits: int
    waited: float

    def try_acquire(self, tokens: int) -> SendMark | None: ...

    async def acquire(self, tokens: int) -> SendMark: ...

    def reconcile(self, estimated: int, actual: int) -> None: ...

    def pause(self, until: float) -> None: ...

    def drain(self) -> None: ...

    def learn(self, headers: Mapping[str, str], mark: SendMark | None = None) -> None: ...

    def statistics(self) -> RateLimiterStatistics: ...


def tally_wait(rates: Rates, began: float) -> None:
    """Count an acquisition that began at trio time ``began`` in ``rates.waits`` and
    ``rates.waited``, if it had to wait."""
    waited = trio.current_time() - began
    if waited > 0:
        rates.waits += 1
        rates.waited += waited


class RateLimiter:
    """The requests/tokens-per-minute limits of one client (shared by all its calls).

    Besides pacing, it counts what it lets through, so that a server's
    ``x-ratelimit-remaining-*`` header (which describes the quota when *that* request
    arrived) can be brought forward to now: ``remaining - sent since + refill since``.
    When that estimate is below the client's own bucket (someone else is spending the same
    quota), the bucket is lowered to it.
    """

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self._user_rpm = requests_per_minute
        self._user_tpm = tokens_per_minute
        self._rpm: TokenBucket | None = None
        self._tpm: TokenBucket | None = None
        self._pause_until = -math.inf
        self._lock = trio.Lock()
        self._waiting = 0
        self._started = False
        self._sent_requests = 0
        self._sent_tokens = 0
        self.waits = 0
        """Permits that had to wait (for a bucket or a pause)."""
        self.waited = 0.0
        """Seconds spent waiting for permits, summed over the waiters."""

    def _start(self, now: float) -> None:
        self._started = True
        if self._user_rpm is not None:
            self._rpm = TokenBucket(self._user_rpm, now=now)
        if self._user_tpm is not None:
            self._tpm = TokenBucket(self._user_tpm, now=now)

    @property
    def active(self) -> bool:
        """Whether acquiring can ever wait (a fast path skips the lock otherwise)."""
        return (
            self._rpm is not None
            or self._tpm is not None
            or self._user_rpm is not None
            or self._user_tpm is not None
            or self._pause_until > -math.inf
        )

    def _mark(self, tokens: int) -> SendMark:
        self._sent_requests += 1
        self._sent_tokens += tokens
        return (trio.current_time(), self._sent_requests, self._sent_tokens)

    def try_acquire(self, tokens: int) -> SendMark | None:
        """Account for a request at once when no limit can make it wait; else ``None``.

        The hot path of a client without rate limits: no lock, no extra checkpoint.
        """
        if not self._started:
            self._start(trio.current_time())
        if self.active:
            return None
        return self._mark(tokens)

    async def acquire(self, tokens: int) -> SendMark:
        """Wait until one request of ``tokens`` tokens may be sent, then account for it."""
        if not self._started:
            self._start(trio.current_time())
        if not self.active:
            await trio.lowlevel.checkpoint()
            return self._mark(tokens)
        self._waiting += 1
        began = trio.current_time()
        try:
            async with self._lock:
                while True:
                    now = trio.current_time()
                    wait = self._pause_until - now
                    if self._rpm is not None:
                        wait = max(wait, self._rpm.delay(1, now))
                    if self._tpm is not None:
                        wait = max(wait, self._tpm.delay(tokens, now))
                    if wait <= 0:
                        break
                    await trio.sleep(wait)
                if self._rpm is not None:
                    self._rpm.take(1, now)
                if self._tpm is not None:
                    self._tpm.take(tokens, now)
        finally:
            self._waiting -= 1
            tally_wait(self, began)
        return self._mark(tokens)

    def reconcile(self, estimated: int, actual: int) -> None:
        """Correct the token charge of a finished request (refund or extra charge)."""
        if self._tpm is not None and estimated != actual:
            self._tpm.adjust(estimated - actual, trio.current_time())

    def pause(self, until: float) -> None:
        """Send nothing before ``until`` (trio time)."""
        self._pause_until = max(self._pause_until, until)

    def drain(self) -> None:
        """The server says its quota is spent: empty the buckets."""
        now = trio.current_time()
        for bucket in (self._rpm, self._tpm):
            if bucket is not None:
                bucket.refill(now)
                bucket.level = min(bucket.level, 0.0)

    def learn(self, headers: Mapping[str, str], mark: SendMark | None = None) -> None:
        """Adopt the server's advertised quotas (``x-ratelimit-limit-*``) as buckets.

        With the :class:`SendMark` of the request the headers answer, also lower a bucket
        to the server's ``x-ratelimit-remaining-*``, brought forward to now.
        """
        now = trio.current_time()
        for kind in ("requests", "tokens"):
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            if limit is None or limit <= 0:
                continue
            user = self._user_rpm if kind == "requests" else self._user_tpm
            rate = limit if user is None else min(user, limit)
            bucket = self._rpm if kind == "requests" else self._tpm
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if bucket is not None and bucket.capacity == rate:
                if remaining is not None and mark is not None:
                    sent_at, requests, tokens = mark
                    since = (
                        self._sent_requests - requests
                        if kind == "requests"
                        else self._sent_tokens - tokens
                    )
                    estimate = remaining - since + bucket.rate * max(0.0, now - sent_at)
                    bucket.refill(now)
                    if estimate < bucket.level - 1.0:
                        bucket.level = estimate
                continue
            if bucket is None:
                level = remaining if remaining is not None else rate
                bucket = TokenBucket(rate, level=level, now=now)
            else:
                bucket.refill(now)
                bucket.rate = rate / 60.0
                bucket.capacity = rate
                bucket.level = min(bucket.level, rate)
            if kind == "requests":
                self._rpm = bucket
            else:
                self._tpm = bucket

    def statistics(self) -> RateLimiterStatistics:
        now = trio.current_time() if self._started else 0.0
        return RateLimiterStatistics(
            requests_per_minute=self._rpm.capacity if self._rpm else self._user_rpm,
            tokens_per_minute=self._tpm.capacity if self._tpm else self._user_tpm,
            paused_until=self._pause_until if self._pause_until > now else None,
            waiting=self._waiting,
        )


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


CLUSTER_HALF_LIFE = 2.0
"""Seconds over which the 429 share of recent responses halves its weight."""


class RecentShare:
    """How many recent events were *hits*, both counts decayed exponentially.

    Each event and each hit weighs ``0.5 ** (age / half_life)``: after ``half_life``
    seconds an event counts half.  :attr:`share` is the hits' share of the events.
    """

    __slots__ = ("_at", "events", "half_life", "hits")

    def __init__(self, half_life: float) -> None:
        self.half_life = half_life
        self.events = 0.0
        self.hits = 0.0
        self._at = -math.inf

    def _decay(self, now: float) -> None:
        if now > self._at:
            weight = 0.5 ** ((now - self._at) / self.half_life)
            self.events *= weight
            self.hits *= weight
            self._at = now

    def event(self, now: float, *, hit: bool = False) -> None:
        """Count an event at trio time ``now`` (a hit too, when ``hit``)."""
        self._decay(now)
        self.events += 1.0
        if hit:
            self.hits += 1.0

    def hit(self, now: float) -> None:
        """Count a hit whose event was already counted (never more hits than events)."""
        self._decay(now)
        self.hits += 1.0
        self.events = max(self.events, self.hits)

    @property
    def share(self) -> float:
        """Hits over events, decayed as of the last count (0 before any event)."""
        return self.hits / self.events if self.events else 0.0


CLUSTER_MIN = 3.0
"""Recent 429s (decayed) below which 429s never count as clustering."""

CLUSTER_SHARE = 0.5
"""The share of recent responses that must be 429s for them to count as clustering."""


class AdaptiveController:
    """AIMD on a :class:`trio.CapacityLimiter`, driven by quota 429s and clean successes.

    A 429 is either *noise* (one overloaded replica, an injected fault) or *quota* (the
    shared quota is spent).  Only the request that got a noise 429 waits (its
    ``Retry-After``, in the retry loop).  On evidence that the quota is spent, the whole
    client backs off: the rate buckets are drained, sending pauses for the ``Retry-After``,
    and the concurrency is halved (at most once per cool-down).  The evidence is any of:

    * the 429 says so: ``x-ratelimit-remaining-requests`` or ``-tokens`` at 0, or an error
      ``code``, ``type`` or message about a quota (``quota=True``, decided by ``_failures``);
    * 429s cluster beyond what noise explains: at least ``CLUSTER_MIN`` recent 429s making
      more than ``CLUSTER_SHARE`` of recent responses (both decayed with a half-life of
      ``CLUSTER_HALF_LIFE`` seconds).

    Args:
        limiter: the client's limiter; its ``total_tokens`` is resized.
        maximum: the ceiling (``Limits.concurrency``).
        rates: the client's :class:`Rates` (paused on ``Retry-After``).
        enabled: ``Limits.adaptive``; when off, every method does nothing.
        decrease: the factor applied on a 429.
        cooldown: the minimum seconds between two decreases (one burst of 429s is one
            signal, not many).
    """

    def __init__(
        self,
        limiter: trio.CapacityLimiter,
        *,
        maximum: int,
        rates: Rates,
        enabled: bool,
        decrease: float = 0.5,
        cooldown: float = 1.0,
    ) -> None:
        self._limiter = limiter
        self._maximum = maximum
        self._rates = rates
        self.enabled = enabled
        self._decrease = decrease
        self._cooldown = cooldown
        self._next_decrease = -math.inf
        self._clean = 0  # clean successes since the limit last changed
        self.decreases = 0
        # Recent responses and the 429s among them (for the clustering evidence).
        self._recent = RecentShare(CLUSTER_HALF_LIFE)

    @property
    def limit(self) -> int:
        return int(self._limiter.total_tokens)

    def quota_spent(self, headers: Mapping[str, str], *, quota: bool = False) -> bool:
        """Whether a 429 (already counted) is evidence that the shared quota is spent."""
        if quota or any(
            _number(headers.get(f"x-ratelimit-remaining-{kind}")) == 0
            for kind in ("requests", "tokens")
        ):
            return True
        recent = self._recent
        return recent.hits >= CLUSTER_MIN and recent.share > CLUSTER_SHARE

    def on_rate_limited(
        self, retry_after: float | None, headers: Mapping[str, str], *, quota: bool = False
    ) -> bool:
        """A 429 arrived; returns whether it was taken as a spent quota (see the class)."""
        if not self.enabled:
            return False
        now = trio.current_time()
        self._recent.hit(now)
        self._rates.learn(headers)
        if not self.quota_spent(headers, quota=quota):
            return False  # noise: only the request that got it waits
        self._rates.drain()
        if retry_after is not None and retry_after > 0:
            self._rates.pause(now + retry_after)
        if now >= self._next_decrease:
            new = max(1, int(self.limit * self._decrease))
            if new != self.limit:
                _log.say(
                    _log.INFO, "concurrency_lowered",
                    "the server's quota is spent (429): concurrency limit lowered from %d to %d"
                    "%s", self.limit, new,
                    f", sending paused {retry_after:.3g}s" if retry_after else "",
                    concurrency=new, previous=self.limit, wait=retry_after,
                )  # fmt: skip
                self._limiter.total_tokens = new
            self.decreases += 1
            self._clean = 0
            self._next_decrease = now + max(self._cooldown, retry_after or 0.0)
        return True

    def on_headers(self, headers: Mapping[str, str], mark: SendMark | None = None) -> None:
        """A response arrived (any status): count it, and learn advertised quotas."""
        if not self.enabled:
            return
        self._recent.event(trio.current_time())
        if "x-ratelimit-limit-requests" in headers or "x-ratelimit-limit-tokens" in headers:
            self._rates.learn(headers, mark)

    def on_clean_success(self) -> None:
        if not self.enabled:
            return
        limit = self.limit
        if limit >= self._maximum:
            return
        self._clean += 1
        if self._clean >= limit:
            self._clean = 0
            self._limiter.total_tokens = limit + 1
            _log.say(
                _log.DEBUG, "concurrency_raised", "concurrency limit raised from %d to %d",
                limit, limit + 1, concurrency=limit + 1, previous=limit,
            )  # fmt: skip
