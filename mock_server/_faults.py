"""The mock's faults: the kinds it injects, the odds of each (:class:`FaultRates`) and
the outcomes a test scripts (:class:`Fault`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ._checks import check_number, check_optional_int

__all__ = [
    "FAULT_KINDS",
    "POSITIONED_KINDS",
    "STREAM_FAULT_KINDS",
    "TOOL_FAULT_KINDS",
    "Fault",
    "FaultRates",
    "ScriptEntry",
    "coerce_fault_rates",
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
    "tool_call_not_json",
    "tool_call_invalid",
    "tool_call_unknown",
)

#: Faults that break the tool calls of an answer that calls tools (served normally
#: otherwise): wire-malformed calls, arguments that are not JSON, arguments that break the
#: tool's ``parameters``, a call of a tool that was not offered.
TOOL_FAULT_KINDS: Final[frozenset[str]] = frozenset(
    {"tool_call_malformed", "tool_call_not_json", "tool_call_invalid", "tool_call_unknown"}
)

#: Faults that strike a stream at a chosen chunk (``Fault.at``, ``MockConfig.fault_at``).
POSITIONED_KINDS: Final[frozenset[str]] = frozenset(
    {"stream_cut", "stream_error", "stream_stall", "malformed", "truncated"}
)

#: Faults that only make sense for a streamed (``"stream": true``) request.  A
#: non-streamed request that draws one of them is served normally (as is a request
#: without structured output drawing ``invalid_output``, and one whose answer calls no
#: tool drawing one of :data:`TOOL_FAULT_KINDS`).
STREAM_FAULT_KINDS: Final[frozenset[str]] = frozenset(
    {"stream_cut", "stream_error", "stream_no_done", "stream_stall"}
)


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
        stream_cut: Streams part of the chunks (:attr:`MockConfig.fault_at`, or a
            script's ``Fault.at``) then closes the connection without the terminating
            chunk or ``[DONE]``.
        stream_error: Streams part of the chunks (as ``stream_cut``), then an
            ``event: error`` with an OpenAI error envelope as ``data``, then ends the
            response cleanly.
        stream_no_done: Streams every chunk but omits ``data: [DONE]``, then ends
            the response cleanly.
        stream_stall: Streams part of the chunks (as ``stream_cut``; or
            :attr:`MockConfig.stall_after`, a script's ``Fault.stall_after``), then sends
            nothing for :attr:`MockConfig.stall_for` seconds (a script's
            ``Fault.stall_for``) and the rest of the stream; ``None`` (the default):
            nothing more, the connection kept open until the client goes away or the
            server stops.
        invalid_output: For a request asking for structured output (``response_format``,
            ``guided_*``): a 200 whose content does not match (JSON of the wrong shape,
            or text that is not JSON).  Other requests are served normally.
        tool_call_malformed: For a request whose answer calls tools: malformed tool calls
            (``arguments`` a JSON object instead of text; in a stream, argument deltas
            without their ``index``).  Other requests are served normally.
        tool_call_not_json: For a request whose answer calls tools: each call's
            ``arguments`` is its JSON text cut short by its last character (not JSON).
        tool_call_invalid: For a request whose answer calls tools: each call's
            ``arguments`` is JSON that breaks the tool's ``parameters`` (``{}`` when they
            require a property, else a JSON value of another type).
        tool_call_unknown: For a request whose answer calls tools: the first call names a
            tool that was not offered (``<name>_unknown``).
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
    tool_call_not_json: float = 0.0
    tool_call_invalid: float = 0.0
    tool_call_unknown: float = 0.0

    def __post_init__(self) -> None:
        total = 0.0
        for kind in FAULT_KINDS:
            value = check_number(f"faults.{kind}", getattr(self, kind))
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


def coerce_fault_rates(name: str, value: object) -> FaultRates:
    """:class:`FaultRates` from a plain mapping of fault kind to probability."""
    if isinstance(value, FaultRates):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(
                f"{name}: unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}"
            )
        return FaultRates(**dict(value))
    raise ValueError(f"{name}: expected FaultRates or a mapping of kind to rate")


#: Script entries that are not fault kinds: an ordinary answer, a slow ordinary answer.
_SCRIPT_ONLY: Final = frozenset({"ok", "straggler"})


def _valid_status(kind: str) -> bool:
    return kind.isdigit() and len(kind) == 3 and 200 <= int(kind) <= 599


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted outcome, for exact tests (see ``MockServer.script``).

    ``Fault("503")``, ``Fault("rate_limit", retry_after=0.25)``,
    ``Fault("ok", latency=1.0)``.

    Attributes:
        kind: ``"ok"``, ``"straggler"`` (an ordinary answer whose delay is multiplied
            by :attr:`Stragglers.factor <MockConfig.stragglers>`), a fault kind from
            :data:`FAULT_KINDS`, or an HTTP status
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
            (``at`` says the same for every stream fault.)
        at: For a fault of :data:`POSITIONED_KINDS` on a stream: the SSE events sent
            before it strikes (the role chunk is the first), replacing
            :attr:`MockConfig.fault_at`; ``None`` (default) keeps it.
        stall_for: For ``"stream_stall"`` only: seconds of silence, after which the
            rest of the stream comes, replacing :attr:`MockConfig.stall_for`; ``None``
            (default) keeps it.

    As a string (a script entry, ``--script``): ``"KIND@N"`` sets ``at``, and
    ``"stream_stall@N+S"`` sets ``at`` and ``stall_for``: ``"stream_cut@3"``,
    ``"malformed@2"``, ``"stream_stall@4+2.5"``.
    """

    kind: str
    retry_after: float | None = field(default=None, kw_only=True)
    should_retry: bool | None = field(default=None, kw_only=True)
    latency: float | None = field(default=None, kw_only=True)
    stall_after: int | None = field(default=None, kw_only=True)
    at: int | None = field(default=None, kw_only=True)
    stall_for: float | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise ValueError(f"kind: expected a string, got {self.kind!r}")
        kind = self.kind.strip().lower()
        if kind == "200":
            kind = "ok"
        if kind not in _SCRIPT_ONLY and kind not in FAULT_KINDS and not _valid_status(kind):
            raise ValueError(
                f"kind: expected 'ok', 'straggler', a fault kind ({', '.join(FAULT_KINDS)}) "
                f"or an HTTP status code such as '503', got {self.kind!r}"
            )
        if kind.isdigit() and int(kind) < 400 and kind != "ok":
            raise ValueError(f"kind: only 4xx and 5xx status codes can be scripted, got {kind}")
        object.__setattr__(self, "kind", kind)
        if self.retry_after is not None:
            check_number("retry_after", self.retry_after)
        if self.should_retry is not None and not isinstance(self.should_retry, bool):
            raise ValueError(f"should_retry: expected a bool or None, got {self.should_retry!r}")
        if self.latency is not None:
            check_number("latency", self.latency)
        check_optional_int("stall_after", self.stall_after, minimum=0)
        if self.stall_after is not None and kind != "stream_stall":
            raise ValueError(f"stall_after: only for kind 'stream_stall', not {kind!r}")
        check_optional_int("at", self.at, minimum=0)
        if self.at is not None and kind not in POSITIONED_KINDS:
            raise ValueError(
                f"at: only for the kinds {', '.join(sorted(POSITIONED_KINDS))}, not {kind!r}"
            )
        if self.stall_for is not None:
            check_number("stall_for", self.stall_for)
            if kind != "stream_stall":
                raise ValueError(f"stall_for: only for kind 'stream_stall', not {kind!r}")

    @classmethod
    def parse(cls, text: str) -> Fault:
        """A fault from its string form: ``"503"``, ``"hang"``, ``"stream_cut@3"``,
        ``"stream_stall@4+2.5"`` (see the class docstring)."""
        kind, sep, where = text.partition("@")
        if not sep:
            return cls(text)
        position, plus, seconds = where.partition("+")
        try:
            at = int(position)
            stall_for = float(seconds) if plus else None
        except ValueError:
            raise ValueError(f"fault {text!r}: expected KIND@N or stream_stall@N+SECONDS") from None
        return cls(kind, at=at, stall_for=stall_for)


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
        return Fault.parse(entry)
    if isinstance(entry, Mapping):
        data = dict(entry)
        try:
            return Fault(**data)
        except TypeError as exc:
            raise ValueError(f"script entry: {exc}") from None
    raise ValueError(f"script entry: expected a string, an int or a Fault, got {entry!r}")
