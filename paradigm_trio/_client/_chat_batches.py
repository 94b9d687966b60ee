"""How a :class:`~paradigm_trio.Client` sends a chat batch: :class:`ChatBatches`, one per
client.

``Client.stream_batch`` hands its arguments here, as ``Client.stream_embed_batch`` hands
its own to the ``Embedder`` and the endpoint batches go to the ``Router``.  A chat batch
is the chat completions' batch kind (``_chat_kind.stream_batch`` on the batch engine)
with a ``send_one`` made here: one item's ``Plan`` (the batch's deadline, its
``BatchControl``, a hedge's single attempt), then ``Sender.send`` with the client's
``ChatEndpoint``, or ``Sender.stream`` for a batch of ``stream=True`` (read whole inside
the attempt, so a break midway is resent whole; ``first_chunk``, when the batch hedges on
the time to first token, is told when an attempt's first chunk arrives).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._endpoints import _chat_kind
from .._endpoints._chat import ChatEndpoint
from .._endpoints._chat_kind import BatchInput, BatchStream
from .._endpoints._completion import ChatCompletion
from .._endpoints._endpoint import Sender
from .._endpoints._models import ChatRequest
from .._engine._batch_options import BatchOptions
from .._engine._budget import BatchControl
from .._engine._cache import CacheStore
from .._engine._ledger import Ledger
from .._events import Attempt
from ._core import PlanOf

__all__ = ["ChatBatches"]


class ChatBatches:
    """A client's chat batches (``Client.stream_batch``, ``Client.chat_batch``)."""

    __slots__ = ("_chat", "_ledger", "_plan", "_sender")

    def __init__(self, sender: Sender, chat: ChatEndpoint, plan: PlanOf, ledger: Ledger) -> None:
        self._sender, self._chat, self._plan, self._ledger = sender, chat, plan, ledger

    def batch(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        options: BatchOptions | None,
        keywords: Mapping[str, Any],
        *,
        cache: CacheStore | None,
        free: Callable[[], bool],
        check_open: Callable[[], None],
        width: int,
        warm_up: Any,
    ) -> AbstractAsyncContextManager[BatchStream]:
        """A chat batch: options checked now, before anything is read or sent."""
        opts = BatchOptions.of(options, keywords)
        check_open()
        retry, timeouts, stream = opts.retry, opts.timeouts, opts.stream
        sender, chat, plan_of = self._sender, self._chat, self._plan

        def send_one(
            request: ChatRequest,
            *,
            deadline: float,
            control: BatchControl,
            history: list[Attempt],
            hedge: bool = False,
            first_chunk: Callable[[float], None] | None = None,
        ) -> Awaitable[ChatCompletion]:
            # Not a coroutine of its own: one frame less on every request's way (each
            # wake-up passes through every frame awaiting).
            plan = plan_of(
                chat, request, retry, timeouts, deadline, control, stream=stream, hedge=hedge
            )
            if stream:
                return sender.stream(chat, request, plan, history, first_chunk)
            return sender.send(chat, request, plan, history)

        return _chat_kind.stream_batch(
            send_one, requests, opts, endpoint=chat, width=width,
            observers=self._ledger.observers, warm_up=warm_up, cache=cache, free=free,
        )  # fmt: skip
