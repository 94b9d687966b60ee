"""The :class:`Client`: configuration, lifecycle, and thin public methods.

Every request, of any kind, is a logical request run by the attempt engine
(``_attempts``): the client's methods only build what each kind sends (``_http`` for plain
JSON, ``_streaming`` for streams, ``_batch`` for many) and hand it over.  ``Client`` is
``ClientCore`` (``_core``: what the methods share, ``Client._plan``, ``Client._fetch``),
``ChatBatchMethods`` (``_chat_batch``: ``stream_batch``, ``chat_batch``) and
``EmbeddingMethods`` (``_embedder``: ``embed``, ``embed_batch``, ``stream_embed_batch``);
this module adds its configuration, its lifecycle and the single chat requests.

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

import math
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self, Unpack
from urllib.parse import urlsplit

import httpx2
import trio

from .._config import DEFAULT_BASE_URL, DEFAULT_MODEL, Limits, RetryPolicy, Timeouts
from .._endpoints._chat import ChatEndpoint
from .._endpoints._completion import ChatCompletion, ModelInfo
from .._endpoints._embeddings import DEFAULT_EMBEDDING_MODEL, EmbeddingsEndpoint
from .._endpoints._endpoint import Sender
from .._endpoints._models import ChatOptions, ChatRequest, make_request
from .._endpoints._streaming import ChatStream, Streamer
from .._engine._attempts import Engine
from .._engine._cache import CacheStore, ResponseCache
from .._engine._ledger import Ledger
from .._engine._ratelimit import AdaptiveController, RateLimiter, Rates
from .._errors import ConfigurationError
from .._events import ClientStatistics, Event
from .._http._http import HTTP
from .._quota._shared import SharedRateLimiter
from .._redact import Redactor, check_api_key, mask_bad_url, mask_credentials
from .._transport import CertTypes, ProxyTypes, TrioTransport, VerifyTypes, host_problem, url_host
from .._version import __version__
from ._chat_batch import ChatBatchMethods
from ._core import ClientState, check_trio
from ._embedder import EmbeddingLists, EmbeddingMethods
from ._files_api import Files
from ._paradigm import ParadigmMethods

__all__ = ["Client", "ClientState", "instrument"]

API_KEY_ENV = "PARADIGM_API_KEY"
BASE_URL_ENV = "PARADIGM_BASE_URL"


_USER_AGENT = f"paradigm-trio/{__version__}"


class Client(ParadigmMethods, ChatBatchMethods, EmbeddingMethods):
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
        key = _check_key(api_key)
        url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self._base_url = self._check_base_url(url)
        for name, value in (("model", model), ("embedding_model", embedding_model)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
        if not isinstance(pack_embeddings, bool):
            raise ConfigurationError(
                f"pack_embeddings must be True or False, got {pack_embeddings!r}"
            )
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
        self._sender = Sender(self._engine, self._http)
        self._chat = ChatEndpoint(model)
        self._embeddings = EmbeddingsEndpoint(embedding_model, packing=pack_embeddings)
        self._streamer = Streamer(self._engine, self._http, model)
        self._lists = EmbeddingLists(self._embeddings, ledger)
        self.files = Files(self)
        """The API's documents: upload, list, get, delete, wait (:class:`Files`)."""
        self._state = ClientState.UNOPENED
        self._exit = AsyncExitStack()
        self._cache = _cache_store(cache, self._base_url)

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
            shown, host = mask_bad_url(url), url_host(url)
            problem = host_problem(host) if host else None
            if host and problem:  # a non-ASCII host that httpx2 refused without saying why
                raise ConfigurationError(_bad_host(shown, host, problem)) from None
            raise ConfigurationError(
                f"base URL {shown!r} is not a valid URL: {_url_problem(shown, exc)}"
            ) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            shown = mask_credentials(str(parsed)) if parsed.host else mask_bad_url(url)
            raise ConfigurationError(
                f"base URL {shown!r} must be an absolute http:// or https:// URL "
                f"(set it with base_url=... or {BASE_URL_ENV})"
            )
        problem = host_problem(parsed.host)
        if problem is not None:
            raise ConfigurationError(_bad_host(mask_credentials(str(parsed)), parsed.host, problem))
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
            if self._owns_http:
                with trio.CancelScope(shield=True):
                    await self._httpx.aclose()
        await trio.lowlevel.checkpoint()

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
        plan = self._plan(self._chat, request, retry, timeouts, deadline)
        return await self._sender.send(self._chat, request, plan)

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
        plan = self._plan(self._chat, request, retry, timeouts, stream=True)
        ex = self._streamer.prepare(request, plan.key, plan.timeouts, include_usage=include_usage)
        return ChatStream(self._streamer, request, plan, ex)


def _bad_host(shown: str, host: str, problem: str) -> str:
    """The message for a base URL whose host cannot be looked up (``problem``: why)."""
    return (
        f"base URL {shown!r}: the host {host!r} is not a valid host name: {problem} "
        f"(set it with base_url=... or {BASE_URL_ENV})"
    )


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

    From then on, every chat request of ``client`` is a span ``chat {model}`` (every
    embeddings request ``embeddings {model}``) with a child span per attempt, every batch a
    span ``chat_batch`` (``embeddings_batch``) holding its requests' spans and its
    statistics, and the client's counters are metrics (see :doc:`/howto-observe` and the
    reference).  Names follow the OpenTelemetry GenAI semantic conventions (1.37 to 1.41:
    ``gen_ai.provider.name``).  Without this call nothing of OpenTelemetry is imported.

    Streams: a stream left early (``break``, an exception, leaving the ``async with``) or
    cancelled from outside keeps the span of the attempt under way, ended then, with
    ``paradigm_trio.outcome="cancelled"`` and no error status, as its request's span.
    ``gen_ai.client.operation.time_to_first_chunk`` (a histogram, in seconds; semantic
    conventions 1.41) records, once per streamed request whose answer began, the time from
    the request's start (retries included) to the first chunk of the attempt kept; the
    request's span carries it as ``gen_ai.response.time_to_first_chunk``.

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


def _cache_store(cache: object, base_url: str) -> CacheStore | None:
    """The client's open cache, for the answers of the base URL's host."""
    if cache is None:
        return None
    if not isinstance(cache, ResponseCache):
        raise ConfigurationError(f"cache must be a ResponseCache or None, got {cache!r}")
    return CacheStore(cache, (urlsplit(base_url).hostname or "").lower())
