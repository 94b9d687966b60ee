"""Configuration value objects: :class:`RetryPolicy`, :class:`Timeouts`, :class:`Limits`,
:class:`RedisQuota`.

All are frozen, keyword-only and validated at construction: a bad value raises
:class:`ValueError` naming the field.  Derive variants with :func:`dataclasses.replace`
or the ``replace`` method of each.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Set as AbstractSet
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal, Self
from urllib.parse import urlsplit

from ._credentials import mask_credentials

__all__ = [
    "AttemptTimedOut",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "Limits",
    "RedisQuota",
    "RetryPolicy",
    "Timeouts",
]

DEFAULT_BASE_URL = "https://paradigm.lighton.ai/api/v2"
"""The Paradigm API, used when neither ``base_url=`` nor ``PARADIGM_BASE_URL`` is given."""

DEFAULT_MODEL = "alfred-4.2"
"""The model used when a request names none."""


class AttemptTimedOut(Exception):
    """Raised by an attempt function that bounds its own waits by the attempt's deadline
    (``Timeouts.attempt``: the fast lane, given ``Attempting.until``) when that deadline
    passes; the engine makes it the attempt's timeout, as its own cancel scope would."""


DEFAULT_RETRY_STATUSES = frozenset({408, 409, 429})
"""Statuses below 500 that are retried (every 5xx is retried as well)."""


def _check_number(
    owner: str,
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    allow_none: bool = False,
    strict: bool = False,
) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{owner}.{name} must be a number, got {value!r}")
    if math.isnan(value) or (strict and value <= minimum) or value < minimum:
        bound = f"greater than {minimum}" if strict else f"at least {minimum}"
        raise ValueError(f"{owner}.{name} must be {bound}, got {value!r}")


