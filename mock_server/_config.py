"""Configuration value objects of the mock server.

Everything here is a frozen, keyword-only dataclass validated at construction:
an invalid value raises :class:`ValueError` whose message starts with the name of
the offending field.  :meth:`MockConfig.from_mapping` builds a config from the
plain values found in a JSON or TOML file (or a ``POST /_mock/config`` body).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MODELS",
    "FAULT_KINDS",
    "STREAM_FAULT_KINDS",
    "Fault",
    "FaultRates",
    "Latency",
    "LatencyKind",
    "MockConfig",
    "ScriptEntry",
    "normalize_script_entry",
]

#: Names of the injectable faults, in the order used to draw them.  The same
#: names are the fields of :class:`FaultRates`, the ``KIND`` of ``--fault
#: KIND=P``, valid script entries, and (except ``rate_limit`` and
#: ``server_error``, recorded as their status code) :attr:`RequestRecord.outcome`.
FAULT_KINDS: Final[tuple[str, ...]] = (
    "rate_limit",
    "server_error",
    "hang",
    "reset",
    "close",
    "malformed",
    "truncated",
    "stream_cut",
    "stream_error",
    "stream_no_done",
    "stream_stall",
    "invalid_output",
    "tool_call_malformed",
)

#: Faults that only make sense for a streamed (``"stream": true``) request.  A
#: non-streamed request that draws one of them is served normally (as is a request
#: without structured output drawing ``invalid_output``, and one whose answer calls no
#: tool drawing ``tool_call_malformed``).
STREAM_FAULT_KINDS: Final[frozenset[str]] = frozenset(
    {"stream_cut", "stream_error", "stream_no_done", "stream_stall"}
)

#: Models listed by ``GET /models`` when :attr:`MockConfig.models` is ``None``.
DEFAULT_MODELS: Final[tuple[str, ...]] = (
    "alfred-4.2",
    "alfred-4",
    "llama-3-8b",
    "multilingual-e5-large",
)

#: Default for :attr:`MockConfig.max_body_bytes` (1 MiB).
DEFAULT_MAX_BODY_BYTES: Final[int] = 1 << 20

LatencyKind: TypeAlias = Literal["fixed", "uniform", "lognormal"]
_LATENCY_KINDS: Final[tuple[str, ...]] = ("fixed", "uniform", "lognormal")
_NORMAL: Final = statistics.NormalDist()


def _check_number(name: str, value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        raise ValueError(f"{name}: must be a finite number >= {minimum:g}, got {value!r}")
    return number


def _header_token(value: object) -> bool:
    """A non-empty string that an HTTP header can carry as is (visible ASCII)."""
    return isinstance(value, str) and bool(value) and all("!" <= c <= "~" for c in value)


def _check_optional_int(name: str, value: object, *, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer or None, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class Latency:
    """A delay distribution, sampled deterministically per request.

    Build one with :meth:`fixed`, :meth:`uniform`, :meth:`lognormal` or
    :meth:`parse` (``"fixed:0.1"``, ``"uniform:0.05,0.2"``, ``"lognormal:0.5,0.3"``).

    Attributes:
        kind: ``"fixed"`` (always :attr:`seconds`), ``"uniform"`` (uniform in
            [:attr:`low`, :attr:`high`]) or ``"lognormal"`` (median :attr:`median`
            seconds, shape :attr:`sigma`: ``median * exp(sigma * Z)``, Z standard
            normal).  Default ``"fixed"``.
        seconds: The delay of a ``fixed`` latency.  Default ``0.0``.
        low: Lower bound of a ``uniform`` latency.  Default ``0.0``.
        high: Upper bound of a ``uniform`` latency.  Default ``0.0``.
        median: Median of a ``lognormal`` latency, in seconds.  Default ``0.0``.
        sigma: Shape of a ``lognormal`` latency (standard deviation of its
            logarithm).  Default ``0.0``.
        cap: Upper bound applied to every sample (useful to tame lognormal
            tails), or ``None`` for no bound.  Default ``None``.
    """

    kind: LatencyKind = "fixed"
    seconds: float = 0.0
    low: float = 0.0
    high: float = 0.0
    median: float = 0.0
    sigma: float = 0.0
    cap: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _LATENCY_KINDS:
            raise ValueError(f"latency.kind: expected one of {_LATENCY_KINDS}, got {self.kind!r}")
        for name in ("seconds", "low", "high", "median", "sigma"):
            _check_number(f"latency.{name}", getattr(self, name))
        if self.high < self.low:
            raise ValueError(f"latency.high: must be >= low ({self.low}), got {self.high}")
        if self.cap is not None:
            _check_number("latency.cap", self.cap)

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        """Always ``seconds``."""
        return cls(kind="fixed", seconds=seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        """Uniformly distributed in ``[low, high]``."""
        return cls(kind="uniform", low=low, high=high)

    @classmethod
    def lognormal(cls, median: float, sigma: float, *, cap: float | None = None) -> Latency:
        """Log-normal with the given median (seconds) and ``sigma``; optional ``cap``."""
        return cls(kind="lognormal", median=median, sigma=sigma, cap=cap)

    @classmethod
    def parse(cls, text: str) -> Latency:
        """Parse ``fixed:S``, ``uniform:LOW,HIGH``, ``lognormal:MEDIAN,SIGMA[,CAP]`` or ``S``."""
        kind, sep, rest = text.strip().partition(":")
        if not sep:
            kind, rest = "fixed", kind
        try:
            values = [float(part) for part in rest.split(",")] if rest.strip() else []
        except ValueError:
            raise ValueError(f"latency: cannot parse {text!r}") from None
        match kind.strip().lower(), values:
            case "fixed", [seconds]:
                return cls.fixed(seconds)
            case "uniform", [low, high]:
                return cls.uniform(low, high)
            case "lognormal", [median, sigma]:
                return cls.lognormal(median, sigma)
            case "lognormal", [median, sigma, cap]:
                return cls.lognormal(median, sigma, cap=cap)
        raise ValueError(
            f"latency: cannot parse {text!r}; expected fixed:S, uniform:LOW,HIGH "
            "or lognormal:MEDIAN,SIGMA[,CAP]"
        )

    @property
    def is_zero(self) -> bool:
        """True when every sample is 0 (no sleep needed)."""
        if self.cap == 0.0:
            return True
        match self.kind:
            case "fixed":
                return self.seconds == 0.0
            case "uniform":
                return self.high == 0.0
            case _:
                return self.median == 0.0

    def sample(self, u: float) -> float:
        """The delay for a uniform draw ``u`` in [0, 1) (the mock derives ``u`` from a hash)."""
        match self.kind:
            case "fixed":
                value = self.seconds
            case "uniform":
                value = self.low + u * (self.high - self.low)
            case _:
                z = _NORMAL.inv_cdf(min(max(u, 1e-12), 1.0 - 1e-12))
                value = self.median * math.exp(self.sigma * z)
        if self.cap is not None:
            value = min(value, self.cap)
        return value

    def __str__(self) -> str:
        match self.kind:
            case "fixed":
                text = f"fixed:{self.seconds:g}"
            case "uniform":
                text = f"uniform:{self.low:g},{self.high:g}"
            case _:
                text = f"lognormal:{self.median:g},{self.sigma:g}"
                if self.cap is not None:
                    return f"{text},{self.cap:g}"
        return text if self.cap is None else f"{text} (cap {self.cap:g})"

    @classmethod
    def _coerce(cls, name: str, value: object) -> Latency:
        if isinstance(value, Latency):
            return value
        if isinstance(value, str):
            try:
                return cls.parse(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls.fixed(float(value))
        if isinstance(value, Mapping):
            try:
                return cls(**dict(value))
            except TypeError as exc:
                raise ValueError(f"{name}: {exc}") from None
        raise ValueError(f"{name}: expected a Latency, a number or a string, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultRates:
    """Probability of each fault kind, per request attempt (all default ``0.0``).

    Each value is in [0, 1] and their sum is at most 1.  For every request the
    mock draws ``u`` in [0, 1) from ``sha256(seed, request key, attempt)`` and
    walks the cumulative probabilities in the field order below, so the outcome of
    a given (seed, key, attempt) never depends on timing or concurrency.

    Attributes:
        rate_limit: 429 ``rate_limit_exceeded`` with ``Retry-After`` (whole
            seconds, rounded up) and ``retry-after-ms`` from
            :attr:`MockConfig.retry_after`.
        server_error: 500, 502, 503 or 504 (chosen from the same hash); 502 and
            503 carry ``x-should-retry: true``.
        hang: Never sends a response; waits until the client goes away or the
            server stops.
        reset: Aborts the TCP connection with an RST (``SO_LINGER`` 0, then close)
            before any response byte.
        close: Closes the connection (FIN) before any response byte.
        malformed: 200 with ``application/json`` content type and a correct
            ``Content-Length`` whose body is not valid JSON (for a stream: one
            ``data:`` line that is not valid JSON, then the stream continues).
        truncated: 200 whose body stops short of its ``Content-Length``, then the
            connection is closed (for a stream: same as ``stream_cut``).
        stream_cut: Streams part of the chunks then closes the connection
            without the terminating chunk or ``[DONE]``.
        stream_error: Streams part of the chunks, then an ``event: error`` with an
            OpenAI error envelope as ``data``, then ends the response cleanly.
        stream_no_done: Streams every chunk but omits ``data: [DONE]``, then ends
            the response cleanly.
        stream_stall: Streams :attr:`MockConfig.stall_after` chunks (or a script's
            ``Fault.stall_after``), then sends nothing more and keeps the connection
            open (no ``[DONE]``) until the client goes away or the server stops.
        invalid_output: For a request asking for structured output (``response_format``,
            ``guided_*``): a 200 whose content does not match (JSON of the wrong shape,
            or text that is not JSON).  Other requests are served normally.
        tool_call_malformed: For a request whose answer calls tools: malformed tool calls
            (``arguments`` a JSON object instead of text; in a stream, argument deltas
            without their ``index``).  Other requests are served normally.
    """

    rate_limit: float = 0.0
    server_error: float = 0.0
    hang: float = 0.0
    reset: float = 0.0
    close: float = 0.0
    malformed: float = 0.0
    truncated: float = 0.0
    stream_cut: float = 0.0
    stream_error: float = 0.0
    stream_no_done: float = 0.0
    stream_stall: float = 0.0
    invalid_output: float = 0.0
    tool_call_malformed: float = 0.0

    def __post_init__(self) -> None:
        total = 0.0
        for kind in FAULT_KINDS:
            value = _check_number(f"faults.{kind}", getattr(self, kind))
            if value > 1.0:
                raise ValueError(f"faults.{kind}: a probability must be in [0, 1], got {value}")
            total += value
        if total > 1.0 + 1e-9:
            raise ValueError(f"faults: the probabilities sum to {total:g}, more than 1")

    @property
    def total(self) -> float:
        """Probability that a request draws some fault."""
        return sum(self.items().values())

    def items(self) -> dict[str, float]:
        """``{kind: probability}`` in draw order."""
        return {kind: float(getattr(self, kind)) for kind in FAULT_KINDS}

    def pick(self, u: float) -> str | None:
        """The fault kind drawn by ``u`` in [0, 1), or ``None`` for no fault."""
        edge = 0.0
        for kind in FAULT_KINDS:
            rate = getattr(self, kind)
            if rate <= 0.0:
                continue
            edge += rate
            if u < edge:
                return str(kind)
        return None

    @classmethod
    def _coerce(cls, name: str, value: object) -> FaultRates:
        if isinstance(value, FaultRates):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(FAULT_KINDS))
            if unknown:
                raise ValueError(
                    f"{name}: unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}"
                )
            return cls(**dict(value))
        raise ValueError(f"{name}: expected FaultRates or a mapping of kind to rate")


def _valid_status(kind: str) -> bool:
    return kind.isdigit() and len(kind) == 3 and 200 <= int(kind) <= 599


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted outcome, for exact tests (see ``MockServer.script``).

    ``Fault("503")``, ``Fault("rate_limit", retry_after=0.25)``,
    ``Fault("ok", latency=1.0)``.

    Attributes:
        kind: ``"ok"``, a fault kind from :data:`FAULT_KINDS`, or an HTTP status
            code as a string (``"400"``, ``"408"``, ``"409"``, ``"429"``, ``"500"``,
            ``"503"``...; ``"200"`` means ``"ok"``).  A 429 behaves like
            ``rate_limit``; any 4xx/5xx gets an OpenAI error envelope.
        retry_after: Seconds for ``Retry-After``/``retry-after-ms``.  ``None``
            (default) means :attr:`MockConfig.retry_after` for 429s and no header
            for other statuses.
        should_retry: Value of the ``x-should-retry`` header (``True`` ->
            ``"true"``), or ``None`` (default) for the kind's usual behaviour.
        latency: Fixed delay in seconds before acting, replacing the sampled
            :attr:`MockConfig.latency`; ``None`` (default) keeps the sampled one.
        stall_after: For ``"stream_stall"`` only: the chunks sent before the stall,
            replacing :attr:`MockConfig.stall_after`; ``None`` (default) keeps it.
    """

    kind: str
    retry_after: float | None = field(default=None, kw_only=True)
    should_retry: bool | None = field(default=None, kw_only=True)
    latency: float | None = field(default=None, kw_only=True)
    stall_after: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise ValueError(f"kind: expected a string, got {self.kind!r}")
        kind = self.kind.strip().lower()
        if kind == "200":
            kind = "ok"
        if kind != "ok" and kind not in FAULT_KINDS and not _valid_status(kind):
            raise ValueError(
                f"kind: expected 'ok', a fault kind ({', '.join(FAULT_KINDS)}) or an HTTP "
                f"status code such as '503', got {self.kind!r}"
            )
        if kind.isdigit() and int(kind) < 400 and kind != "ok":
            raise ValueError(f"kind: only 4xx and 5xx status codes can be scripted, got {kind}")
        object.__setattr__(self, "kind", kind)
        if self.retry_after is not None:
            _check_number("retry_after", self.retry_after)
        if self.should_retry is not None and not isinstance(self.should_retry, bool):
            raise ValueError(f"should_retry: expected a bool or None, got {self.should_retry!r}")
        if self.latency is not None:
            _check_number("latency", self.latency)
        _check_optional_int("stall_after", self.stall_after, minimum=0)
        if self.stall_after is not None and kind != "stream_stall":
            raise ValueError(f"stall_after: only for kind 'stream_stall', not {kind!r}")


