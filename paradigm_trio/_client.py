"""The :class:`Client`: one chat completion, sent correctly under every failure.

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

import contextlib
import enum
import hashlib
import itertools
import json
import logging
import math
import os
import random
import uuid
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast

import httpx2
import trio

from . import _batch
from ._batch import (
    DEFAULT_CIRCUIT_BREAKER,
    DEFAULT_RETRY_BUDGET,
    DEFAULT_UNREACHABLE_AFTER,
    BatchControl,
    BatchInput,
    BatchResult,
    BatchResults,
    BatchStatistics,
    BatchStream,
    OnError,
)
from ._config import DEFAULT_BASE_URL, DEFAULT_MODEL, Limits, RetryPolicy, Timeouts
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    BatchError,
    ConfigurationError,
    RequestCancelled,
    TimeoutKind,
    status_error_class,
)
from ._events import (
    Attempt,
    AttemptFailed,
    AttemptStarted,
    ClientStatistics,
    Event,
    LatencyHistogram,
    RateLimited,
    RequestFinished,
    RetryScheduled,
    frozen_counts,
)
from ._models import ChatCompletion, ChatRequest, ModelInfo, Usage
from ._ratelimit import AdaptiveController, RateLimiter, SendMark

if TYPE_CHECKING:
    from ._streaming import ChatStream
from ._retry import parse_retry_after, parse_should_retry
from ._transport import TrioTransport

__all__ = ["Client", "ClientState"]

T = TypeVar("T")

logger = logging.getLogger("paradigm_trio")

API_KEY_ENV = "PARADIGM_API_KEY"
BASE_URL_ENV = "PARADIGM_BASE_URL"

_VERSION = "0.1.0.dev0"
_RAW_LIMIT = 64 * 1024


class ClientState(enum.Enum):
    """Where a :class:`Client` is in its life."""

    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


_KEY_PREFIX = uuid.uuid4().hex[:20]
_key_counter = itertools.count()


def _idempotency_key(custom_id: str | None) -> str:
    """``Idempotency-Key`` of a logical request: stable for a ``custom_id``, else unique.

    Without a ``custom_id``: a random per-process prefix and a counter (unique, and no
    system call per request as ``uuid4`` would make).
    """
    if custom_id is None:
        return f"pt-{_KEY_PREFIX}{next(_key_counter):012x}"
    return "pt-" + hashlib.sha256(custom_id.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class _Exchange(Generic[T]):
    """What every attempt of one logical request sends, and how to read the answer."""

    method: str
    url: str
    body: bytes | None
    headers: dict[str, str]
    http_timeout: httpx2.Timeout
    extensions: dict[str, Any]
    timeouts: Timeouts
    retry: RetryPolicy
    key: str
    custom_id: str | None
    parse: Callable[[object, str | None], T]
    tokens: int


@dataclass(slots=True)
class _Failure:
    """One failed attempt, before the retry decision."""

    error: APIError
    cause: str
    retryable: bool
    retry_after: float | None = None


class Client:
    """A trio client for the Paradigm chat-completions API.

    Use it as an async context manager (``async with Client() as client:``); it can also be
    used without one, in which case call :meth:`aclose` when done.

    Args:
        api_key: the API key; defaults to ``$PARADIGM_API_KEY``.  Required.
        base_url: the API root; defaults to ``$PARADIGM_BASE_URL``, then
            ``https://paradigm.lighton.ai/api/v2``.
        model: the model used by requests that name none.
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

    Raises:
        ConfigurationError: no API key, a malformed key or base URL, or both
            ``http_client`` and ``transport``.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx2.AsyncClient | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        on_event: Callable[[Event], object] | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key:
            raise ConfigurationError(
                f"no API key: pass api_key=... to Client() or set the {API_KEY_ENV} "
                "environment variable"
            )
        if not isinstance(key, str) or any(ch in key for ch in "\r\n\0") or key != key.strip():
            raise ConfigurationError(
                "the API key contains whitespace or control characters (is it pasted with a "
                "trailing newline?)"
            )
        url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self._base_url = self._check_base_url(url)
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a non-empty string, got {model!r}")
        if http_client is not None and transport is not None:
            raise ConfigurationError("pass http_client or transport, not both")
        self._api_key = key
        self.model = model
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        self._on_event = on_event
        self._headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"paradigm-trio/{_VERSION}",
            **(headers or {}),
        }
        self._owns_http = http_client is None
        # With a client of our own, requests go straight to the transport: the client layer
        # (cookies, auth, redirects, hooks) has nothing to do for us and costs ~30 us each.
        self._direct: httpx2.AsyncBaseTransport | None = None
        if http_client is None:
            if transport is None:
                transport = TrioTransport(max_keepalive=self.limits.concurrency)
            self._direct = transport
            http_client = httpx2.AsyncClient(
                transport=transport,
                limits=httpx2.Limits(
                    max_connections=self.limits.concurrency,
                    max_keepalive_connections=self.limits.concurrency,
                ),
                timeout=self._http_timeout(self.timeouts),
                follow_redirects=False,
            )
        self._http = http_client
        self._limiter = trio.CapacityLimiter(self.limits.concurrency)
        self._rates = RateLimiter(self.limits.requests_per_minute, self.limits.tokens_per_minute)
        self._adaptive = AdaptiveController(
            self._limiter,
            maximum=self.limits.concurrency,
            rates=self._rates,
            enabled=self.limits.adaptive,
        )
        self._random = random.Random()
        self._state = ClientState.UNOPENED
        # statistics
        self._in_flight = 0
        self._started = 0
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0
        self._attempts = 0
        self._retries = 0
        self._retries_by_cause: dict[str, int] = {}
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._latency = LatencyHistogram()

    # ------------------------------------------------------------------ lifecycle

    @staticmethod
    def _check_base_url(url: str) -> str:
        try:
            parsed = httpx2.URL(url)
        except Exception as exc:
            raise ConfigurationError(f"base URL {url!r} is not a valid URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            shown = parsed.copy_with(username=None, password=None) if parsed.host else url
            raise ConfigurationError(
                f"base URL {str(shown)!r} must be an absolute http:// or https:// URL "
                f"(set it with base_url=... or {BASE_URL_ENV})"
            )
        return str(parsed).rstrip("/")

    @property
    def base_url(self) -> str:
        """The API root every path is appended to."""
        return self._base_url

    @property
    def state(self) -> ClientState:
        """:class:`ClientState` of this client."""
        return self._state

    def __repr__(self) -> str:
        return (
            f"<Client base_url={self._base_url!r} model={self.model!r} api_key='***' "
            f"state={self._state.name} concurrency={self.limits.concurrency}>"
        )

    async def __aenter__(self) -> Self:
        if self._state is not ClientState.UNOPENED:
            raise RuntimeError(
                "a Client can be opened once: it is already "
                + ("open" if self._state is ClientState.OPENED else "closed")
            )
        self._state = ClientState.OPENED
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client and its connections (if it made them).  Idempotent."""
        if self._state is not ClientState.CLOSED:
            self._state = ClientState.CLOSED
            if self._owns_http:
                with trio.CancelScope(shield=True):
                    await self._http.aclose()
        await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._state is ClientState.CLOSED:
            raise RuntimeError("this Client is closed; create a new one")

    # ------------------------------------------------------------------ statistics

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of this client's counters."""
        return ClientStatistics(
            in_flight=self._in_flight,
            concurrency=int(self._limiter.total_tokens),
            started=self._started,
            succeeded=self._succeeded,
            failed=self._failed,
            cancelled=self._cancelled,
            attempts=self._attempts,
            retries=self._retries,
            retries_by_cause=frozen_counts(self._retries_by_cause),
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            total_tokens=self._prompt_tokens + self._completion_tokens,
            latency_p50=self._latency.percentile(50),
            latency_p90=self._latency.percentile(90),
            latency_p99=self._latency.percentile(99),
        )

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)

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
    ) -> ChatRequest:
        """Build a :class:`ChatRequest` from messages and keywords (validated).

        When ``messages`` is already a :class:`ChatRequest`, the keywords given override its
        fields.
        """
        params: dict[str, Any] = {
            "model": model,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "top_p": top_p,
            "stop": tuple(stop) if stop is not None and not isinstance(stop, str) else stop,
            "seed": seed,
            "custom_id": custom_id,
        }
        given = {k: v for k, v in params.items() if v is not None}
        if extra is not None:
            given["extra"] = extra
        if isinstance(messages, ChatRequest):
            return replace(messages, **given) if given else messages
        return ChatRequest(messages=messages, **given)

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
    ) -> ChatCompletion:
        """Send one chat completion and return it, retrying per the policy.

        Args:
            messages: the conversation (a list of ``{"role", "content"}`` dicts) or a
                :class:`ChatRequest`.  Keywords override a ``ChatRequest``'s fields.
            model, temperature, max_tokens, top_p, stop, seed: sampling parameters.
            extra: more body fields, passed through (``guided_json``, ``tools``, ...).
            custom_id: a stable id for this logical request (see :class:`ChatRequest`).
            retry: a :class:`RetryPolicy` for this call instead of the client's.
            timeouts: :class:`Timeouts` for this call instead of the client's.

        Raises:
            ValueError: the request is invalid (nothing was sent).
            APIStatusError: the server refused it (a subclass per status).
            APIConnectionError: no usable response (``APITimeoutError`` for timeouts).
            APIResponseValidationError: a 2xx whose body is not a completion.
            RuntimeError: the client is closed.
        """
        request = self.make_request(
            messages,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            stop=stop,
            seed=seed,
            extra=extra,
            custom_id=custom_id,
        )
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
        return await self._send(request, retry=retry, timeouts=timeouts, deadline=deadline)

    async def _send(
        self,
        request: ChatRequest,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        deadline: float = math.inf,
        control: BatchControl | None = None,
        history: list[Attempt] | None = None,
    ) -> ChatCompletion:
        self._check_open()
        body = json.dumps(request.to_body(self.model), separators=(",", ":")).encode()
        estimate = request.estimated_tokens()
        completion = await self._call(
            "POST",
            "/chat/completions",
            body=body,
            custom_id=request.custom_id,
            retry=retry or self.retry,
            timeouts=timeouts or self.timeouts,
            deadline=deadline,
            parse=ChatCompletion.from_json,
            tokens=estimate,
            control=control,
            history=history,
        )
        if completion.usage.total_tokens:
            self._rates.reconcile(estimate, completion.usage.total_tokens)
        self._prompt_tokens += completion.usage.prompt_tokens
        self._completion_tokens += completion.usage.completion_tokens
        return completion

    def stream_batch(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        on_error: OnError = "collect",
        deadline: float | None = None,
        on_progress: Callable[[BatchStatistics], object] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        retry_budget: float | None = DEFAULT_RETRY_BUDGET,
        circuit_breaker: int | None = DEFAULT_CIRCUIT_BREAKER,
        unreachable_after: float = DEFAULT_UNREACHABLE_AFTER,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stream: bool = False,
    ) -> AbstractAsyncContextManager[BatchStream]:
        """Send many requests concurrently; get results as they finish.

        ::

            async with client.stream_batch(requests) as results:
                async for result in results:   # completion order
                    ...

        ``requests`` is any iterable or async iterable of :class:`ChatRequest` or bare
        message lists, read lazily: memory is bounded by ``Limits.concurrency``, not by the
        batch size.  Every item yields exactly one :class:`BatchResult` (its ``index`` is
        its input position).  The sampling keywords (``model``, ``temperature``, ...) fill
        the fields an item leaves unset.

        Args:
            on_error: ``"collect"`` (failures are results) or ``"raise"`` (the first failure
                cancels the rest; iteration then raises :class:`BatchError`).
            deadline: an absolute ``trio.current_time()``; at the deadline requests in
                flight are interrupted and the rest of the input is reported, unsent, as
                :class:`RequestCancelled`.  (Your own cancel scope instead cancels the whole
                batch and raises ``Cancelled``.)
            on_progress: called with a :class:`BatchStatistics` after every result.
            retry, timeouts: per-request policies instead of the client's.
            retry_budget: the batch may retry at most ``10 + retry_budget * started`` times;
                ``None`` for no budget.
            circuit_breaker: consecutive connection failures (no HTTP response at all; any
                response resets the count) that open the breaker; ``None`` to disable.  While
                it is open, attempts wait a second between probes and connection failures
                do not spend the retry budget.
            unreachable_after: seconds of nothing but connection failures after which the
                batch fails its remaining items with :class:`ServerUnreachableError`.
            stream: send each request as a stream (:meth:`chat_stream`) and assemble it,
                so that ``Timeouts.first_token`` and the inactivity timeout apply to every
                item; results are the same completions.

        Leaving the ``async with`` block early cancels what is still running.
        """
        return _batch.stream_batch(
            self,
            requests,
            on_error=on_error,
            deadline=deadline,
            on_progress=on_progress,
            retry=retry,
            timeouts=timeouts,
            retry_budget=retry_budget,
            circuit_breaker=circuit_breaker,
            unreachable_after=unreachable_after,
            defaults={
                "model": model,
                "temperature": temperature,
                "max_tokens": max_tokens,
                "top_p": top_p,
                "seed": seed,
            },
            stream=stream,
        )

    async def chat_batch(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        on_error: OnError = "collect",
        deadline: float | None = None,
        on_progress: Callable[[BatchStatistics], object] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        retry_budget: float | None = DEFAULT_RETRY_BUDGET,
        circuit_breaker: int | None = DEFAULT_CIRCUIT_BREAKER,
        unreachable_after: float = DEFAULT_UNREACHABLE_AFTER,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stream: bool = False,
    ) -> BatchResults:
        """Send many requests concurrently; return every result, in input order.

        Takes the same arguments as :meth:`stream_batch` and returns a :class:`BatchResults`
        (a list of :class:`BatchResult`, one per input item, with ``.statistics``).  With
        ``on_error="raise"`` it raises :class:`BatchError` whose ``results`` hold the
        results finished before the failure.
        """
        finished: dict[int, BatchResult] = {}
        try:
            async with self.stream_batch(
                requests,
                on_error=on_error,
                deadline=deadline,
                on_progress=on_progress,
                retry=retry,
                timeouts=timeouts,
                retry_budget=retry_budget,
                circuit_breaker=circuit_breaker,
                unreachable_after=unreachable_after,
                model=model,
                temperature=temperature,
                max_tokens=max_tokens,
                top_p=top_p,
                seed=seed,
                stream=stream,
            ) as results:
                async for result in results:
                    finished[result.index] = result
                statistics = results.statistics()
        except BatchError as exc:
            exc.results = tuple(finished[i] for i in sorted(finished))
            raise
        ordered = BatchResults(finished[i] for i in range(len(finished)))
        ordered.statistics = statistics
        return ordered

    async def models(self) -> list[ModelInfo]:
        """The models the API offers (``GET /models``), with the client's retry policy."""
        self._check_open()
        return await self._call(
            "GET",
            "/models",
            body=None,
            custom_id=None,
            retry=self.retry,
            timeouts=self.timeouts,
            deadline=math.inf,
            parse=_parse_models,
            tokens=0,
            control=None,
        )

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
    ) -> ChatStream:
        """Stream one chat completion over Server-Sent Events.

        ``async with client.chat_stream(messages) as stream: async for chunk in stream``
        yields :class:`ChatCompletionChunk` objects; afterwards ``stream.completion`` is the
        assembled :class:`ChatCompletion`.  Entering the block sends the request and waits
        for the first chunk, retrying per the policy; once a chunk has arrived nothing is
        retried.  See :class:`ChatStream` for timeouts (``Timeouts.first_token``, then
        ``Timeouts.read`` between chunks) and cancellation.

        Takes the arguments of :meth:`chat`, plus ``include_usage`` (ask for the final
        usage chunk, ``stream_options.include_usage``).
        """
        from ._streaming import ChatStream

        request = self.make_request(
            messages,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            stop=stop,
            seed=seed,
            extra=extra,
            custom_id=custom_id,
        )
        return ChatStream(
            self, request, retry=retry, timeouts=timeouts, include_usage=include_usage
        )

    # ------------------------------------------------------------------ the retry loop

    @staticmethod
    def _http_timeout(timeouts: Timeouts) -> httpx2.Timeout:
        # pool=None: the CapacityLimiter, not the pool, makes requests wait.
        return httpx2.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=None
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        custom_id: str | None,
        retry: RetryPolicy,
        timeouts: Timeouts,
        deadline: float,
        parse: Callable[[object, str | None], T],
        tokens: int,
        control: BatchControl | None,
        history: list[Attempt] | None = None,
    ) -> T:
        """The retry loop of one logical request (see :class:`RetryPolicy`)."""
        key = _idempotency_key(custom_id)
        http_timeout = self._http_timeout(timeouts)
        headers = dict(self._headers)
        headers["Idempotency-Key"] = key
        if body is None:
            del headers["Content-Type"]
        ex = _Exchange(
            method, self._base_url + path, body, headers, http_timeout,
            {"timeout": http_timeout.as_dict()}, timeouts, retry, key, custom_id, parse, tokens,
        )  # fmt: skip
        start = trio.current_time()
        total_deadline = start + timeouts.total if timeouts.total is not None else math.inf
        caller_deadline = deadline
        deadline = min(caller_deadline, total_deadline)
        if history is None:
            history = []
        self._started += 1
        outcome: ChatCompletion | Exception | None = None  # None: cancelled from outside
        clock: list[float] = []  # holds the start of the attempt under way, once it is sent
        try:
            with trio.move_on_at(deadline):
                while True:
                    number = len(history) + 1
                    if control is not None:
                        await control.before_attempt()
                    clock.clear()
                    result, failure, status, request_id = await self._attempt(ex, number, clock)
                    now = trio.current_time()
                    in_progress = clock[0]
                    clock.clear()
                    if control is not None:
                        control.after_attempt(failure.cause if failure else None, status)
                    if failure is None:
                        history.append(
                            Attempt(number, in_progress, now - in_progress, status,
                                    request_id=request_id)
                        )  # fmt: skip
                        if number == 1:
                            self._adaptive.on_clean_success()
                        outcome = (
                            result if isinstance(result, ChatCompletion) else _NOT_A_COMPLETION
                        )
                        return cast(T, result)
                    delay, stop_reason = self._retry_delay(failure, number, retry, now, deadline)
                    if delay is not None and control is not None:
                        stop_reason = control.spend_retry(failure.cause)
                        if stop_reason is not None:
                            delay = None
                    attempt = Attempt(
                        number, in_progress, now - in_progress, status, failure.cause,
                        _one_line(failure.error), delay, request_id,
                    )  # fmt: skip
                    history.append(attempt)
                    self._emit(AttemptFailed(custom_id, key, attempt, delay is not None))
                    if delay is None:
                        if stop_reason:
                            failure.error.add_note(stop_reason)
                        raise failure.error
                    self._retries += 1
                    cause = failure.cause
                    self._retries_by_cause[cause] = self._retries_by_cause.get(cause, 0) + 1
                    self._emit(
                        RetryScheduled(custom_id, key, number, cause, delay,
                                       failure.retry_after is not None)
                    )  # fmt: skip
                    logger.debug(
                        "attempt %d (%s) failed with %s; retrying in %.3fs",
                        number, key, cause, delay,
                    )  # fmt: skip
                    await trio.sleep(delay)
            # Only reached when the deadline fired: the loop exits by return or raise.
            now = trio.current_time()
            if clock:
                history.append(
                    Attempt(len(history) + 1, clock[0], now - clock[0], None, "timeout",
                            "interrupted by the deadline")
                )  # fmt: skip
            if total_deadline <= caller_deadline:
                raise APITimeoutError(
                    f"request timed out: Timeouts.total={timeouts.total:g}s passed after "
                    f"{len(history)} attempt(s)",
                    which="total",
                )
            raise RequestCancelled(
                f"cancelled: the deadline passed after {len(history)} attempt(s)"
                if history
                else "cancelled: the deadline passed before it was sent",
                reason="deadline",
                sent=bool(history),
            )
        except APIError as exc:
            outcome = exc
            exc.attempts = tuple(history)
            exc.custom_id = custom_id
            raise
        except Exception as exc:  # a bug or an event hook raising: a failure, not a cancel
            outcome = exc
            raise
        finally:
            self._finish(outcome, custom_id, key, len(history), trio.current_time() - start)

    def _finish(
        self,
        outcome: ChatCompletion | Exception | None,
        custom_id: str | None,
        key: str,
        attempts: int,
        elapsed: float,
    ) -> None:
        if outcome is None:
            self._cancelled += 1
        elif isinstance(outcome, APIError):
            if isinstance(outcome, RequestCancelled):
                self._cancelled += 1
            else:
                self._failed += 1
            self._emit(
                RequestFinished(custom_id, key, False, attempts, elapsed, 0, _one_line(outcome))
            )
        elif isinstance(outcome, Exception):
            self._failed += 1  # no event: the hook may be what raised
        else:
            self._succeeded += 1
            self._latency.add(elapsed)
            self._emit(
                RequestFinished(custom_id, key, True, attempts, elapsed, outcome.usage.total_tokens)
            )

    def _retry_delay(
        self, failure: _Failure, number: int, retry: RetryPolicy, now: float, deadline: float
    ) -> tuple[float | None, str | None]:
        """The wait before the next attempt, or ``(None, why not)`` when there is none."""
        if not failure.retryable:
            return None, None
        if number >= retry.attempts:
            return (
                None,
                f"gave up after {number} attempt(s) (RetryPolicy.attempts={retry.attempts})",
            )
        if failure.retry_after is not None:
            if failure.retry_after > retry.max_retry_after:
                return None, (
                    f"not retried: the server asked to wait {failure.retry_after:g}s, more than "
                    f"RetryPolicy.max_retry_after={retry.max_retry_after:g}s"
                )
            delay = failure.retry_after
        else:
            delay = retry.backoff(number, self._random.random())
        if now + delay >= deadline:
            return None, (
                f"not retried: the wait of {delay:.3g}s would pass the request's deadline "
                f"({max(0.0, deadline - now):.3g}s left)"
            )
        return delay, None

    async def _attempt(
        self, ex: _Exchange[Any], number: int, clock: list[float]
    ) -> tuple[Any, _Failure | None, int | None, str | None]:
        """One HTTP exchange, holding a concurrency slot.  Never raises ``APIError``."""
        retry, timeouts = ex.retry, ex.timeouts
        async with self._limiter:
            mark = self._rates.try_acquire(ex.tokens) or await self._rates.acquire(ex.tokens)
            self._attempts += 1
            self._in_flight += 1
            clock.append(trio.current_time())
            try:
                self._emit(AttemptStarted(ex.custom_id, ex.key, number, clock[0]))
                with trio.move_on_after(
                    timeouts.attempt if timeouts.attempt is not None else math.inf
                ) as scope:
                    try:
                        response = await self._exchange(ex)
                    except httpx2.TimeoutException as exc:
                        return None, _timeout_failure(exc, retry), None, None
                    except httpx2.TransportError as exc:
                        return None, _connection_failure(exc, retry, self._redact), None, None
                    except httpx2.HTTPError as exc:  # e.g. a content decoding error
                        invalid = APIResponseValidationError(
                            f"could not read the response: {self._redact(str(exc))}"
                        )
                        return (
                            None,
                            _Failure(invalid, "invalid_response", retry.retry_invalid_responses),
                            None,
                            None,
                        )
                if scope.cancelled_caught:
                    timeout = APITimeoutError(
                        f"attempt timed out after Timeouts.attempt={timeouts.attempt:g}s",
                        which="attempt",
                    )
                    return (
                        None,
                        _Failure(timeout, "timeout", retry.retry_connection_errors),
                        None,
                        None,
                    )
            finally:
                self._in_flight -= 1
        return self._handle_response(response, retry, ex.key, ex.custom_id, ex.parse, mark)

    async def _exchange(self, ex: _Exchange[Any]) -> httpx2.Response:
        """Send one request and read its whole response."""
        if self._direct is None:
            return await self._http.request(
                ex.method, ex.url, content=ex.body, headers=ex.headers, timeout=ex.http_timeout
            )
        request = httpx2.Request(
            ex.method, ex.url, content=ex.body, headers=ex.headers, extensions=ex.extensions
        )
        response = await self._direct.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _handle_response(
        self,
        response: httpx2.Response,
        retry: RetryPolicy,
        key: str,
        custom_id: str | None,
        parse: Callable[[object, str | None], T],
        mark: SendMark | None = None,
    ) -> tuple[T | None, _Failure | None, int | None, str | None]:
        status = response.status_code
        request_id = response.headers.get("x-request-id")
        self._adaptive.on_headers(response.headers, mark)
        if 200 <= status < 300:
            try:
                data = json.loads(response.content)
            except ValueError as exc:
                raw = self._redact(response.content[:_RAW_LIMIT].decode("utf-8", "replace"))
                err = APIResponseValidationError(
                    f"the response (status {status}) is not valid JSON: {exc}",
                    raw=raw,
                    status_code=status,
                    request_id=request_id,
                )
                return (
                    None,
                    _Failure(err, "invalid_response", retry.retry_invalid_responses),
                    status,
                    request_id,
                )
            try:
                return parse(data, request_id), None, status, request_id
            except APIResponseValidationError as err:
                err.status_code = status
                err.raw = self._redact(response.text[:_RAW_LIMIT])
                if self._api_key in response.text:
                    err.body = err.raw
                return (
                    None,
                    _Failure(err, "invalid_response", retry.retry_invalid_responses),
                    status,
                    request_id,
                )
        error = self._status_error(response, request_id)
        should = parse_should_retry(response.headers)
        retryable = should if should is not None else retry.is_retryable_status(status)
        retry_after = parse_retry_after(response.headers)
        if status == 429:
            rl_headers = _ratelimit_headers(response)
            honoured = (
                retry_after if retry_after is None or retry_after <= retry.max_retry_after else None
            )
            self._adaptive.on_rate_limited(honoured, rl_headers)
            self._emit(RateLimited(custom_id, key, retry_after, rl_headers))
        return None, _Failure(error, str(status), retryable, retry_after), status, request_id

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key in text else text

    def _status_error(self, response: httpx2.Response, request_id: str | None) -> APIStatusError:
        status = response.status_code
        text = self._redact(response.text[:_RAW_LIMIT])
        body: object = text
        message: str | None = None
        code = type_ = param = None
        with contextlib.suppress(ValueError):
            body = json.loads(text)
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                message = _as_str(err.get("message"))
                code = _as_str(err.get("code"))
                type_ = _as_str(err.get("type"))
                param = _as_str(err.get("param"))
            elif isinstance(err, str):
                message = err
            elif "detail" in body:
                detail = body["detail"]
                message = detail if isinstance(detail, str) else json.dumps(detail)
            elif isinstance(body.get("message"), str):
                message = body["message"]
        if message is None:
            message = text.strip()[:500] or response.reason_phrase or "no body"
        cls = status_error_class(status)
        return cls(
            f"Error code: {status} - {message}",
            status_code=status,
            request_id=request_id,
            body=body,
            headers={k: v for k, v in response.headers.items() if k.lower() != "set-cookie"},
            code=code,
            type=type_,
            param=param,
        )


