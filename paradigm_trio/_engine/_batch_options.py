"""How a batch runs and how it stands: :class:`BatchOptions` and :class:`BatchStatistics`.

Value objects only (no I/O): the batch engine (``_batch``) reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from .._config import RetryPolicy, Timeouts, _check_int, _check_number, _Replace
from ._budget import DEFAULT_SYSTEMATIC_FAILURES, DEFAULT_UNREACHABLE_AFTER
from ._dedupe import DEDUPE_MODES
from ._hedge import Hedge

__all__ = [
    "BatchKeywords",
    "BatchOptions",
    "BatchStatistics",
    "DEFAULT_CIRCUIT_BREAKER",
    "DEFAULT_RETRY_BUDGET",
    "DEFAULT_SYSTEMATIC_FAILURES",
    "OnError",
]

OnError = Literal["collect", "raise"]

DEFAULT_RETRY_BUDGET = 1.0
"""Retries each success of a batch earns (see :class:`BatchOptions`)."""

DEFAULT_CIRCUIT_BREAKER = 20
"""Consecutive connection failures after which a batch stops trusting the server."""

_SAMPLING = ("model", "temperature", "max_tokens", "top_p", "seed")


@dataclass(frozen=True, slots=True)
class BatchStatistics:
    """Where a batch stands: a frozen snapshot (see :meth:`BatchStream.statistics`).

    Attributes:
        submitted: items read from the input so far.
        done: results produced (``succeeded + failed + cancelled``).
        succeeded, failed, cancelled: results by kind.
        in_flight: items being worked on.
        retries: retries made by this batch; ``retries_by_cause`` splits them by cause.
        prompt_tokens, completion_tokens, total_tokens: summed usage of the successes
            whose usage is known (``unknown_usage`` counts the others).
        latency_p50, latency_p90, latency_p99: seconds per successful item (within 2 %).
        elapsed: seconds since the batch started.
        requests_per_minute, tokens_per_minute: effective throughput of the successes
            (tokens: of those whose usage is known).
        unknown_usage: successes whose server reported no usage (``usage`` is ``None``);
            the token sums leave them out, so they are lower bounds when this is not 0.
        deduplicated: results that share the answer of an identical request of the batch
            (nothing was sent for them; see ``BatchOptions.dedupe``).  They count in
            ``succeeded``, ``failed`` or ``cancelled`` as their answer does, and their
            usage in the token sums (the answer's, not a second payment).
        cached: results answered from the client's :class:`ResponseCache` (nothing was
            sent for them; their duplicates count in ``deduplicated``).
        hedges: hedges sent (``BatchOptions.hedge``): requests beyond one per item, besides
            retries (a hedge is counted when it starts: one cut at once, because its
            original answered meanwhile, may not have reached the server); ``hedges_won``:
            those whose answer came first and is the result's.
    """

    submitted: int
    done: int
    succeeded: int
    failed: int
    cancelled: int
    in_flight: int
    retries: int
    retries_by_cause: Mapping[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    elapsed: float
    requests_per_minute: float
    tokens_per_minute: float
    unknown_usage: int = 0
    deduplicated: int = 0
    cached: int = 0
    hedges: int = 0
    hedges_won: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchOptions(_Replace):
    """How a batch runs: the keywords of :meth:`Client.stream_batch` and :meth:`Client.chat_batch`.

    Either pass the keywords to those methods, or build one ``BatchOptions`` (validated
    here, once) and pass it as ``options=``; keywords given beside it override its fields.

    Attributes:
        on_error: ``"collect"`` (failures are results) or ``"raise"`` (the first failure
            cancels the rest; iteration then raises :class:`BatchError`).
        deadline: an absolute ``trio.current_time()``; at the deadline requests in flight
            are interrupted and the rest of the input is reported, unsent, as
            :class:`RequestCancelled`.  (Your own cancel scope instead cancels the whole
            batch and raises ``Cancelled``.)
        on_progress: called with a :class:`BatchStatistics` after every result.
        retry, timeouts: per-request policies instead of the client's.
        retry_budget: retries each success earns, in a budget that paces retries (never
            refuses them while the server answers): a reserve of at least the concurrency,
            ``retry_budget`` tokens per success and 10 a second whatever happens; a retry
            without a token waits for one.  ``None``: no budget.  See the rate-limits
            how-to for the formula.
        circuit_breaker: consecutive connection failures (no HTTP response at all; any
            response resets the count) that open the breaker; ``None`` to disable.  While it
            is open, attempts wait a second between probes and connection failures do not
            spend the retry budget.
        unreachable_after: seconds of nothing but connection failures after which the batch
            fails its remaining items with :class:`ServerUnreachableError`.
        systematic_failures: answers in a row, at the batch's start, that stop it when
            they are all the same configuration failure (a 401, 403 or 404, a refused
            certificate or proxy: see :func:`diagnose`): iteration then raises
            :class:`SystematicFailureError`, having sent at most the concurrency plus
            ``systematic_failures - 1`` requests; inputs not sent get no result.  Until the
            batch has an answer of another kind, such answers are held, not handed out
            (the error's ``results`` holds them if it stops).  One success, or one other
            failure, turns the rule off for the rest of the batch.  ``None``: never stop
            (only with ``on_error="collect"``; ``"raise"`` stops at the first failure).
        stream: send each request as a stream and assemble it, so that
            ``Timeouts.first_token`` and the inactivity timeout apply to every item; a
            stream that breaks midway is retried whole.  Results are the same completions.
        warm_up: open the first wave's connections as the batch starts, all at once, within
            ``Timeouts.connect``; each request of the first wave takes one of them rather
            than opening its own, so no connection is opened twice.  As many as the
            concurrency, or as the requests a list makes when fewer: its items, or for
            embeddings its packs, ``ceil(len(inputs) / pack_inputs)`` (counting an input
            per item: items of several inputs, or long enough to reach ``pack_tokens``,
            make more requests, which open their own connections).  An input of unknown
            length (an iterator, an async iterable): the concurrency.  Off by default: with
            the inputs at hand, the requests open their connections as soon as the
            warm-up would (see the batching how-to).  Only on the client's own transport.
        dedupe: identical requests of the batch (the same endpoint and body, its
            ``custom_id`` aside) sent once, each duplicate given a result of its own that
            shares the answer (``deduplicated=True``, no attempts).  ``"auto"`` (the
            default): only deterministic requests (chat or a text completion with
            ``temperature=0`` or a ``seed``; every embeddings and tokenize request);
            ``"all"``: every identical request, sampled ones too (one sample serves them
            all; never a thread's turn); ``"off"``: each item sent.  See the batching
            how-to.
        hedge: ``True`` or a :class:`Hedge`: an item still unanswered after a percentile
            of the batch's own latencies gets one copy, the first answer wins (every batch;
            never a thread's turn).  Default ``None``: no hedging.  See the batching how-to.
        model, temperature, max_tokens, top_p, seed: fill the fields an item leaves unset.
    """

    on_error: Literal["collect", "raise"] = "collect"
    deadline: float | None = None
    on_progress: Callable[[BatchStatistics], object] | None = None
    retry: RetryPolicy | None = None
    timeouts: Timeouts | None = None
    retry_budget: float | None = DEFAULT_RETRY_BUDGET
    circuit_breaker: int | None = DEFAULT_CIRCUIT_BREAKER
    unreachable_after: float = DEFAULT_UNREACHABLE_AFTER
    systematic_failures: int | None = DEFAULT_SYSTEMATIC_FAILURES
    stream: bool = False
    warm_up: bool = False
    dedupe: Literal["auto", "all", "off"] = "auto"
    hedge: Hedge | bool | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        owner = "BatchOptions"
        if self.on_error not in ("collect", "raise"):
            raise ValueError(f"on_error must be 'collect' or 'raise', got {self.on_error!r}")
        _check_number(owner, "deadline", self.deadline, minimum=-math.inf, allow_none=True)
        if self.on_progress is not None and not callable(self.on_progress):
            raise ValueError(f"{owner}.on_progress must be callable, got {self.on_progress!r}")
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise ValueError(f"{owner}.retry must be a RetryPolicy, got {self.retry!r}")
        if self.timeouts is not None and not isinstance(self.timeouts, Timeouts):
            raise ValueError(f"{owner}.timeouts must be a Timeouts, got {self.timeouts!r}")
        if self.retry_budget is not None and not (
            isinstance(self.retry_budget, int | float)
            and not isinstance(self.retry_budget, bool)
            and self.retry_budget >= 0
        ):
            raise ValueError(f"retry_budget must be >= 0 or None, got {self.retry_budget!r}")
        if self.circuit_breaker is not None:
            try:
                _check_int(owner, "circuit_breaker", self.circuit_breaker, minimum=1)
            except ValueError:
                raise ValueError(
                    f"circuit_breaker must be >= 1 or None, got {self.circuit_breaker!r}"
                ) from None
        _check_number(owner, "unreachable_after", self.unreachable_after, strict=True)
        if self.dedupe not in DEDUPE_MODES:
            raise ValueError(
                f"{owner}.dedupe must be one of {', '.join(map(repr, DEDUPE_MODES))}, "
                f"got {self.dedupe!r}"
            )
        if self.hedge is not None and not isinstance(self.hedge, Hedge | bool):
            raise ValueError(
                f"{owner}.hedge must be True, False, None or a Hedge, got {self.hedge!r}"
            )
        if self.systematic_failures is not None:
            _check_int(owner, "systematic_failures", self.systematic_failures, minimum=1)
        for name in ("stream", "warm_up"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{owner}.{name} must be True or False, got {getattr(self, name)!r}"
                )

    def defaults(self) -> dict[str, Any]:
        """The sampling fields given (what fills an item's unset fields)."""
        return {k: v for k in _SAMPLING if (v := getattr(self, k)) is not None}

    @classmethod
    def of(cls, options: BatchOptions | None, keywords: Mapping[str, Any]) -> BatchOptions:
        """``options`` (or the defaults) with ``keywords`` applied, validated."""
        if options is None:
            return cls(**keywords)
        if not isinstance(options, BatchOptions):
            raise TypeError(f"options must be a BatchOptions, got {type(options).__name__}")
        return options.replace(**keywords) if keywords else options


class BatchKeywords(TypedDict, total=False):
    """The keywords of :class:`BatchOptions`, for ``**keywords`` (type checking only)."""

    on_error: OnError
    deadline: float | None
    on_progress: Callable[[BatchStatistics], object] | None
    retry: RetryPolicy | None
    timeouts: Timeouts | None
    retry_budget: float | None
    circuit_breaker: int | None
    unreachable_after: float
    systematic_failures: int | None
    stream: bool
    warm_up: bool
    dedupe: Literal["auto", "all", "off"]
    hedge: Hedge | bool | None
    model: str | None
    temperature: float | None
    max_tokens: int | None
    top_p: float | None
    seed: int | None
