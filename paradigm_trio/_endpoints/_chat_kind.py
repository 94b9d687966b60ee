"""A batch of chat completions: its results and the :class:`Kind` the engine (``_batch``) runs.

:class:`BatchResult` is one item's outcome (:class:`BatchResults` the list of them that
``chat_batch`` returns, :class:`BatchStream` the stream ``stream_batch`` hands out).
:class:`ChatKind` makes one request of each item (its sampling fields left unset filled
from the batch's keywords; an invalid item an :class:`InvalidRequestError`, whatever is
wrong with it), one unit of each request, and one :class:`BatchResult` of each unit.
``stream_batch`` runs it: the engine behind :meth:`Client.stream_batch`, which hands it a
``send_one`` (the client's attempt engine), so that neither this module nor ``_batch``
imports the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final

from .._engine._batch import ResultStream, SendOne, WarmUp, run_batch
from .._engine._batch_options import BatchOptions, BatchStatistics
from .._engine._budget import BatchControl
from .._engine._cache import CacheStore
from .._engine._dedupe import Identity
from .._engine._ledger import Observer
from .._engine._settle import Sent, settle
from .._errors import InvalidRequestError, RequestCancelled
from .._records import builder
from ._completion import ChatCompletion, Usage
from ._endpoint import Endpoint, Stored, identity, reparse, stored
from ._models import ChatRequest, sealed_request

__all__ = ["BatchResult", "BatchResults", "BatchStream", "ChatKind", "stream_batch"]

BatchInput = ChatRequest | Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one input item of a batch.  Exactly one per item, success or not.

    Attributes:
        index: the item's position in the input (0-based).
        custom_id: the request's ``custom_id``, if it has one.
        request: the item as a :class:`ChatRequest`, or ``None`` when it is not a valid one.
        completion: the completion, when it succeeded (with ``parsed`` set when the
            request asked for an ``output=`` schema).
        error: why it failed: an :class:`APIError` (:class:`RequestCancelled` when a
            deadline or fail-fast stopped it), or :class:`InvalidRequestError` (a
            ``ValueError``) for an item that cannot be sent (not a request, invalid Unicode,
            a value JSON cannot hold): nothing of it was sent.  Any other exception raised
            while preparing or sending one item (a bug, an event hook raising) is that
            item's error too; it never stops the batch.
        attempts: HTTP attempts made (0 when nothing was sent).
        elapsed: seconds from when the batch started working on it (waits for a
            concurrency slot and for the rate limits included) to its outcome.
        deduplicated: whether it shares the answer of an identical request of the batch
            (``BatchOptions.dedupe``): nothing was sent for it (``attempts`` is 0), its
            ``completion`` (or ``error``) is that request's.
        cached: whether its answer came from the client's :class:`ResponseCache`
            (nothing was sent for it: ``attempts`` and ``elapsed`` are 0).
        hedged: whether its answer is a hedge's (``BatchOptions.hedge``): the same request
            sent again while the first was slow, whose answer came first (``attempts``
            counts both requests' attempts).
    """

    index: int
    custom_id: str | None
    request: ChatRequest | None
    completion: ChatCompletion | None = None
    error: Exception | None = None
    attempts: int = 0
    elapsed: float = 0.0
    deduplicated: bool = False
    cached: bool = False
    hedged: bool = False

    @property
    def ok(self) -> bool:
        """Whether it produced a completion."""
        return self.completion is not None

    @property
    def cancelled(self) -> bool:
        """Whether a deadline or fail-fast stopped it before it finished."""
        return isinstance(self.error, RequestCancelled)

    @property
    def usage(self) -> Usage | None:
        """Token usage; ``None`` when it failed or the server reported no usage."""
        return self.completion.usage if self.completion is not None else None


_BATCH_RESULT = builder(BatchResult)


class BatchResults(list[BatchResult]):
    """The list :meth:`Client.chat_batch` returns, in input order, with ``statistics``."""

    statistics: BatchStatistics


class BatchStream(ResultStream[BatchResult]):
    """The results of :meth:`Client.stream_batch`, in completion order.

    ``async for result in stream`` yields each :class:`BatchResult` once; the loop ends when
    every input item has its result.  With ``on_error="raise"``, the loop raises
    :class:`BatchError` after the failed result has been yielded.
    """


