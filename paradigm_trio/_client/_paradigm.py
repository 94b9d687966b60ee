"""Where any request goes: the :class:`Router` of a :class:`~paradigm_trio.Client`.

The client's methods for Paradigm's own endpoints (``tokenize``, ``query``,
``filter_chunks``, ``document_search``, ``thread_turn``, ``complete``, ``request``) build
their endpoint's request (``_endpoints``: ``_tokenize``, ``_query``, ``_filter_chunks``,
``_document_search``...: validation, body and parser, no I/O) and hand it to the router,
which finds its endpoint (:class:`JsonEndpoint`, one per path; chat and embeddings
requests go to the client's own endpoints) and sends it on the one send path
(``Sender.send`` -> the attempt engine): retries, timeouts, limits, events, statistics and
telemetry are those of every request.  Batches of them (:meth:`Router.batch`) run
:class:`EndpointKind` on the batch engine; a mixed batch takes chat and embeddings
requests too.  Their repeats are a chat batch's: identical deterministic requests (a
tokenize request; a text completion or a chat request with ``temperature=0`` or a
``seed``; embeddings) are sent once and read from the client's response cache, and a
slow request is hedged with ``hedge=``; a thread's turn (it adds to the thread) never
is, nor shared under ``dedupe="all"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

from .._config import RetryPolicy, Timeouts
from .._endpoints._chat import ChatEndpoint
from .._endpoints._completion import ChatCompletion, Usage
from .._endpoints._document_search import DocumentSearchRequest
from .._endpoints._embeddings import EmbeddingRequest, Embeddings, EmbeddingsEndpoint
from .._endpoints._endpoint import Sender
from .._endpoints._endpoint_kind import EndpointKind, EndpointResults, EndpointStream, run_endpoints
from .._endpoints._filter_chunks import FilterRequest
from .._endpoints._json_endpoint import EndpointRequest, JsonEndpoint
from .._endpoints._models import ChatRequest
from .._endpoints._query import QueryRequest
from .._endpoints._text_completion import CompletionRequest, TextCompletion
from .._endpoints._threads import TurnRequest
from .._endpoints._tokenize import TokenizeRequest
from .._engine._attempts import Plan
from .._engine._batch_options import BatchOptions
from .._engine._budget import BatchControl
from .._engine._cache import CacheStore
from .._engine._ledger import Ledger
from .._errors import InvalidRequestError
from .._events import Attempt
from ._core import PlanOf, collect

__all__ = [
    "AnyRequest", "Router", "as_any", "check_request", "collected", "query_maker",
    "tokenize_maker",
]  # fmt: skip

AnyRequest = ChatRequest | EmbeddingRequest | EndpointRequest
"""What a mixed batch sends: any request of any endpoint."""

_OPERATIONS: dict[type, str] = {
    TokenizeRequest: "tokenize",
    QueryRequest: "query",
    FilterRequest: "filter_chunks",
    DocumentSearchRequest: "document_search",
    CompletionRequest: "text_completion",
    TurnRequest: "thread_turn",
}

_ENDPOINTS = (
    TokenizeRequest, QueryRequest, FilterRequest, DocumentSearchRequest, CompletionRequest,
    TurnRequest,
)  # fmt: skip


class Router:
    """Any request to its endpoint, on the client's one send path (one per client)."""

    def __init__(
        self,
        model: str,
        sender: Sender,
        chat: ChatEndpoint,
        embeddings: EmbeddingsEndpoint,
        plan: PlanOf,
        ledger: Ledger,
        cache: CacheStore | None = None,
        free: Callable[[], bool] = lambda: True,
    ) -> None:
        self._model, self._sender, self._plan = model, sender, plan
        self._chat, self._embeddings, self._ledger = chat, embeddings, ledger
        self._cache, self._free = cache, free  # the client's cache; whether a slot is free
        self._json: dict[str, JsonEndpoint] = {}

    def endpoint(self, request: AnyRequest) -> Any:
        """The endpoint of ``request`` (a JSON endpoint: one per path, made when first used)."""
        if isinstance(request, ChatRequest):
            return self._chat
        if isinstance(request, EmbeddingRequest):
            return self._embeddings
        endpoint = self._json.get(request.endpoint)
        if endpoint is None:
            operation = _OPERATIONS.get(type(request), request.endpoint.strip("/"))
            endpoint = self._json[request.endpoint] = JsonEndpoint(
                operation, request.endpoint, self._model, getattr(request, "idempotent", True)
            )
        return endpoint

    def plan(
        self,
        request: AnyRequest,
        retry: RetryPolicy | None,
        timeouts: Timeouts | None,
        deadline: float = float("inf"),
        control: BatchControl | None = None,
        *,
        hedge: bool = False,
    ) -> Plan:
        """The ``Plan`` of any request, with its endpoint (and whether it is idempotent;
        ``hedge``: a batch's hedge)."""
        endpoint = self.endpoint(request)
        plan = self._plan(endpoint, request, retry, timeouts, deadline, control, hedge=hedge)
        plan.idempotent = endpoint.idempotent
        return plan

    def send(
        self, request: AnyRequest, plan: Plan, history: list[Attempt] | None = None
    ) -> Awaitable[Any]:
        """The engine's coroutine for any request on its endpoint (encoded now: an error
        raises here, before anything is sent)."""
        return self._sender.send(self.endpoint(request), request, plan, history)

    def batch(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        make: Callable[[object, int], AnyRequest],
        options: BatchOptions | None,
        keywords: Mapping[str, Any],
        *,
        check_open: Callable[[], None],
        width: int,
        warm_up: Any,
    ) -> AbstractAsyncContextManager[EndpointStream]:
        """A batch of requests of any endpoints (``make`` turns an item into its request;
        the batch's sampling keywords fill a chat request's unset fields)."""
        opts = BatchOptions.of(options, keywords)
        if opts.stream:
            raise ValueError("stream: not an option of an endpoint batch (chat only)")
        check_open()
        retry, timeouts, defaults = opts.retry, opts.timeouts, opts.defaults()

        def filled(item: object, index: int) -> AnyRequest:
            request = make(item, index)
            if isinstance(request, ChatRequest) and defaults:
                return _filled(request, defaults)
            return request

        def send_one(
            request: AnyRequest,
            *,
            deadline: float,
            control: BatchControl,
            history: list[Attempt],
            hedge: bool = False,
            first_chunk: Callable[[float], None] | None = None,  # (never: not streamed)
        ) -> Awaitable[Any]:
            plan = self.plan(request, retry, timeouts, deadline, control, hedge=hedge)
            return self.send(request, plan, history)

        kind = EndpointKind(
            send_one, filled if defaults else make, _usage, endpoint_of=self.endpoint
        )
        return run_endpoints(
            kind, items, opts, width=width, observers=self._ledger.observers, warm_up=warm_up,
            cache=self._cache, free=self._free,
        )  # fmt: skip


