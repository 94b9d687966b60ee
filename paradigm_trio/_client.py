"""The :class:`Client`: configuration, lifecycle, and thin public methods.

Every request, of any kind, is a logical request run by the attempt engine
(``_attempts``): this module only builds what each kind sends (``_http`` for plain JSON,
``_streaming`` for streams, ``_batch`` for many) and hands it over.

Where things can block or be cancelled:

* :meth:`Client.chat` waits for a concurrency slot (``Limits.concurrency``), then sends
  one attempt; between attempts it sleeps (backoff or ``Retry-After``) *without* holding a
  slot.  Cancelling it from outside (the caller's cancel scope) interrupts whichever of
  these it is doing, closes the HTTP exchange and re-raises :class:`trio.Cancelled`;
  nothing is retried after that.
* Timeouts are cancel scopes on trio's clock: ``Timeouts.attempt`` around each attempt and
  ``Timeouts.total`` around the whole request.  Both surface as
  :class:`~paradigm_trio.APITimeoutError`, never as ``Cancelled``.
"""

from __future__ import annotations

import enum
import functools
import math
import os
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx2
import sniffio
import trio

from . import _batch
from ._attempts import Engine, Plan, idempotency_key
from ._batch import BatchInput, BatchResults, BatchStream
from ._batch_options import BatchKeywords, BatchOptions, BatchStatistics
from ._budget import BatchControl
from ._config import DEFAULT_BASE_URL, DEFAULT_MODEL, Limits, RetryPolicy, Timeouts
from ._embedder import (
    Embedder,
    EmbeddingKind,
    EmbeddingResults,
    EmbeddingStream,
    EmbedInput,
    check_pack,
    embedding_defaults,
)
from ._embeddings import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_PACK_INPUTS,
    DEFAULT_PACK_TOKENS,
    EmbeddingRequest,
    Embeddings,
    EncodingFormat,
)
from ._errors import BatchError, ConfigurationError
from ._events import Attempt, ClientStatistics, Event
from ._http import HTTP, Exchange
from ._ledger import Ledger
from ._models import (
    ChatCompletion,
    ChatOptions,
    ChatRequest,
    ModelInfo,
    Usage,
    completion_parser,
    make_request,
    usage_of,
)
from ._proxies import ProxyTypes
from ._ratelimit import AdaptiveController, RateLimiter, Rates
from ._redact import Redactor, check_api_key, mask_bad_url, mask_credentials
from ._shared import SharedRateLimiter
from ._streaming import ChatStream, Streamer
from ._tls import CertTypes, VerifyTypes
from ._transport import TrioTransport
from ._version import __version__

__all__ = ["Client", "ClientState", "instrument"]

T = TypeVar("T")

API_KEY_ENV = "PARADIGM_API_KEY"
BASE_URL_ENV = "PARADIGM_BASE_URL"


_USER_AGENT = f"paradigm-trio/{__version__}"


