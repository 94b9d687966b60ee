"""What :class:`Client`'s methods share: its state, the open check, the ``Plan`` of a
request (``ClientCore``, the base of ``ParadigmMethods``, the methods of Paradigm's own
endpoints, which ``Client`` inherits; the chat and embeddings methods are ``Client``'s
own), and :func:`collect`, a batch's results in input order."""

from __future__ import annotations

import enum
import math
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import sniffio
import trio

from .._config import Limits, RetryPolicy, Timeouts
from .._endpoints._chat import ChatEndpoint
from .._endpoints._embeddings import EmbeddingsEndpoint
from .._endpoints._endpoint import Endpoint, Request, Sender
from .._endpoints._streaming import Streamer
from .._engine._attempts import Engine, Plan, idempotency_key
from .._engine._batch import ResultStream
from .._engine._batch_options import BatchStatistics
from .._engine._budget import BatchControl
from .._engine._cache import CacheStore
from .._errors import BatchError
from .._http._http import HTTP

__all__ = ["ClientCore", "ClientState", "check_trio", "collect"]


class ClientState(enum.Enum):
    """Where a :class:`Client` is in its life."""

    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class ClientCore:
    """The state and plumbing a :class:`Client`'s methods share (``Client.__init__`` sets
    every attribute declared here)."""

    # For the type checker only: at run time, class annotations would also be what
    # ``typing.get_type_hints(Client)`` (so the reference) gives the constructor's
    # parameters of the same names (``retry: RetryPolicy | None`` shown as ``RetryPolicy``).
    if TYPE_CHECKING:
        model: str
        retry: RetryPolicy
        timeouts: Timeouts
        limits: Limits
        _state: ClientState
        _http: HTTP
        _engine: Engine
        _sender: Sender
        _chat: ChatEndpoint
        _embeddings: EmbeddingsEndpoint
        _streamer: Streamer
        _cache: CacheStore | None

    async def warm_up(
        self,
        connections: int | None = None,
        *,
        timeouts: Timeouts | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Open connections to the server now, for the requests to come (a batch with
        ``warm_up=True`` does it itself).  Returns how many were opened.

        Opens ``connections`` (default: ``Limits.concurrency``) less those already open
        and idle (or being opened), all at once, within ``timeouts.connect`` (the client's
        by default).  A request sent meanwhile takes one of them rather than opening its
        own.  A connection that cannot be opened raises nothing: the request that needed
        it reports why.  ``await nursery.start(client.warm_up)`` returns at once and opens
        them in the background.  Only on the client's own transport (with
        ``http_client=`` or ``transport=``: returns 0).
        """
        self._check_open()
        count = self.limits.concurrency if connections is None else connections
        connect = (timeouts or self.timeouts).connect
        return await self._http.warm_up(count, connect, task_status)

    def _check_open(self) -> None:
        """Refuse a call on a closed client, or from outside trio (every call checks)."""
        if self._state is ClientState.CLOSED:
            raise RuntimeError("this Client is closed; create a new one")
        check_trio()

    def _slot_free(self) -> bool:
        """Whether a request could take a concurrency slot now, without waiting."""
        return self._engine.limiter.available_tokens > 0

    def _plan(
        self,
        endpoint: Endpoint[Any, Any] | None,
        request: Request | None,
        retry: RetryPolicy | None,
        timeouts: Timeouts | None,
        deadline: float = math.inf,
        control: BatchControl | None = None,
        *,
        stream: bool = False,
        hedge: bool = False,
    ) -> Plan:
        """The ``Plan`` of one request of ``endpoint`` (``None``: the model list); a
        ``hedge`` (of a batch's item) makes one attempt, whatever the retry policy."""
        self._check_open()
        custom_id = request.custom_id if request is not None else None
        retry = retry or self.retry
        return Plan(
            custom_id,
            idempotency_key(custom_id),
            retry.replace(attempts=1) if hedge else retry,
            timeouts or self.timeouts,
            request.estimated_tokens() if request is not None else 0,
            deadline,
            control,
            attempt_timeout=not stream,
            endpoint=endpoint,
            request=request,
            stream=stream,
            hedge=hedge,
        )


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