class ChatKind:
    """Chat completions: one :class:`BatchResult` per item, one request per unit."""

    operation: Final = "chat"

    def __init__(
        self,
        send_one: SendOne[ChatRequest, ChatCompletion],
        defaults: Mapping[str, Any],
        endpoint: Endpoint[ChatRequest, ChatCompletion] | None = None,
    ) -> None:
        self.send_one = send_one
        self.defaults = defaults
        self.endpoint = endpoint

    def request(self, item: object, index: int) -> ChatRequest:
        return _to_request(item, self.defaults, index)

    def custom_id(self, item: object) -> str | None:
        return item.custom_id if isinstance(item, ChatRequest) else None

    def joins(self, unit: Sequence[ChatRequest], request: ChatRequest) -> bool:
        return False

    def full(self, unit: Sequence[ChatRequest]) -> bool:
        return True

    def units(self, items: int) -> int:
        return items

    def send(
        self, unit: Sequence[tuple[int, ChatRequest]], *, deadline: float, control: BatchControl
    ) -> Awaitable[list[BatchResult]]:
        # Not a coroutine of its own: ``settle`` makes the result (one frame less).
        [(index, request)] = unit
        return settle(self.send_one, request, deadline, control, _result, index)

    def failed(
        self, index: int, custom_id: str | None, request: ChatRequest | None, error: Exception
    ) -> BatchResult:
        return BatchResult(index, custom_id, request, error=error)

    def identity(self, request: ChatRequest, sampled: bool) -> Identity | None:
        # (No endpoint, no identity: nothing is shared.)
        return None if self.endpoint is None else identity(self.endpoint, request, sampled)

    def cached(self, index: int, request: ChatRequest, raw: object, rid: str | None) -> BatchResult:
        assert self.endpoint is not None  # (else no identity, no cache entry)
        answer = reparse(self.endpoint, request, raw, rid)
        return BatchResult(index, request.custom_id, request, answer, cached=True)

    @staticmethod
    def stored(result: BatchResult) -> Stored | None:
        return stored(result.completion)


def _result(index: int, request: ChatRequest, sent: Sent[ChatCompletion]) -> list[BatchResult]:
    """A chat item's result (``ChatKind.send``)."""
    value, error, attempts, elapsed, hedged = sent
    # Every field, in order (``_records``): deduplicated and cached are not.
    return [
        _BATCH_RESULT(
            index, request.custom_id, request, value, error, attempts, elapsed, False, False,
            hedged,
        )
    ]  # fmt: skip


def _to_request(item: object, defaults: Mapping[str, Any], index: int) -> ChatRequest:
    """An input item as a validated request; batch keywords fill the fields left unset.

    Raises :class:`InvalidRequestError` for anything wrong with it, even an unexpected
    exception while reading it (a message whose lookups raise, say): it is the item's
    result, never the batch's end.
    """
    try:
        return _checked_request(item, defaults, index)
    except InvalidRequestError:
        raise
    except Exception as exc:
        raise InvalidRequestError(
            f"item {index} is not a valid request: {type(exc).__name__}: {exc}"
        ) from exc


def _checked_request(item: object, defaults: Mapping[str, Any], index: int) -> ChatRequest:
    if isinstance(item, ChatRequest):
        missing = {k: v for k, v in defaults.items() if getattr(item, k) is None}
        return sealed_request(item, **missing) if missing else item
    if isinstance(item, Mapping):
        raise InvalidRequestError(
            f"item {index} is a dict; pass a list of messages or a ChatRequest"
            " (a single message must still be inside a list)"
        )
    if not isinstance(item, Sequence) or isinstance(item, str | bytes):
        raise InvalidRequestError(
            f"item {index} is a {type(item).__name__}; pass a list of messages or a ChatRequest"
        )
    return sealed_request(item, **defaults)


def stream_batch(
    send_one: SendOne[ChatRequest, ChatCompletion],
    requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
    options: BatchOptions,
    *,
    endpoint: Endpoint[ChatRequest, ChatCompletion] | None = None,
    width: int,
    observers: Sequence[Observer],
    warm_up: WarmUp | None = None,
    cache: CacheStore | None = None,
    free: Callable[[], bool] = lambda: True,
) -> AbstractAsyncContextManager[BatchStream]:
    """The engine behind :meth:`Client.stream_batch` (documented there).

    ``send_one`` sends one request (through the client's attempt engine); ``width`` is the
    most items worked on at once (the client's concurrency); ``observers`` (the ledger's)
    are told when the batch starts and ends; ``warm_up`` opens connections ahead of it;
    ``endpoint`` (the client's chat endpoint) says which requests are the same.
    """
    kind = ChatKind(send_one, options.defaults(), endpoint)
    return run_batch(
        kind, requests, options, width=width, stream=BatchStream, observers=observers,
        warm_up=warm_up, cache=cache, free=free,
    )  # fmt: skip
