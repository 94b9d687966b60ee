"""Identical requests in one batch, sent once: :class:`Dedupe`, the batch engine's book of
the requests under way and the answers recently given.

An item whose :class:`Identity` equals one already in the batch is not sent.  While the
first (the *leader*) is under way, the duplicates wait in :attr:`Dedupe.waiting` (no task,
no slot: a list entry each); when its result comes, each duplicate gets a result of its
own that shares the answer (or the failure).  A leader's success is remembered
(:attr:`Dedupe.done`, the last ``DEDUPE_WINDOW`` of them), so a duplicate read later gets
the answer at once.  Only deterministic requests are shared by default (``dedupe="auto"``:
``temperature=0`` or a ``seed`` for chat, every embeddings request): sharing a sampled
answer changes what the caller asked for, so it is opt-in (``dedupe="all"``).

The duplicates waiting are bounded (``DEDUPE_WAITING`` in all, whatever their leaders):
a duplicate read while that many wait is sent on its own, as an item like any other (it
takes a concurrency slot, so the batch reads no further than its slots allow and its
memory stays bounded; it is not marked ``deduplicated``).  A batch of nothing but
copies of one slow request therefore keeps reading at the pace of its concurrency
instead of holding the whole input in memory; the few copies it sends are the price.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Final, Literal, NamedTuple, TypeAlias, TypeVar

__all__ = [
    "DEDUPE_MODES",
    "DEDUPE_WAITING",
    "DEDUPE_WINDOW",
    "Dedupe",
    "DedupeMode",
    "Identity",
    "shared",
]

DedupeMode: TypeAlias = Literal["auto", "all", "off"]
DEDUPE_MODES: Final[tuple[str, ...]] = ("auto", "all", "off")

DEDUPE_WINDOW: Final = 10_000
"""Successful answers a batch remembers for duplicates read after their leader finished
(the most recently used; older ones are sent again)."""

DEDUPE_WAITING: Final = 10_000
"""Duplicates a batch holds at most while their leaders are under way (all leaders
together); one read beyond is sent on its own."""

Q = TypeVar("Q")
R = TypeVar("R")


class Identity(NamedTuple):
    """What makes two requests the same request: a batch's dedupe and the response cache.

    Attributes:
        key: SHA-256 of the endpoint's operation and path and the canonical body (its
            JSON with sorted keys, no spaces): never the API key, never a ``custom_id``.
        deterministic: whether the endpoint says equal requests get equal answers.
    """

    key: bytes
    deterministic: bool


class Dedupe:
    """The requests of a batch under way, by identity, and the answers recently given."""

    __slots__ = ("all", "done", "held", "leaders", "most", "waiting")

    def __init__(self, mode: DedupeMode, most: int | None = None) -> None:
        self.all = mode == "all"
        # Duplicates held at most (in ``waiting``, all keys together).
        self.most = DEDUPE_WAITING if most is None else most
        self.held = 0  # duplicates in ``waiting`` now
        self.leaders: dict[int, bytes] = {}  # index of a leader under way -> its key
        self.waiting: dict[bytes, list[tuple[int, Any, float]]] = {}  # (index, request, read at)
        self.done: OrderedDict[bytes, Any] = OrderedDict()  # key -> a leader's success

    def key(self, identity: Identity | None) -> bytes | None:
        """The key under which a request is shared, or ``None``: it is sent on its own."""
        if identity is None or not (identity.deterministic or self.all):
            return None
        return identity.key

    def answered(self, key: bytes) -> Any | None:
        """The remembered result of a finished leader of ``key``, if any."""
        result = self.done.get(key)
        if result is not None:
            self.done.move_to_end(key)
        return result

    def follow(self, key: bytes, index: int, request: object, now: float) -> bool:
        """Record a duplicate of a leader under way (``True``), or make ``index`` the
        leader of ``key`` (``False``: send it); ``False`` too for a duplicate beyond the
        ``most`` held: it is sent on its own, no leader of anything."""
        followers = self.waiting.get(key)
        if followers is None:
            self.waiting[key] = []
            self.leaders[index] = key
            return False
        if self.held >= self.most:
            return False
        followers.append((index, request, now))
        self.held += 1
        return True

    def finished(self, index: int, result: Any) -> list[tuple[int, Any, float]]:
        """A leader's result: the duplicates that waited for it (and, if it succeeded,
        remembered for those to come)."""
        key = self.leaders.pop(index, None)
        if key is None:
            return []
        if result.ok:
            self.done[key] = result
            if len(self.done) > DEDUPE_WINDOW:
                self.done.popitem(last=False)
        followers = self.waiting.pop(key)
        self.held -= len(followers)
        return followers


def shared(result: R, index: int, custom_id: str | None, request: object, elapsed: float) -> R:
    """The result of a duplicate: the leader's answer (or failure), with the duplicate's own
    ``index``, ``custom_id`` and request, no attempts of its own, and ``deduplicated``."""
    return dataclasses.replace(  # type: ignore[type-var]
        result, index=index, custom_id=custom_id, request=request, attempts=0,
        elapsed=elapsed, deduplicated=True,
    )  # fmt: skip
