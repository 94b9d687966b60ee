"""OpenTelemetry traces and metrics of a client, after the GenAI semantic conventions.

Imported only by :func:`paradigm_trio.instrument` (it imports ``opentelemetry``): a client
that is not instrumented imports and computes nothing of this.  :class:`Telemetry` is an
observer of the client's ledger (``_ledger.Observer``):

* **Spans** are built when a logical request ends, from its attempt history: one span per
  chat request (kind ``CLIENT``, named ``chat {model}``) with a child span per attempt
  (``POST``, kind ``CLIENT``), and one span per batch (``chat_batch``, ``INTERNAL``), the
  parent of its items' spans.  The attempt under way when a request ends without it (a
  stream left early, a request cancelled from outside) has its span too, from the
  engine's ``Call.interrupted``: a cancellation by the caller, not an error (no status,
  no ``error.type``, as the HTTP conventions of 1.41 say).  Times are trio's clock,
  turned into wall-clock time, so the spans of a run on trio's ``MockClock`` show its
  virtual timeline.
* **Metrics**: the GenAI histograms ``gen_ai.client.operation.duration``,
  ``gen_ai.client.token.usage`` and, for streams,
  ``gen_ai.client.operation.time_to_first_chunk`` (from ``Call.first_chunk``), recorded
  as each request ends; every other figure is an *observable* instrument that reads the
  ledger's counters when the reader collects, so that the metrics equal
  :meth:`Client.statistics` by construction and cost nothing per request.

Conventions: OpenTelemetry semantic conventions 1.37 to 1.41 for GenAI
(``gen_ai.provider.name``, not the older ``gen_ai.system``), the last releases that carry
them in the main repository; the streaming names
(``gen_ai.client.operation.time_to_first_chunk``, ``gen_ai.request.stream``,
``gen_ai.response.time_to_first_chunk``) are those of 1.41, which added them.  Names that
are not GenAI ones are under ``paradigm_trio.``.

Prompt and completion text are recorded only with ``record_content=True``; headers (so the
API key) never are.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import trio
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import Span, SpanKind, StatusCode, TracerProvider

from .._endpoints._endpoint import Endpoint
from .._engine._attempts import Call
from .._engine._batch_options import BatchStatistics
from .._engine._ledger import CANCELLED, Ledger, Tokens
from .._engine._ratelimit import Rates
from .._errors import APIError, APIStatusError
from .._events import Attempt, Event
from .._version import __version__

__all__ = ["DEFAULT_PROVIDER_NAME", "SCHEMA_URL", "Telemetry"]

SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.37.0"
"""The semantic-conventions version the names follow."""

DEFAULT_PROVIDER_NAME: Final = "lighton"
"""``gen_ai.provider.name`` unless told otherwise (Paradigm is LightOn's platform)."""

DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""``gen_ai.client.operation.duration``'s advised bucket boundaries (seconds)."""

TOKEN_BUCKETS: Final = tuple(4**i for i in range(14))
"""``gen_ai.client.token.usage``'s advised bucket boundaries (1, 4, 16, ... 4**13)."""

FIRST_CHUNK_BUCKETS: Final = DURATION_BUCKETS
"""``gen_ai.client.operation.time_to_first_chunk``'s advised bucket boundaries (seconds)."""


class Telemetry:
    """The OpenTelemetry observer of one client (see the module's docstring).

    Args:
        ledger, limiter, rates: the client's (read by the observable metrics).
        model: the client's default model (``gen_ai.request.model`` of requests naming
            none).
        server_address, server_port: from the client's base URL.
        tracer_provider, meter_provider: ``None`` for the global ones.
        record_content: record the messages sent and received on the spans
            (``gen_ai.input.messages``, ``gen_ai.output.messages``).
        provider_name: ``gen_ai.provider.name``.
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        limiter: trio.CapacityLimiter,
        rates: Rates,
        model: str,
        server_address: str,
        server_port: int,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        record_content: bool = False,
        provider_name: str = DEFAULT_PROVIDER_NAME,
    ) -> None:
        self._tracer = trace.get_tracer(
            "paradigm_trio", __version__, tracer_provider, schema_url=SCHEMA_URL
        )
        self._model = model
        self._record_content = record_content
        self._common: dict[str, str | int] = {
            "gen_ai.provider.name": provider_name,
            "server.address": server_address,
            "server.port": server_port,
        }
        self._instruments = _Instruments.of(meter_provider)
        self._source = _Source(ledger, limiter, rates)  # (the instruments hold it weakly)
        self._instruments.sources.add(self._source)
        self._batches: dict[int, Span] = {}
        self._clock: tuple[object, int] | None = None  # (trio run, wall ns - trio ns)

    # ------------------------------------------------------------------ the observer

    def event(self, event: Event) -> None:
        """Nothing to do: the counters behind the metrics are the ledger's."""

    def finished(self, call: Call, outcome: object, usage: Tokens | None, end: float) -> None:
        """Record the request's duration and tokens, and its spans."""
        plan = call.plan
        endpoint: Endpoint[Any, Any] | None = plan.endpoint
        if endpoint is None:  # the model list: counted by the ledger, not a GenAI operation
            return
        request = plan.request
        model = request.model or endpoint.model
        attributes: dict[str, Any] = {
            **self._common,
            "gen_ai.operation.name": endpoint.operation,
            "gen_ai.request.model": model,
        }
        error_type = _error_type(outcome)
        if error_type is not None:
            attributes["error.type"] = error_type
        answer = None if isinstance(outcome, BaseException) or outcome is CANCELLED else outcome
        answered = dict(endpoint.answer_attributes(answer)) if answer is not None else {}
        if "gen_ai.response.model" in answered:
            attributes["gen_ai.response.model"] = answered["gen_ai.response.model"]
        instruments = self._instruments
        if outcome is not CANCELLED:  # (left early or cancelled from outside: no operation)
            instruments.duration.record(end - call.start, attributes)
        if call.first_chunk is not None:  # (a stream whose answer began: even if left early)
            first = {k: v for k, v in attributes.items() if k != "error.type"}
            instruments.first_chunk.record(call.first_chunk - call.start, first)
        if usage is not None:
            for kind in endpoint.token_types:
                tokens = usage.prompt_tokens if kind == "input" else usage.completion_tokens
                instruments.tokens.record(tokens, {**attributes, "gen_ai.token.type": kind})
        self._request_span(call, endpoint, outcome, answer, answered, usage, attributes, end)

    def batch_started(self, control: object, operation: str) -> None:
        self._batches[id(control)] = self._tracer.start_span(
            f"{operation}_batch",
            kind=SpanKind.INTERNAL,
            attributes={**self._common, "gen_ai.operation.name": operation},
            start_time=self._wall(trio.current_time()),
        )

    def batch_finished(
        self, control: object, statistics: BatchStatistics, error: BaseException | None
    ) -> None:
        span = self._batches.pop(id(control), None)
        if span is None:
            return
        span.set_attributes(dict(_batch_attributes(statistics)))
        if error is not None:
            span.set_attribute("error.type", _qualified_name(error))
            span.set_status(StatusCode.ERROR, _first_line(error))
        span.end(end_time=self._wall(trio.current_time()))

    # ------------------------------------------------------------------ spans

    def _wall(self, t: float) -> int:
        """Trio time ``t`` as wall-clock nanoseconds (one offset per trio run)."""
        run = trio.lowlevel.current_trio_token()
        if self._clock is None or self._clock[0] is not run:
            self._clock = (run, time.time_ns() - int(trio.current_time() * 1e9))
        return self._clock[1] + int(t * 1e9)

    def _request_span(
        self,
        call: Call,
        endpoint: Endpoint[Any, Any],
        outcome: object,
        answer: object,
        answered: dict[str, Any],
        usage: Tokens | None,
        attributes: dict[str, Any],
        end: float,
    ) -> None:
        plan = call.plan
        request = plan.request
        attributes = {**attributes}  # (the metrics' own stay as they are: low cardinality)
        attributes.update(endpoint.request_attributes(request))
        attributes["paradigm_trio.attempts"] = call.attempts_made
        attributes["paradigm_trio.stream"] = plan.stream
        if plan.hedge:
            attributes["paradigm_trio.hedge"] = True
        if plan.stream:
            attributes["gen_ai.request.stream"] = True
        if call.first_chunk is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = call.first_chunk - call.start
        if plan.custom_id is not None:
            attributes["paradigm_trio.custom_id"] = plan.custom_id
        attributes.update(answered)
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            if "output" in endpoint.token_types:
                attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        if outcome is CANCELLED:
            attributes["paradigm_trio.outcome"] = "cancelled"
        if self._record_content:
            attributes.update(endpoint.content_attributes(request, answer))
        parent = self._batches.get(id(plan.control)) if plan.control is not None else None
        span = self._tracer.start_span(
            f"{endpoint.operation} {attributes['gen_ai.request.model']}",
            context=trace.set_span_in_context(parent) if parent is not None else None,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=self._wall(call.start),
        )
        context = trace.set_span_in_context(span)
        ready = call.start
        for record in call.history:
            self._attempt_span(record, context, ready)
            ready = record.started + record.elapsed + (record.delay or 0.0)
        if call.interrupted is not None:
            self._attempt_span(call.interrupted, context, ready, ended_by=outcome)
        if isinstance(outcome, BaseException):
            span.set_status(StatusCode.ERROR, _first_line(outcome))
        span.end(end_time=self._wall(end))

    def _attempt_span(
        self, record: Attempt, context: Any, ready: float, ended_by: object = None
    ) -> None:
        """One attempt: ``ready`` is when it could have started (the wait before it is
        the slot, the rate permit or the retry budget); ``ended_by``, for the attempt
        interrupted by its request's end, that request's outcome."""
        attributes: dict[str, Any] = {
            "http.request.method": "POST",
            "server.address": self._common["server.address"],
            "server.port": self._common["server.port"],
            "paradigm_trio.attempt": record.number,
            "paradigm_trio.attempt.queue_wait": max(0.0, record.started - ready),
        }
        if record.number > 1:
            attributes["http.request.resend_count"] = record.number - 1
        if record.status is not None:
            attributes["http.response.status_code"] = record.status
        if record.request_id is not None:
            attributes["paradigm_trio.server_request_id"] = record.request_id
        if record.cause is not None:
            attributes["error.type"] = record.cause
        if record.delay is not None:
            attributes["paradigm_trio.retry.cause"] = record.cause or ""
            attributes["paradigm_trio.retry.delay"] = record.delay
        if ended_by is CANCELLED:  # closed by the caller: not an error (HTTP conventions)
            attributes["paradigm_trio.outcome"] = "cancelled"
        elif isinstance(ended_by, BaseException):  # a hook or a bug raised mid-attempt
            attributes["error.type"] = _qualified_name(ended_by)
        span = self._tracer.start_span(
            "POST",
            context=context,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=self._wall(record.started),
        )
        if record.cause is not None:
            span.set_status(StatusCode.ERROR, record.error or record.cause)
        if isinstance(ended_by, BaseException):
            span.set_status(StatusCode.ERROR, _first_line(ended_by))
        span.end(end_time=self._wall(record.started + record.elapsed))


def _batch_attributes(statistics: BatchStatistics) -> Iterator[tuple[str, Any]]:
    prefix = "paradigm_trio.batch."
    for name in (
        "submitted", "succeeded", "failed", "cancelled", "retries", "prompt_tokens",
        "completion_tokens", "total_tokens", "unknown_usage", "elapsed",
        "requests_per_minute", "tokens_per_minute", "latency_p50", "latency_p90",
        "latency_p99", "deduplicated", "cached", "hedges", "hedges_won",
    ):  # fmt: skip
        value = getattr(statistics, name)
        if value is not None:
            yield prefix + name, value
    for cause, count in statistics.retries_by_cause.items():
        yield f"{prefix}retries_by_cause.{cause}", count


def _error_type(outcome: object) -> str | None:
    if isinstance(outcome, BaseException):
        return _qualified_name(outcome)
    return None


def _qualified_name(error: BaseException) -> str:
    kind = type(error)
    if isinstance(error, APIError):  # public as paradigm_trio.<Name>
        return f"paradigm_trio.{kind.__name__}"
    return f"{kind.__module__}.{kind.__qualname__}"


def _first_line(error: BaseException) -> str:
    if isinstance(error, APIStatusError):
        return f"{type(error).__name__} (status {error.status_code})"
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


# --------------------------------------------------------------------------- metrics


class _Source:
    """One instrumented client, as the observable metrics read it."""

    __slots__ = ("__weakref__", "ledger", "limiter", "rates")

    def __init__(self, ledger: Ledger, limiter: trio.CapacityLimiter, rates: Rates):
        self.ledger = ledger
        self.limiter = limiter
        self.rates = rates


class _Instruments:
    """The instruments of one meter provider, shared by every client instrumented on it.

    The observable ones sum over the clients still alive (held weakly: instrumenting a
    client does not keep it alive).
    """

    _by_provider: dict[int, tuple[object, _Instruments]] = {}  # noqa: RUF012

    @classmethod
    def of(cls, provider: MeterProvider | None) -> _Instruments:
        key = id(provider)
        known = cls._by_provider.get(key)
        if known is None or known[0] is not provider:
            meter = metrics.get_meter("paradigm_trio", __version__, provider, schema_url=SCHEMA_URL)
            known = (provider, cls(meter))
            cls._by_provider[key] = known
        return known[1]

    def __init__(self, meter: Meter) -> None:
        self.sources: weakref.WeakSet[_Source] = weakref.WeakSet()
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )  # fmt: skip
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )  # fmt: skip
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk, measured from when the client "
            "issues the generation request to when the first chunk is received in the "
            "response stream.",
            explicit_bucket_boundaries_advisory=FIRST_CHUNK_BUCKETS,
        )  # fmt: skip
        for name, unit, description, read in _OBSERVED_COUNTERS:
            meter.create_observable_counter(
                name, [self._callback(read)], unit=unit, description=description
            )
        meter.create_observable_up_down_counter(
            "paradigm_trio.in_flight", [self._callback(_in_flight)], unit="{attempt}",
            description="Attempts holding a concurrency slot.",
        )  # fmt: skip
        meter.create_observable_gauge(
            "paradigm_trio.concurrency", [self._callback(_concurrency)], unit="{slot}",
            description="The concurrency limit in force (moved by the adaptive controller).",
        )  # fmt: skip

    def _callback(self, read: _Reader) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            totals: dict[tuple[tuple[str, str], ...], float] = {}
            for source in list(self.sources):
                for attributes, value in read(source):
                    key = tuple(sorted(attributes.items()))
                    totals[key] = totals.get(key, 0) + value
            return [Observation(value, dict(key)) for key, value in totals.items()]

        return callback


