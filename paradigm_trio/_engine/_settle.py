"""One item's send as a batch sees it: its value or error, attempts and time, never an
exception (:func:`outcome_of`, :func:`settle`).

A batch's kinds (``_endpoints._chat_kind``, ``_endpoint_kind``, ``_embedding_kind``) send
each unit through here: hedged when the batch hedges (``_hedge.race``), and whatever goes
wrong with the item (an :class:`APIError`, an :class:`InvalidRequestError` before sending,
a bug, a hook raising) becomes its result, never the batch's end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

import trio

from .._events import Attempt
from ._budget import BatchControl
from ._hedge import SendOne, race

__all__ = ["Sent", "outcome_of", "settle"]

Q = TypeVar("Q")
T = TypeVar("T")
V = TypeVar("V")


class Sent(NamedTuple, Generic[T]):
    """What :func:`outcome_of` tells of one send."""

    value: T | None
    error: Exception | None
    attempts: int
    elapsed: float
    hedged: bool = False  # whether a hedge's answer is the value (``BatchOptions.hedge``)


async def outcome_of(
    send: SendOne[Q, T],
    request: Q,
    deadline: float,
    control: BatchControl,
    *,
    hedge: bool = True,
) -> Sent[T]:
    """The value or error, attempts and time of ``send(request)`` (hedged when the batch
    hedges, unless ``hedge`` is false: a request that must not be sent twice); any
    ``Exception`` is its error.

    An :class:`APIError`, an :class:`InvalidRequestError` before sending, or a bug, a hook
    raising: the item's result, never the batch's end (``Cancelled`` propagates).
    """
    return await settle(send, request, deadline, control, _same, 0, hedge=hedge)


def _same(index: int, request: object, sent: Sent[T]) -> Sent[T]:
    return sent


async def settle(
    send: SendOne[Q, T],
    request: Q,
    deadline: float,
    control: BatchControl,
    then: Callable[[int, Q, Sent[T]], V],
    index: int,
    *,
    hedge: bool = True,
) -> V:
    """``then(index, request, sent)`` of :func:`outcome_of`'s ``sent``: an item's results
    made here rather than in a coroutine of the kind's own that awaits this one (one
    frame less on every request's way: each wake-up passes through every frame awaiting;
    and ``then`` is the kind's, not a closure per request)."""
    if hedge and control.hedger is not None:
        return then(index, request, Sent(*await race(send, request, deadline, control.hedger)))
    start = trio.current_time()
    history: list[Attempt] = []
    try:
        value = await send(request, deadline=deadline, control=control, history=history)
    except Exception as exc:
        return then(index, request, Sent(None, exc, len(history), trio.current_time() - start))
    return then(index, request, Sent(value, None, len(history), trio.current_time() - start))
