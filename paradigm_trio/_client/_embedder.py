"""How a :class:`~paradigm_trio.Client` embeds: the :class:`Embedder`, one per client.

``Client.embed`` and ``Client.stream_embed_batch`` build or check their arguments and hand
them here.  The embedder sends on the one send path (``Sender.send`` with the client's
``EmbeddingsEndpoint``), packs several inputs into one request while the server takes
lists (``EmbeddingLists``: the first refusal switches the model to one input per request,
and a request of several inputs is then sent again one input per request), and builds the
batch kind of embeddings (``EmbeddingKind`` on the batch engine).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from .._config import RetryPolicy, Timeouts
from .._endpoints._embedding_kind import (
    EmbeddingKind,
    EmbeddingLists,
    EmbeddingStream,
    EmbedInput,
    check_pack,
    embedding_defaults,
)
from .._endpoints._embeddings import (
    EmbeddingRequest,
    Embeddings,
    EmbeddingsEndpoint,
    EncodingFormat,
    join,
    singles,
)
from .._endpoints._endpoint import Sender
from .._engine._batch import run_batch
from .._engine._batch_options import BatchOptions
from .._engine._budget import BatchControl
from .._engine._cache import CacheStore
from .._engine._ledger import Ledger
from .._errors import APIStatusError
from .._events import Attempt
from ._core import PlanOf

__all__ = ["Embedder"]


class Embedder:
    """A client's embeddings: one request, one input per request, or a batch."""

    def __init__(
        self, sender: Sender, endpoint: EmbeddingsEndpoint, plan: PlanOf, ledger: Ledger
    ) -> None:
        self._sender, self._endpoint, self._plan, self._ledger = sender, endpoint, plan, ledger
        self.lists = EmbeddingLists(endpoint, ledger)
        """Which models take several inputs per request (learnt from refusals)."""

    def embed(
        self, request: EmbeddingRequest, retry: RetryPolicy | None, timeouts: Timeouts | None
    ) -> Awaitable[Embeddings]:
        """``request`` in one request, or one input per request where lists are refused.

        One input: the engine's coroutine itself (one frame less on its way); several:
        :meth:`_listed`, which falls back to one input per request when refused."""
        if len(request.inputs) <= 1:
            plan = self._plan(self._endpoint, request, retry, timeouts)
            return self._sender.send(self._endpoint, request, plan)
        return self._listed(request, retry, timeouts)

    async def _listed(
        self, request: EmbeddingRequest, retry: RetryPolicy | None, timeouts: Timeouts | None
    ) -> Embeddings:
        lists, sender, endpoint = self.lists, self._sender, self._endpoint
        if not lists.packs(request.model):
            return await self._singly(request, retry, timeouts)
        try:
            plan = self._plan(endpoint, request, retry, timeouts)
            return await sender.send(endpoint, request, plan)
        except APIStatusError as exc:
            if lists.learn(request.model, exc):
                return await self._singly(request, retry, timeouts)
            raise

    async def _singly(
        self, request: EmbeddingRequest, retry: RetryPolicy | None, timeouts: Timeouts | None
    ) -> Embeddings:
        """``request``'s inputs one per request, concurrently; the answers joined (the
        first failure raised)."""
        parts = singles(request)
        answers: list[Embeddings | None] = [None] * len(parts)
        sender, endpoint = self._sender, self._endpoint

        async def one(position: int, part: EmbeddingRequest) -> None:
            plan = self._plan(endpoint, part, retry, timeouts)
            answer: Embeddings = await sender.send(endpoint, part, plan)
            answers[position] = answer

        try:
            async with trio.open_nursery() as nursery:
                for position, part in enumerate(parts):
                    nursery.start_soon(one, position, part)
        except BaseExceptionGroup as group:
            first = group.exceptions[0]
            raise first from first.__cause__
        return join([a for a in answers if a is not None])

    def batch(
        self,
        inputs: Iterable[EmbedInput] | AsyncIterable[EmbedInput],
        options: BatchOptions | None,
        keywords: Mapping[str, Any],
        *,
        dimensions: int | None,
        encoding_format: EncodingFormat | None,
        pack_inputs: int,
        pack_tokens: int,
        cache: CacheStore | None,
        free: Callable[[], bool],
        check_open: Callable[[], None],
        width: int,
        warm_up: Any,
    ) -> AbstractAsyncContextManager[EmbeddingStream]:
        """A batch of embeddings (``Client.stream_embed_batch``): options checked now,
        before anything is read or sent."""
        opts = BatchOptions.of(options, keywords)
        defaults = embedding_defaults(opts, dimensions, encoding_format)
        pack_inputs, pack_tokens = check_pack(pack_inputs, pack_tokens)
        check_open()
        retry, timeouts = opts.retry, opts.timeouts
        sender, endpoint = self._sender, self._endpoint

        def send_one(
            request: EmbeddingRequest,
            *,
            deadline: float,
            control: BatchControl,
            history: list[Attempt],
            hedge: bool = False,
            first_chunk: Callable[[float], None] | None = None,  # (never: not streamed)
        ) -> Awaitable[Embeddings]:
            # Not a coroutine of its own, as the chat batch's (one frame less per request).
            plan = self._plan(endpoint, request, retry, timeouts, deadline, control, hedge=hedge)
            return sender.send(endpoint, request, plan, history)

        kind = EmbeddingKind(
            send_one, defaults, endpoint=endpoint, pack_inputs=pack_inputs,
            pack_tokens=pack_tokens, lists=self.lists,
        )  # fmt: skip
        return run_batch(
            kind, inputs, opts, width=width, stream=EmbeddingStream,
            observers=self._ledger.observers, warm_up=warm_up, cache=cache, free=free,
        )  # fmt: skip
