"""The repeats of a batch: identical requests sent once (:class:`~._dedupe.Dedupe`) and
answers already in the response cache (:class:`~._cache.CacheStore`), for the batch
engine (``_batch``), which asks :class:`Repeats` about each item it reads and each unit it
sends.

An item read is either a duplicate (not sent: it gets the answer at once, or waits for
its leader's), or sent, looked up in the cache first when the cache is on and the request
deterministic.  A unit's items found in the cache are answered from it (``cached``), the
others sent; the answers of those are stored.  Every duplicate gets one result of its own
when its leader has one, however the leader got it (sent, from the cache, failed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import trio

from ._cache import CacheStore
from ._dedupe import Dedupe, Identity, shared

__all__ = ["Repeats"]

Q = TypeVar("Q")
R = TypeVar("R")
Q_contra = TypeVar("Q_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class _Kind(Protocol[Q_contra, R_co]):
    """What :class:`Repeats` asks of a batch's ``Kind``."""

    def custom_id(self, item: object) -> str | None: ...
    def identity(self, request: Q_contra, sampled: bool) -> Identity | None: ...
    def cached(
        self, index: int, request: Q_contra, raw: object, request_id: str | None
    ) -> R_co: ...
    def stored(self, result: Any) -> tuple[Mapping[str, Any], str | None] | None: ...


class _Counters(Protocol):
    deduplicated: int
    cached: int


class Repeats(Generic[Q, R]):
    """A batch's book of the requests it has seen and the cache it reads."""

    def __init__(
        self,
        kind: _Kind[Q, R],
        dedupe: Dedupe | None,
        cache: CacheStore | None,
        counters: _Counters,
        deliver: Callable[[R], Awaitable[None]],
    ) -> None:
        self.kind = kind
        self.dedupe = dedupe
        self.cache = cache
        self.counters = counters
        self.deliver = deliver  # a result handed out (fail-fast applies)
        self.keys: dict[int, bytes] = {}  # index of an item to look up -> its cache key

    async def repeated(self, index: int, request: Q) -> bool:
        """Whether ``request`` (just read) repeats one of the batch: then it is not sent
        (it has the answer now, or waits for its leader's).  Else it is sent, and looked
        up in the cache first when it may be."""
        dedupe = self.dedupe
        identity = self.kind.identity(request, dedupe is not None and dedupe.all)
        key = None if dedupe is None else dedupe.key(identity)
        if dedupe is not None and key is not None:
            now = trio.current_time()
            answered = dedupe.answered(key)
            if answered is not None:
                await self.share(answered, index, request, now)
                return True
            if dedupe.follow(key, index, request, now):
                return True
        if self.cache is not None and identity is not None and identity.deterministic:
            self.keys[index] = self.cache.key(identity.key)
        return False

    async def from_cache(self, unit: list[tuple[int, Q]]) -> list[tuple[int, Q]]:
        """Deliver the items of ``unit`` answered from the cache; the others (to send)."""
        if self.cache is None:
            return unit
        keys = {index: key for index, _ in unit if (key := self.keys.get(index)) is not None}
        found = await self.cache.get(list(keys.values()))
        rest: list[tuple[int, Q]] = []
        for index, request in unit:
            entry = found.get(keys.get(index, b""))
            try:
                result = None if entry is None else self.kind.cached(index, request, *entry)
            except Exception:  # an entry the endpoint does not parse (any more): sent again
                result = None
            if result is None:
                rest.append((index, request))
                continue
            del self.keys[index]
            self.counters.cached += 1
            await self.deliver(result)
            await self.release(index, result)
        return rest

    async def to_cache(self, unit: Sequence[tuple[int, Q]], results: Sequence[R]) -> None:
        """Store the successes of ``unit`` (sent) that may be cached."""
        if self.cache is None:
            return
        entries = []
        for (index, _), result in zip(unit, results, strict=True):
            key = self.keys.pop(index, None)
            stored = None if key is None else self.kind.stored(result)
            if key is not None and stored is not None:
                entries.append((key, *stored))
        await self.cache.put(entries)

    async def release(self, index: int, result: R) -> None:
        """A leader's result: one result of their own for the duplicates that waited."""
        for duplicate, request, read_at in self.waiting(index, result):
            await self.share(result, duplicate, request, read_at)

    def waiting(self, index: int, result: R) -> list[tuple[int, Q, float]]:
        """The duplicates that waited for the leader ``index``, now that it has ``result``:
        ``(index, request, when it was read)`` each."""
        self.keys.pop(index, None)
        return [] if self.dedupe is None else self.dedupe.finished(index, result)

    async def share(self, result: R, index: int, request: Q, read_at: float) -> None:
        custom_id = self.kind.custom_id(request)
        elapsed = trio.current_time() - read_at
        self.counters.deduplicated += 1
        await self.deliver(shared(result, index, custom_id, request, elapsed))
