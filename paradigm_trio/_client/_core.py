"""What the :class:`Client` and its collaborators share: :class:`ClientState`,
:func:`check_trio` (the client runs under trio only) and :func:`collect` (a batch's results
in input order)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import sniffio
import trio

from .._engine._attempts import Plan
from .._engine._batch import ResultStream
from .._engine._batch_options import BatchStatistics
from .._errors import BatchError

__all__ = ["ClientState", "PlanOf", "check_trio", "collect"]

PlanOf = Callable[..., Plan]
"""``Client._plan``, which the client's collaborators are given: the ``Plan`` of one request
of an endpoint (``None``: a plain request, as the model list), after the open check."""


class ClientState(enum.Enum):
    """Where a :class:`Client` is in its life."""

    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


async def collect(
    cm: AbstractAsyncContextManager[ResultStream[Any]], into: list[Any]
) -> BatchStatistics:
    """Run a batch to its end and put its results into ``into``, in input order.

    On :class:`BatchError` (``on_error="raise"``, or a :class:`SystematicFailureError`),
    its ``results`` are those finished.
    """
    finished: dict[int, Any] = {}
    try:
        async with cm as results:
            async for result in results:
                finished[result.index] = result
            statistics = results.statistics()
    except BatchError as exc:
        for result in exc.results:  # (a SystematicFailureError's: held, never handed out)
            finished[result.index] = result
        exc.results = tuple(finished[i] for i in sorted(finished))
        raise
    into.extend(finished[i] for i in range(len(finished)))
    return statistics


def check_trio() -> None:
    """Refuse a call made from asyncio (or another async library), naming the fix.

    Under trio this is one lookup of the current task; ``sniffio`` is asked only when
    there is none.  With no event loop at all it lets the call go on: trio's own error
    then says that an async function was called outside of one.
    """
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            return
        raise RuntimeError(
            f"paradigm-trio runs under trio, but this was called from {library}: run your "
            f"program with trio.run(main) instead of {library}.run(main) (to call it from "
            "asyncio code, run trio in its own thread, or use trio's guest mode)"
        ) from None
