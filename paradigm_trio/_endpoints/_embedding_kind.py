"""Batches of embeddings: :class:`EmbeddingKind`, what such a batch sends (``_batch`` runs
it, as it runs the chat completions' ``ChatKind``): items become requests, small requests
are packed into one (``_embeddings``), and the answer is split back into one
:class:`EmbeddingResult` per item.  Each request is sent by the ``send_one`` the client
hands it (the one send path, with the embeddings endpoint).

A pack that the server refuses as a whole (400, 413, 422: one of its inputs is too long,
say) is sent again one request at a time, so that one bad input fails alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import trio

from .. import _log
from .._engine._batch import ResultStream, SendOne
from .._engine._batch_options import BatchOptions, BatchStatistics
from .._engine._budget import BatchControl
from .._engine._dedupe import Identity
from .._engine._ledger import Ledger
from .._engine._settle import outcome_of
from .._errors import APIStatusError, InvalidRequestError, RequestCancelled
from .._events import EmbeddingPackingDisabled
from ._completion import Usage
from ._embeddings import (
    MAX_EMBEDDING_INPUTS,
    EmbeddingRequest,
    Embeddings,
    EmbeddingsEndpoint,
    EncodingFormat,
    join,
    joins,
    merge,
    singles,
    split,
)
from ._endpoint import Stored, identity, reparse, stored

__all__ = [
    "EmbedInput",
    "EmbeddingKind",
    "EmbeddingLists",
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


_LIST_REFUSED = frozenset({400, 422})
"""Statuses of a refused request of several inputs from which the client learns that the
model takes one input per request (413, too large, teaches nothing)."""


class EmbeddingLists:
    """What a client knows of each embedding model's lists (one per :class:`Client`).

    A model takes several inputs in one request unless packing is off
    (``Client(pack_embeddings=False)``) or the server refused such a request for it
    (:meth:`learn`); the endpoint (:class:`EmbeddingsEndpoint`) then sends its inputs one
    per request, as strings.  The first request of several inputs for a model whose lists
    are not known yet is its probe: the others wait for its answer (:meth:`probe`), so a
    server that refuses lists costs one wasted request, not one per pack in flight.
    """

    def __init__(self, endpoint: EmbeddingsEndpoint, ledger: Ledger) -> None:
        self.endpoint = endpoint
        self.ledger = ledger
        self.lists_ok: set[str] = set()
        self._probes: dict[str, trio.Event] = {}

    def packs(self, model: str | None) -> bool:
        """Whether ``model`` (the endpoint's default for ``None``) takes several inputs."""
        return self.endpoint.packs(model)

    async def probe(self, model: str | None) -> bool:
        """Before a request of several inputs for ``model``: whether this one is the probe
        (the others wait here until it has its answer)."""
        name = model or self.endpoint.model
        while self.packs(name) and name not in self.lists_ok:
            waiting = self._probes.get(name)
            if waiting is None:
                self._probes[name] = trio.Event()
                await trio.lowlevel.checkpoint()
                return True
            await waiting.wait()
        await trio.lowlevel.checkpoint()
        return False

    def probed(self, model: str | None, accepted: bool) -> None:
        """The probe's answer is in (lists ``accepted``, or not known); the waiting go on."""
        name = model or self.endpoint.model
        if accepted:
            self.lists_ok.add(name)
        waiting = self._probes.pop(name, None)
        if waiting is not None:
            waiting.set()

    def learn(self, model: str | None, error: Exception | None) -> bool:
        """Whether ``error``, the answer to a request of several inputs, refuses lists; the
        first time, the model is switched to one input per request (a log record and an
        :class:`EmbeddingPackingDisabled` event say so)."""
        if not isinstance(error, APIStatusError) or error.status_code not in _LIST_REFUSED:
            return False
        name = model or self.endpoint.model
        if self.endpoint.single_input(name):
            _log.packing_disabled(name, error.status_code)
            self.ledger.emit(EmbeddingPackingDisabled(name, error.status_code))
        return True


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
        hedged: whether its answer is a hedge's (``BatchOptions.hedge``): its request
            (its whole pack) was sent again while still unanswered, and that copy
            answered first.
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
    hedged: bool = False

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
        endpoint: EmbeddingsEndpoint | None = None,
        pack_inputs: int,
        pack_tokens: int,
        lists: EmbeddingLists | None = None,
    ) -> None:
        self.send_one = send_one
        self.defaults = defaults
        self.endpoint = endpoint
        self.pack_inputs = pack_inputs
        self.pack_tokens = pack_tokens
        self.lists = lists  # None: every model packs (no probe, nothing learnt)

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
        if not self._packs(request.model):
            return False
        return joins(unit, request, max_inputs=self.pack_inputs, max_tokens=self.pack_tokens)

    def full(self, unit: Sequence[EmbeddingRequest]) -> bool:
        if not self._packs(unit[0].model):
            return True
        inputs = sum(len(r.inputs) for r in unit)
        tokens = sum(r.estimated_tokens() for r in unit)
        return inputs >= self.pack_inputs or tokens >= self.pack_tokens

    def _packs(self, model: str | None) -> bool:
        return self.lists is None or self.lists.packs(model)

    def units(self, items: int) -> int:
        # Each item is an input at least: ``pack_inputs`` items fill a pack.  (Items of
        # several inputs, or long enough to reach ``pack_tokens``, make more packs.)
        return -(-items // self.pack_inputs)

    def failed(
        self, index: int, custom_id: str | None, request: EmbeddingRequest | None, error: Exception
    ) -> EmbeddingResult:
        return EmbeddingResult(index, custom_id, request, error=error)

    def identity(self, request: EmbeddingRequest, sampled: bool) -> Identity | None:
        # (No endpoint, no identity: nothing is shared.)
        return None if self.endpoint is None else identity(self.endpoint, request, sampled)

    def cached(
        self, index: int, request: EmbeddingRequest, raw: object, rid: str | None
    ) -> EmbeddingResult:
        assert self.endpoint is not None  # (else no identity, no cache entry)
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
        model = requests[0].model
        inputs = sum(len(r.inputs) for r in requests)
        probe = inputs > 1 and self.lists is not None and await self.lists.probe(model)
        if inputs > 1 and not self._packs(model):
            return await self._one_by_one(unit, deadline, control, 0, start)
        merged = merge(requests)
        accepted = False
        try:
            answer, error, attempts, _, hedged = await outcome_of(
                self.send_one, merged, deadline, control
            )
            accepted = answer is not None
            refused = inputs > 1 and self.lists is not None and self.lists.learn(model, error)
        finally:
            if probe and self.lists is not None:
                self.lists.probed(model, accepted)
        if answer is not None:
            elapsed = trio.current_time() - start
            return [
                EmbeddingResult(i, r.custom_id, r, part, None, attempts, elapsed, hedged=hedged)
                for (i, r), part in zip(unit, split(answer, requests), strict=True)
            ]
        if refused:
            return await self._one_by_one(unit, deadline, control, attempts, start)
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
        bounding how many are in flight): one input per request when the model takes no
        more."""
        results: list[EmbeddingResult | None] = [None] * len(unit)

        async def one(position: int, index: int, request: EmbeddingRequest) -> None:
            if len(request.inputs) > 1 and not self._packs(request.model):
                answer, error, own, hedged = await self._singly(request, deadline, control)
            else:
                sent = await outcome_of(self.send_one, request, deadline, control)
                answer, error, own, hedged = sent.value, sent.error, sent.attempts, sent.hedged
            elapsed = trio.current_time() - start
            results[position] = EmbeddingResult(
                index, request.custom_id, request, answer, error, attempts + own, elapsed,
                hedged=hedged and answer is not None,
            )  # fmt: skip

        async with trio.open_nursery() as nursery:
            for position, (index, request) in enumerate(unit):
                nursery.start_soon(one, position, index, request)
        return [r for r in results if r is not None]

    async def _singly(
        self, request: EmbeddingRequest, deadline: float, control: BatchControl
    ) -> tuple[Embeddings | None, Exception | None, int, bool]:
        """An item of several inputs, one input per request: its answer joined, or the
        first error; the attempts of all; whether a hedge answered one of them."""
        parts = singles(request)
        outcomes: list[Any] = [None] * len(parts)

        async def one(position: int, part: EmbeddingRequest) -> None:
            outcomes[position] = await outcome_of(self.send_one, part, deadline, control)

        async with trio.open_nursery() as nursery:
            for position, part in enumerate(parts):
                nursery.start_soon(one, position, part)
        attempts = sum(o.attempts for o in outcomes)
        error = next((o.error for o in outcomes if o.error is not None), None)
        if error is not None:
            return None, error, attempts, False
        return join([o.value for o in outcomes]), None, attempts, any(o.hedged for o in outcomes)
