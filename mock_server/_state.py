"""The live state of a mock server: config, request log, counters, scripts and quotas.

One :class:`MockState` belongs to one app (``create_app``); every method is
synchronous and never blocks, so it can be called from tests, admin endpoints
and request handlers alike (all on the same trio thread).  Times are
``trio.current_time()`` of the server.
"""

from __future__ import annotations

import collections
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

import trio

from ._config import MockConfig
from ._corpus import FileStore
from ._faults import Fault, ScriptEntry, normalize_script_entry
from ._quota import QuotaDecision, TokenBucket, format_duration

__all__ = ["MockState", "MockStats", "RequestRecord"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestRecord:
    """One API request (chat, embeddings, or one of Paradigm's own routes) as the server
    saw it.

    Attributes:
        key: The request key: the ``Idempotency-Key`` header, else
            ``"body-"`` + a hash of the raw body (of ``"METHOD /path?query"`` for a
            ``GET`` or ``DELETE`` without a body).
        attempt: How many times the key had been seen, this request included
            (1-based; reset by ``reset()``).
        path: The request path (``/api/v2/chat/completions``, ``/api/v2/embeddings``,
            ``/api/v2/files/3``..., or the same under ``/v1``; ``/api/v3/threads/turns``).
        arrival: ``trio.current_time()`` of the server when the request arrived.
        finish: ``trio.current_time()`` when the server was done with it (response
            sent, connection aborted, or client gone), ``None`` while in flight.
        outcome: ``"ok"``, a status code (``"400"``, ``"401"``, ``"413"``,
            ``"429"``, ``"500"``...), ``"quota"`` (429 from a quota), a fault kind
            (``"hang"``, ``"reset"``, ``"close"``, ``"malformed"``, ``"truncated"``,
            ``"stream_cut"``, ``"stream_error"``, ``"stream_no_done"``,
            ``"stream_stall"``, ``"invalid_output"``, ``"tool_call_malformed"``), or
            ``"pending"`` before it is decided.
        status: The HTTP status sent (or being sent); ``None`` when no status line
            is ever sent (hang, reset, close) or not yet decided.
        disconnected: True if the client went away before the server finished.
        stream: Whether the request asked for ``"stream": true``.
        model: The requested model (``None`` if the body was invalid, or for a request
            without one, such as the files routes).
        prompt_tokens: Prompt tokens by the documented approximation (``None`` if
            the body was invalid).
        completion_tokens: Completion tokens of the reply actually produced
            (``None`` when no reply was produced).
        request_id: The ``x-request-id`` header of the response.
        straggler: Whether the attempt drew a straggler (:attr:`MockConfig.stragglers`)
            or was scripted ``"straggler"``: its delay was multiplied.
    """

    key: str
    attempt: int
    path: str
    arrival: float
    finish: float | None
    outcome: str
    status: int | None
    disconnected: bool
    stream: bool
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    request_id: str
    straggler: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class MockStats:
    """Counters of API requests since start or the last ``reset()``.

    Attributes:
        total: Requests received.
        by_outcome: Requests per decided outcome (see :attr:`RequestRecord.outcome`).
        in_flight: Requests arrived and not finished right now.
        max_in_flight: Highest ``in_flight`` seen.
        disconnects: Requests whose client went away before the server finished.
        by_path: Requests received per path (``/api/v2/tokenize``, ``/v1/files/3``...):
            a test can see, say, that no chat request reached the mock.
    """

    total: int
    by_outcome: Mapping[str, int]
    in_flight: int
    max_in_flight: int
    disconnects: int
    by_path: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_outcome": dict(self.by_outcome),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "disconnects": self.disconnects,
            "by_path": dict(self.by_path),
        }


class _Entry:
    """Mutable record of a request while it is handled."""

    __slots__ = (
        "arrival",
        "attempt",
        "completion_tokens",
        "disconnected",
        "finish",
        "generation",
        "key",
        "model",
        "outcome",
        "path",
        "prompt_tokens",
        "request_id",
        "status",
        "straggler",
        "stream",
    )

    def __init__(
        self, *, key: str, attempt: int, path: str, arrival: float, request_id: str, generation: int
    ) -> None:
        self.key = key
        self.attempt = attempt
        self.path = path
        self.arrival = arrival
        self.finish: float | None = None
        self.outcome = "pending"
        self.status: int | None = None
        self.disconnected = False
        self.stream = False
        self.model: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.request_id = request_id
        self.generation = generation
        self.straggler = False

    def freeze(self) -> RequestRecord:
        return RequestRecord(
            key=self.key,
            attempt=self.attempt,
            path=self.path,
            arrival=self.arrival,
            finish=self.finish,
            outcome=self.outcome,
            status=self.status,
            disconnected=self.disconnected,
            stream=self.stream,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            request_id=self.request_id,
            straggler=self.straggler,
        )