def _check_int(owner: str, name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{name} must be at least {minimum}, got {value!r}")


class _Replace:
    __slots__ = ()

    def replace(self, **changes: object) -> Self:
        """A copy with some fields changed (validated like the constructor)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy(_Replace):
    """When and how a failed attempt is retried.

    An attempt is retried when all of these hold:

    * it failed with a retryable cause: a status in :attr:`retry_statuses` or any 5xx,
      a connection error or timeout (:attr:`retry_connection_errors`), a 2xx with an
      invalid body (:attr:`retry_invalid_responses`), or an answer that does not match
      ``output=`` (:attr:`invalid_output_retries`).  A response header
      ``x-should-retry: true`` or ``false`` overrides the status rule either way;
    * fewer than :attr:`attempts` attempts have been made;
    * the wait fits in the request's remaining time (:attr:`Timeouts.total`, or a batch
      deadline): a retry that could not finish in time is not started, and the last error
      is raised instead;
    * a wait the server asks for is at most :attr:`max_retry_after`.

    The wait before retry number ``n`` (1 for the first retry) is the server's, when the
    response carries ``retry-after-ms`` (milliseconds), or ``Retry-After`` (seconds, or an
    HTTP date).  Otherwise it is exponential backoff with jitter::

        wait(n) = min(max_delay, initial_delay * multiplier ** (n - 1)) * (1 - jitter * U)

    with ``U`` uniform in ``[0, 1)``.  ``jitter=0`` gives fixed waits, ``jitter=1`` is
    "full jitter".  With the defaults the waits are about 0.5, 1, 2 seconds (each between
    half and all of that).

    That wait is then scaled by how the server is doing, seen from this client: the share
    ``f`` of its recent attempts (weights halving every 2 seconds) that failed in a way
    that is retried::

        wait(n) * min(1, max(min_backoff_factor, f / 0.5))

    While half or more of the recent attempts fail (a blip, an outage, an overload), the
    full backoff applies.  When failures are rare (one replica's hiccup on a server that
    answers almost everything), a retry goes out sooner: with ``f = 0.1``, after a fifth of
    the backoff, and never sooner than ``min_backoff_factor`` of it.  The batch retry
    budget (``retry_budget``, :class:`BatchOptions`) still bounds how many retries are sent.
    ``min_backoff_factor=1`` turns the scaling off.

    A server-requested wait longer than :attr:`max_retry_after` is not slept through: the
    request fails at once with the server's error (usually a
    :class:`~paradigm_trio.RateLimitError`), whose attempt history shows the wait asked for.

    Attributes:
        attempts: total attempts, the first included (``1`` disables retries).
        initial_delay: backoff before the first retry, seconds.
        multiplier: growth factor of the backoff.
        max_delay: cap on a computed backoff, seconds.
        jitter: fraction of the backoff that is randomised, in ``[0, 1]``.
        max_retry_after: longest server-requested wait honoured, seconds.
        min_backoff_factor: the smallest fraction of the computed backoff waited when
            failures are rare, in ``[0, 1]`` (see above).
        retry_statuses: statuses below 500 that are retried (5xx always are).
        retry_connection_errors: retry connection failures and timeouts.
        retry_invalid_responses: retry 2xx responses whose body is not a valid completion.
            Chat completions have no side effects besides their cost, so this is on.
        invalid_output_retries: how many times a request with ``output=`` is sent again
            when its answer does not parse or validate against the schema
            (:class:`~paradigm_trio.StructuredOutputError`, cause ``"invalid_output"``).
            Each resend is an attempt like any other, within :attr:`attempts`.  ``0``
            (the default): such an answer fails the request at once.
    """

    attempts: int = 4
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 60.0
    min_backoff_factor: float = 0.1
    retry_statuses: AbstractSet[int] = field(default=DEFAULT_RETRY_STATUSES)
    retry_connection_errors: bool = True
    retry_invalid_responses: bool = True
    invalid_output_retries: int = 0

    def __post_init__(self) -> None:
        owner = "RetryPolicy"
        _check_int(owner, "attempts", self.attempts, minimum=1)
        _check_int(owner, "invalid_output_retries", self.invalid_output_retries, minimum=0)
        _check_number(owner, "initial_delay", self.initial_delay)
        _check_number(owner, "multiplier", self.multiplier, minimum=1.0)
        _check_number(owner, "max_delay", self.max_delay)
        _check_number(owner, "jitter", self.jitter)
        if self.jitter > 1:
            raise ValueError(f"{owner}.jitter must be at most 1, got {self.jitter!r}")
        _check_number(owner, "max_retry_after", self.max_retry_after)
        _check_number(owner, "min_backoff_factor", self.min_backoff_factor)
        if self.min_backoff_factor > 1:
            raise ValueError(
                f"{owner}.min_backoff_factor must be at most 1, got {self.min_backoff_factor!r}"
            )
        statuses = frozenset(self.retry_statuses)
        for status in statuses:
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status < 600:
                raise ValueError(f"{owner}.retry_statuses holds {status!r}, not an HTTP status")
        object.__setattr__(self, "retry_statuses", statuses)
        for name in ("retry_connection_errors", "retry_invalid_responses"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{owner}.{name} must be True or False, got {getattr(self, name)!r}"
                )

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt."""
        return cls(attempts=1)

    def is_retryable_status(self, status: int) -> bool:
        """Whether a response with this status is retried (before ``x-should-retry``)."""
        return status in self.retry_statuses or 500 <= status < 600

    def backoff(self, retry_number: int, u: float) -> float:
        """The computed wait before retry ``retry_number`` (1-based) for a uniform draw ``u``."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (retry_number - 1))
        return base * (1.0 - self.jitter * u)


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts(_Replace):
    """How long each phase of a request may take, in seconds (``None``: no limit).

    ``connect``, ``read`` and ``write`` are enforced by the HTTP layer: ``read`` is an
    *inactivity* timeout (no byte received for that long), not a cap on the whole response.
    ``attempt`` and ``total`` are trio cancel scopes on trio's clock: ``attempt`` bounds one
    HTTP exchange, ``total`` bounds the whole logical request, retries and backoff waits
    included.  ``first_token`` bounds, for a streamed request, the time until the first
    chunk arrives; after that ``read`` bounds the silence between chunks.

    Every timeout raises :class:`~paradigm_trio.APITimeoutError` with ``.which`` naming it.
    Timeouts of one attempt are retried like connection errors; ``total`` is not.

    Attributes:
        connect: establishing the TCP/TLS connection.
        read: silence while waiting for response bytes.
        write: sending the request.
        attempt: one attempt, from sending to the last byte of the response.
        total: the logical request, every attempt and wait included.
        first_token: a streamed request, until its first chunk.
        stall_factor: a streamed request, after its first chunk: how many times longer
            than the longest gap between its chunks so far a silence may last before the
            stream counts as stalled (``None``, the default: no stall detection, only
            ``read`` applies).  Measured from the stream's own pace once it has shown
            three gaps, and never less than ``stall_floor``.  A stalled stream fails as a
            timeout (``which="stream"``): a streamed batch item is then resent, a
            ``chat_stream`` raises it.
        stall_floor: the shortest silence that counts as a stall, whatever the pace
            (``None``: no floor).
    """

    connect: float | None = 10.0
    read: float | None = 120.0
    write: float | None = 30.0
    attempt: float | None = 180.0
    total: float | None = None
    first_token: float | None = 60.0
    stall_factor: float | None = None
    stall_floor: float | None = 5.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "write", "attempt", "total", "first_token"):
            _check_number("Timeouts", name, getattr(self, name), allow_none=True, strict=True)
        _check_number("Timeouts", "stall_factor", self.stall_factor, minimum=1.0, allow_none=True)
        _check_number("Timeouts", "stall_floor", self.stall_floor, allow_none=True, strict=True)

    @classmethod
    def none(cls) -> Timeouts:
        """No timeout at all (use with care: a hung server then hangs the request)."""
        return cls(
            connect=None,
            read=None,
            write=None,
            attempt=None,
            total=None,
            first_token=None,
            stall_factor=None,
            stall_floor=None,
        )


@dataclass(frozen=True, slots=True)
class RedisQuota(_Replace):
    """A rate limit shared by every client that names the same quota in the same Redis.

    Pass it as ``Limits(requests_per_minute=..., tokens_per_minute=...,
    shared=RedisQuota(url, name=...))``: the limits are then one quota for all the
    processes, on all the machines, whose clients use that ``url`` and ``name``, instead of
    one quota each.  Give every worker the same rates (the quota's, in full: not a share
    of it).  Needs the ``redis`` extra (``pip install coredis``, or
    ``pip install '.[redis]'`` from a clone), imported only when a client with a shared
    quota is opened.

    Requests and tokens are taken together by one script run in Redis, on Redis's clock
    (never the workers'), from two token buckets that hold at most a minute's worth.  A
    quota Redis does not hold yet (first use, or Redis lost its data) starts *empty* and
    fills at its rate: no worker assumes unspent quota it cannot prove.  A 429 that a
    worker takes as a spent quota pauses every worker for its ``Retry-After``; the
    server's ``x-ratelimit-*`` headers lower the shared buckets, as for a local limit.
    Each worker writes a heartbeat; :func:`~paradigm_trio.quota_state` reads the quota
    and its live workers.

    When Redis does not answer within ``timeout`` (down, unreachable, too slow), the
    client emits :class:`~paradigm_trio.SharedQuotaUnavailable` and, by ``on_unavailable``:

    * ``"wait"`` (the default): requests wait, nothing is sent, and Redis is tried again
      with backoff (0.05 s doubling to 1 s).  Nothing is lost and the quota is never
      exceeded; the batch stalls while Redis is gone.
    * ``"local"``: each worker goes on alone, with local buckets at the quota's rates
      divided by the workers live when Redis was last seen (starting empty).  The quota
      holds as long as no worker joins during the outage.

    Either way :class:`~paradigm_trio.SharedQuotaRestored` follows when Redis answers
    again, and the shared buckets are used again (after ``"local"``, they are emptied
    first: what the workers sent alone is not known to Redis).

    Attributes:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
            ``unix:///path/to.sock``, as ``coredis.Redis.from_url`` reads it.
        name: the quota's name: every worker of one API key uses the same, and two keys
            sharing a Redis use two names.  Keys are ``{name}:quota``, ``{name}:workers``
            and ``{name}:worker:<id>`` (one Redis Cluster slot).
        on_unavailable: ``"wait"`` or ``"local"`` (see above).
        timeout: seconds each Redis call may take before Redis counts as unavailable.
        heartbeat: seconds between two heartbeats of a worker; it counts as live for
            three heartbeats after its last.
    """

    url: str
    _: KW_ONLY
    name: str = "paradigm-trio"
    on_unavailable: Literal["wait", "local"] = "wait"
    timeout: float = 1.0
    heartbeat: float = 2.0

    def __post_init__(self) -> None:
        owner = "RedisQuota"
        if not isinstance(self.url, str) or urlsplit(self.url).scheme not in (
            "redis",
            "rediss",
            "unix",
        ):
            raise ValueError(
                f"{owner}.url must be a redis://, rediss:// or unix:// URL, got "
                f"{_hide_password(self.url)!r}"
            )
        if not isinstance(self.name, str) or not self.name or set(self.name) & set("{}"):
            raise ValueError(
                f"{owner}.name must be a non-empty string without braces, got {self.name!r}"
            )
        if self.on_unavailable not in ("wait", "local"):
            raise ValueError(
                f"{owner}.on_unavailable must be 'wait' or 'local', got {self.on_unavailable!r}"
            )
        _check_number(owner, "timeout", self.timeout, strict=True)
        _check_number(owner, "heartbeat", self.heartbeat, strict=True)

    def __repr__(self) -> str:
        return (
            f"RedisQuota({_hide_password(self.url)!r}, name={self.name!r}, "
            f"on_unavailable={self.on_unavailable!r}, timeout={self.timeout!r}, "
            f"heartbeat={self.heartbeat!r})"
        )

    @property
    def display_url(self) -> str:
        """:attr:`url` with its password, if any, shown as ``***`` (for messages)."""
        return str(_hide_password(self.url))


def _hide_password(url: object) -> object:
    """``url`` with its credentials (a password, a ``?password=``) shown as ``***``."""
    return mask_credentials(url) if isinstance(url, str) else url


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits(_Replace):
    """How much the client may send at once.

    Attributes:
        concurrency: requests in flight at once, client-wide (a :class:`trio.CapacityLimiter`;
            the HTTP connection pool is sized to match, so requests wait on the limiter and
            never on a pool timeout).
        requests_per_minute: client-side request rate limit, or ``None``.
        tokens_per_minute: client-side token rate limit (prompt estimate plus
            ``max_tokens``), or ``None``.
        adaptive: let the server's 429s and ``x-ratelimit-*`` headers lower the effective
            concurrency and rate (and let clean successes raise them back).
        shared: a :class:`RedisQuota`: the two rates are then one quota shared by every
            client that names it (``None``: this client's own).  Such a client must be
            opened with ``async with``.
    """

    concurrency: int = 64
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    adaptive: bool = True
    shared: RedisQuota | None = None

    def __post_init__(self) -> None:
        _check_int("Limits", "concurrency", self.concurrency, minimum=1)
        _check_number(
            "Limits", "requests_per_minute", self.requests_per_minute, allow_none=True, strict=True
        )
        _check_number(
            "Limits", "tokens_per_minute", self.tokens_per_minute, allow_none=True, strict=True
        )
        if not isinstance(self.adaptive, bool):
            raise ValueError(f"Limits.adaptive must be True or False, got {self.adaptive!r}")
        if self.shared is not None and not isinstance(self.shared, RedisQuota):
            raise ValueError(f"Limits.shared must be a RedisQuota or None, got {self.shared!r}")
