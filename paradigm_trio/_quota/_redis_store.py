"""The Redis side of a shared quota: one Lua script, and the connection that runs it.

``coredis`` (the ``redis`` extra) is imported only here, and only when a :class:`Store` is
opened: a client without a shared quota never imports it.  ``coredis`` is built on
``anyio``, so it runs under trio as it is.

The connection lives in a task of the store's own nursery (a ``coredis`` client must be
entered and left by the same task).  Every call is bounded by ``RedisQuota.timeout`` (a
trio cancel scope); a call that fails or times out raises :class:`StoreUnavailable` and
has the connection pool rebuilt, so that nothing half-done on the old one (a cancelled
handshake) is ever reused.  A call cut short may still have run in Redis: a permit taken
then is never used, which errs on the safe side (the quota is under-spent, never over).
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .._config import RedisQuota
from .._errors import ConfigurationError
from .._errors import QuotaUnavailableError as StoreUnavailable

if TYPE_CHECKING:  # pragma: no cover
    import coredis
    from coredis.commands.script import Script

__all__ = [
    "LUA",
    "Learnt",
    "QuotaState",
    "Store",
    "Taken",
    "Update",
    "quota_state",
    "unwrapped",
]

LUA = importlib.resources.files(__package__).joinpath("_quota.lua").read_text(encoding="utf-8")
"""The script every quota operation runs in (``paradigm_trio/_quota/_quota.lua``)."""


@dataclass(frozen=True, slots=True)
class Taken:
    """What a ``take`` returned: ``wait`` is 0 when the request was let through."""

    wait: float
    now: float
    requests: int
    tokens: float
    requests_per_minute: float
    tokens_per_minute: float
    workers: int


Learnt = tuple[float, float | None, float | None, float | None]
"""What the server said of one kind: limit, remaining, taken when the request was sent,
and when (Redis time); the last three ``None`` when unknown."""


@dataclass(slots=True)
class Update:
    """Changes waiting to be sent to the quota (see the ``update`` operation)."""

    refund: float = 0.0
    charge: float = 0.0
    drain: bool = False
    pause_until: float = -math.inf
    """Trio time until which every worker should pause."""
    learnt: dict[str, Learnt] | None = None
    """Per kind (``requests``, ``tokens``): limit, remaining, taken then, then."""

    @property
    def empty(self) -> bool:
        return (
            not self.refund
            and not self.charge
            and not self.drain
            and self.pause_until == -math.inf
            and not self.learnt
        )


@dataclass(frozen=True, slots=True)
class QuotaState:
    """A shared quota as Redis holds it now (see :func:`quota_state`).

    Attributes:
        name: the quota's name.
        exists: whether Redis holds the quota (``False``: never used, forgotten after an
            hour unused, or lost by Redis; it then starts empty).
        requests_per_minute, tokens_per_minute: the rates in force (the lower of the
            reader's and the limits learnt from the server), ``None`` when none.
        requests_available, tokens_available: the buckets' levels now (negative: in debt).
        paused_for: seconds left of a pause every worker observes (0: none).
        requests_taken, tokens_taken: totals let through since Redis created the quota.
        workers: the live workers (their heartbeat not yet expired): each a mapping with
            ``id``, ``host``, ``pid`` and ``since`` (Unix time it joined).
    """

    name: str
    exists: bool
    requests_per_minute: float | None
    tokens_per_minute: float | None
    requests_available: float
    tokens_available: float
    paused_for: float
    requests_taken: int
    tokens_taken: int
    workers: tuple[dict[str, Any], ...]


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    import coredis.exceptions

    return (coredis.exceptions.RedisError, OSError, TimeoutError)


class Store:
    """The connection to one quota in Redis (open it with :meth:`open`)."""

    def __init__(self, quota: RedisQuota, *, worker: str | None = None) -> None:
        self.quota = quota
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        name = quota.name
        self._keys = [
            f"{{{name}}}:quota",
            f"{{{name}}}:workers",
            f"{{{name}}}:worker:{self.worker}",
        ]
        self._info = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "since": round(_unix_now(), 3)}
        )
        self._current: tuple[int, Script[str]] | None = None
        self._generation = 0
        self._broken = trio.Event()
        self._errors: tuple[type[BaseException], ...] = ()

    def _new_client(self) -> coredis.Redis[str]:
        import coredis
        from coredis.retry import NoRetryPolicy

        timeout = self.quota.timeout
        try:
            return coredis.Redis.from_url(
                self.quota.url,
                decode_responses=True,
                retry_policy=NoRetryPolicy(),
                connect_timeout=timeout,
                pool_timeout=timeout,
            )
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{self.quota!r}: cannot use this URL: {exc}") from None

    async def start(self, nursery: trio.Nursery) -> None:
        """Keep a connection to Redis in a task of ``nursery`` (remade after each failure).

        Connects lazily: starting never waits for Redis, and fails only without
        ``coredis`` or with a URL it cannot use (:class:`ConfigurationError`).
        """
        try:
            import coredis  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError(
                "a shared quota (Limits(shared=RedisQuota(...))) needs coredis, the redis "
                f"extra ({exc}): pip install coredis, or from a clone of paradigm-trio: "
                "pip install '.[redis]'"
            ) from None
        self._errors = _unavailable_errors()
        await nursery.start(self._connection, self._new_client())

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Store]:
        """:meth:`start` in a nursery of its own, closed when the block ends."""
        with unwrapped():
            async with trio.open_nursery() as nursery:
                await self.start(nursery)
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()
                    self._current = None

    async def _connection(
        self, client: coredis.Redis[str], *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Hold a ``coredis`` client open; remake it each time a call finds it broken."""
        while True:
            async with client:
                self._generation += 1
                self._broken = trio.Event()
                self._current = (self._generation, client.register_script(LUA))
                task_status.started()
                task_status = trio.TASK_STATUS_IGNORED
                await self._broken.wait()
                self._current = None
            client = self._new_client()

    async def _call(self, op: str, rates: Sequence[float], *args: object,
                    now: float | None = None) -> Any:  # fmt: skip
        current = self._current
        if current is None:
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("reconnecting to Redis")
        generation, script = current
        argv = [op, "" if now is None else repr(now), *(repr(float(r)) for r in rates)]
        argv += [_arg(a) for a in args]
        try:
            with trio.fail_after(self.quota.timeout):
                return await script(keys=self._keys, args=argv)
        except trio.TooSlowError:
            error = f"Redis did not answer within {self.quota.timeout:g}s"
            cause: BaseException | None = None
        except self._errors as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            cause = exc
        if self._generation == generation:
            self._broken.set()
        raise StoreUnavailable(error) from cause

    async def take(self, rates: Sequence[float], tokens: int, *,
                   now: float | None = None) -> Taken:  # fmt: skip
        """Take one request of ``tokens`` tokens, or learn how long to wait first."""
        reply = await self._call("take", rates, tokens, now=now)
        wait, at, requests, taken, rpm, tpm, workers = (float(x) for x in reply)
        return Taken(wait, at, int(requests), taken, rpm, tpm, int(workers))

    async def update(self, rates: Sequence[float], update: Update, *,
                     now: float | None = None) -> list[float]:  # fmt: skip
        """Send refunds, charges, a drain, a pause and what the server said, in one call.

        Returns the levels after it, the pause left and the rates in force.
        """
        pause = max(0.0, update.pause_until - trio.current_time())
        args: list[object] = [update.refund - update.charge, int(update.drain), pause]
        for kind in ("requests", "tokens"):
            args.extend((update.learnt or {}).get(kind, (None, None, None, None)))
        return [float(x) for x in await self._call("update", rates, *args, now=now)]

    async def beat(self, rates: Sequence[float], *, now: float | None = None) -> int:
        """Renew this worker's heartbeat; the number of live workers."""
        ttl = 3 * self.quota.heartbeat
        return int(await self._call("beat", rates, self.worker, ttl, self._info, now=now))

    async def leave(self, rates: Sequence[float]) -> int:
        """Remove this worker's heartbeat; the number of live workers left."""
        return int(await self._call("leave", rates, self.worker))

    async def state(self, rates: Sequence[float], *, now: float | None = None) -> QuotaState:
        """Read the quota and its live workers."""
        prefix = f"{{{self.quota.name}}}:worker:"
        reply = await self._call("state", rates, prefix, now=now)
        exists, _, rpm, tpm, level_r, level_t, pause, requests, tokens = reply[:9]
        workers = []
        for id, said in zip(reply[9::2], reply[10::2], strict=True):
            info: dict[str, Any] = {"id": id}
            with suppress(ValueError, TypeError):
                info.update(json.loads(said))
            workers.append(info)
        return QuotaState(
            name=self.quota.name,
            exists=exists == "1",
            requests_per_minute=float(rpm) or None,
            tokens_per_minute=float(tpm) or None,
            requests_available=float(level_r),
            tokens_available=float(level_t),
            paused_for=float(pause),
            requests_taken=int(float(requests)),
            tokens_taken=int(float(tokens)),
            workers=tuple(workers),
        )


@contextmanager
def unwrapped() -> Iterator[None]:
    """Around a nursery whose tasks raise nothing: let the body's exception out unwrapped,
    as if there were no nursery."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            exc = group.exceptions[0]
            raise exc from exc.__cause__
        raise


def _arg(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _unix_now() -> float:
    import time

    return time.time()


async def quota_state(
    quota: RedisQuota, *, requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
) -> QuotaState:  # fmt: skip
    """Read a shared quota and its live workers from Redis.

    The rates given (the workers', if known) only complete those the server taught the
    quota; nothing is written.  Blocks for one Redis round trip at most
    ``quota.timeout``.

    Raises:
        ConfigurationError: the ``redis`` extra is not installed, or the URL is unusable.
        QuotaUnavailableError: Redis did not answer in time, or answered with an error.
    """
    store = Store(quota)
    rates = (requests_per_minute or 0.0, tokens_per_minute or 0.0)
    async with store.open():
        return await store.state(rates)