_Reader = Any  # (_Source) -> Iterable[(attributes, value)]


def _one(value: float, **attributes: str) -> Iterator[tuple[Mapping[str, str], float]]:
    yield attributes, value


def _in_flight(s: _Source) -> Iterator[tuple[Mapping[str, str], float]]:
    return _one(s.ledger.in_flight)


def _concurrency(s: _Source) -> Iterator[tuple[Mapping[str, str], float]]:
    return _one(int(s.limiter.total_tokens))


def _finished(s: _Source) -> Iterator[tuple[Mapping[str, str], float]]:
    ledger = s.ledger
    for outcome, count in (
        ("succeeded", ledger.succeeded),
        ("failed", ledger.failed),
        ("cancelled", ledger.cancelled),
    ):
        yield {"paradigm_trio.outcome": outcome}, count


def _retries(s: _Source) -> Iterator[tuple[Mapping[str, str], float]]:
    for cause, count in s.ledger.retries_by_cause.items():
        yield {"paradigm_trio.retry.cause": cause}, count


def _tokens(s: _Source) -> Iterator[tuple[Mapping[str, str], float]]:
    yield {"gen_ai.token.type": "input"}, s.ledger.prompt_tokens
    yield {"gen_ai.token.type": "output"}, s.ledger.completion_tokens


