"""Validation of the plain values in the mock's configuration objects.

Each check raises :class:`ValueError` whose message starts with the name of the
offending field.
"""

from __future__ import annotations

import math

__all__ = ["check_number", "check_optional_int"]


def check_number(name: str, value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        raise ValueError(f"{name}: must be a finite number >= {minimum:g}, got {value!r}")
    return number


def check_optional_int(name: str, value: object, *, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer or None, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value!r}")
    return value