#: What ``MockServer.script`` accepts per attempt: ``"ok"``, a fault kind, a status
#: code (as ``str`` or ``int``), or a :class:`Fault`.
ScriptEntry: TypeAlias = str | int | Fault


def normalize_script_entry(entry: object) -> Fault:
    """A :class:`Fault` from a script entry: ``"503"``, ``503``, ``"hang"``, a mapping, a Fault."""
    if isinstance(entry, Fault):
        return entry
    if isinstance(entry, bool):
        raise ValueError(f"script entry: expected a string, an int or a Fault, got {entry!r}")
    if isinstance(entry, int):
        return Fault(str(entry))
    if isinstance(entry, str):
        return Fault(entry)
    if isinstance(entry, Mapping):
        data = dict(entry)
        try:
            return Fault(**data)
        except TypeError as exc:
            raise ValueError(f"script entry: {exc}") from None
    raise ValueError(f"script entry: expected a string, an int or a Fault, got {entry!r}")


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class MockConfig:
    """Behaviour of the mock server.  All fields are keyword-only, with defaults.

    Attributes:
        seed: Seed of every deterministic choice (faults, latencies, reply
            text).  Default ``0``.
        latency: Delay before the response starts (headers), for every chat
            request, faults included.  Default ``Latency.fixed(0.0)``.
        ttft: Streaming only: extra delay between the response headers and the
            first chunk (so time to first token is ``latency + ttft``).  Default
            ``Latency.fixed(0.0)``.
        token_delay: Streaming only: seconds between two successive chunks.
            Default ``0.0``.
        load_latency: Seconds added to :attr:`latency` for every *other* chat
            request in flight when the request arrives (latency that grows with
            load).  Default ``0.0``.
        faults: Fault probabilities (:class:`FaultRates`).  Default: no faults.
        retry_after: Seconds announced by a ``rate_limit`` fault (``Retry-After``
            rounded up to whole seconds, ``retry-after-ms`` exact).  Default ``1.0``.
        rpm: Requests-per-minute quota (token bucket of ``rpm`` requests refilled
            continuously at ``rpm/60`` per second), or ``None`` for none.
            Default ``None``.
        tpm: Tokens-per-minute quota (bucket of ``tpm`` tokens refilled at
            ``tpm/60`` per second; a request costs its prompt tokens plus its
            ``max_tokens``), or ``None``.  Default ``None``.
        default_max_tokens: Tokens charged to the ``tpm`` bucket for the
            completion of a request without ``max_tokens`` /
            ``max_completion_tokens``.  Default ``64``.
        api_key: When set, chat and model requests need ``Authorization: Bearer
            <api_key>`` (else 401).  Masked in ``repr``, never logged.  Default
            ``None`` (no auth).
        admin_token: When set, the admin routes (``/_mock/*``) need ``Authorization:
            Bearer <admin_token>`` or ``X-Mock-Admin-Token: <admin_token>`` (else 401);
            the API key does not open them.  Visible ASCII, no spaces.  Masked in
            ``repr``.  Default ``None``: no token on loopback; :func:`serve` on any
            other address generates one.
        models: When set, the accepted models (others get 400
            ``model_not_found``) and the ``GET /models`` list.  Default ``None``:
            any model is accepted and :data:`DEFAULT_MODELS` are listed.
        reply_tokens: ``(min, max)`` length in tokens of a generic reply, chosen
            per request from the hash.  Default ``(10, 60)``.
        max_body_bytes: Largest accepted request body; larger ones get 413.
            Default ``1048576`` (1 MiB).
        stall_after: Chunks a ``stream_stall`` fault sends before it stalls (the
            role chunk counts as one; more than the stream has sends every chunk
            but ``[DONE]``), or ``None`` for the same point as ``stream_cut``: the
            role chunk and half the content chunks.  Default ``None``.
        max_log: How many :class:`RequestRecord` entries are kept (oldest are
            dropped first; counters in ``stats()`` are not affected).  Default
            ``100000``.
    """

    seed: int = 0
    latency: Latency = field(default_factory=Latency)
    ttft: Latency = field(default_factory=Latency)
    token_delay: float = 0.0
    load_latency: float = 0.0
    faults: FaultRates = field(default_factory=FaultRates)
    retry_after: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    default_max_tokens: int = 64
    api_key: str | None = None
    admin_token: str | None = None
    models: tuple[str, ...] | None = None
    reply_tokens: tuple[int, int] = (10, 60)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    stall_after: int | None = None
    max_log: int = 100_000

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an integer, got {self.seed!r}")
        for name in ("latency", "ttft"):
            if not isinstance(getattr(self, name), Latency):
                raise ValueError(f"{name}: expected a Latency, got {getattr(self, name)!r}")
        if not isinstance(self.faults, FaultRates):
            raise ValueError(f"faults: expected FaultRates, got {self.faults!r}")
        for name in ("token_delay", "load_latency", "retry_after"):
            _check_number(name, getattr(self, name))
        _check_optional_int("rpm", self.rpm, minimum=1)
        _check_optional_int("tpm", self.tpm, minimum=1)
        if _check_optional_int("default_max_tokens", self.default_max_tokens, minimum=0) is None:
            raise ValueError("default_max_tokens: expected an integer, got None")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ValueError("api_key: expected a non-empty string or None")
        if self.admin_token is not None and not _header_token(self.admin_token):
            raise ValueError(
                "admin_token: expected a non-empty string of visible ASCII characters "
                "(no spaces), or None"
            )
        if self.models is not None:
            models: Any = self.models
            if isinstance(models, str) or not isinstance(models, Iterable):
                raise ValueError(f"models: expected a sequence of strings, got {models!r}")
            models = tuple(models)
            if not models or not all(isinstance(m, str) and m for m in models):
                raise ValueError("models: expected a non-empty sequence of non-empty strings")
            object.__setattr__(self, "models", models)
        reply = tuple(self.reply_tokens)
        if (
            len(reply) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in reply)
            or not 1 <= reply[0] <= reply[1]
        ):
            raise ValueError(
                f"reply_tokens: expected (min, max) integers with 1 <= min <= max, "
                f"got {self.reply_tokens!r}"
            )
        object.__setattr__(self, "reply_tokens", reply)
        if _check_optional_int("max_body_bytes", self.max_body_bytes, minimum=1) is None:
            raise ValueError("max_body_bytes: expected an integer, got None")
        _check_optional_int("stall_after", self.stall_after, minimum=0)
        if _check_optional_int("max_log", self.max_log, minimum=0) is None:
            raise ValueError("max_log: expected an integer, got None")

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRETS and value is not None:
                parts.append(f"{f.name}='***'")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"MockConfig({', '.join(parts)})"

    def replace(self, **changes: Any) -> MockConfig:
        """A copy with ``changes`` applied; values are coerced like :meth:`from_mapping`."""
        return dataclasses.replace(self, **_coerce_fields(changes))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base: MockConfig | None = None) -> MockConfig:
        """Build a config from plain values (JSON/TOML), on top of ``base`` (default: defaults).

        ``latency``/``ttft`` accept a number (fixed seconds), a string
        (``"uniform:0.05,0.2"``) or a table of :class:`Latency` fields; ``faults`` a
        table ``{kind: probability}``; ``models`` a list or a comma-separated string.
        Unknown keys raise :class:`ValueError`.
        """
        return (base or cls()).replace(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the API key masked)."""
        return {
            "seed": self.seed,
            "latency": str(self.latency),
            "ttft": str(self.ttft),
            "token_delay": self.token_delay,
            "load_latency": self.load_latency,
            "faults": self.faults.items(),
            "retry_after": self.retry_after,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "default_max_tokens": self.default_max_tokens,
            "api_key": None if self.api_key is None else "***",
            "admin_token": None if self.admin_token is None else "***",
            "models": None if self.models is None else list(self.models),
            "reply_tokens": list(self.reply_tokens),
            "max_body_bytes": self.max_body_bytes,
            "stall_after": self.stall_after,
            "max_log": self.max_log,
        }


_SECRETS: Final = frozenset({"api_key", "admin_token"})
_FIELD_NAMES: Final[frozenset[str]] = frozenset(f.name for f in dataclasses.fields(MockConfig))


def _coerce_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(changes) - _FIELD_NAMES)
    if unknown:
        raise ValueError(
            f"{unknown[0]}: unknown MockConfig field; "
            f"known fields: {', '.join(sorted(_FIELD_NAMES))}"
        )
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name in ("latency", "ttft"):
            out[name] = Latency._coerce(name, value)
        elif name == "faults":
            out[name] = FaultRates._coerce(name, value)
        elif name == "models" and isinstance(value, str):
            out[name] = tuple(m.strip() for m in value.split(",") if m.strip())
        elif name in ("models", "reply_tokens") and isinstance(value, list):
            out[name] = tuple(value)
        elif name in ("token_delay", "load_latency", "retry_after") and isinstance(value, int):
            out[name] = value if isinstance(value, bool) else float(value)
        else:
            out[name] = value
    return out
