"""The mock server's configuration: :class:`MockConfig`.

A frozen, keyword-only dataclass validated at construction: an invalid value raises
:class:`ValueError` whose message starts with the name of the offending field.
:meth:`MockConfig.from_mapping` builds a config from the plain values found in a JSON
or TOML file (or a ``POST /_mock/config`` body).  Its parts live in their own modules:
the delays in :mod:`._latency`, the faults in :mod:`._faults`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._checks import check_number, check_optional_int
from ._faults import FaultRates, coerce_fault_rates
from ._latency import Latency, Stragglers, coerce_latency, coerce_stragglers

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_FILE_BYTES", "DEFAULT_MODELS", "MockConfig"]

#: Models listed by ``GET /models`` when :attr:`MockConfig.models` is ``None``.
DEFAULT_MODELS: Final[tuple[str, ...]] = (
    "alfred-4.2",
    "alfred-4",
    "llama-3-8b",
    "multilingual-e5-large",
)

#: Default for :attr:`MockConfig.max_body_bytes` (1 MiB).
DEFAULT_MAX_BODY_BYTES: Final[int] = 1 << 20

#: Default for :attr:`MockConfig.max_file_bytes` (25 MiB: Paradigm's documented default
#: ``MAX_DOCUMENT_SIZE`` of 25 MB).
DEFAULT_MAX_FILE_BYTES: Final[int] = 25 << 20


def _header_token(value: object) -> bool:
    """A non-empty string that an HTTP header can carry as is (visible ASCII)."""
    return isinstance(value, str) and bool(value) and all("!" <= c <= "~" for c in value)


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
        stragglers: The share of attempts whose delay is multiplied, and by how much
            (:class:`Stragglers`, drawn independently of the faults); in a mapping
            (a file, ``POST /_mock/config``) also accepted as ``faults.straggler =
            "0.02:10x"``, like ``--fault straggler=0.02:10x``.  Default: none.
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
            role chunk and half the content chunks (or :attr:`fault_at`).  Default
            ``None``.
        fault_at: SSE events a stream fault (``stream_cut``, ``stream_error``,
            ``stream_stall``, and ``malformed`` or ``truncated`` on a stream) sends
            before it strikes (the role chunk is the first; more than the stream holds:
            every event but ``[DONE]``), or ``None`` for the role chunk and half the
            content chunks.  A script's ``Fault.at`` overrides it.  Default ``None``.
        stall_for: Seconds a ``stream_stall`` stays silent before it sends the rest of
            the stream, or ``None`` to stay silent for good.  A script's
            ``Fault.stall_for`` overrides it.  Default ``None``.
        max_log: How many :class:`RequestRecord` entries are kept (oldest are
            dropped first; counters in ``stats()`` are not affected).  Default
            ``100000``.
        file_processing_time: Seconds (on the server's trio clock) an uploaded file
            stays ``pending`` before it is ``embedded`` and searchable.  Default ``1.0``.
        max_file_bytes: Largest accepted file upload (the multipart body), or ``None``
            for no limit; larger ones get 413.  Default ``26214400`` (25 MiB).
        embeddings_strings_only: Refuse an embeddings ``input`` that is a list (400,
            ``param: "input"``), as a server that follows Paradigm's schema (``input``:
            string) strictly would.  Default ``False`` (lists of strings accepted).
    """

    seed: int = 0
    latency: Latency = field(default_factory=Latency)
    ttft: Latency = field(default_factory=Latency)
    token_delay: float = 0.0
    load_latency: float = 0.0
    faults: FaultRates = field(default_factory=FaultRates)
    stragglers: Stragglers = field(default_factory=Stragglers)
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
    fault_at: int | None = None
    stall_for: float | None = None
    max_log: int = 100_000
    file_processing_time: float = 1.0
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES
    embeddings_strings_only: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an integer, got {self.seed!r}")
        for name in ("latency", "ttft"):
            if not isinstance(getattr(self, name), Latency):
                raise ValueError(f"{name}: expected a Latency, got {getattr(self, name)!r}")
        if not isinstance(self.faults, FaultRates):
            raise ValueError(f"faults: expected FaultRates, got {self.faults!r}")
        if not isinstance(self.stragglers, Stragglers):
            raise ValueError(f"stragglers: expected Stragglers, got {self.stragglers!r}")
        for name in sorted(_FLOATS):
            check_number(name, getattr(self, name))
        check_optional_int("max_file_bytes", self.max_file_bytes, minimum=1)
        if not isinstance(self.embeddings_strings_only, bool):
            raise ValueError(
                f"embeddings_strings_only: expected a boolean, got {self.embeddings_strings_only!r}"
            )
        check_optional_int("rpm", self.rpm, minimum=1)
        check_optional_int("tpm", self.tpm, minimum=1)
        if check_optional_int("default_max_tokens", self.default_max_tokens, minimum=0) is None:
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
        if check_optional_int("max_body_bytes", self.max_body_bytes, minimum=1) is None:
            raise ValueError("max_body_bytes: expected an integer, got None")
        check_optional_int("stall_after", self.stall_after, minimum=0)
        check_optional_int("fault_at", self.fault_at, minimum=0)
        if self.stall_for is not None:
            check_number("stall_for", self.stall_for)
        if check_optional_int("max_log", self.max_log, minimum=0) is None:
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
            "stragglers": str(self.stragglers),
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
            "fault_at": self.fault_at,
            "stall_for": self.stall_for,
            "max_log": self.max_log,
            "file_processing_time": self.file_processing_time,
            "max_file_bytes": self.max_file_bytes,
            "embeddings_strings_only": self.embeddings_strings_only,
        }


_SECRETS: Final = frozenset({"api_key", "admin_token"})
_FLOATS: Final = frozenset({"token_delay", "load_latency", "retry_after", "file_processing_time"})
_FIELD_NAMES: Final[frozenset[str]] = frozenset(f.name for f in dataclasses.fields(MockConfig))


def _coerce_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(changes) - _FIELD_NAMES)
    if unknown:
        raise ValueError(
            f"{unknown[0]}: unknown MockConfig field; "
            f"known fields: {', '.join(sorted(_FIELD_NAMES))}"
        )
    out: dict[str, Any] = {}
    changes = _straggler_from_faults(changes)
    for name, value in changes.items():
        if name in ("latency", "ttft"):
            out[name] = coerce_latency(name, value)
        elif name == "faults":
            out[name] = coerce_fault_rates(name, value)
        elif name == "stragglers":
            out[name] = coerce_stragglers(name, value)
        elif name == "models" and isinstance(value, str):
            out[name] = tuple(m.strip() for m in value.split(",") if m.strip())
        elif name in ("models", "reply_tokens") and isinstance(value, list):
            out[name] = tuple(value)
        elif (name in _FLOATS or name == "stall_for") and isinstance(value, int):
            out[name] = value if isinstance(value, bool) else float(value)
        else:
            out[name] = value
    return out


def _straggler_from_faults(changes: Mapping[str, Any]) -> Mapping[str, Any]:
    """``faults = {straggler = "0.02:10x", ...}`` (the form of ``--fault``) moved to
    ``stragglers``: a straggler is a slower answer, not a fault drawn among the others."""
    faults = changes.get("faults")
    if not isinstance(faults, Mapping) or "straggler" not in faults:
        return changes
    if "stragglers" in changes:
        raise ValueError("stragglers: given twice (as stragglers and as faults.straggler)")
    rest = {k: v for k, v in faults.items() if k != "straggler"}
    return {**changes, "faults": rest, "stragglers": faults["straggler"]}
