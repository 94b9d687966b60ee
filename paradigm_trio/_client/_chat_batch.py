"""The :class:`Client`'s batches of chat completions: ``stream_batch`` and ``chat_batch``.

:class:`ChatBatchMethods`, which ``Client`` inherits, validate the batch's options and hand
``_chat_kind.stream_batch`` a ``send_one`` that sends one item through the attempt engine
(``Sender.send`` of the chat endpoint, or ``Streamer.complete`` for ``stream=True``): the
batch engine never imports the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Unpack

from .._endpoints import _chat_kind
from .._endpoints._chat_kind import BatchInput, BatchResults, BatchStream
from .._endpoints._completion import ChatCompletion
from .._endpoints._models import ChatRequest
from .._engine._batch_options import BatchKeywords, BatchOptions
from .._engine._budget import BatchControl
from .._events import Attempt
from ._core import ClientCore, collect

__all__ = ["ChatBatchMethods"]


class ChatBatchMethods(ClientCore):
    """The :class:`Client`'s chat batch methods (``Client`` inherits them)."""

    def stream_batch(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> AbstractAsyncContextManager[BatchStream]:
        """Send many requests concurrently; get results as they finish.

        ::

            async with client.stream_batch(requests) as results:
                async for result in results:   # completion order
                    ...

        ``requests`` is any iterable or async iterable of :class:`ChatRequest` or bare
        message lists, read lazily: memory is bounded by ``Limits.concurrency``, not by the
        batch size.  Every item yields exactly one :class:`BatchResult` (its ``index`` is
        its input position).

        The keywords are the fields of :class:`BatchOptions` (``on_error``, ``deadline``,
        ``on_progress``, ``retry``, ``timeouts``, ``retry_budget``, ``circuit_breaker``,
        ``unreachable_after``, ``stream``, ``warm_up``, ``dedupe``, ``hedge``, and the sampling
        fields
        ``model``, ``temperature``, ``max_tokens``, ``top_p``, ``seed`` that fill the fields
        an item leaves unset); or pass a prepared ``options=BatchOptions(...)``, which keywords
        override.

        Leaving the ``async with`` block early cancels what is still running.

        Raises:
            ValueError: an invalid option (before anything is sent).
            RuntimeError: the client is closed.
        """
        opts = BatchOptions.of(options, keywords)
        self._check_open()
        retry, timeouts, stream = opts.retry, opts.timeouts, opts.stream
        sender, chat = self._sender, self._chat

        def send_one(
            request: ChatRequest,
            *,
            deadline: float,
            control: BatchControl,
            history: list[Attempt],
            hedge: bool = False,
        ) -> Awaitable[ChatCompletion]:
            # Not a coroutine of its own: one frame less on every request's way (each
            # wake-up passes through every frame awaiting).
            plan = self._plan(
                chat, request, retry, timeouts, deadline, control, stream=stream, hedge=hedge
            )
            if stream:
                return self._streamer.complete(request, plan, history)
            return sender.send(chat, request, plan, history)

        return _chat_kind.stream_batch(
            send_one,
            requests,
            opts,
            endpoint=chat,
            width=self.limits.concurrency,
            observers=self._engine.ledger.observers,
            warm_up=self.warm_up,
            cache=self._cache,
            free=self._slot_free,
        )

    async def chat_batch(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> BatchResults:
        """Send many requests concurrently; return every result, in input order.

        Takes the same arguments as :meth:`stream_batch` and returns a :class:`BatchResults`
        (a list of :class:`BatchResult`, one per input item, with ``.statistics``).  With
        ``on_error="raise"`` it raises :class:`BatchError` whose ``results`` hold the
        results finished before the failure.
        """
        results = BatchResults()
        cm = self.stream_batch(requests, options=options, **keywords)
        results.statistics = await collect(cm, results)
        return results
