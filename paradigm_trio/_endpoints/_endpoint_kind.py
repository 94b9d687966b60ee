"""A batch of requests to any endpoint: :class:`EndpointKind`, the ``Kind`` the batch
engine (``_batch``) runs for ``/tokenize``, ``/query``, ``/filter/chunks``,
``/chat/document-search`` and mixed batches, and :class:`EndpointResult`, one per item.

One request per unit, one result per item.  What an item becomes (``make``) and how a
request is sent (``send_one``, the client's one send path on the attempt engine) are
handed in, so that this module imports neither the client nor any endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from .._engine._batch import ResultStream, SendOne, WarmUp, outcome_of, run_batch
from .._engine._batch_options import BatchOptions, BatchStatistics
from .._engine._budget import BatchControl
from .._engine._dedupe import Identity
from .._engine._ledger import Observer
from .._errors import InvalidRequestError, RequestCancelled
from ._completion import Usage

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
    """

    index: int
    custom_id: str | None
    request: Any
    value: Any = None
    error: Exception | None = None
    attempts: int = 0
    elapsed: float = 0.0
    usage: Usage | None = None

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

    def __init__(self, send_one: SendOne[Any, Any], make: Make, usage: UsageOf) -> None:
        self.send_one = send_one
        self.make = make
        self.usage = usage

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

    async def send(
        self, unit: Sequence[tuple[int, Any]], *, deadline: float, control: BatchControl
    ) -> list[EndpointResult]:
        [(index, request)] = unit
        value, error, attempts, elapsed, _ = await outcome_of(
            self.send_one, request, deadline, control
        )
        usage = self.usage(request, value) if error is None else None
        custom_id = self.custom_id(request)
        return [EndpointResult(index, custom_id, request, value, error, attempts, elapsed, usage)]

    def failed(
        self, index: int, custom_id: str | None, request: Any, error: Exception
    ) -> EndpointResult:
        return EndpointResult(index, custom_id, request, error=error)

    @staticmethod
    def identity(request: Any, sampled: bool) -> Identity | None:
        """None: Paradigm's own endpoints are neither deduplicated nor cached."""
        return None

    def cached(self, index: int, request: Any, raw: object, rid: str | None) -> EndpointResult:
        raise AssertionError("an endpoint batch reads no cache")  # (identity is None)

    @staticmethod
    def stored(result: EndpointResult) -> None:
        return None


def run_endpoints(
    kind: EndpointKind,
    items: Iterable[Any] | AsyncIterable[Any],
    options: BatchOptions,
    *,
    width: int,
    observers: Sequence[Observer] = (),
    warm_up: WarmUp | None = None,
) -> AbstractAsyncContextManager[EndpointStream]:
    """Run ``kind`` on the batch engine (``width``: the client's concurrency)."""
    return run_batch(
        kind, items, options, width=width, stream=EndpointStream, observers=observers,
        warm_up=warm_up,
    )  # fmt: skip
