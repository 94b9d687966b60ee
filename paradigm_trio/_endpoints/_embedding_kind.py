"""Batches of embeddings: :class:`EmbeddingKind`, what such a batch sends (``_batch`` runs
it, as it runs the chat completions' ``ChatKind``): items become requests, small requests
are packed into one (``_embeddings``), and the answer is split back into one
:class:`EmbeddingResult` per item.  Each request is sent by the ``send_one`` the client
hands it (the one send path, with the embeddings endpoint).

A pack that the server refuses as a whole (400, 413, 422: one of its inputs is too long,
say) is sent again one request at a time, so that one bad input fails alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, Final

import trio

from .._engine._batch import ResultStream, SendOne, WarmUp, outcome_of, run_batch
from .._engine._batch_options import BatchOptions, BatchStatistics
from .._engine._budget import BatchControl
from .._engine._ledger import Observer
from .._errors import APIStatusError, InvalidRequestError, RequestCancelled
from ._completion import Usage
from ._embeddings import (
    MAX_EMBEDDING_INPUTS,
    EmbeddingRequest,
    Embeddings,
    EncodingFormat,
    joins,
    merge,
    split,
)

__all__ = [
    "EmbedInput",
    "EmbeddingKind",
    "EmbeddingResult",
    "EmbeddingResults",
    "EmbeddingStream",
    "check_pack",
    "embedding_defaults",
    "stream_batch",
]

EmbedInput = str | EmbeddingRequest

_REFUSED = frozenset({400, 413, 422})
"""Statuses that refuse a request for what it holds: a pack refused so is split."""

_CHAT_ONLY = ("temperature", "max_tokens", "top_p", "seed")


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """The outcome of one input item of an embeddings batch.  Exactly one per item.

    Attributes:
        index: the item's position in the input (0-based).
        custom_id: the request's ``custom_id``, if it has one.
        request: the item as an :class:`EmbeddingRequest`, or ``None`` when it is not a
            valid one.
        embeddings: the answer, one :class:`Embedding` per input of the item, when it
            succeeded.
        error: why it failed (as in :class:`BatchResult`).
        attempts: HTTP attempts made for it (those of its pack included; 0 when nothing
            was sent).
        elapsed: seconds from when the batch started working on it to its outcome.
    """

    index: int
    custom_id: str | None
    request: EmbeddingRequest | None
    embeddings: Embeddings | None = None
    error: Exception | None = None
    attempts: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether it produced embeddings."""
        return self.embeddings is not None

    @property
    def cancelled(self) -> bool:
        """Whether a deadline or fail-fast stopped it before it finished."""
        return isinstance(self.error, RequestCancelled)

    @property
    def usage(self) -> Usage | None:
        """Its tokens (its share of its pack's); ``None`` when it failed or the server
        reported no usage."""
        return self.embeddings.usage if self.embeddings is not None else None

    @property
    def vector(self) -> Sequence[float] | None:
        """The vector of its first (usually only) input; ``None`` when it failed."""
        return self.embeddings.data[0].vector if self.embeddings is not None else None


class EmbeddingResults(list[EmbeddingResult]):
    """The list :meth:`Client.embed_batch` returns, in input order, with ``statistics``."""

    statistics: BatchStatistics


class EmbeddingStream(ResultStream[EmbeddingResult]):
    """The results of :meth:`Client.stream_embed_batch`, in completion order.

    ``async for result in stream`` yields each :class:`EmbeddingResult` once; the loop
    ends when every input item has its result.  With ``on_error="raise"``, the loop
    raises :class:`BatchError` after the failed result has been yielded.
    """


def embedding_defaults(
    options: BatchOptions, dimensions: int | None, encoding_format: EncodingFormat | None
) -> dict[str, Any]:
    """The fields that fill an item's unset ones; refuses chat-only options.

    Raises:
        ValueError: a batch option that embeddings do not have (``stream``, sampling).
    """
    chat_only = [name for name in _CHAT_ONLY if getattr(options, name) is not None]
    if options.stream:
        chat_only.append("stream")
    if chat_only:
        raise ValueError(
            f"{', '.join(chat_only)}: not an option of an embeddings batch (chat only)"
        )
    given: dict[str, Any] = {
        "model": options.model, "dimensions": dimensions, "encoding_format": encoding_format
    }  # fmt: skip
    defaults = {k: v for k, v in given.items() if v is not None}
    # Validated as a request would be: a bad value is refused before anything is sent.
    EmbeddingRequest(inputs="x", **defaults)
    return defaults


def check_pack(pack_inputs: object, pack_tokens: object) -> tuple[int, int]:
    """``(pack_inputs, pack_tokens)``, validated (``ValueError`` names the bad one)."""
    for name, value, top in (
        ("pack_inputs", pack_inputs, MAX_EMBEDDING_INPUTS),
        ("pack_tokens", pack_tokens, None),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < 1
            or (top is not None and value > top)
        ):
            bound = f" and at most {top}" if top is not None else ""
            raise ValueError(f"{name} must be an integer of at least 1{bound}, got {value!r}")
    return pack_inputs, pack_tokens  # type: ignore[return-value]


