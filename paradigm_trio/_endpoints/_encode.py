"""A request's body as JSON bytes: the encoder, and what names the part JSON cannot hold.

Every request body is sent as compact UTF-8 JSON (``_dumps``, ``encode_json``): no ``NaN``
or infinities, and no lone surrogate, which UTF-8 cannot hold.  When encoding fails,
``_unsendable`` walks the parts of the request to say which one JSON (or UTF-8) cannot hold
and where (a lone surrogate, ``NaN``, an object of another type, a circular reference).

Apart from :mod:`._models` because it is shared: the chat request, the embeddings request
and Paradigm's own JSON endpoints encode their bodies with it, and it knows nothing of their
fields (what a valid field is stays with each request).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from .._errors import InvalidRequestError

__all__ = ["encode_json"]


def _dumps(value: object) -> bytes:
    """``value`` as compact JSON in UTF-8: no ``NaN`` or infinities, and no lone surrogate
    (which UTF-8 cannot hold; ``\\uXXXX`` escaping would only move the failure to the
    server)."""
    return "".join(_ENCODE(value, 0)).encode("utf-8")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# What ``_ENCODER.encode`` builds on each call, built once (-1 us a call).  Without the
# markers of circular references (a dict it would share between calls): a value that holds
# itself ends in a RecursionError, which ``_unsendable`` names as circular all the same.
_ENCODE = (
    (lambda value, _level: _ENCODER.iterencode(value))
    if c_make_encoder is None  # (not CPython: json's pure-Python encoder)
    else c_make_encoder(
        None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False
    )
)


_JSON_ERRORS = (TypeError, ValueError, RecursionError)  # UnicodeEncodeError is a ValueError


def _surrogate_at(text: str) -> int | None:
    """Where ``text`` holds its first lone surrogate, if it holds one."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _surrogate_problem(text: str, what: str) -> str | None:
    at = _surrogate_at(text)
    if at is None:
        return None
    return (
        f"{what}holds a lone surrogate {text[at]!a} at position {at}, which is not valid "
        "Unicode and cannot be encoded as UTF-8 (half of an emoji cut in two, or text "
        "decoded with errors='surrogateescape'?)"
    )


def _key_problem(key: object) -> str | None:
    if isinstance(key, str):
        return _surrogate_problem(key, f"the key {key!a} ")
    if isinstance(key, float) and not math.isfinite(key):
        return f"the key {key!r} is not a JSON number"
    if key is None or isinstance(key, int | float):
        return None
    return f"a {type(key).__name__} key ({key!r:.60}) is not allowed: JSON keys are strings"


def _leaf_problem(value: object) -> str | None:
    """What JSON cannot hold in a value that is not a container (``None``: nothing)."""
    if isinstance(value, str):
        return _surrogate_problem(value, "")
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a JSON number (JSON has no NaN or Infinity)"
    if value is None or isinstance(value, int | float):
        return None
    return (
        f"a value of type {type(value).__name__} cannot be sent as JSON (only str, int, "
        "float, bool, None, list and dict can)"
    )


def _child(where: str, key: object) -> str:
    if isinstance(key, str) and key.isascii() and key.isidentifier():
        return f"{where}.{key}" if where else key
    return f"{where}[{json.dumps(key if isinstance(key, str) else str(key))}]"  # JSON keys are text


def _find_problem(value: object, where: str) -> tuple[str, str] | None:
    """The first part of ``value`` that JSON cannot hold, as ``(where, what)``.

    Iterative (no recursion limit); a container inside itself is circular, one seen twice
    elsewhere is not.
    """
    stack: list[tuple[object, str] | int] = [(value, where)]
    inside: set[int] = set()  # the containers on the path to the current value
    while stack:
        top = stack.pop()
        if isinstance(top, int):
            inside.discard(top)  # leaving that container
            continue
        value, where = top
        items: list[tuple[object, object]]
        if isinstance(value, dict):
            items = list(value.items())
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        else:
            problem = _leaf_problem(value)
            if problem is not None:
                return where, problem
            continue
        if id(value) in inside:
            return where, "a circular reference: it contains itself"
        if isinstance(value, dict):
            problem = next(filter(None, map(_key_problem, value)), None)
            if problem is not None:
                return where, problem
        inside.add(id(value))
        stack.append(id(value))
        stack.extend(
            (item, f"{where}[{key}]" if isinstance(value, list | tuple) else _child(where, key))
            for key, item in reversed(items)
        )
    return None


def _unsendable(parts: Mapping[str, object], exc: BaseException) -> InvalidRequestError:
    """The error for parts of a request that JSON (or UTF-8) cannot hold, naming where."""
    for name, value in parts.items():
        found = _find_problem(value, name)
        if found is not None:
            return InvalidRequestError(found[1], where=found[0])
    if isinstance(exc, RecursionError):
        return InvalidRequestError("the request is nested too deeply to be encoded as JSON")
    return InvalidRequestError(
        f"the request cannot be encoded as JSON: {type(exc).__name__}: {exc}"
    )


def encode_json(body: Mapping[str, Any]) -> bytes:
    """``body`` as compact UTF-8 JSON bytes; :class:`InvalidRequestError` naming the part
    JSON (or UTF-8) cannot hold (a lone surrogate, ``NaN``, an object of another type)."""
    try:
        return _dumps(body)
    except _JSON_ERRORS as exc:
        raise _unsendable(body, exc) from None
