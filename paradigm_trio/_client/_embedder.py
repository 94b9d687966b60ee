"""Embeddings requests: the client's methods, one request on the attempt engine, batches.

:class:`EmbeddingMethods` are the :class:`~paradigm_trio.Client`'s embeddings methods
(``embed``, ``embed_batch``, ``stream_embed_batch``), which ``Client`` inherits: they
validate their arguments, build a ``Plan`` and hand the request to the one send path
(``Sender.send`` with the embeddings endpoint, as chat requests with theirs; the engine
does the rest, as for every request kind).  :class:`EmbeddingKind` is what a batch of
embeddings sends (``_batch`` runs it): items become requests, small requests are packed
into one (``_embeddings``), and the answer is split back into one
:class:`EmbeddingResult` per item.

A pack that the server refuses as a whole (400, 413, 422: one of its inputs is too long,
say) is sent again one request at a time, so that one bad input fails alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, Final, Unpack

import trio

from .._config import RetryPolicy, Timeouts
from .._endpoints._completion import Usage
from .._endpoints._embeddings import (
    DEFAULT_PACK_INPUTS,
    DEFAULT_PACK_TOKENS,
    MAX_EMBEDDING_INPUTS,
    EmbeddingRequest,
    Embeddings,
    EmbeddingsEndpoint,
    EncodingFormat,
    joins,
    merge,
    split,
)
from .._endpoints._endpoint import Stored, identity, reparse, stored
from .._engine._batch import ResultStream, SendOne, outcome_of, run_batch
from .._engine._batch_options import BatchKeywords, BatchOptions, BatchStatistics
from .._engine._budget import BatchControl
from .._engine._dedupe import Identity
from .._errors import APIStatusError, InvalidRequestError, RequestCancelled
from .._events import Attempt
from ._core import ClientCore, collect

__all__ = [
    "EmbedInput",
    "EmbeddingKind",
    "EmbeddingMethods",
    "EmbeddingResult",
    "EmbeddingResults",
    "EmbeddingStream",
    "check_pack",
    "embedding_defaults",
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
        deduplicated: whether it shares the answer of an identical request of the batch
            (``BatchOptions.dedupe``): nothing was sent for it.
        cached: whether its answer came from the client's :class:`ResponseCache`
            (nothing was sent for it: ``attempts`` and ``elapsed`` are 0).
    """

    index: int
    custom_id: str | None
    request: EmbeddingRequest | None
    embeddings: Embeddings | None = None
    error: Exception | None = None
    attempts: int = 0
    elapsed: float = 0.0
    deduplicated: bool = False
    cached: bool = False

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
    if options.hedge:
        chat_only.append("hedge")
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
        endpoint: EmbeddingsEndpoint,
        pack_inputs: int,
        pack_tokens: int,
    ) -> None:
        self.send_one = send_one
        self.defaults = defaults
        self.endpoint = endpoint
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

    def identity(self, request: EmbeddingRequest) -> Identity | None:
        return identity(self.endpoint, request)

    def cached(
        self, index: int, request: EmbeddingRequest, raw: object, rid: str | None
    ) -> EmbeddingResult:
        answer = reparse(self.endpoint, request, raw, rid)
        return EmbeddingResult(index, request.custom_id, request, answer, cached=True)

    @staticmethod
    def stored(result: EmbeddingResult) -> Stored | None:
        return stored(result.embeddings)

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
        answer, error, attempts, *_ = await outcome_of(self.send_one, merged, deadline, control)
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
            answer, error, own, *_ = outcome
            elapsed = trio.current_time() - start
            results[position] = EmbeddingResult(
                index, request.custom_id, request, answer, error, attempts + own, elapsed
            )

        async with trio.open_nursery() as nursery:
            for position, (index, request) in enumerate(unit):
                nursery.start_soon(one, position, index, request)
        return [r for r in results if r is not None]


