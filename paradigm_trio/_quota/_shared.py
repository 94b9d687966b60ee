"""A rate limit shared in Redis: the :class:`~paradigm_trio._ratelimit.Rates` of a client
whose ``Limits.shared`` is a :class:`~paradigm_trio.RedisQuota`.

:class:`SharedRateLimiter` answers the engine exactly as the local
:class:`~paradigm_trio._ratelimit.RateLimiter` does; only where the buckets live differs.

* ``acquire`` asks Redis (one script call, ``take``): the request goes, or Redis says how
  long to wait, and the task sleeps that long before asking again.  The tasks of one
  client ask one at a time (a fair :class:`trio.Lock`), so a client has at most one
  ``take`` in flight; the workers race for each permit, whoever asks first when it is
  ready gets it.
* ``reconcile``, ``pause``, ``drain`` and ``learn`` never block: they note what Redis
  should be told, and a background task sends it, batched, in one ``update`` call.  If
  that call fails, what errs on the safe side (charges, pauses, drains, what the server
  said) is kept for the next one, and refunds are dropped.
* A background task renews this worker's heartbeat every ``RedisQuota.heartbeat``
  seconds, and, while Redis is unavailable, tries it again with backoff.

Where it blocks or can be cancelled: in ``acquire`` only (the lock, a Redis call, a
sleep).  Cancelling it there loses nothing (a permit taken by a call cut short is never
used).  The background tasks live in the nursery of :meth:`SharedRateLimiter.running`,
which the client enters in ``async with``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import trio

from .. import _log
from .._config import RedisQuota
from .._engine._ratelimit import RateLimiterStatistics, SendMark, TokenBucket, _number, tally_wait
from .._errors import QuotaUnavailableError
from .._events import Event, SharedQuotaRestored, SharedQuotaUnavailable
from ._redis_store import Learnt, Store, Update, unwrapped

__all__ = ["BACKOFF_MAX", "BACKOFF_MIN", "FLUSH_DELAY", "SharedRateLimiter"]

BACKOFF_MIN = 0.05
"""Seconds before the first try of an unavailable Redis (then doubled each time)."""

BACKOFF_MAX = 1.0
"""The longest wait between two tries of an unavailable Redis."""

FLUSH_DELAY = 0.02
"""Seconds the background task gathers updates before sending them together."""


class SharedRateLimiter:
    """The requests/tokens-per-minute limits of a :class:`RedisQuota` (see the module).

    Args:
        quota: where the quota lives, and what to do when Redis is unavailable.
        requests_per_minute, tokens_per_minute: this worker's rates (the quota's).
        emit: called with :class:`SharedQuotaUnavailable` and
            :class:`SharedQuotaRestored`, from the request that notices.
        store: the :class:`Store` to use (tests pass their own).
    """

    def __init__(
        self,
        quota: RedisQuota,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        *,
        emit: Callable[[Event], None],
        store: Store | None = None,
    ) -> None:
        self.quota = quota
        self._rates = (requests_per_minute or 0.0, tokens_per_minute or 0.0)
        self._in_force = (requests_per_minute, tokens_per_minute)
        self._emit = emit
        self._store = store if store is not None else Store(quota)
        self._running = False
        self._lock = trio.Lock()
        self._waiting = 0
        self.waits = 0
        self.waited = 0.0
        self._pause_until = -math.inf
        self._pending = Update()
        self._dirty = trio.Event()
        # Availability of Redis, and what requests do without it.
        self._available = True
        self._lost_at = 0.0
        self._error = ""
        self._reported = False
        self._restored = trio.Event()
        self._lost = trio.Event()
        self._workers = 1
        self._fallback: tuple[TokenBucket | None, TokenBucket | None] | None = None
        self._fallback_used = False

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SharedRateLimiter]:
        """Connect to Redis and run the heartbeat and the updates until the block ends.

        On the way out, pending updates are sent and the heartbeat removed (each within
        ``RedisQuota.timeout``, shielded from cancellation).
        """
        with unwrapped():
            async with trio.open_nursery() as nursery:
                await self._store.start(nursery)
                await self._beat()  # counted among the live workers from the start
                background = trio.CancelScope()
                nursery.start_soon(self._background, background)
                self._running = True
                try:
                    yield self
                finally:
                    self._running = False
                    background.cancel()  # (the connection stays, for the goodbye)
                    with trio.CancelScope(shield=True):
                        await self._goodbye()
                    nursery.cancel_scope.cancel()

    async def _background(self, scope: trio.CancelScope) -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_alive)
                nursery.start_soon(self._flush_loop)

    async def _goodbye(self) -> None:
        if not self._available:
            await trio.lowlevel.checkpoint()
            return
        update, self._pending = self._pending, Update()
        try:
            if not update.empty:
                await self._store.update(self._rates, update)
            await self._store.leave(self._rates)
        except QuotaUnavailableError:
            pass  # the heartbeat expires by itself

    # ------------------------------------------------------------------ acquiring

    @property
    def active(self) -> bool:
        return True

    def try_acquire(self, tokens: int) -> SendMark | None:
        """Never at once: every request asks Redis."""
        return None

    async def acquire(self, tokens: int) -> SendMark:
        """Wait until one request of ``tokens`` tokens may be sent, then account for it."""
        if not self._running:
            await trio.lowlevel.checkpoint()
            raise RuntimeError(
                "a Client with a shared quota (Limits.shared) must be opened with "
                "`async with Client(...) as client:` before it sends anything"
            )
        self._waiting += 1
        began = trio.current_time()
        try:
            async with self._lock:
                while True:
                    mark = await self._step(tokens)
                    if mark is not None:
                        return mark
        finally:
            self._waiting -= 1
            tally_wait(self, began)

    async def _step(self, tokens: int) -> SendMark | None:
        """Wait out a known pause, then ask Redis (or the fallback) once."""
        now = trio.current_time()
        if self._pause_until > now:
            await trio.sleep(self._pause_until - now)
        if not self._available:
            self._report_outage()
            if self.quota.on_unavailable == "local":
                return await self._take_local(tokens)
            await self._restored.wait()
            return None
        try:
            taken = await self._store.take(self._rates, tokens)
        except QuotaUnavailableError as exc:
            self._lose(str(exc))
            return None
        self._report_restored()
        self._in_force = (taken.requests_per_minute or None, taken.tokens_per_minute or None)
        self._workers = taken.workers
        if taken.wait <= 0:
            return (taken.now, taken.requests, int(taken.tokens))
        await trio.sleep(taken.wait)
        return None

    async def _take_local(self, tokens: int) -> SendMark | None:
        """Take from the fallback buckets; ``None`` if Redis came back meanwhile."""
        assert self._fallback is not None
        requests, token_bucket = self._fallback
        while not self._available:
            now = trio.current_time()
            wait = self._pause_until - now
            if requests is not None:
                wait = max(wait, requests.delay(1, now))
            if token_bucket is not None:
                wait = max(wait, token_bucket.delay(tokens, now))
            if wait <= 0:
                if requests is not None:
                    requests.take(1, now)
                if token_bucket is not None:
                    token_bucket.take(tokens, now)
                self._fallback_used = True
                return (math.nan, 0, 0)  # not Redis's: learn() ignores it
            with trio.move_on_after(wait):
                await self._restored.wait()
        return None

    # ------------------------------------------------------------------ availability

    def _lose(self, error: str) -> None:
        """Redis failed: requests wait or fall back until the keeper reaches it again."""
        if not self._available:
            return
        self._error = error  # the first error of the outage: its cause
        self._available = False
        self._lost_at = trio.current_time()
        self._restored = trio.Event()
        self._lost.set()
        if self.quota.on_unavailable == "local":
            share = max(1, self._workers)
            now = trio.current_time()
            self._fallback = tuple(  # type: ignore[assignment]
                None if rate is None else TokenBucket(rate / share, level=0.0, now=now)
                for rate in self._in_force
            )
            self._fallback_used = False

    def _report_outage(self) -> None:
        """Say, once per outage, that Redis is lost and what requests do meanwhile: an
        event and a ``shared_quota_unavailable`` warning."""
        if not self._reported:
            self._reported = True
            quota = self.quota
            if quota.on_unavailable == "local":
                doing = f"requests run on a local share (1/{self._workers} of the quota's rates)"
            else:
                doing = "requests wait (nothing is sent) until it answers again"
            _log.say(
                _log.WARNING, "shared_quota_unavailable",
                "shared quota %r: Redis at %s does not answer (%s); %s", quota.name,
                quota.display_url, self._error, doing, quota=quota.name, url=quota.display_url,
                error=self._error, fallback=quota.on_unavailable, workers=self._workers,
            )  # fmt: skip
            self._emit(
                SharedQuotaUnavailable(
                    quota.name, self._error, quota.on_unavailable, self._workers,
                    quota.display_url,
                )
            )  # fmt: skip

    def _report_restored(self) -> None:
        if self._reported:
            self._reported = False
            outage = trio.current_time() - self._lost_at
            _log.say(
                _log.INFO, "shared_quota_restored",
                "shared quota %r: Redis at %s answers again, after %.1fs", self.quota.name,
                self.quota.display_url, outage, quota=self.quota.name, outage=outage,
            )  # fmt: skip
            self._emit(SharedQuotaRestored(self.quota.name, outage))

    async def _beat(self) -> None:
        try:
            self._workers = await self._store.beat(self._rates)
        except QuotaUnavailableError as exc:
            self._lose(str(exc))

    async def _keep_alive(self) -> None:
        """Renew the heartbeat while Redis answers; try it again with backoff when not."""
        while True:
            with trio.move_on_after(self.quota.heartbeat):
                await self._lost.wait()
            if not self._available:
                await self._reach_again()
            self._lost = trio.Event()
            await self._beat()

    async def _reach_again(self) -> None:
        delay = BACKOFF_MIN
        while True:
            await trio.sleep(delay)
            delay = min(2 * delay, BACKOFF_MAX)
            try:
                if self._fallback_used:
                    # What the workers sent alone is unknown to Redis: assume it spent.
                    await self._store.update(self._rates, Update(drain=True))
                self._workers = await self._store.beat(self._rates)
            except QuotaUnavailableError:
                continue
            self._fallback = None
            self._fallback_used = False
            self._available = True
            self._restored.set()
            return

    # ------------------------------------------------------------------ updates

    def _note(self) -> None:
        self._dirty.set()

    async def _flush_loop(self) -> None:
        """Send what ``reconcile``, ``pause``, ``drain`` and ``learn`` noted, batched."""
        while True:
            await self._dirty.wait()
            await trio.sleep(FLUSH_DELAY)
            if not self._available:
                await self._restored.wait()
            self._dirty = trio.Event()
            update, self._pending = self._pending, Update()
            if update.empty:
                continue
            try:
                await self._store.update(self._rates, update)
            except QuotaUnavailableError as exc:
                self._keep_safe_part(update)
                self._lose(str(exc))

    def _keep_safe_part(self, update: Update) -> None:
        """Put back what errs on the safe side; refunds are dropped (it may have run)."""
        pending = self._pending
        pending.charge += update.charge
        pending.drain = pending.drain or update.drain
        pending.pause_until = max(pending.pause_until, update.pause_until)
        if update.learnt:
            pending.learnt = {**update.learnt, **(pending.learnt or {})}
        self._note()

    def reconcile(self, estimated: int, actual: int) -> None:
        """Correct the token charge of a finished request (refund or extra charge)."""
        if estimated == actual or self._in_force[1] is None:
            return
        if estimated > actual:
            self._pending.refund += estimated - actual
        else:
            self._pending.charge += actual - estimated
        self._note()

    def pause(self, until: float) -> None:
        """Send nothing before ``until`` (trio time), here and, soon, in every worker."""
        self._pause_until = max(self._pause_until, until)
        self._pending.pause_until = max(self._pending.pause_until, until)
        self._note()

    def drain(self) -> None:
        """The server says the quota is spent: empty the shared buckets."""
        self._pending.drain = True
        self._note()
        if self._fallback is not None:
            now = trio.current_time()
            for bucket in self._fallback:
                if bucket is not None:
                    bucket.refill(now)
                    bucket.level = min(bucket.level, 0.0)

    def learn(self, headers: Mapping[str, str], mark: SendMark | None = None) -> None:
        """Adopt the server's ``x-ratelimit-limit-*`` as the shared rates and follow its
        ``x-ratelimit-remaining-*`` (brought forward from ``mark``) down."""
        learnt: dict[str, Learnt] = {}
        for kind in ("requests", "tokens"):
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            if limit is None or limit <= 0:
                continue
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if mark is None or math.isnan(mark[0]):
                learnt[kind] = (limit, remaining, None, None)
            else:
                sent_at, requests, tokens = mark
                taken = requests if kind == "requests" else tokens
                learnt[kind] = (limit, remaining, float(taken), sent_at)
        if learnt:
            self._pending.learnt = {**(self._pending.learnt or {}), **learnt}
            self._note()

    def statistics(self) -> RateLimiterStatistics:
        now = trio.current_time() if self._running else 0.0
        return RateLimiterStatistics(
            requests_per_minute=self._in_force[0],
            tokens_per_minute=self._in_force[1],
            paused_until=self._pause_until if self._pause_until > now else None,
            waiting=self._waiting,
        )
