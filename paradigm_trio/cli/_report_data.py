"""The data of a run's HTML report: recorded during ``batch``, read back from its output.

``batch`` adds to each record what the report needs and the OpenAI Batch format lacks
(:class:`RunRecorder`): ``endpoint`` (``/v1/chat/completions`` or ``/v1/embeddings``),
``started_at`` and ``finished_at`` (Unix seconds), ``concurrency`` (the client's
concurrency limit when it finished, sampled at most every half second) and ``failures``,
the failed attempts (``at``: seconds after ``started_at``, ``status``, ``cause``, ``wait``
before the retry or ``null``).  Records without them (older files, invalid lines) still
count in the totals; their endpoint is read from their answer when they have one.

:class:`RunData` reads them in one pass, in bounded memory for a file of millions of
records: counts are kept per second of the run, latencies in compact arrays, the
failures grouped by cause, and only the slowest and a few failed requests kept whole.
"""

from __future__ import annotations

import heapq
import math
import time
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import paradigm_trio as pt

from ._text import loads

__all__ = [
    "CHAT",
    "EMBEDDINGS",
    "MARKS",
    "Counts",
    "EndpointData",
    "FailureGroup",
    "Request",
    "RunData",
    "RunRecorder",
]

CONCURRENCY_SAMPLE = 0.5
"""Seconds between two readings of the client's concurrency limit."""

KEEP = 25
"""Slowest and failed requests listed in the report."""

KEEP_PER_CAUSE = 3
"""Failed requests listed per cause (the others are counted in its group)."""

GAP = 2.0
"""Seconds with no request in flight that count as a gap between runs (an interrupted
run and its resume), left out of the active time."""

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"

MARKS = ("hedged", "cached", "deduplicated")
"""A record's marks of how its answer came (``true`` when so): a hedge's answer won, the
answer came from the response cache, or from an identical request of the batch."""


# --------------------------------------------------------------------------- during the run


class RunRecorder:
    """What ``batch`` adds to each record: endpoint, times, concurrency, failed attempts."""

    def __init__(self) -> None:
        self._offset: float | None = None  # wall time - trio time
        self._failures: dict[str, list[dict[str, Any]]] = {}
        self._concurrency: int | None = None
        self._sampled = -math.inf

    def _wall(self, t: float) -> float:
        if self._offset is None:
            self._offset = time.time() - trio.current_time()
        return self._offset + t

    def on_event(self, event: pt.Event) -> None:
        """The client's ``on_event``: keeps each request's failed attempts until it ends."""
        if isinstance(event, pt.AttemptFailed) and event.custom_id is not None:
            a = event.attempt
            self._failures.setdefault(event.custom_id, []).append(
                {
                    "end": a.started + a.elapsed,
                    "status": a.status,
                    "cause": a.cause,
                    "wait": a.delay,
                }
            )

    def annotate(
        self,
        record: dict[str, Any],
        result: pt.BatchResult | pt.EmbeddingResult,
        client: pt.Client,
    ) -> None:
        """Add ``endpoint``, ``started_at``, ``finished_at``, ``concurrency``, ``failures``."""
        now = trio.current_time()
        if now - self._sampled >= CONCURRENCY_SAMPLE:
            self._sampled = now
            self._concurrency = client.statistics().concurrency
        started = now - result.elapsed
        failures = self._failures.pop(result.custom_id or "", [])
        record["endpoint"] = EMBEDDINGS if isinstance(result, pt.EmbeddingResult) else CHAT
        record["started_at"] = round(self._wall(started), 3)
        record["finished_at"] = round(self._wall(now), 3)
        record["concurrency"] = self._concurrency
        record["failures"] = [
            {"at": round(f.pop("end") - started, 3), **f} for f in failures
        ]  # fmt: skip


# --------------------------------------------------------------------------- reading a run