class EmbeddingKind:
    """Embeddings in a batch: items are strings or :class:`EmbeddingRequest`, packed."""

    operation: Final = "embeddings"

    def __init__(
        self,
        send_one: SendOne[EmbeddingRequest, Embeddings],
        defaults: Mapping[str, Any],
        *,
        pack_inputs: int,
        pack_tokens: int,
    ) -> None:
        self.send_one = send_one
        self.defaults = defaults
        self.pack_inputs = pack_inputs
        self.pack_tokens = pack_tokens

    def request(self, item: object, index: int) -> EmbeddingRequest:
        try:
            if isinstance(item, str):
                return EmbeddingRequest(inputs=(item,), **self.defaults)
            if isinstance(item, EmbeddingRequest):
                missing = {k: v for k, v in self.defaults.items() if getattr(item, k) is None}
                return replace(item, **missing) if missing else item
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"item {index}: {exc}", where=exc.where) from None
        except Exception as exc:
            raise InvalidRequestError(
                f"item {index} is not a valid request: {type(exc).__name__}: {exc}"
            ) from exc
        raise InvalidRequestError(
            f"item {index} is a {type(item).__name__}; pass a string or an EmbeddingRequest"
        )

    def custom_id(self, item: object) -> str | None:
        return item.custom_id if isinstance(item, EmbeddingRequest) else None

    def joins(self, unit: Sequence[EmbeddingRequest], request: EmbeddingRequest) -> bool:
        return joins(unit, request, max_inputs=self.pack_inputs, max_tokens=self.pack_tokens)

    def full(self, unit: Sequence[EmbeddingRequest]) -> bool:
        inputs = sum(len(r.inputs) for r in unit)
        tokens = sum(r.estimated_tokens() for r in unit)
        return inputs >= self.pack_inputs or tokens >= self.pack_tokens

    def units(self, items: int) -> int:
        # Each item is an input at least: ``pack_inputs`` items fill a pack.  (Items of
        # several inputs, or long enough to reach ``pack_tokens``, make more packs.)
        return -(-items // self.pack_inputs)

    def failed(
        self, index: int, custom_id: str | None, request: EmbeddingRequest | None, error: Exception
    ) -> EmbeddingResult:
        return EmbeddingResult(index, custom_id, request, error=error)

    async def send(
        self,
        unit: Sequence[tuple[int, EmbeddingRequest]],
        *,
        deadline: float,
        control: BatchControl,
    ) -> list[EmbeddingResult]:
        requests = [request for _, request in unit]
        start = trio.current_time()
        merged = merge(requests)
        answer, error, attempts, _ = await outcome_of(self.send_one, merged, deadline, control)
        if answer is not None:
            elapsed = trio.current_time() - start
            return [
                EmbeddingResult(i, r.custom_id, r, part, None, attempts, elapsed)
                for (i, r), part in zip(unit, split(answer, requests), strict=True)
            ]
        if len(unit) > 1 and isinstance(error, APIStatusError) and error.status_code in _REFUSED:
            return await self._one_by_one(unit, deadline, control, attempts, start)
        elapsed = trio.current_time() - start
        return [EmbeddingResult(i, r.custom_id, r, None, error, attempts, elapsed) for i, r in unit]

    async def _one_by_one(
        self,
        unit: Sequence[tuple[int, EmbeddingRequest]],
        deadline: float,
        control: BatchControl,
        attempts: int,
        start: float,
    ) -> list[EmbeddingResult]:
        """Send each request of a refused pack on its own (at once, the engine's slots
        bounding how many are in flight)."""
        results: list[EmbeddingResult | None] = [None] * len(unit)

        async def one(position: int, index: int, request: EmbeddingRequest) -> None:
            outcome = await outcome_of(self.send_one, request, deadline, control)
            answer, error, own, _ = outcome
            elapsed = trio.current_time() - start
            results[position] = EmbeddingResult(
                index, request.custom_id, request, answer, error, attempts + own, elapsed
            )

        async with trio.open_nursery() as nursery:
            for position, (index, request) in enumerate(unit):
                nursery.start_soon(one, position, index, request)
        return [r for r in results if r is not None]


def stream_batch(
    send_one: SendOne[EmbeddingRequest, Embeddings],
    inputs: Iterable[EmbedInput] | AsyncIterable[EmbedInput],
    options: BatchOptions,
    defaults: Mapping[str, Any],
    *,
    pack_inputs: int,
    pack_tokens: int,
    width: int,
    observers: Sequence[Observer],
    warm_up: WarmUp | None = None,
) -> AbstractAsyncContextManager[EmbeddingStream]:
    """The engine behind :meth:`Client.stream_embed_batch` (documented there), as
    ``_chat_kind.stream_batch`` is the chat batches'."""
    kind = EmbeddingKind(send_one, defaults, pack_inputs=pack_inputs, pack_tokens=pack_tokens)
    return run_batch(
        kind, inputs, options, width=width, stream=EmbeddingStream, observers=observers,
        warm_up=warm_up,
    )  # fmt: skip
