"""A batch of requests to any endpoint: :class:`EndpointKind`, the ``Kind`` the batch
engine (``_batch``) runs for ``/tokenize``, ``/query``, ``/filter/chunks``,
``/chat/document-search`` and mixed batches, and :class:`EndpointResult`, one per item.

One request per unit, one result per item.  What an item becomes (``make``), how a
request is sent (``send_one``, the client's one send path on the attempt engine), the
endpoint of a request (``endpoint_of``: what makes two requests the same, and how a
cached answer is read) and whether a request may be sent twice (``repeatable``: a hedge,
an answer shared under ``dedupe="all"``) are handed in, so that this module imports
neither the client nor any endpoint.  The repeats are the chat batch's: identical
deterministic requests sent once, the response cache read and written, a slow request
hedged (``hedge=``); never for a request that is not ``repeatable`` (a thread's turn
adds to the thread).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from .._engine._batch import ResultStream, SendOne, WarmUp, run_batch
from .._engine._batch_options import BatchOptions, BatchStatistics
from .._engine._budget import BatchControl
from .._engine._cache import CacheStore
from .._engine._dedupe import Identity
from .._engine._ledger import Observer
from .._engine._settle import Sent, settle
from .._errors import InvalidRequestError, RequestCancelled
from ._completion import Usage
from ._endpoint import Endpoint, Stored, identity, reparse

__all__ = ["EndpointKind", "EndpointResult", "EndpointResults", "EndpointStream", "run_endpoints"]

Make = Callable[[object, int], Any]
UsageOf = Callable[[Any, Any], Usage | None]


@dataclass(frozen=True, slots=True)
class EndpointResult:
    """The outcome of one input item of an endpoint batch.  Exactly one per item.

    Attributes:
        index: the item's position in the input (0-based).
        custom_id: the request's ``custom_id``, if it has one.
        request: the item as a request (:class:`TokenizeRequest`,
            :class:`QueryRequest`, ...), or ``None`` when it is not a valid one.
        value: the answer when it succeeded: what the single-request method returns
            (a :class:`TokenCount`, a list of :class:`QueryResult`, ...).
        error: why it failed (as in :class:`BatchResult`).
        attempts: HTTP attempts made (0 when nothing was sent).
        elapsed: seconds from when the batch started working on it to its outcome.
        usage: the tokens the answer reports, when it reports any.
        deduplicated: whether it shares the answer of an identical request of the batch
            (``BatchOptions.dedupe``): nothing was sent for it.
        cached: whether its answer came from the client's :class:`ResponseCache`
            (nothing was sent for it).
        hedged: whether its answer is a hedge's (``BatchOptions.hedge``).
    """

    index: int
    custom_id: str | None
    request: Any
    value: Any = None
    error: Exception | None = None
    attempts: int = 0
    elapsed: float = 0.0
    usage: Usage | None = None
    deduplicated: bool = False
    cached: bool = False
    hedged: bool = False

    @property
    def ok(self) -> bool:
        """Whether it produced an answer."""
        return self.error is None

    @property
    def cancelled(self) -> bool:
        """Whether a deadline or fail-fast stopped it before it finished."""
        return isinstance(self.error, RequestCancelled)


class EndpointResults(list[EndpointResult]):
    """The list an endpoint batch method returns, in input order, with ``statistics``."""

    statistics: BatchStatistics


class EndpointStream(ResultStream[EndpointResult]):
    """The results of an endpoint batch, in completion order (see :class:`BatchStream`)."""


class EndpointKind:
    """Any endpoint: one request per unit, one :class:`EndpointResult` per item."""

    operation = "requests"

    def __init__(
        self,
        send_one: SendOne[Any, Any],
        make: Make,
        usage: UsageOf,
        *,
        endpoint_of: Callable[[Any], Endpoint[Any, Any]] | None = None,
    ) -> None:
        self.send_one = send_one
        self.make = make
        self.usage = usage
        self.endpoint_of = endpoint_of  # None: nothing shared, nothing cached, no hedge
        self._then = self._result  # (bound once, not per request)

    def repeatable(self, request: Any) -> bool:
        """Whether sending ``request`` twice is harmless (a hedge; a sampled answer
        shared): its endpoint is idempotent (a thread's turn is not: it adds to the thread)."""
        return self.endpoint_of is not None and bool(self.endpoint_of(request).idempotent)

    def request(self, item: object, index: int) -> Any:
        try:
            return self.make(item, index)
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"item {index}: {exc}", where=exc.where) from None
        except Exception as exc:
            raise InvalidRequestError(
                f"item {index} is not a valid request: {type(exc).__name__}: {exc}"
            ) from exc

    def custom_id(self, item: object) -> str | None:
        value = getattr(item, "custom_id", None)
        return value if isinstance(value, str) else None

    def joins(self, unit: Sequence[Any], request: Any) -> bool:
        return False

    def full(self, unit: Sequence[Any]) -> bool:
        return True

    def units(self, items: int) -> int:
        return items

    def send(
        self, unit: Sequence[tuple[int, Any]], *, deadline: float, control: BatchControl
    ) -> Awaitable[list[EndpointResult]]:
        # Not a coroutine of its own: ``settle`` makes the result (one frame less).
        [(index, request)] = unit
        return settle(
            self.send_one, request, deadline, control, self._then, index,
            hedge=self.repeatable(request),
        )  # fmt: skip

    def _result(self, index: int, request: Any, sent: Sent[Any]) -> list[EndpointResult]:
        value, error, attempts, elapsed, hedged = sent
        usage = self.usage(request, value) if error is None else None
        custom_id = self.custom_id(request)
        return [
            EndpointResult(
                index, custom_id, request, value, error, attempts, elapsed, usage, hedged=hedged
            )
        ]

    def failed(
        self, index: int, custom_id: str | None, request: Any, error: Exception
    ) -> EndpointResult:
        return EndpointResult(index, custom_id, request, error=error)

    def identity(self, request: Any, sampled: bool) -> Identity | None:
        """The request's endpoint says (a sampled one only when ``repeatable``)."""
        if self.endpoint_of is None:
            return None
        sampled = sampled and self.repeatable(request)
        return identity(self.endpoint_of(request), request, sampled)

    def cached(self, index: int, request: Any, raw: object, rid: str | None) -> EndpointResult:
        assert self.endpoint_of is not None  # (else no identity, no cache entry)
        value = reparse(self.endpoint_of(request), request, raw, rid)
        usage = self.usage(request, value)
        return EndpointResult(index, self.custom_id(request), request, value, usage=usage,
                              cached=True)  # fmt: skip

    @staticmethod
    def stored(result: EndpointResult) -> Stored | None:
        """The answer's JSON and request id, when it succeeded and keeps them (``raw``:
        a token count, a text completion, a chat completion, embeddings)."""
        raw = getattr(result.value, "raw", None)
        if result.error is not None or not isinstance(raw, Mapping):
            return None
        return raw, getattr(result.value, "request_id", None)


def run_endpoints(
    kind: EndpointKind,
    items: Iterable[Any] | AsyncIterable[Any],
    options: BatchOptions,
    *,
    width: int,
    observers: Sequence[Observer] = (),
    warm_up: WarmUp | None = None,
    cache: CacheStore | None = None,
    free: Callable[[], bool] = lambda: True,
) -> AbstractAsyncContextManager[EndpointStream]:
    """Run ``kind`` on the batch engine (``width``: the client's concurrency; ``cache``
    and ``free`` as :func:`run_batch`'s)."""
    return run_batch(
        kind, items, options, width=width, stream=EndpointStream, observers=observers,
        warm_up=warm_up, cache=cache, free=free,
    )  # fmt: skip