@dataclass
class Request:
    """A request the report lists by name (one of the slowest or failed)."""

    custom_id: str
    elapsed: float
    attempts: int
    causes: str
    error: str = ""
    marks: str = ""  # how its answer came (:data:`MARKS`), comma-separated


@dataclass
class FailureGroup:
    """The failed requests of one cause: error code and HTTP status (``None``: none)."""

    code: str
    status: int | None
    count: int = 0
    example: str = ""
    listed: int = 0


@dataclass
class Counts:
    """Requests by outcome."""

    records: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    def count(self, ok: bool, cancelled: bool) -> None:
        self.records += 1
        if ok:
            self.succeeded += 1
        elif cancelled:
            self.cancelled += 1
        else:
            self.failed += 1


@dataclass
class EndpointData(Counts):
    """The counts of one endpoint's requests."""

    tokens: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    done: dict[int, int] = field(default_factory=dict)  # second -> successes


@dataclass
class RunData(Counts):
    """What the report shows, gathered in one pass over the records."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    first: float = math.inf
    last: float = -math.inf
    endpoints: dict[str, EndpointData] = field(default_factory=dict)
    done: dict[int, list[int]] = field(default_factory=dict)  # second -> [ok, failed]
    r429: dict[int, int] = field(default_factory=dict)  # second -> 429 answers
    limit: dict[int, int] = field(default_factory=dict)  # second -> concurrency limit
    tokens: dict[int, int] = field(default_factory=dict)  # second -> tokens
    spans: dict[int, float] = field(default_factory=dict)  # second started -> last finish
    slowest: list[tuple[float, int, Request]] = field(default_factory=list)
    failures: list[Request] = field(default_factory=list)
    causes: dict[tuple[str, int | None], FailureGroup] = field(default_factory=dict)
    unreadable: list[int] = field(default_factory=list)  # line numbers, the first KEEP
    unreadable_count: int = 0
    marks: dict[str, int] = field(default_factory=dict)  # mark -> records with it

    @classmethod
    def read(cls, path: Path) -> RunData:
        """The records of ``path``; a line that is not one (not strict JSON, nested too
        deep, a field of the wrong type: a hand-edited file) is counted by number."""
        data = cls()
        for number, record in _records(path):
            try:
                if record is None:
                    raise ValueError(number)
                data.add(record)
            except (ValueError, TypeError, AttributeError, OverflowError):
                data.unreadable_count += 1
                if len(data.unreadable) < KEEP:
                    data.unreadable.append(number)
        return data

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one record; ``TypeError`` (counting nothing) if its fields are not of the
        types a record's are."""
        raw_failures = record.get("failures") or []
        if not isinstance(raw_failures, list) or not isinstance(
            record.get("error"), Mapping | None
        ):
            raise TypeError("not a record: 'failures' must be a list, 'error' an object")
        error = record.get("error")
        ok = error is None
        cancelled = isinstance(error, Mapping) and error.get("code") == "cancelled"
        endpoint = self.endpoints.setdefault(_endpoint_of(record), EndpointData())
        self.count(ok, cancelled)
        endpoint.count(ok, cancelled)
        elapsed = _number(record.get("elapsed"))
        failures = [f for f in raw_failures if isinstance(f, Mapping)]
        for f in failures:
            if f.get("wait") is not None:
                cause = str(f.get("cause"))
                self.retries[cause] = self.retries.get(cause, 0) + 1
        tokens = self._usage(record) if ok else 0
        endpoint.tokens += tokens
        self._timeline(record, ok, failures, tokens, endpoint)
        marks = [mark for mark in MARKS if record.get(mark) is True]
        for mark in marks:
            self.marks[mark] = self.marks.get(mark, 0) + 1
        request = Request(
            str(record.get("custom_id")), elapsed, int(_number(record.get("attempts"))),
            ", ".join(str(f.get("cause")) for f in failures),
            _error_text(error) if not ok else "", ", ".join(marks),
        )  # fmt: skip
        if ok:
            endpoint.latencies.append(elapsed)
            entry = (elapsed, self.records, request)
            if len(self.slowest) < KEEP:
                heapq.heappush(self.slowest, entry)
            elif elapsed > self.slowest[0][0]:
                heapq.heapreplace(self.slowest, entry)
        else:
            self._failed(record, error, request)

    def _failed(self, record: Mapping[str, Any], error: object, request: Request) -> None:
        """Count a failure in its cause's group; list it if there is room."""
        code = str(error.get("code")) if isinstance(error, Mapping) else "invalid"
        response = record.get("response")
        status = response.get("status_code") if isinstance(response, Mapping) else None
        key = (code, status if isinstance(status, int) else None)
        group = self.causes.get(key)
        if group is None:
            message = error.get("message") if isinstance(error, Mapping) else error
            group = self.causes[key] = FailureGroup(*key, example=str(message))
        group.count += 1
        if len(self.failures) < KEEP and group.listed < KEEP_PER_CAUSE:
            group.listed += 1
            self.failures.append(request)

    def _usage(self, record: Mapping[str, Any]) -> int:
        response = record.get("response")
        body = response.get("body") if isinstance(response, Mapping) else None
        usage = body.get("usage") if isinstance(body, Mapping) else None
        if not isinstance(usage, Mapping):
            return 0
        prompt, completion = (
            _number(usage.get("prompt_tokens")),
            _number(usage.get("completion_tokens")),
        )
        self.prompt_tokens += int(prompt)
        self.completion_tokens += int(completion)
        return int(prompt + completion)

    def _timeline(self, record: Mapping[str, Any], ok: bool, failures: list[Any],
                  tokens: int, endpoint: EndpointData) -> None:  # fmt: skip
        finished = record.get("finished_at")
        started = record.get("started_at")
        if not isinstance(finished, int | float) or not isinstance(started, int | float):
            return
        self.first = min(self.first, started)
        self.last = max(self.last, finished)
        begun = int(started)
        self.spans[begun] = max(self.spans.get(begun, finished), finished)
        second = int(finished)
        self.done.setdefault(second, [0, 0])[0 if ok else 1] += 1
        if ok:
            endpoint.done[second] = endpoint.done.get(second, 0) + 1
        if tokens:
            self.tokens[second] = self.tokens.get(second, 0) + tokens
        limit = record.get("concurrency")
        if isinstance(limit, int):
            self.limit[second] = limit
        for f in failures:
            if f.get("status") == 429:
                self.rate_limited += 1
                at = int(started + _number(f.get("at")))
                self.r429[at] = self.r429.get(at, 0) + 1

    def active(self) -> list[tuple[float, float]]:
        """The stretches of time with requests in flight (Unix seconds), in order: one per
        run, when an interrupted run was resumed (``GAP`` seconds or more apart)."""
        stretches: list[tuple[float, float]] = []
        for second in sorted(self.spans):
            start, end = max(float(second), self.first), self.spans[second]
            if stretches and start <= stretches[-1][1] + GAP:
                stretches[-1] = (stretches[-1][0], max(stretches[-1][1], end))
            else:
                stretches.append((start, end))
        return stretches


def _endpoint_of(record: Mapping[str, Any]) -> str:
    """The endpoint a record answers: recorded by ``batch``, else told by its answer."""
    endpoint = record.get("endpoint")
    if isinstance(endpoint, str):
        return endpoint
    response = record.get("response")
    body = response.get("body") if isinstance(response, Mapping) else None
    kind = body.get("object") if isinstance(body, Mapping) else None
    if kind == "chat.completion":
        return CHAT
    if kind == "list":
        return EMBEDDINGS
    return "unknown"


def _records(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    """(line number, record or ``None`` when the line is not one) of each line."""
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = loads(line)
            except (ValueError, UnicodeDecodeError):
                record = None  # a half-written last line, or not JSON
            yield number, record if isinstance(record, dict) else None


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _error_text(error: object) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    return f"{error.get('code')}: {error.get('message')}"