class EmbeddingMethods(ClientCore):
    """The :class:`Client`'s embeddings methods (``Client`` inherits them)."""

    async def embed(
        self,
        inputs: str | Sequence[str] | EmbeddingRequest,
        *,
        model: str | None = None,
        dimensions: int | None = None,
        encoding_format: EncodingFormat | None = None,
        extra: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> Embeddings:
        """Embed one or more texts in one request (``POST /embeddings``), retrying per the
        policy; one vector per input, in order.

        Args:
            inputs: a string, a list of at most 2,048 strings, or an
                :class:`EmbeddingRequest` (whose fields the keywords override).
            model: the embedding model (default: the client's ``embedding_model``).
            dimensions: the length of the vectors, for models that can shorten them.
            encoding_format: ``"base64"`` (the default: compact) or ``"float"``: how the
                vectors travel.  They are decoded to floats either way.
            extra: more body fields, passed through.
            custom_id, retry, timeouts: as for :meth:`chat`.

        For many texts, :meth:`embed_batch` sends them concurrently, packing small ones
        into shared requests.

        Raises:
            InvalidRequestError: the request is invalid (an empty string, more than 2,048
                inputs, a bad ``dimensions``...); nothing was sent.
            APIError: as for :meth:`chat`.
        """
        given: dict[str, Any] = {
            "model": model, "dimensions": dimensions, "encoding_format": encoding_format,
            "extra": extra, "custom_id": custom_id,
        }  # fmt: skip
        fields = {k: v for k, v in given.items() if v is not None}
        if isinstance(inputs, EmbeddingRequest):
            request = replace(inputs, **fields) if fields else inputs
        else:
            request = EmbeddingRequest(inputs=inputs, **fields)
        plan = self._plan(self._embeddings, request, retry, timeouts)
        return await self._sender.send(self._embeddings, request, plan)

    def stream_embed_batch(
        self,
        inputs: Iterable[EmbedInput] | AsyncIterable[EmbedInput],
        *,
        dimensions: int | None = None,
        encoding_format: EncodingFormat | None = None,
        pack_inputs: int = DEFAULT_PACK_INPUTS,
        pack_tokens: int = DEFAULT_PACK_TOKENS,
        options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> AbstractAsyncContextManager[EmbeddingStream]:
        """Embed many texts concurrently; get one :class:`EmbeddingResult` per item as
        each finishes.

        ::

            async with client.stream_embed_batch(texts) as results:
                async for result in results:   # completion order
                    store(result.index, result.vector)

        ``inputs`` is any iterable or async iterable of strings (one input each) or
        :class:`EmbeddingRequest` (one or more inputs each), read lazily.  Items that ask
        for the same model, dimensions and encoding are *packed*: consecutive items go
        into one request of at most ``pack_inputs`` inputs and ``pack_tokens`` estimated
        tokens (``pack_inputs=1`` sends each item alone), and the answer is split back
        into one result per item.  A pack that the server refuses (400, 413, 422) is sent
        again one item at a time, so that only the bad item fails.  A pack is sent when it
        is full or the input ends: an async input that waits for results before yielding
        more should use ``pack_inputs=1``.

        The guarantees are those of :meth:`stream_batch`: one result per item, retries,
        the rate limits (with the inputs' estimated tokens), the retry budget and circuit
        breaker, ``deadline``, ``on_progress``, ``on_error``.  The keywords are the fields
        of :class:`BatchOptions`, of which ``model`` fills the items' unset model; the
        chat-only ones (``temperature``, ``max_tokens``, ``top_p``, ``seed``,
        ``stream``) are refused.

        Raises:
            ValueError: an invalid option (before anything is sent).
            RuntimeError: the client is closed.
        """
        opts = BatchOptions.of(options, keywords)
        defaults = embedding_defaults(opts, dimensions, encoding_format)
        pack_inputs, pack_tokens = check_pack(pack_inputs, pack_tokens)
        self._check_open()
        retry, timeouts = opts.retry, opts.timeouts
        sender, endpoint = self._sender, self._embeddings

        def send_one(
            request: EmbeddingRequest,
            *,
            deadline: float,
            control: BatchControl,
            history: list[Attempt],
            hedge: bool = False,
        ) -> Awaitable[Embeddings]:
            # Not a coroutine of its own, as the chat batch's (one frame less per request).
            plan = self._plan(endpoint, request, retry, timeouts, deadline, control, hedge=hedge)
            return sender.send(endpoint, request, plan, history)

        kind = EmbeddingKind(
            send_one, defaults, endpoint=endpoint, pack_inputs=pack_inputs, pack_tokens=pack_tokens
        )
        return run_batch(
            kind, inputs, opts, width=self.limits.concurrency, stream=EmbeddingStream,
            observers=self._engine.ledger.observers, warm_up=self.warm_up, cache=self._cache,
            free=self._slot_free,
        )  # fmt: skip

    async def embed_batch(
        self,
        inputs: Iterable[EmbedInput] | AsyncIterable[EmbedInput],
        *,
        dimensions: int | None = None,
        encoding_format: EncodingFormat | None = None,
        pack_inputs: int = DEFAULT_PACK_INPUTS,
        pack_tokens: int = DEFAULT_PACK_TOKENS,
        options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> EmbeddingResults:
        """Embed many texts concurrently; return one :class:`EmbeddingResult` per item,
        in input order.

        Takes the arguments of :meth:`stream_embed_batch` and returns an
        :class:`EmbeddingResults` (a list, with ``.statistics``).  With
        ``on_error="raise"`` it raises :class:`BatchError` whose ``results`` hold the
        results finished before the failure.
        """
        results = EmbeddingResults()
        cm = self.stream_embed_batch(
            inputs, dimensions=dimensions, encoding_format=encoding_format,
            pack_inputs=pack_inputs, pack_tokens=pack_tokens, options=options, **keywords,
        )  # fmt: skip
        results.statistics = await collect(cm, results)
        return results