class ClientState(enum.Enum):
    """Where a :class:`Client` is in its life."""

    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


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

    ``proxy``, ``verify``, ``cert`` and ``trust_env`` configure the client's own
    :class:`TrioTransport`; with ``transport=`` or ``http_client=``, set them there.
    See the how-to "Behind a corporate proxy or a private CA".

    The client runs under trio only: its methods called from asyncio (or another async
    library) raise :class:`RuntimeError` saying so.

    Raises:
        ConfigurationError: no API key, a malformed key or base URL, both ``http_client``
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
    ) -> None:
        key = _check_key(api_key)
        url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self._base_url = self._check_base_url(url)
        for name, value in (("model", model), ("embedding_model", embedding_model)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
        _check_http(http_client, transport)
        network = {"proxy": proxy, "verify": verify, "cert": cert, "trust_env": trust_env}
        self._api_key = key
        self._shared: SharedRateLimiter | None = None
        self.model = model
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        self._owns_http = http_client is None
        self._httpx, direct = self._http_client(http_client, transport, network)
        self._http = HTTP(
            base_url=self._base_url,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": _USER_AGENT,
                **(headers or {}),
            },
            http_client=self._httpx,
            direct=direct,
            redactor=Redactor(key),
        )
        self._limiter = trio.CapacityLimiter(self.limits.concurrency)
        ledger = Ledger(on_event)
        rates = self._rates(ledger)
        self._engine = Engine(
            limiter=self._limiter,
            rates=rates,
            adaptive=AdaptiveController(
                self._limiter,
                maximum=self.limits.concurrency,
                rates=rates,
                enabled=self.limits.adaptive,
            ),
            ledger=ledger,
        )
        self._streamer = Streamer(self._engine, self._http, model)
        self._embedder = Embedder(self._engine, self._http, embedding_model)
        self._state = ClientState.UNOPENED
        self._exit = AsyncExitStack()

    def _rates(self, ledger: Ledger) -> Rates:
        """This client's own buckets, or a shared quota's (opened in ``async with``)."""
        limits = self.limits
        if limits.shared is None:
            return RateLimiter(limits.requests_per_minute, limits.tokens_per_minute)
        self._shared = SharedRateLimiter(
            limits.shared, limits.requests_per_minute, limits.tokens_per_minute, emit=ledger.emit
        )
        return self._shared

    def _http_client(
        self,
        http_client: httpx2.AsyncClient | None,
        transport: httpx2.AsyncBaseTransport | None,
        network: dict[str, Any],
    ) -> tuple[httpx2.AsyncClient, httpx2.AsyncBaseTransport | None]:
        """The ``httpx2`` client to send with, and the transport to call directly, if ours.

        With a client of our own, requests go straight to its transport (see ``_http``).
        """
        _check_network(network, own=http_client is None and transport is None)
        if http_client is not None:
            return http_client, None
        if transport is None:
            transport = TrioTransport(max_keepalive=self.limits.concurrency, **network)
        own = httpx2.AsyncClient(
            transport=transport,
            limits=httpx2.Limits(
                max_connections=self.limits.concurrency,
                max_keepalive_connections=self.limits.concurrency,
            ),
            timeout=HTTP.http_timeout(self.timeouts),
            follow_redirects=False,
        )
        return own, transport

    # ------------------------------------------------------------------ lifecycle

    @staticmethod
    def _check_base_url(url: str) -> str:
        """The base URL, normalised; messages about it never show its password."""
        try:
            parsed = httpx2.URL(url)
        except Exception as exc:
            shown = mask_bad_url(url)
            raise ConfigurationError(
                f"base URL {shown!r} is not a valid URL: {_url_problem(shown, exc)}"
            ) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            shown = mask_credentials(str(parsed)) if parsed.host else mask_bad_url(url)
            raise ConfigurationError(
                f"base URL {shown!r} must be an absolute http:// or https:// URL "
                f"(set it with base_url=... or {BASE_URL_ENV})"
            )
        return str(parsed).rstrip("/")

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
        _check_trio()
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
        _check_trio()
        if self._state is not ClientState.CLOSED:
            self._state = ClientState.CLOSED
            if self._owns_http:
                with trio.CancelScope(shield=True):
                    await self._httpx.aclose()
        await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        """Refuse a call on a closed client, or from outside trio (every call checks)."""
        if self._state is ClientState.CLOSED:
            raise RuntimeError("this Client is closed; create a new one")
        _check_trio()

    # ------------------------------------------------------------------ statistics

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of this client's counters."""
        return self._engine.ledger.statistics(int(self._limiter.total_tokens))

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
        request = make_request(
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
        """
        return await self._send(request, self._plan(request, retry, timeouts, deadline))

    def _plan(
        self,
        request: ChatRequest | EmbeddingRequest | None,
        retry: RetryPolicy | None,
        timeouts: Timeouts | None,
        deadline: float = math.inf,
        control: BatchControl | None = None,
        *,
        stream: bool = False,
    ) -> Plan:
        self._check_open()
        custom_id = request.custom_id if request is not None else None
        return Plan(
            custom_id,
            idempotency_key(custom_id),
            retry or self.retry,
            timeouts or self.timeouts,
            request.estimated_tokens() if request is not None else 0,
            deadline,
            control,
            attempt_timeout=not stream,
            request=request if isinstance(request, ChatRequest) else None,  # (telemetry)
            stream=stream,
        )

    async def _send(
        self, request: ChatRequest, plan: Plan, history: list[Attempt] | None = None
    ) -> ChatCompletion:
        body = request.encode_body(request.to_body(self.model))
        ex = self._http.prepare(
            "POST", "/chat/completions", body=body, key=plan.key, timeouts=plan.timeouts
        )
        parse = completion_parser(request.output, plan.retry.invalid_output_retries)
        return await self._fetch(ex, plan, parse, usage_of, history)

    async def _fetch(
        self,
        ex: Exchange,
        plan: Plan,
        parse: Callable[[object, str | None], T],
        usage: Callable[[T], Usage | None] = lambda _: None,
        history: list[Attempt] | None = None,
    ) -> T:
        """Run a plain JSON exchange on the attempt engine (``usage``: what it cost)."""
        attempt = functools.partial(self._http.fetch_json, ex, plan.retry, parse)
        return await self._engine.call(plan, history).run(attempt, usage=usage)

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
        ``unreachable_after``, ``stream``, ``warm_up``, and the sampling fields ``model``,
        ``temperature``, ``max_tokens``, ``top_p``, ``seed`` that fill the fields an item
        leaves unset); or pass a prepared ``options=BatchOptions(...)``, which keywords
        override.

        Leaving the ``async with`` block early cancels what is still running.

        Raises:
            ValueError: an invalid option (before anything is sent).
            RuntimeError: the client is closed.
        """
        opts = BatchOptions.of(options, keywords)
        self._check_open()
        retry, timeouts, stream = opts.retry, opts.timeouts, opts.stream

        async def send_one(
            request: ChatRequest,
            *,
            deadline: float,
            control: BatchControl,
            history: list[Attempt],
        ) -> ChatCompletion:
            plan = self._plan(request, retry, timeouts, deadline, control, stream=stream)
            if stream:
                return await self._streamer.complete(request, plan, history)
            return await self._send(request, plan, history)

        return _batch.stream_batch(
            send_one,
            requests,
            opts,
            width=self.limits.concurrency,
            observers=self._engine.ledger.observers,
            warm_up=self.warm_up,
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
        results.statistics = await _collect(cm, results)
        return results

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

    async def models(self) -> list[ModelInfo]:
        """The models the API offers (``GET /models``), with the client's retry policy."""
        plan = self._plan(None, None, None)
        ex = self._http.prepare("GET", "/models", body=None, key=plan.key, timeouts=plan.timeouts)
        return await self._fetch(ex, plan, ModelInfo.list_from_json)

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
        plan = self._plan(request, retry, timeouts)
        return await self._embedder.fetch(request, plan)

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

        async def send_one(
            request: EmbeddingRequest,
            *,
            deadline: float,
            control: BatchControl,
            history: list[Attempt],
        ) -> Embeddings:
            plan = self._plan(request, retry, timeouts, deadline, control)
            return await self._embedder.fetch(request, plan, history)

        kind = EmbeddingKind(send_one, defaults, pack_inputs=pack_inputs, pack_tokens=pack_tokens)
        return _batch.run_batch(
            kind, inputs, opts, width=self.limits.concurrency, stream=EmbeddingStream,
            warm_up=self.warm_up,
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
        results.statistics = await _collect(cm, results)
        return results

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
        **options: Unpack[ChatOptions],
    ) -> ChatStream:
        """Stream one chat completion over Server-Sent Events.

        ``async with client.chat_stream(messages) as stream: async for chunk in stream``
        yields :class:`ChatCompletionChunk` objects; afterwards ``stream.completion`` is the
        assembled :class:`ChatCompletion`.  Entering the block sends the request and waits
        for the first chunk, retrying per the policy; once a chunk has arrived nothing is
        retried.  See :class:`ChatStream` for timeouts (``Timeouts.first_token``, then
        ``Timeouts.read`` between chunks) and cancellation.

        Takes the arguments of :meth:`chat`, plus ``include_usage`` (ask for the final
        usage chunk, ``stream_options.include_usage``).  Tool calls arrive in pieces
        (``chunk.tool_calls``); ``stream.completion`` has them whole.  With ``output=``,
        ``stream.completion.parsed`` is the parsed answer, and an answer that does not
        match raises :class:`StructuredOutputError` at the end of the iteration (never
        retried: the chunks were handed out).
        """
        request = make_request(
            messages, model=model, temperature=temperature, max_tokens=max_tokens,
            top_p=top_p, stop=stop, seed=seed, extra=extra, custom_id=custom_id, **options,
        )  # fmt: skip
        plan = self._plan(request, retry, timeouts, stream=True)
        ex = self._streamer.prepare(request, plan.key, plan.timeouts, include_usage=include_usage)
        return ChatStream(self._streamer, request, plan, ex)


def _url_problem(shown: str, exc: Exception) -> str:
    """Why a URL does not parse, said without quoting its credentials (``shown``: masked)."""
    if "@" not in shown:
        return str(exc)  # no credentials in it
    try:
        httpx2.URL(shown)
    except Exception as masked:
        return str(masked)  # the same problem, outside the credentials
    return "check its user:password@ part"


def instrument(
    client: Client,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    record_content: bool = False,
    provider_name: str = "lighton",
) -> None:
    """Send a client's traces and metrics to OpenTelemetry (needs ``paradigm-trio[otel]``).

    From then on, every chat request of ``client`` is a span ``chat {model}`` with a child
    span per attempt, every batch a span ``chat_batch`` holding its items' spans and its
    statistics, and the client's counters are metrics (see :doc:`/howto-observe` and the
    reference).  Names follow the OpenTelemetry GenAI semantic conventions (1.37 to 1.41:
    ``gen_ai.provider.name``).  Without this call nothing of OpenTelemetry is imported.

    Args:
        client: the client to instrument (once).
        tracer_provider, meter_provider: OpenTelemetry providers; ``None`` for the global
            ones (``opentelemetry.trace.set_tracer_provider`` ...).
        record_content: also record the messages sent and the answers
            (``gen_ai.input.messages``, ``gen_ai.output.messages``): off by default, as
            they are your users' data.  Headers, so the API key, are never recorded.
        provider_name: the value of ``gen_ai.provider.name``.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed.
        RuntimeError: the client is instrumented already.
    """
    from ._otel import Telemetry  # (imports opentelemetry: only here)

    ledger = client._engine.ledger
    if any(isinstance(o, Telemetry) for o in ledger.observers):
        raise RuntimeError("this client is instrumented already")
    url = httpx2.URL(client.base_url)
    ledger.observe(
        Telemetry(
            ledger=ledger,
            limiter=client._limiter,
            rates=client._engine.rates,
            model=client.model,
            server_address=url.host,
            server_port=url.port or (443 if url.scheme == "https" else 80),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            record_content=record_content,
            provider_name=provider_name,
        )
    )


async def _collect(
    cm: AbstractAsyncContextManager[_batch.ResultStream[Any]], into: list[Any]
) -> BatchStatistics:
    """Run a batch to its end and put its results into ``into``, in input order.

    On :class:`BatchError` (``on_error="raise"``), its ``results`` are those finished.
    """
    finished: dict[int, Any] = {}
    try:
        async with cm as results:
            async for result in results:
                finished[result.index] = result
            statistics = results.statistics()
    except BatchError as exc:
        exc.results = tuple(finished[i] for i in sorted(finished))
        raise
    into.extend(finished[i] for i in range(len(finished)))
    return statistics


def _check_key(key: object) -> str:
    """The key given, else ``$PARADIGM_API_KEY``, checked (see ``_redact.check_api_key``)."""
    source = "api_key="
    if key is None:
        key, source = os.environ.get(API_KEY_ENV), f"${API_KEY_ENV}"
    if key is None or key == "":
        raise ConfigurationError(
            f"no API key: pass api_key=... to Client() or set the {API_KEY_ENV} "
            "environment variable"
        )
    return check_api_key(key, source=source)


def _check_trio() -> None:
    """Refuse a call made from asyncio (or another async library), naming the fix.

    Under trio this is one lookup of the current task; ``sniffio`` is asked only when
    there is none.  With no event loop at all it lets the call go on: trio's own error
    then says that an async function was called outside of one.
    """
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            return
        raise RuntimeError(
            f"paradigm-trio runs under trio, but this was called from {library}: run your "
            f"program with trio.run(main) instead of {library}.run(main) (to call it from "
            "asyncio code, run trio in its own thread, or use trio's guest mode)"
        ) from None


def _check_network(network: Mapping[str, object], *, own: bool) -> None:
    """Refuse network options that would be ignored (the client's transport is not ours)."""
    defaults = {"proxy": None, "verify": True, "cert": None, "trust_env": True}
    given = [name for name, value in network.items() if value is not defaults[name]]
    if given and not own:
        names = ", ".join(f"{name}=" for name in given)
        raise ConfigurationError(
            f"{names} configure the client's own transport: with transport= or "
            "http_client=, set them there (TrioTransport(proxy=..., verify=...) or "
            "httpx2.AsyncClient(proxy=..., verify=...))"
        )


def _check_http(http_client: object, transport: object) -> None:
    """Refuse an ``http_client``/``transport`` that cannot work, naming the fix."""
    if http_client is not None and transport is not None:
        raise ConfigurationError("pass http_client or transport, not both")
    for name, value, kind in (
        ("http_client", http_client, "AsyncClient"),
        ("transport", transport, "AsyncHTTPTransport"),
    ):
        if value is None:
            continue
        got = f"{type(value).__module__}.{type(value).__qualname__}"
        if any(cls.__module__.partition(".")[0] == "httpx" for cls in type(value).__mro__):
            kind = type(value).__name__ if hasattr(httpx2, type(value).__name__) else kind
            raise ConfigurationError(
                f"{name}= is an {got} from the httpx package; paradigm-trio uses httpx2, "
                f"the maintained continuation of httpx with the same API: pass an "
                f"httpx2.{kind}(...) instead (import httpx2)"
            )
        if name == "http_client" and not isinstance(value, httpx2.AsyncClient):
            raise ConfigurationError(f"http_client= must be an httpx2.AsyncClient, got {got}")
        if name == "transport" and not callable(getattr(value, "handle_async_request", None)):
            raise ConfigurationError(
                "transport= must be an httpx2.AsyncBaseTransport (such as "
                f"httpx2.MockTransport or paradigm_trio.TrioTransport), got {got}"
            )
