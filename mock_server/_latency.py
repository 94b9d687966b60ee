"""The mock's delay distributions: :class:`Latency`, sampled deterministically per request."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from ._checks import check_number

__all__ = ["Latency", "LatencyKind", "Stragglers", "coerce_latency", "coerce_stragglers"]

LatencyKind: TypeAlias = Literal["fixed", "uniform", "lognormal"]
_LATENCY_KINDS: Final[tuple[str, ...]] = ("fixed", "uniform", "lognormal")
_NORMAL: Final = statistics.NormalDist()


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
            check_number(f"latency.{name}", getattr(self, name))
        if self.high < self.low:
            raise ValueError(f"latency.high: must be >= low ({self.low}), got {self.high}")
        if self.cap is not None:
            check_number("latency.cap", self.cap)

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


def coerce_latency(name: str, value: object) -> Latency:
    """A :class:`Latency` from a plain value: a number (fixed seconds), a string for
    :meth:`Latency.parse` or a mapping of its fields."""
    if isinstance(value, Latency):
        return value
    if isinstance(value, str):
        try:
            return Latency.parse(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Latency.fixed(float(value))
    if isinstance(value, Mapping):
        try:
            return Latency(**dict(value))
        except TypeError as exc:
            raise ValueError(f"{name}: {exc}") from None
    raise ValueError(f"{name}: expected a Latency, a number or a string, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Stragglers:
    """A share of requests whose delay is multiplied: the tail of a slow replica.

    Per request attempt the mock draws ``u`` from ``sha256(seed, request key, attempt,
    "straggler")``, independently of the fault drawn; when ``u < share`` the attempt's
    delay (:attr:`MockConfig.latency` sampled, plus the load latency) is multiplied by
    :attr:`factor`.  A resend of the same key (a retry, a hedge) is another attempt and
    draws again, so a straggler is not slow forever.  Parse ``"0.02:10x"`` with
    :meth:`parse` (``--fault straggler=0.02:10x``).

    Attributes:
        share: probability in [0, 1] that an attempt straggles.  Default ``0.0`` (none).
        factor: multiplier of a straggler's delay, at least 1.  Default ``10.0``.
    """

    share: float = 0.0
    factor: float = 10.0

    def __post_init__(self) -> None:
        check_number("stragglers.share", self.share)
        check_number("stragglers.factor", self.factor)
        if self.share > 1.0:
            raise ValueError(f"stragglers.share: a probability must be in [0, 1], got {self.share}")
        if self.factor < 1.0:
            raise ValueError(f"stragglers.factor: must be >= 1, got {self.factor}")

    @classmethod
    def parse(cls, text: str) -> Stragglers:
        """Parse ``SHARE:FACTORx`` (``"0.02:10x"``; the ``x`` is optional) or ``SHARE``."""
        share, sep, factor = text.strip().partition(":")
        try:
            if not sep:
                return cls(share=float(share))
            return cls(share=float(share), factor=float(factor.strip().removesuffix("x")))
        except ValueError as exc:
            if "stragglers." in str(exc):
                raise
            raise ValueError(
                f"stragglers: cannot parse {text!r}; expected SHARE:FACTORx, e.g. 0.02:10x"
            ) from None

    def multiplier(self, u: float) -> float:
        """The factor of an attempt that drew ``u`` in [0, 1): :attr:`factor` or 1."""
        return self.factor if u < self.share else 1.0

    def __str__(self) -> str:
        return f"{self.share:g}:{self.factor:g}x"


def coerce_stragglers(name: str, value: object) -> Stragglers:
    """:class:`Stragglers` from a string (``"0.02:10x"``), a mapping of its fields, or
    a number (the share, at the default factor)."""
    if isinstance(value, Stragglers):
        return value
    try:
        if isinstance(value, str):
            return Stragglers.parse(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Stragglers(share=float(value))
        if isinstance(value, Mapping):
            return Stragglers(**dict(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    raise ValueError(f"{name}: expected Stragglers, a string such as '0.02:10x' or a mapping")
