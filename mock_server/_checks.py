"""Validation of the plain values in the mock's configuration objects, and the one strict
JSON parser of the bodies it receives.

Each check raises :class:`ValueError` whose message starts with the name of the
offending field.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["check_number", "check_optional_int", "strict_json"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def strict_json(body: bytes | str) -> Any:
    """A request body parsed as strict JSON: ``NaN``, ``Infinity`` and ``-Infinity`` (which
    Python accepts and a strict JSON API does not) raise :class:`ValueError`, as does
    anything else that is not JSON; nesting too deep raises ``RecursionError``."""
    return json.loads(body, parse_constant=_refuse_constant)


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
