"""JSON from outside, parsed within limits: the one parser of what a server or a file says.

:func:`parse_json` is ``json.loads`` with two limits, so that whatever a server
answers (or a line of a file holds) is either a value every other part of the library can
handle or a :class:`ValueError`, which the caller turns into that item's own error (an
:class:`~paradigm_trio.APIResponseValidationError` for an answer):

* nesting at most :data:`MAX_JSON_DEPTH` arrays and objects deep.  Python's parser
  recurses, so 5,000 ``[`` (10 KB) raise ``RecursionError``, which nothing expects; and a
  value a few hundred levels deep still exhausts the stack of whatever walks it (``repr``,
  a schema validator).  The depth is checked before parsing, at the speed of one
  ``bytes.translate`` and ``bytes.count`` for the usual answer (fewer digits, ``[`` and
  ``{`` together than the limit);
* finite numbers only: ``NaN``, ``Infinity`` and ``-Infinity`` (which Python accepts and
  strict JSON does not) are refused, and so is a number too large for a float (``1e999``,
  which Python reads as infinity): ``NaN`` and ``Infinity`` as the parser meets them, a
  number too large by the shape of the text (the parsed value is walked only when a
  number in it could be one).  A value parsed here therefore always serialises back to
  strict JSON.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, Final

__all__ = ["MAX_JSON_DEPTH", "parse_json"]

MAX_JSON_DEPTH: Final = 128
"""The deepest nesting of arrays and objects :func:`parse_json` accepts."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (strict JSON has no NaN or Infinity)")


_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant)
_LENIENT: Final = json.JSONDecoder()
_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STRING: Final = re.compile(rb'"[^"]*"')
# The shape of a text, one ``translate``: digits and opening brackets as "0", "e", "E" and
# "+" as "e", anything else a space.  Its count of "0" bounds both the nesting (an opening
# bracket each) and the longest run of digits; a number that may not fit a float (an
# exponent of three digits or more, signed or not, or 300 digits in a row) shows as "e000"
# or 300 "0"s.  A bracket or a letter "e" beside digits in a string may show so too: the
# value is then checked, for nothing (never the other way round).
_SHAPE: Final = bytes(
    ord("0") if 48 <= b <= 57 or b in b"[{" else ord("e") if b in b"eE+" else 32 for b in range(256)
)
_DIGITS: Final = 300
_DIGITS_RUN: Final = b"0" * _DIGITS


def parse_json(
    data: str | bytes | bytearray, *, max_depth: int = MAX_JSON_DEPTH, allow_nan: bool = False
) -> Any:
    """``data`` parsed as strict JSON, within limits.

    As ``json.loads``, but raises :class:`ValueError` (never ``RecursionError``) for a
    value nested deeper than ``max_depth`` arrays and objects, and for ``NaN``,
    ``Infinity``, ``-Infinity`` or a number too large for a float: every number of the
    value is finite, and ``json.dumps(value, allow_nan=False)`` never fails on it.

    With ``allow_nan=True``, non-finite numbers are read as Python reads them (``nan``,
    ``inf``), for text whose values are checked afterwards anyway (a request, which refuses
    them naming the field); the depth limit holds all the same.
    """
    if isinstance(data, str):
        raw, text = data.encode("utf-8", "surrogatepass"), data
    else:
        raw = data if type(data) is bytes else bytes(data)
        if raw.startswith(b"{") and raw[1:2] != b"\x00":  # (UTF-8: what an API answers)
            text = raw.decode("utf-8", "surrogatepass")
        else:
            text = raw.decode(json.detect_encoding(raw), "surrogatepass")
            raw = text.encode("utf-8", "surrogatepass")  # (the checks read UTF-8)
    shape = raw.translate(_SHAPE)
    zeros = shape.count(b"0")  # digits and opening brackets: at most this deep
    if zeros > max_depth and _depth(raw) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    if allow_nan:
        return _LENIENT.decode(text)
    value = _DECODER.decode(text)
    if b"e000" in shape or (zeros >= _DIGITS and _DIGITS_RUN in shape):
        _check_finite(value)
    return value


def _depth(raw: bytes) -> int:
    """How deep ``raw``'s arrays and objects nest (brackets inside strings left out)."""
    # Without its escaped backslashes and quotes, a string is a plain "...".
    plain = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = _STRING.sub(b"", plain).translate(None, _NOT_BRACKET)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _check_finite(value: Any) -> None:
    """Raise :class:`ValueError` if a float in ``value`` is not finite (iteratively)."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("a number is too large for a float (it reads as infinity)")
        elif isinstance(item, dict):
            todo += item.values()
        elif isinstance(item, list):
            todo += item