class MockState:
    """Config, evidence and control of one mock app (shared by ``MockServer`` and admin routes)."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self._config = config if config is not None else MockConfig()
        self._log: collections.deque[_Entry] = collections.deque(maxlen=self._config.max_log)
        self._attempts: dict[str, int] = {}
        self._scripts: dict[str, collections.deque[Fault]] = {}
        self._by_outcome: collections.Counter[str] = collections.Counter()
        self._by_path: collections.Counter[str] = collections.Counter()
        self._total = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._disconnects = 0
        self._generation = 0
        self._rpm: TokenBucket | None = None
        self._tpm: TokenBucket | None = None
        self._admin_token_required = False
        #: The uploaded files (kept by :meth:`reset`: they are data, not evidence).
        self.files = FileStore()
        self._chat_sessions = 0

    # -- control --------------------------------------------------------------------------

    @property
    def config(self) -> MockConfig:
        """The current config."""
        return self._config

    def configure(self, config: MockConfig | None = None, /, **changes: Any) -> MockConfig:
        """Replace the config (``config``), change some fields (``**changes``), or both.

        Takes effect for requests arriving afterwards.  Changing ``rpm``/``tpm``
        refills the corresponding bucket; the log, counters and attempts are kept.
        Once :meth:`require_admin_token` was called, a config without
        ``admin_token`` raises :class:`ValueError`.
        """
        new = config if config is not None else self._config
        if not isinstance(new, MockConfig):
            raise TypeError(f"configure() expects a MockConfig, got {type(new).__name__}")
        if changes:
            new = new.replace(**changes)
        if self._admin_token_required and new.admin_token is None:
            raise ValueError(
                "admin_token: required while the mock listens beyond loopback; "
                "give another token instead of None"
            )
        old, self._config = self._config, new
        if new.rpm != old.rpm:
            self._rpm = None
        if new.tpm != old.tpm:
            self._tpm = None
        if new.max_log != old.max_log:
            self._log = collections.deque(self._log, maxlen=new.max_log)
        return new

    @property
    def admin_token_required(self) -> bool:
        """Whether the config must keep an ``admin_token`` (see :meth:`require_admin_token`)."""
        return self._admin_token_required

    def require_admin_token(self) -> str:
        """From now on the admin routes always need a token; return it.

        Generates one (``secrets.token_urlsafe(32)``) if the config has none.
        :func:`serve` calls this before binding an address beyond loopback.
        """
        if self._config.admin_token is None:
            self._config = self._config.replace(admin_token=secrets.token_urlsafe(32))
        self._admin_token_required = True
        assert self._config.admin_token is not None
        return self._config.admin_token

    def reset(self) -> None:
        """Clear the log, counters, attempt numbers, scripts and quota buckets.

        Requests in flight keep running; they no longer appear in the log or
        the per-outcome counters (``in_flight`` still counts them until they end).
        """
        self._generation += 1
        self._log.clear()
        self._attempts.clear()
        self._scripts.clear()
        self._by_outcome.clear()
        self._by_path.clear()
        self._total = 0
        self._max_in_flight = self._in_flight
        self._disconnects = 0
        self._rpm = None
        self._tpm = None

    def script(self, key: str, outcomes: Iterable[ScriptEntry | Mapping[str, Any]]) -> None:
        """Script the next outcomes of request key ``key``, one per attempt.

        Each entry is ``"ok"``, a fault kind, a status code (``"503"`` or ``503``) or
        a :class:`Fault`.  Replaces any previous script of that key; once used up
        the key gets the normal (random, quota-checked) behaviour again.  Scripted
        requests bypass quotas and fault rates.
        """
        if not isinstance(key, str) or not key:
            raise ValueError("key: expected a non-empty string")
        if isinstance(outcomes, str | bytes):
            raise ValueError("outcomes: expected a list of entries, not a single string")
        entries = collections.deque(normalize_script_entry(e) for e in outcomes)
        if entries:
            self._scripts[key] = entries
        else:
            self._scripts.pop(key, None)

    # -- evidence -------------------------------------------------------------------------

    def stats(self) -> MockStats:
        """A frozen snapshot of the counters."""
        return MockStats(
            total=self._total,
            by_outcome=MappingProxyType(dict(self._by_outcome)),
            by_path=MappingProxyType(dict(self._by_path)),
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            disconnects=self._disconnects,
        )

    def file_summaries(self) -> list[dict[str, Any]]:
        """The uploaded files, by id: name, size, SHA-256, status, scope, chunks."""
        now = trio.current_time()
        return [stored.summary(now) for stored in self.files.files()]

    def requests(self) -> list[RequestRecord]:
        """Frozen snapshots of the logged requests, in arrival order."""
        return [entry.freeze() for entry in self._log]

    def metrics(self) -> str:
        """The counters in Prometheus text exposition format."""
        lines = [
            "# HELP mock_requests_total API requests received.",
            "# TYPE mock_requests_total counter",
            f"mock_requests_total {self._total}",
            "# HELP mock_responses_total API requests by outcome.",
            "# TYPE mock_responses_total counter",
        ]
        for outcome, count in sorted(self._by_outcome.items()):
            lines.append(f'mock_responses_total{{outcome="{outcome}"}} {count}')
        lines += [
            "# HELP mock_requests_in_flight API requests in flight.",
            "# TYPE mock_requests_in_flight gauge",
            f"mock_requests_in_flight {self._in_flight}",
            "# HELP mock_requests_max_in_flight Highest number of requests in flight.",
            "# TYPE mock_requests_max_in_flight gauge",
            f"mock_requests_max_in_flight {self._max_in_flight}",
            "# HELP mock_client_disconnects_total Requests abandoned by the client.",
            "# TYPE mock_client_disconnects_total counter",
            f"mock_client_disconnects_total {self._disconnects}",
        ]
        return "\n".join(lines) + "\n"

    # -- used by the request handlers ---------------------------------------------------------

    def new_chat_session(self) -> int:
        """A new ``chat_session_id`` (document search): 1, 2, ..."""
        self._chat_sessions += 1
        return self._chat_sessions

    def begin(self, *, key: str, path: str, request_id: str) -> _Entry:
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        entry = _Entry(
            key=key,
            attempt=attempt,
            path=path,
            arrival=trio.current_time(),
            request_id=request_id,
            generation=self._generation,
        )
        self._total += 1
        self._by_path[path] += 1
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        self._log.append(entry)
        return entry

    def decide(self, entry: _Entry, outcome: str, status: int | None) -> None:
        if entry.outcome == "pending" and entry.generation == self._generation:
            self._by_outcome[outcome] += 1
        entry.outcome = outcome
        entry.status = status

    def finish(self, entry: _Entry, *, disconnected: bool) -> None:
        if entry.finish is not None:
            return
        entry.finish = trio.current_time()
        entry.disconnected = disconnected
        self._in_flight -= 1
        if disconnected and entry.generation == self._generation:
            self._disconnects += 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def pop_script(self, key: str) -> Fault | None:
        entries = self._scripts.get(key)
        if not entries:
            return None
        fault = entries.popleft()
        if not entries:
            del self._scripts[key]
        return fault

    def _buckets(self, now: float) -> tuple[TokenBucket | None, TokenBucket | None]:
        config = self._config
        if config.rpm is not None and self._rpm is None:
            self._rpm = TokenBucket(config.rpm, now=now)
        if config.tpm is not None and self._tpm is None:
            self._tpm = TokenBucket(config.tpm, now=now)
        return self._rpm, self._tpm

    def quota_headers(self, now: float | None = None) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers describing the buckets now (empty without quotas)."""
        now = trio.current_time() if now is None else now
        rpm, tpm = self._buckets(now)
        headers: dict[str, str] = {}
        if rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(int(rpm.capacity))
            headers["x-ratelimit-remaining-requests"] = str(rpm.remaining(now))
            headers["x-ratelimit-reset-requests"] = format_duration(rpm.reset_after(now))
        if tpm is not None:
            headers["x-ratelimit-limit-tokens"] = str(int(tpm.capacity))
            headers["x-ratelimit-remaining-tokens"] = str(tpm.remaining(now))
            headers["x-ratelimit-reset-tokens"] = format_duration(tpm.reset_after(now))
        return headers

    def admit(self, tokens: int) -> QuotaDecision:
        """Charge one request of ``tokens`` tokens to the quotas, if they have room.

        Nothing is charged when a bucket lacks room; ``retry_after`` is then the
        time until both buckets hold enough (``None`` if the request can never fit).
        """
        now = trio.current_time()
        rpm, tpm = self._buckets(now)
        waits: list[tuple[float | None, str]] = []
        if rpm is not None:
            waits.append((rpm.wait_time(1, now), "requests"))
        if tpm is not None:
            waits.append((tpm.wait_time(tokens, now), "tokens"))
        never = [name for wait, name in waits if wait is None]
        if never:
            return QuotaDecision(
                admitted=False,
                retry_after=None,
                limited_by=never[0],
                headers=self.quota_headers(now),
            )
        blocking = [(wait, name) for wait, name in waits if wait is not None and wait > 0.0]
        if blocking:
            wait, name = max(blocking)
            return QuotaDecision(
                admitted=False,
                retry_after=wait,
                limited_by=name,
                headers=self.quota_headers(now),
            )
        if rpm is not None:
            rpm.take(1, now)
        if tpm is not None:
            tpm.take(tokens, now)
        return QuotaDecision(
            admitted=True, retry_after=None, limited_by=None, headers=self.quota_headers(now)
        )


def retry_after_headers(seconds: float) -> dict[str, str]:
    """``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` (rounded up)."""
    return {
        "retry-after": str(max(0, math.ceil(seconds - 1e-9))),
        "retry-after-ms": str(max(0, math.ceil(seconds * 1000 - 1e-6))),
    }