_OBSERVED_COUNTERS: Sequence[tuple[str, str, str, _Reader]] = (
    ("paradigm_trio.started", "{request}", "Logical requests started.",
     lambda s: _one(s.ledger.started)),
    ("paradigm_trio.finished", "{request}", "Logical requests over, by outcome.", _finished),
    ("paradigm_trio.attempts", "{attempt}", "HTTP attempts made.",
     lambda s: _one(s.ledger.attempts)),
    ("paradigm_trio.retries", "{retry}", "Retries made, by the cause they retry.", _retries),
    ("paradigm_trio.rate_limited", "{response}", "429 answers received.",
     lambda s: _one(s.ledger.rate_limited_answers)),
    ("paradigm_trio.tokens", "{token}", "Tokens of the successes whose usage is known.",
     _tokens),
    ("paradigm_trio.unknown_usage", "{request}", "Successes whose server reported no usage.",
     lambda s: _one(s.ledger.unknown_usage)),
    ("paradigm_trio.rate_limit.wait", "s", "Seconds spent waiting for a rate-limit permit.",
     lambda s: _one(s.rates.waited)),
    ("paradigm_trio.rate_limit.waits", "{permit}", "Rate-limit permits that had to wait.",
     lambda s: _one(s.rates.waits)),
)  # fmt: skip
