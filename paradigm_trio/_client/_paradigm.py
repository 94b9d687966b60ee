"""Paradigm's own endpoints on the client: token counts, retrieval, document search, and
batches of any endpoint.

:class:`ParadigmMethods` are the :class:`~paradigm_trio.Client`'s methods for them, which
``Client`` inherits.  Each builds its endpoint's request (``_tokenize``, ``_query``,
``_filter_chunks``, ``_document_search``: validation, body and parser, no I/O) and sends
it on the client's one path for plain JSON (:meth:`ParadigmMethods._endpoint` ->
``Client._fetch`` -> the attempt engine): retries, timeouts, limits, events, statistics
and telemetry are those of every request.  Batches run :class:`EndpointKind` on the batch
engine; a mixed batch takes chat and embeddings requests too.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, TypeVar, Unpack

from .._config import RetryPolicy, Timeouts
from .._endpoints._completion import ChatCompletion, Usage
from .._endpoints._document_search import DocumentAnswer, DocumentSearchRequest
from .._endpoints._embeddings import EmbeddingRequest, Embeddings
from .._endpoints._endpoint_kind import EndpointKind, EndpointResults, EndpointStream, run_endpoints
from .._endpoints._filter_chunks import FilteredChunks, FilterRequest
from .._endpoints._json_endpoint import EndpointRequest, JsonEndpoint
from .._endpoints._models import ChatRequest
from .._endpoints._query import QueryRequest, QueryResult
from .._endpoints._text_completion import CompletionRequest, TextCompletion
from .._endpoints._threads import Turn, TurnRequest
from .._endpoints._tokenize import TokenCount, TokenizeRequest
from .._engine._batch_options import BatchKeywords, BatchOptions
from .._engine._budget import BatchControl
from .._errors import InvalidRequestError
from .._events import Attempt
from ._core import ClientCore, collect

__all__ = ["AnyRequest", "ParadigmMethods"]

T = TypeVar("T")

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


class ParadigmMethods(ClientCore):
    """The :class:`Client`'s methods for Paradigm's own endpoints (``Client`` inherits them)."""

    # ---------------------------------------------------------------- one send path

    def _json_endpoint(self, request: EndpointRequest) -> JsonEndpoint:
        """The endpoint of ``request`` (one per path and client, made when first used)."""
        endpoints: dict[str, JsonEndpoint] = self.__dict__.setdefault("_json_endpoints", {})
        endpoint = endpoints.get(request.endpoint)
        if endpoint is None:
            operation = _OPERATIONS.get(type(request), request.endpoint.strip("/"))
            endpoint = endpoints[request.endpoint] = JsonEndpoint(
                operation, request.endpoint, self.model
            )
        return endpoint

    def _endpoint(
        self, request: EndpointRequest, plan: Any, history: list[Attempt] | None = None
    ) -> Awaitable[Any]:
        """The engine's coroutine for an endpoint's request, on the one send path
        (encoded now: an error raises here, before anything is sent)."""
        return self._sender.send(self._json_endpoint(request), request, plan, history)

    def _plan_for(
        self,
        request: AnyRequest,
        retry: RetryPolicy | None,
        timeouts: Timeouts | None,
        deadline: float = float("inf"),
        control: BatchControl | None = None,
    ) -> Any:
        """The ``Plan`` of any request, with its endpoint."""
        if isinstance(request, ChatRequest):
            endpoint: Any = self._chat
        elif isinstance(request, EmbeddingRequest):
            endpoint = self._embeddings
        else:
            endpoint = self._json_endpoint(request)
        return self._plan(endpoint, request, retry, timeouts, deadline, control)

    def _any(
        self, request: AnyRequest, plan: Any, history: list[Attempt] | None = None
    ) -> Awaitable[Any]:
        """Any request on its endpoint's path."""
        if isinstance(request, ChatRequest):
            return self._sender.send(self._chat, request, plan, history)
        if isinstance(request, EmbeddingRequest):
            return self._sender.send(self._embeddings, request, plan, history)
        return self._endpoint(request, plan, history)

    async def request(
        self,
        request: AnyRequest,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        deadline: float = float("inf"),
    ) -> Any:
        """Send one prepared request of any endpoint and return its answer.

        A :class:`ChatRequest` gives a :class:`ChatCompletion`, an
        :class:`EmbeddingRequest` :class:`Embeddings`, a :class:`TokenizeRequest` a
        :class:`TokenCount`, a :class:`QueryRequest` a list of :class:`QueryResult`, a
        :class:`FilterRequest` :class:`FilteredChunks`, a :class:`DocumentSearchRequest`
        a :class:`DocumentAnswer`.  ``deadline`` is as for :meth:`Client.send`.
        """
        _check_request(request)
        return await self._any(request, self._plan_for(request, retry, timeouts, deadline))

    # ---------------------------------------------------------------- single requests

    async def tokenize(
        self,
        messages_or_prompt: str | Sequence[Mapping[str, Any]] | ChatRequest | TokenizeRequest,
        *,
        model: str | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> TokenCount:
        """Count tokens with the model's own tokenizer (``POST /tokenize``).

        Args:
            messages_or_prompt: a prompt (a string), a conversation (a list of
                messages), a :class:`ChatRequest` (its messages and model) or a
                :class:`TokenizeRequest`.
            model: the LLM whose tokenizer counts (default: the request's, then the
                client's ``model``; embedding models have no tokenize endpoint).
            custom_id, retry, timeouts: as for :meth:`chat`.

        Returns the :class:`TokenCount` (``.count``); the three answer shapes the
        reference shows are all read.

        Raises:
            InvalidRequestError: an empty prompt, malformed messages; nothing was sent.
            APIError: as for :meth:`chat`.
        """
        request = TokenizeRequest.of(messages_or_prompt, model=model, custom_id=custom_id)
        answer: TokenCount = await self._endpoint(request, self._plan_for(request, retry, timeouts))
        return answer

    async def query(
        self,
        query: str | Sequence[str],
        *,
        collection: str | None = None,
        n: int | None = None,
        extra: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> list[QueryResult]:
        """The top chunks of a collection for one query or several (``POST /query``).

        Returns one :class:`QueryResult` per query, in order, each with its
        :class:`Chunk` objects (``text``, ``score``, ``metadata``, ``uuid``).
        ``collection`` and ``n`` (chunks per query) default to the server's
        (``"base_collection"`` and 5 per the reference).
        """
        request = QueryRequest(
            query=query if isinstance(query, str) else tuple(query), collection=collection,
            n=n, extra=extra or {}, custom_id=custom_id,
        )  # fmt: skip
        answer: list[QueryResult] = await self._endpoint(
            request, self._plan_for(request, retry, timeouts)
        )
        return answer

    async def filter_chunks(
        self,
        query: str,
        chunk_ids: Sequence[str],
        *,
        n: int | None = None,
        model: str | None = None,
        extra: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> FilteredChunks:
        """Rerank and filter chunks against a query (``POST /filter/chunks``).

        ``chunk_ids`` are chunk UUIDs (``Chunk.uuid`` from :meth:`query`); ``n`` keeps
        the first ``n`` that pass; ``model`` is the reranker (the server's default when
        not given).  The chunks come back with their ``filter_score`` as ``score``.
        """
        request = FilterRequest(
            query=query, chunk_ids=tuple(chunk_ids), model=model, n=n, extra=extra or {},
            custom_id=custom_id,
        )  # fmt: skip
        answer: FilteredChunks = await self._endpoint(
            request, self._plan_for(request, retry, timeouts)
        )
        return answer

    async def document_search(
        self,
        query: str,
        *,
        workspace_ids: Sequence[int] | None = None,
        file_ids: Sequence[int] | None = None,
        company_scope: bool | None = None,
        private_scope: bool | None = None,
        chat_session_id: int | None = None,
        model: str | None = None,
        private: bool | None = None,
        tool: str | None = None,
        generation_instructions: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        rewrite_query: bool | None = None,
        extra: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> DocumentAnswer:
        """Answer a question from documents (``POST /chat/document-search``).

        **Deprecated by Paradigm** in favour of the v3 threads API; supported because it
        is what runs today.  The scope is the union of ``workspace_ids``, ``file_ids``,
        ``company_scope`` and ``private_scope``; ``tool="VisionDocumentSearch"`` retrieves
        with vision.  Fields left ``None`` are not sent (the server's defaults stand).
        Returns a :class:`DocumentAnswer`: the ``answer``, and the ``documents`` with the
        ``extracts`` it used.
        """
        request = DocumentSearchRequest(
            query=query, workspace_ids=workspace_ids, file_ids=file_ids,  # type: ignore[arg-type]
            company_scope=company_scope, private_scope=private_scope,
            chat_session_id=chat_session_id, model=model, private=private, tool=tool,
            generation_instructions=generation_instructions, extra_body=extra_body,
            rewrite_query=rewrite_query, extra=extra or {}, custom_id=custom_id,
        )  # fmt: skip
        answer: DocumentAnswer = await self._endpoint(
            request, self._plan_for(request, retry, timeouts)
        )
        return answer

    async def thread_turn(
        self,
        query: str,
        *,
        agent_id: int | None = None,
        ml_model: str | None = None,
        workspace_ids: Sequence[int] | None = None,
        file_ids: Sequence[int] | None = None,
        company_scope: bool | None = None,
        private_scope: bool | None = None,
        extra: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> Turn:
        """Start an agent thread with its first turn (``POST /api/v3/threads/turns``,
        **beta** in Paradigm; the successor of :meth:`document_search`).

        The v3 URL is the client's root with ``/api/v2`` replaced by ``/api/v3``.  The
        other fields of the reference (``max_steps``, ``response_format``...) are those
        of :class:`TurnRequest`, sent with :meth:`request`.  Returns the :class:`Turn`
        (``turn.text``: the agent's answer).
        """
        request = TurnRequest(
            query=query, agent_id=agent_id, ml_model=ml_model,
            workspace_ids=workspace_ids, file_ids=file_ids,  # type: ignore[arg-type]
            company_scope=company_scope, private_scope=private_scope, extra=extra or {},
            custom_id=custom_id,
        )  # fmt: skip
        answer: Turn = await self._endpoint(request, self._plan_for(request, retry, timeouts))
        return answer

    async def complete(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        extra: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> TextCompletion:
        """A legacy text completion (``POST /completions``; not streamed): the
        :class:`TextCompletion` (``.text``).  Other fields: :class:`CompletionRequest`."""
        request = CompletionRequest(
            prompt=prompt, model=model, max_tokens=max_tokens, temperature=temperature,
            extra=extra or {}, custom_id=custom_id,
        )  # fmt: skip
        answer: TextCompletion = await self._endpoint(
            request, self._plan_for(request, retry, timeouts)
        )
        return answer

    # ---------------------------------------------------------------- batches

    def stream_requests(
        self,
        requests: Iterable[Any] | AsyncIterable[Any],
        *,
        options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> AbstractAsyncContextManager[EndpointStream]:
        """Send requests of any endpoints concurrently, mixed in one batch; get one
        :class:`EndpointResult` per item as each finishes.

        Each item is a :class:`ChatRequest`, :class:`EmbeddingRequest`,
        :class:`TokenizeRequest`, :class:`QueryRequest`, :class:`FilterRequest` or
        :class:`DocumentSearchRequest` (anything else is that item's
        :class:`InvalidRequestError`); ``result.value`` is what :meth:`request` returns.
        The guarantees and keywords are those of :meth:`Client.stream_batch` (the sampling
        keywords fill unset fields of chat requests only; ``stream`` is refused).
        """
        return self._run_endpoints(requests, _as_any, options, keywords)

    async def batch_requests(
        self,
        requests: Iterable[Any] | AsyncIterable[Any],
        *,
        options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> EndpointResults:
        """:meth:`Client.stream_requests`, its results in input order (an
        :class:`EndpointResults`, with ``.statistics``)."""
        return await self._collect(self.stream_requests(requests, options=options, **keywords))

    async def tokenize_batch(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> EndpointResults:
        """Count the tokens of many prompts or conversations concurrently, under the
        client's limits; one :class:`EndpointResult` per item, in input order, whose
        ``value`` is a :class:`TokenCount`.

        Each item is what :meth:`tokenize` takes (a string, a list of messages, a
        :class:`ChatRequest` or a :class:`TokenizeRequest`); ``model`` fills the items'
        unset model.  Other keywords as for :meth:`Client.stream_batch`.
        """
        model = keywords.get("model") or (options.model if options is not None else None)

        def make(item: object, index: int) -> TokenizeRequest:
            if isinstance(item, TokenizeRequest):
                return item
            return TokenizeRequest.of(item, model=model)

        cm = self._run_endpoints(items, make, options, keywords)
        return await self._collect(cm)

    async def query_batch(
        self,
        queries: Iterable[Any] | AsyncIterable[Any],
        *,
        collection: str | None = None,
        n: int | None = None,
        options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> EndpointResults:
        """Retrieve the top chunks for many queries concurrently; one
        :class:`EndpointResult` per item, in input order, whose ``value`` is the list of
        :class:`QueryResult` of :meth:`query`.

        Each item is a query (a string), a list of queries sent together, or a
        :class:`QueryRequest`; ``collection`` and ``n`` fill those of strings and lists.
        """

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

        cm = self._run_endpoints(queries, make, options, keywords)
        return await self._collect(cm)

    def _run_endpoints(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        make: Any,
        options: BatchOptions | None,
        keywords: Mapping[str, Any],
    ) -> AbstractAsyncContextManager[EndpointStream]:
        opts = BatchOptions.of(options, keywords)
        if opts.stream:
            raise ValueError("stream: not an option of an endpoint batch (chat only)")
        if opts.hedge:
            raise ValueError("hedge: not an option of an endpoint batch (chat only)")
        self._check_open()
        retry, timeouts, defaults = opts.retry, opts.timeouts, opts.defaults()

        def send_one(
            request: AnyRequest,
            *,
            deadline: float,
            control: BatchControl,
            history: list[Attempt],
            hedge: bool = False,  # (never: refused above)
        ) -> Awaitable[Any]:
            if isinstance(request, ChatRequest) and defaults:
                request = _filled(request, defaults)
            plan = self._plan_for(request, retry, timeouts, deadline, control)
            return self._any(request, plan, history)

        kind = EndpointKind(send_one, make, _usage)
        return run_endpoints(
            kind, items, opts, width=self.limits.concurrency,
            observers=self._engine.ledger.observers, warm_up=self.warm_up,
        )  # fmt: skip

    async def _collect(self, cm: AbstractAsyncContextManager[EndpointStream]) -> EndpointResults:
        results = EndpointResults()
        results.statistics = await collect(cm, results)
        return results


def _filled(request: ChatRequest, defaults: Mapping[str, Any]) -> ChatRequest:
    missing = {k: v for k, v in defaults.items() if getattr(request, k) is None}
    return replace(request, **missing) if missing else request


def _check_request(request: object) -> None:
    if not isinstance(request, (ChatRequest, EmbeddingRequest, *_ENDPOINTS)):
        raise InvalidRequestError(
            f"a {type(request).__name__} is not a request of any endpoint (ChatRequest, "
            "EmbeddingRequest, TokenizeRequest, QueryRequest, FilterRequest, "
            "DocumentSearchRequest, CompletionRequest, TurnRequest)"
        )


def _as_any(item: object, index: int) -> AnyRequest:
    _check_request(item)
    return item  # type: ignore[return-value]


def _usage(request: object, value: object) -> Usage | None:
    if isinstance(value, ChatCompletion | Embeddings | TextCompletion):
        return value.usage
    return None
