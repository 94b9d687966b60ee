"""Numbers a server sends, checked once before they become part of a result.

Every count, index and timestamp of an answer goes through :func:`whole`, every other
number (a log probability) through :func:`finite`, every decoded embedding through
:func:`finite_floats`.  Each raises :class:`ValueError` (never ``OverflowError``), which
the parsers turn into :class:`~paradigm_trio.APIResponseValidationError`: an invalid
answer, retried as such.  (:func:`~paradigm_trio._json.parse_json` has already refused
``NaN``, ``Infinity`` and ``1e999`` in JSON; base64 embeddings and strings are checked
here.)
"""

from __future__ import annotations

import math
from array import array
from typing import Final

__all__ = ["MAX_WHOLE", "finite", "finite_floats", "whole"]

MAX_WHOLE: Final = 2**53
"""The largest count, index or timestamp accepted: beyond it, JSON numbers are not exact in
most parsers (a float's 53 bits)."""


def whole(value: object, where: str, *, minimum: int = 0, maximum: int = MAX_WHOLE) -> int:
    """``value`` (an integer, an integral float, or a string of digits) as an ``int`` from
    ``minimum`` to ``maximum``; else :class:`ValueError` naming ``where``."""
    if isinstance(value, bool):
        raise ValueError(f"{where} is {value!r}, not a number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}, not a finite number")
        number = int(value)
    elif isinstance(value, str):
        number = int(value.strip())  # ValueError for anything but digits
    else:
        raise ValueError(f"{where} is {type(value).__name__}, not a number")
    if not minimum <= number <= maximum:
        shown = str(number) if abs(number) < 10**30 else f"a {len(str(abs(number)))}-digit number"
        raise ValueError(f"{where} is {shown}, out of range ({minimum} to {maximum})")
    return number


def finite(value: object, where: str) -> float:
    """``value`` (a number, or a string of one) as a finite ``float``; else
    :class:`ValueError` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{where} is {type(value).__name__}, not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{where} is {value!r}, not a finite number")
    return number


def finite_floats(vector: array[float], where: str) -> array[float]:
    """``vector`` (float32s, decoded from base64) if each of its numbers is finite; else
    :class:`ValueError` naming ``where``.

    One sum at C speed: float32s summed as doubles cannot overflow, so the sum is finite
    exactly when every number is.
    """
    if not math.isfinite(sum(vector)):
        raise ValueError(f"{where} holds NaN or infinity")
    return vector