_NOT_A_COMPLETION = ChatCompletion(id="", model="", created=0, choices=(), usage=Usage())
"""Stands for a successful call that returned something else (e.g. the model list)."""


def _as_str(value: object) -> str | None:
    return None if value is None else str(value)


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300]


def _ratelimit_headers(response: httpx2.Response) -> dict[str, str]:
    return {
        k.lower(): v
        for k, v in response.headers.items()
        if k.lower().startswith("x-ratelimit-") or k.lower() in ("retry-after", "retry-after-ms")
    }


_TIMEOUT_KINDS: tuple[tuple[type[httpx2.TimeoutException], TimeoutKind], ...] = (
    (httpx2.ConnectTimeout, "connect"),
    (httpx2.ReadTimeout, "read"),
    (httpx2.WriteTimeout, "write"),
    (httpx2.PoolTimeout, "pool"),
)


def _timeout_failure(exc: httpx2.TimeoutException, retry: RetryPolicy) -> _Failure:
    which: TimeoutKind = "read"
    for cls, kind in _TIMEOUT_KINDS:
        if isinstance(exc, cls):
            which = kind
            break
    err = APITimeoutError(f"{which} timeout ({type(exc).__name__})", which=which)
    err.__cause__ = exc
    return _Failure(err, "timeout", retry.retry_connection_errors)


def _connection_failure(
    exc: httpx2.TransportError, retry: RetryPolicy, redact: Callable[[str], str]
) -> _Failure:
    detail = redact(str(exc)) or type(exc).__name__
    err = APIConnectionError(f"connection error: {type(exc).__name__}: {detail}")
    err.__cause__ = exc
    return _Failure(err, "connection", retry.retry_connection_errors)


def _parse_models(data: object, request_id: str | None) -> list[ModelInfo]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise APIResponseValidationError(
            "the /models response has no 'data' list", body=data, request_id=request_id
        )
    models = []
    for item in data["data"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise APIResponseValidationError(
                f"a /models entry has no 'id': {item!r}"[:300], body=data, request_id=request_id
            )
        created = item.get("created")
        models.append(
            ModelInfo(
                id=item["id"],
                owned_by=_as_str(item.get("owned_by")),
                created=created if isinstance(created, int) else None,
                raw=item,
            )
        )
    return models
