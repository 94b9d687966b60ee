"""Instrumentation: typed events, the attempt history, and client statistics.

Pass ``on_event=callback`` to :class:`~paradigm_trio.Client`; the callback is called
synchronously, from the task doing the work, with one of the frozen event objects below.
It must not block (it runs between two checkpoints); an exception it raises propagates
into the request that emitted the event.

None of these objects holds the API key or any request header.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "Attempt",
    "AttemptFailed",
    "AttemptStarted",
    "ClientStatistics",
    "EmbeddingPackingDisabled",
    "Event",
    "RateLimited",
    "RequestFinished",
    "RetryScheduled",
    "SharedQuotaRestored",
    "SharedQuotaUnavailable",
    "StreamEndedWithoutDone",
]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a logical request, as kept in the attempt history.

    Attributes:
        number: 1 for the first attempt.
        started: ``trio.current_time()`` when it started.
        elapsed: seconds it took.
        status: the HTTP status, or ``None`` if no response arrived.
        cause: ``None`` for a success; otherwise why it failed: the status as a string
            (``"429"``, ``"503"``), ``"connection"``, ``"timeout"``,
            ``"invalid_response"``, ``"tls"`` (a certificate that does not verify),
            ``"proxy"`` (a proxy's refusal, :class:`ProxyError`), ``"host"`` (a host
            name that cannot be looked up, met after the client was built) or, for
            streams, ``"stream_error"`` (an error event without a status).
        error: a one-line description of the failure (never the API key).
        delay: the wait before the next attempt, or ``None`` if there was none.
        request_id: the server's ``x-request-id``, if any.
        reached: whether the request may have reached the server: ``False`` only for
            a failure that proves none of it was sent (the connection could not be
            opened: connect, DNS, TLS, a proxy); a request that is not idempotent (an
            upload, a delete) is resent only after such a failure, or after a status
            that says the server did not process it (408, 425, 429, 503).
    """

    number: int
    started: float
    elapsed: float
    status: int | None
    cause: str | None = None
    error: str | None = None
    delay: float | None = None
    request_id: str | None = None
    reached: bool = True


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """An attempt is about to be sent (it holds a concurrency slot); ``hedge``: it is a
    batch's hedge (``BatchOptions.hedge``), a copy of a request still under way."""

    custom_id: str | None
    idempotency_key: str
    attempt: int
    time: float
    hedge: bool = False


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """An attempt failed; :class:`RetryScheduled` follows if it will be retried."""

    custom_id: str | None
    idempotency_key: str
    attempt: Attempt
    will_retry: bool


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A retry will be sent after ``delay`` seconds because of ``cause``."""

    custom_id: str | None
    idempotency_key: str
    attempt: int
    cause: str
    delay: float
    server_requested: bool


@dataclass(frozen=True, slots=True)
class RateLimited:
    """The server answered 429; ``retry_after`` is the wait it asked for, if any."""

    custom_id: str | None
    idempotency_key: str
    retry_after: float | None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamEndedWithoutDone:
    """A stream ended complete but without ``data: [DONE]``: accepted, not an error.

    The body ended after every choice had its ``finish_reason`` (some OpenAI-compatible
    servers never send ``[DONE]``): cleanly, or with the connection breaking (then
    ``connection_error`` says how; the answer was whole, so it is not resent).  Emitted
    once, by the attempt that read the stream, before :class:`RequestFinished`.  If the
    usage chunk was missing too, the completion's ``usage`` is ``None``.
    """

    custom_id: str | None
    idempotency_key: str
    attempt: int
    connection_error: str | None = None


@dataclass(frozen=True, slots=True)
class RequestFinished:
    """A logical request is over: ``ok`` and its attempts, elapsed time and token usage.

    ``total_tokens`` is ``None`` when the server reported no usage: always for a failure,
    and for a completion without ``usage`` (unknown, not zero).
    """

    custom_id: str | None
    idempotency_key: str
    ok: bool
    attempts: int
    elapsed: float
    total_tokens: int | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """A snapshot of a client's counters (see :meth:`Client.statistics`).

    Attributes:
        in_flight: attempts holding a concurrency slot right now.
        concurrency: the current effective concurrency limit.
        started: logical requests started.
        succeeded: logical requests that returned a completion.
        failed: logical requests that raised any other :class:`APIError`.
        cancelled: logical requests cancelled from outside (no event) or stopped by a
            deadline (:class:`RequestCancelled`).
        attempts: HTTP attempts made.
        retries: retries made (attempts beyond the first).
        retries_by_cause: retries counted by cause (``"429"``, ``"connection"``, ...).
        prompt_tokens, completion_tokens, total_tokens: usage summed over the successful
            completions whose usage is known (``unknown_usage`` counts the others).
        latency_p50, latency_p90, latency_p99: seconds per successful logical request
            (retries included), within 2 %; ``None`` before the first success.
        unknown_usage: successful completions whose server reported no usage; the token
            sums leave them out, so they are lower bounds when this is not 0.
        rate_limited: 429 answers received (each also a :class:`RateLimited` event).
        hedges: attempts that were batches' hedges (also counted in ``attempts`` and
            ``started``: a hedge is a logical request of its own, with one attempt).
    """

    in_flight: int
    concurrency: int
    started: int
    succeeded: int
    failed: int
    cancelled: int
    attempts: int
    retries: int
    retries_by_cause: Mapping[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    unknown_usage: int = 0
    rate_limited: int = 0
    hedges: int = 0


class LatencyHistogram:
    """Log-bucketed histogram: constant memory, percentiles within about 2 %."""

    __slots__ = ("_buckets", "count")
    _BASE = 1.02
    _FLOOR = 1e-4

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0

    def add(self, seconds: float) -> None:
        index = 0 if seconds <= self._FLOOR else int(math.log(seconds / self._FLOOR, self._BASE))
        self._buckets[index] = self._buckets.get(index, 0) + 1
        self.count += 1

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                # geometric middle of the bucket
                return float(self._FLOOR * self._BASE ** (index + 0.5))
        raise AssertionError("unreachable")  # pragma: no cover


def frozen_counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted(counts.items())))


@dataclass(frozen=True, slots=True)
class SharedQuotaUnavailable:
    """The Redis of a shared quota (:class:`~paradigm_trio.RedisQuota`) stopped answering.

    Emitted once per outage, by the first request that needs the quota then.  ``fallback``
    is what requests do until :class:`SharedQuotaRestored`: ``"wait"`` (nothing is sent)
    or ``"local"`` (local buckets at the quota's rates divided by ``workers``, the live
    workers when Redis was last seen).  ``url`` is the quota's Redis URL, its password
    shown as ``***``.
    """

    name: str
    error: str
    fallback: str
    workers: int
    url: str = ""


@dataclass(frozen=True, slots=True)
class SharedQuotaRestored:
    """The Redis of a shared quota answers again; ``outage`` is how long it did not
    (seconds, trio's clock).  Emitted by the first request to use it again."""

    name: str
    outage: float


@dataclass(frozen=True, slots=True)
class EmbeddingPackingDisabled:
    """The server refused a request of several embedding inputs (``status``): from now
    on this client sends ``model``'s inputs one per request (Paradigm documents
    ``input`` as a string).  Emitted once per client and model."""

    model: str
    status: int | None


# Every event class above: the type of what ``on_event`` receives.
Event = (
    AttemptStarted
    | AttemptFailed
    | RetryScheduled
    | RateLimited
    | StreamEndedWithoutDone
    | RequestFinished
    | SharedQuotaUnavailable
    | SharedQuotaRestored
    | EmbeddingPackingDisabled
)
