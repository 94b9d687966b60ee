"""A batch of chat completions: the :class:`Kind` that the engine (``_batch``) runs for it.

:class:`ChatKind` makes one request of each item (its sampling fields left unset filled
from the batch's keywords; an invalid item an :class:`InvalidRequestError`, whatever is
wrong with it), one unit of each request, and one :class:`BatchResult` of each unit.
``stream_batch`` runs it: the engine behind :meth:`Client.stream_batch`, which hands it a
``send_one`` (the client's attempt engine), so that neither this module nor ``_batch``
imports the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

from ._batch import BatchResult, BatchStream, SendOne, outcome_of, run_batch
from ._batch_options import BatchOptions
from ._budget import BatchControl
from ._completion import ChatCompletion
from ._errors import InvalidRequestError
from ._events import Attempt
from ._ledger import Observer
from ._models import ChatRequest, make_request

__all__ = ["ChatKind", "stream_batch"]

BatchInput = ChatRequest | Sequence[Mapping[str, Any]]


class ChatKind:
    """Chat completions: one :class:`BatchResult` per item, one request per unit."""

    def __init__(
        self, send_one: SendOne[ChatRequest, ChatCompletion], defaults: Mapping[str, Any]
    ) -> None:
        self.send_one = send_one
        self.defaults = defaults

    def request(self, item: object, index: int) -> ChatRequest:
        return _to_request(item, self.defaults, index)

    def custom_id(self, item: object) -> str | None:
        return item.custom_id if isinstance(item, ChatRequest) else None

    def joins(self, unit: Sequence[ChatRequest], request: ChatRequest) -> bool:
        return False

    def full(self, unit: Sequence[ChatRequest]) -> bool:
        return True

    async def send(
        self, unit: Sequence[tuple[int, ChatRequest]], *, deadline: float, control: BatchControl
    ) -> list[BatchResult]:
        [(index, request)] = unit

        def send(history: list[Attempt]) -> Awaitable[ChatCompletion]:
            return self.send_one(request, deadline=deadline, control=control, history=history)

        completion, error, attempts, elapsed = await outcome_of(send)
        return [
            BatchResult(index, request.custom_id, request, completion, error, attempts, elapsed)
        ]

    def failed(
        self, index: int, custom_id: str | None, request: ChatRequest | None, error: Exception
    ) -> BatchResult:
        return BatchResult(index, custom_id, request, error=error)


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
        return replace(item, **missing) if missing else item
    if isinstance(item, Mapping):
        raise InvalidRequestError(
            f"item {index} is a dict; pass a list of messages or a ChatRequest"
            " (a single message must still be inside a list)"
        )
    if not isinstance(item, Sequence) or isinstance(item, str | bytes):
        raise InvalidRequestError(
            f"item {index} is a {type(item).__name__}; pass a list of messages or a ChatRequest"
        )
    return make_request(item, **defaults)


def stream_batch(
    send_one: SendOne[ChatRequest, ChatCompletion],
    requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
    options: BatchOptions,
    *,
    width: int,
    observers: Sequence[Observer] = (),
) -> AbstractAsyncContextManager[BatchStream]:
    """The engine behind :meth:`Client.stream_batch` (documented there).

    ``send_one`` sends one request (through the client's attempt engine); ``width`` is the
    most items worked on at once (the client's concurrency); ``observers`` (the ledger's)
    are told when the batch starts and ends.
    """
    kind = ChatKind(send_one, options.defaults())
    return run_batch(kind, requests, options, width=width, stream=BatchStream, observers=observers)