async def collected(cm: AbstractAsyncContextManager[EndpointStream]) -> EndpointResults:
    """An endpoint batch run to its end: its results in input order, with statistics."""
    results = EndpointResults()
    results.statistics = await collect(cm, results)
    return results


def tokenize_maker(model: str | None) -> Callable[[object, int], TokenizeRequest]:
    """A tokenize batch's item (what ``Client.tokenize`` takes) to its request."""

    def make(item: object, index: int) -> TokenizeRequest:
        if isinstance(item, TokenizeRequest):
            return item
        return TokenizeRequest.of(item, model=model)

    return make


def query_maker(collection: str | None, n: int | None) -> Callable[[object, int], QueryRequest]:
    """A query batch's item (a query, a list of queries, a ``QueryRequest``) to its request."""

    def make(item: object, index: int) -> QueryRequest:
        if isinstance(item, QueryRequest):
            return item
        if isinstance(item, str):
            return QueryRequest(query=item, collection=collection, n=n)
        if isinstance(item, Sequence):
            return QueryRequest(query=tuple(item), collection=collection, n=n)
        raise InvalidRequestError(
            f"a {type(item).__name__}; pass a query, a list of queries or a QueryRequest"
        )

    return make


def _filled(request: ChatRequest, defaults: Mapping[str, Any]) -> ChatRequest:
    missing = {k: v for k, v in defaults.items() if getattr(request, k) is None}
    return replace(request, **missing) if missing else request


def check_request(request: object) -> None:
    """Refuse what is not a request of any endpoint."""
    if not isinstance(request, (ChatRequest, EmbeddingRequest, *_ENDPOINTS)):
        raise InvalidRequestError(
            f"a {type(request).__name__} is not a request of any endpoint (ChatRequest, "
            "EmbeddingRequest, TokenizeRequest, QueryRequest, FilterRequest, "
            "DocumentSearchRequest, CompletionRequest, TurnRequest)"
        )


def as_any(item: object, index: int) -> AnyRequest:
    """A mixed batch's item, checked to be a request of some endpoint."""
    check_request(item)
    return item  # type: ignore[return-value]


def _usage(request: object, value: object) -> Usage | None:
    if isinstance(value, ChatCompletion | Embeddings | TextCompletion):
        return value.usage
    return None
