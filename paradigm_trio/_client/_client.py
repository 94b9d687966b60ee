"""The :class:`Client`: one class holding every public method (configuration, lifecycle,
chat, streams, embeddings, batches), each a thin layer over the one send path.

The methods validate their arguments, build a ``Plan`` (:meth:`Client._plan`) and hand the
request of an endpoint (``_endpoints``: chat, embeddings) to ``Sender.send``, a stream to
a ``ChatStream`` (live, on ``Sender.open``), many requests to a collaborator that runs
their batch kind (``ChatBatches``, ``Embedder``, ``Router``); the attempt engine
(``_engine``) does the rest.
Where a request waits and how it is cancelled: see ``docs/cancellation.md``.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, Unpack

import httpx2
import trio

from .._config import DEFAULT_BASE_URL, DEFAULT_MODEL, Limits, RetryPolicy, Timeouts
from .._endpoints._chat import ChatEndpoint
from .._endpoints._chat_kind import BatchInput, BatchResults, BatchStream
from .._endpoints._completion import ChatCompletion, ModelInfo
from .._endpoints._document_search import DocumentAnswer, DocumentSearchRequest
from .._endpoints._embedding_kind import (
    EmbeddingResults,
    EmbeddingStream,
    EmbedInput,
)
from .._endpoints._embeddings import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_PACK_INPUTS,
    DEFAULT_PACK_TOKENS,
    EmbeddingRequest,
    Embeddings,
    EmbeddingsEndpoint,
    EncodingFormat,
)
from .._endpoints._endpoint import Endpoint, Request, Sender, through_cache
from .._endpoints._endpoint_kind import EndpointResults, EndpointStream
from .._endpoints._filter_chunks import FilteredChunks, FilterRequest
from .._endpoints._json_endpoint import EndpointRequest
from .._endpoints._models import ChatOptions, ChatRequest, make_request, sealed_request
from .._endpoints._query import QueryRequest, QueryResult
from .._endpoints._resume import Restart
from .._endpoints._streaming import ChatStream
from .._endpoints._text_completion import CompletionRequest, TextCompletion
from .._endpoints._threads import Turn, TurnRequest
from .._endpoints._tokenize import TokenCount, TokenizeRequest
from .._engine._attempts import Plan, idempotency_key
from .._engine._batch_options import BatchKeywords, BatchOptions
from .._engine._budget import BatchControl
from .._engine._cache import ResponseCache
from .._engine._ledger import Ledger
from .._events import ClientStatistics, Event
from .._quota._shared import SharedRateLimiter
from .._redact import mask_credentials
from .._transport import CertTypes, ProxyTypes, VerifyTypes
from ._chat_batches import ChatBatches
from ._core import ClientState, check_trio, collect
from ._embedder import Embedder
from ._files_api import Files
from ._paradigm import (
    AnyRequest,
    Router,
    as_any,
    check_request,
    collected,
    query_maker,
    tokenize_maker,
)
from ._setup import (
    BASE_URL_ENV,
    cache_of,
    check_base_url,
    check_http,
    check_key,
    check_models,
    engine_of,
    http_of,
    transport_of,
)

__all__ = ["Client", "ClientState"]


class Client:
    """A trio client for the Paradigm chat-completions API.

    Use it as an async context manager (``async with Client() as client:``); it can also be
    used without one, in which case call :meth:`aclose` when done.

    Args:
        api_key: the API key; defaults to ``$PARADIGM_API_KEY``.  Required: at least 8
            printable ASCII characters, without spaces.  It is sent only in the
            ``Authorization`` header and never shown: it is removed from everything the
            server sends back before an error, record or event is built from it (see
            :doc:`/security`).
        base_url: the API root; defaults to ``$PARADIGM_BASE_URL``, then
            ``https://paradigm.lighton.ai/api/v2``.
        model: the model used by chat requests that name none.
        embedding_model: the model used by embeddings requests that name none.
        pack_embeddings: whether several embedding inputs may share a request (default
            ``True``).  Paradigm documents ``input`` as a string: the first request of
            several inputs that the server refuses (400, 422) switches that model to one
            input per request for this client (an ``EmbeddingPackingDisabled`` event and
            a log record say so); ``False`` sends one input per request from the start.
        retry: the default :class:`RetryPolicy`.
        timeouts: the default :class:`Timeouts`.
        limits: :class:`Limits` (concurrency, rates), client-wide.
        headers: extra headers sent with every request.
        http_client: an ``httpx2.AsyncClient`` to send with.  It is *not* closed by
            :meth:`aclose` (whoever made it owns it), and its connection pool should allow
            at least ``limits.concurrency`` connections.
        transport: an ``httpx2.AsyncBaseTransport`` (e.g. ``httpx2.MockTransport``) for the
            client's own ``httpx2.AsyncClient``.  Not together with ``http_client``.
        on_event: a callback receiving every instrumentation event (see ``_events``).
        proxy: send every request through this proxy (``"http://user:pass@proxy:3128"``,
            an ``https://`` URL for TLS to the proxy, or an ``httpx2.Proxy``), whatever the
            environment says.  By default the proxy comes from ``HTTPS_PROXY``,
            ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``, as in httpx2.
        verify: which servers to trust: ``True`` (the default CAs, or
            ``$SSL_CERT_FILE``), a CA bundle path, an ``ssl.SSLContext`` (e.g.
            :func:`system_trust_store`), or ``False`` (no verification; logs a warning).
        cert: a client certificate for mutual TLS: a PEM file with the certificate and
            key, ``(certificate, key)`` or ``(certificate, key, password)``.
        trust_env: read the proxy and ``SSL_CERT_FILE``/``SSL_CERT_DIR`` environment
            variables (default ``True``).
        cache: a :class:`ResponseCache` (opt-in): the batches' deterministic requests are
            answered from it when it holds their answer, and their successful answers are
            stored in it, under the base URL's host, the endpoint and the body (never the
            key).  Opened with the client (``async with``, or the first batch).

    ``proxy``, ``verify``, ``cert`` and ``trust_env`` configure the client's own
    :class:`TrioTransport`; with ``transport=`` or ``http_client=``, set them there.
    See the how-to "Behind a corporate proxy or a private CA".

    The client runs under trio only: its methods called from asyncio (or another async
    library) raise :class:`RuntimeError` saying so.

    Raises:
        ConfigurationError: no API key, a malformed key or base URL (a host that cannot
            be looked up among them: an empty label as in ``a..b``, a label over 63
            characters, characters a host name cannot have), both ``http_client``
            and ``transport``, or either of them from ``httpx`` rather than ``httpx2``; a
            proxy URL that is not ``http://`` or ``https://``; a CA bundle or client
            certificate that cannot be loaded; network options with your own transport.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        embedding_model: str = DEFAULT_EMBEDDING_MODEL,
        pack_embeddings: bool = True,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx2.AsyncClient | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        on_event: Callable[[Event], object] | None = None,
        proxy: ProxyTypes | None = None,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        cache: ResponseCache | None = None,
    ) -> None:
        key = check_key(api_key)
        url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self._base_url = check_base_url(url)
        check_models(model, embedding_model, pack_embeddings)
        check_http(http_client, transport)
        network = {"proxy": proxy, "verify": verify, "cert": cert, "trust_env": trust_env}
        self._api_key = key
        self.model = model
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        self._owns_http = http_client is None
        self._httpx = http_client
        self._direct = transport_of(http_client, transport, network, self.limits.concurrency)
        self._http = http_of(self._base_url, key, headers, http_client, self._direct)
        self._engine = engine_of(self.limits, Ledger(on_event))
        self._limiter = self._engine.limiter
        rates = self._engine.rates
        self._shared = rates if isinstance(rates, SharedRateLimiter) else None
        self._sender = Sender(self._engine, self._http)
        self._chat = ChatEndpoint(model, self._http.redactor)
        self._embeddings = EmbeddingsEndpoint(embedding_model, packing=pack_embeddings)
        self._embedder = Embedder(self._sender, self._embeddings, self._plan, self._engine.ledger)
        self._chat_batches = ChatBatches(self._sender, self._chat, self._plan, self._engine.ledger)
        self._cache = cache_of(cache, self._base_url)
        self._router = Router(
            model, self._sender, self._chat, self._embeddings, self._plan, self._engine.ledger,
            self._cache, self._slot_free,
        )  # fmt: skip
        self.files = Files(self._plan, self._http, self._sender)
        """The API's documents: upload, list, get, delete, wait (:class:`Files`)."""
        self._state = ClientState.UNOPENED
        self._exit = AsyncExitStack()

    @property
    def base_url(self) -> str:
        """The API root every path is appended to (a password in it shows as ``***``)."""
        return mask_credentials(self._base_url)

    @property
    def state(self) -> ClientState:
        """:class:`ClientState` of this client."""
        return self._state

    def __repr__(self) -> str:
        return (
            f"<Client base_url={self.base_url!r} model={self.model!r} api_key='***' "
            f"state={self._state.name} concurrency={self.limits.concurrency}>"
        )

    async def __aenter__(self) -> Self:
        if self._state is not ClientState.UNOPENED:
            raise RuntimeError(
                "a Client can be opened once: it is already "
                + ("open" if self._state is ClientState.OPENED else "closed")
            )
        check_trio()
        if self._cache is not None:
            await self._cache.open()
        if self._shared is not None:
            await self._exit.enter_async_context(self._shared.running())
        self._state = ClientState.OPENED
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._exit.__aexit__(exc_type, exc, tb)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the client and its connections (if it made them).  Idempotent.

        A client with a shared quota leaves it in ``async with`` (its heartbeat is
        removed, pending updates sent), not here.
        """
        check_trio()
        if self._state is not ClientState.CLOSED:
            self._state = ClientState.CLOSED
            if self._cache is not None:
                await self._cache.aclose()
            if self._owns_http and self._direct is not None:
                with trio.CancelScope(shield=True):
                    await self._direct.aclose()
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ statistics

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of this client's counters."""
        return self._engine.ledger.statistics(int(self._limiter.total_tokens))

    async def warm_up(
        self,
        connections: int | None = None,
        *,
        timeouts: Timeouts | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Open connections to the server now, for the requests to come (a batch with
        ``warm_up=True`` does it itself).  Returns how many were opened.

        Opens ``connections`` (default: ``Limits.concurrency``) less those already open
        and idle (or being opened), all at once, within ``timeouts.connect`` (the client's
        by default).  A request sent meanwhile takes one of them rather than opening its
        own.  A connection that cannot be opened raises nothing: the request that needed
        it reports why.  ``await nursery.start(client.warm_up)`` returns at once and opens
        them in the background.  Only on the client's own transport (with
        ``http_client=`` or ``transport=``: returns 0).
        """
        self._check_open()
        count = self.limits.concurrency if connections is None else connections
        connect = (timeouts or self.timeouts).connect
        return await self._http.warm_up(count, connect, task_status)

    def _batch_setting(self) -> dict[str, Any]:
        """What every batch of this client shares: the open check, its width, its warm-up."""
        return {
            "check_open": self._check_open,
            "width": self.limits.concurrency,
            "warm_up": self.warm_up,
        }

    def _route(
        self, request: EndpointRequest, retry: RetryPolicy | None, timeouts: Timeouts | None
    ) -> Awaitable[Any]:
        """One request of Paradigm's own endpoints, on its endpoint's send path."""
        return self._router.send(request, self._router.plan(request, retry, timeouts))

    def _check_open(self) -> None:
        """Refuse a call on a closed client, or from outside trio (every call checks)."""
        if self._state is ClientState.CLOSED:
            raise RuntimeError("this Client is closed; create a new one")
        check_trio()

    def _slot_free(self) -> bool:
        """Whether a request could take a concurrency slot now, without waiting."""
        return self._engine.limiter.available_tokens > 0

    def _plan(
        self,
        endpoint: Endpoint[Any, Any] | None,
        request: Request | None,
        retry: RetryPolicy | None,
        timeouts: Timeouts | None,
        deadline: float = math.inf,
        control: BatchControl | None = None,
        *,
        stream: bool = False,
        hedge: bool = False,
    ) -> Plan:
        """The ``Plan`` of one request of ``endpoint`` (``None``: the model list); a
        ``hedge`` (of a batch's item) makes one attempt, whatever the retry policy."""
        self._check_open()
        custom_id = request.custom_id if request is not None else None
        retry = retry or self.retry
        return Plan(
            custom_id,
            idempotency_key(custom_id),
            retry.replace(attempts=1) if hedge else retry,
            timeouts or self.timeouts,
            request.estimated_tokens() if request is not None else 0,
            deadline,
            control,
            attempt_timeout=not stream,
            endpoint=endpoint,
            request=request,
            stream=stream,
            hedge=hedge,
        )

    # ------------------------------------------------------------------ public calls

    def make_request(
        self,
        messages: ChatRequest | Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        extra: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        **options: Unpack[ChatOptions],
    ) -> ChatRequest:
        """Build a :class:`ChatRequest` from messages and keywords (validated).

        When ``messages`` is already a :class:`ChatRequest`, the keywords given override its
        fields.  ``options`` are the other fields of :class:`ChatRequest` (``output``,
        ``tools``, ``n``...).
        """
        return make_request(
            messages, model=model, temperature=temperature, max_tokens=max_tokens,
            top_p=top_p, stop=stop, seed=seed, extra=extra, custom_id=custom_id, **options,
        )  # fmt: skip

    async def chat(
        self,
        messages: ChatRequest | Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        extra: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        **options: Unpack[ChatOptions],
    ) -> ChatCompletion:
        """Send one chat completion and return it, retrying per the policy.

        Args:
            messages: the conversation (a list of ``{"role", "content"}`` dicts) or a
                :class:`ChatRequest`.  Keywords override a ``ChatRequest``'s fields.
            model, temperature, max_tokens, top_p, stop, seed: sampling parameters.
            extra: more body fields, passed through.
            custom_id: a stable id for this logical request (see :class:`ChatRequest`).
            retry: a :class:`RetryPolicy` for this call instead of the client's.
            timeouts: :class:`Timeouts` for this call instead of the client's.

        The other keywords are the fields of :class:`ChatRequest` of the same names:
        ``output`` (a JSON Schema or a pydantic model: the answer is parsed and validated
        into ``completion.parsed``), ``response_format``, ``guided_json``,
        ``guided_choice``, ``guided_regex``, ``tools``, ``tool_choice``, ``n``,
        ``logprobs``, ``top_logprobs``.

        With the client's ``cache=``, a deterministic request (``temperature=0`` or a
        ``seed``) is answered from the cache when it holds the answer (nothing sent;
        ``completion.cached`` is true), and stored otherwise (see
        :meth:`Client.send <paradigm_trio.Client.send>`).

        Raises:
            InvalidRequestError: the request is invalid or cannot be encoded (a lone
                surrogate, ``NaN``, an object JSON cannot hold); nothing was sent.
            APIStatusError: the server refused it (a subclass per status).
            APIConnectionError: no usable response (``APITimeoutError`` for timeouts).
            APIResponseValidationError: a 2xx whose body is not a completion.
            StructuredOutputError: with ``output=``, the answer does not parse or
                validate (after ``RetryPolicy.invalid_output_retries`` resends).
            RuntimeError: the client is closed.
        """
        request = sealed_request(
            messages, model=model, temperature=temperature, max_tokens=max_tokens,
            top_p=top_p, stop=stop, seed=seed, extra=extra, custom_id=custom_id, **options,
        )  # fmt: skip
        return await self.send(request, retry=retry, timeouts=timeouts)

    async def send(
        self,
        request: ChatRequest,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        deadline: float = math.inf,
    ) -> ChatCompletion:
        """Send a prepared :class:`ChatRequest` (what :meth:`chat` does after validation).

        ``deadline`` is an absolute ``trio.current_time()`` past which nothing is sent and no
        retry is started; an attempt under way then is interrupted.  The request then fails
        with :class:`RequestCancelled` (``reason="deadline"``).

        With the client's ``cache=``, a deterministic request (``temperature=0`` or a
        ``seed``) is looked up first: an answer found is returned with
        ``completion.cached`` true, nothing sent; else the answer is stored.
        """
        plan = self._plan(self._chat, request, retry, timeouts, deadline)
        if self._cache is None:
            return await self._sender.send(self._chat, request, plan)
        answer, cached = await through_cache(
            self._cache, self._chat, request, lambda: self._sender.send(self._chat, request, plan)
        )
        return replace(answer, cached=True) if cached else answer

    async def models(self) -> list[ModelInfo]:
        """The models the API offers (``GET /models``), with the client's retry policy."""
        plan = self._plan(None, None, None, None)
        ex = self._http.prepare("GET", "/models", body=None, key=plan.key, timeouts=plan.timeouts)
        return await self._sender.fetch(ex, plan, ModelInfo.list_from_json)

    def chat_stream(
        self,
        messages: ChatRequest | Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        extra: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        include_usage: bool = True,
        restart: Restart | None = "replay",
        **options: Unpack[ChatOptions],
    ) -> ChatStream:
        """Stream one chat completion over Server-Sent Events.

        ``async with client.chat_stream(messages) as stream: async for chunk in stream``
        yields :class:`ChatCompletionChunk` objects; afterwards ``stream.completion`` is the
        assembled :class:`ChatCompletion`.  Entering the block sends the request and waits
        for the first chunk, retrying per the policy.  A stream that breaks after chunks
        arrived (a cut, a malformed chunk, an error event, silence past ``Timeouts.read``,
        a stall with ``Timeouts.stall_factor``) is *resumed* as the policy allows: the
        iteration goes on as one stream, never a character twice, never a gap.  See
        :class:`ChatStream` for timeouts (``Timeouts.first_token``, then ``Timeouts.read``
        between chunks), restarts and cancellation.

        Takes the arguments of :meth:`chat`, plus ``include_usage`` (ask for the final
        usage chunk, ``stream_options.include_usage``) and ``restart``, how a broken
        stream is resumed: ``"replay"`` (the default: the request is sent again, and its
        new answer must reproduce what was delivered, else the stream fails with the
        error that broke it, saying why; for deterministic answers: ``temperature=0`` or a
        ``seed``), ``"continue"`` (the delivered text is sent as a final assistant
        message to continue, vLLM's ``continue_final_message``: cheaper, works with any
        sampling, needs a server that supports it; ``n`` > 1, tool calls or a refusal
        fall back to a replay) or ``None`` (never: the break is raised).

        Tool calls arrive in pieces (``chunk.tool_calls``); ``stream.completion`` has them
        whole.  With ``output=``,
        ``stream.completion.parsed`` is the parsed answer, and an answer that does not
        match raises :class:`StructuredOutputError` at the end of the iteration (never
        retried: the chunks were handed out).
        """
        request = make_request(
            messages, model=model, temperature=temperature, max_tokens=max_tokens,
            top_p=top_p, stop=stop, seed=seed, extra=extra, custom_id=custom_id, **options,
        )  # fmt: skip
        plan = self._plan(self._chat, request, retry, timeouts, stream=True)
        return ChatStream(
            self._sender, self._chat, request, plan, restart=restart, include_usage=include_usage
        )

    # ------------------------------------------------------------------ batches

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
        fields ``model``, ``temperature``, ``max_tokens``, ``top_p``, ``seed`` that fill the
        fields an item leaves unset); or pass a prepared ``options=BatchOptions(...)``,
        which keywords override.

        Leaving the ``async with`` block early cancels what is still running.

        Raises:
            ValueError: an invalid option (before anything is sent).
            RuntimeError: the client is closed.
        """
        return self._chat_batches.batch(
            requests, options, keywords, cache=self._cache, free=self._slot_free,
            **self._batch_setting(),
        )  # fmt: skip

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

    # ------------------------------------------------------------------ embeddings

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
        return await self._embedder.embed(request, retry, timeouts)

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
        return self._embedder.batch(
            inputs, options, keywords, dimensions=dimensions, encoding_format=encoding_format,
            pack_inputs=pack_inputs, pack_tokens=pack_tokens, cache=self._cache,
            free=self._slot_free, **self._batch_setting(),
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

    # ------------------------------------------------------------------ Paradigm's endpoints

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
        check_request(request)
        router = self._router
        return await router.send(request, router.plan(request, retry, timeouts, deadline))

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
        answer: TokenCount = await self._route(request, retry, timeouts)
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
        answer: list[QueryResult] = await self._route(request, retry, timeouts)
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
        answer: FilteredChunks = await self._route(request, retry, timeouts)
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
        answer: DocumentAnswer = await self._route(request, retry, timeouts)
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
        answer: Turn = await self._route(request, retry, timeouts)
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
        answer: TextCompletion = await self._route(request, retry, timeouts)
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
        return self._router.batch(requests, as_any, options, keywords, **self._batch_setting())

    async def batch_requests(
        self,
        requests: Iterable[Any] | AsyncIterable[Any],
        *,
        options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> EndpointResults:
        """:meth:`Client.stream_requests`, its results in input order (an
        :class:`EndpointResults`, with ``.statistics``)."""
        return await collected(self.stream_requests(requests, options=options, **keywords))

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
        make = tokenize_maker(model)
        return await collected(
            self._router.batch(items, make, options, keywords, **self._batch_setting())
        )

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
        make = query_maker(collection, n)
        return await collected(
            self._router.batch(queries, make, options, keywords, **self._batch_setting())
        )
