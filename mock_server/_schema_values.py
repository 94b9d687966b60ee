"""Deterministic values that validate against a JSON Schema, and strings that match a
regular expression: what the mock answers to ``response_format``, ``guided_json``,
``guided_regex`` and tool calls.

The JSON Schema subset (documented in ``docs/mock-server.md``):

* ``$ref`` to ``#/$defs/...`` or ``#/definitions/...``; ``const``; ``enum``; ``anyOf`` and
  ``oneOf`` (the first branch that is not ``null``, else the first); ``allOf`` (merged);
* ``type`` (one, or a list: the first that is not ``"null"``); without one, ``properties``
  means an object and ``items`` an array;
* objects: every property of ``properties`` (so the ``required`` ones too), plus any
  ``required`` name without a property schema (a string);
* arrays: ``items`` or ``prefixItems``, ``minItems``/``maxItems`` (two items when free),
  ``uniqueItems``;
* strings: ``minLength``/``maxLength``, ``pattern`` (through the regex generator), and
  ``format`` ``date``, ``date-time``, ``time``, ``email``, ``uuid``, ``uri``;
* numbers and integers: ``minimum``, ``maximum``, ``exclusiveMinimum``,
  ``exclusiveMaximum``, ``multipleOf`` (integers).

Regular expressions (Python syntax, parsed by the ``re`` module's own parser): literals,
``.``, classes and their negations, ``\\d \\w \\s`` and the like, groups, alternation,
back-references, and repeats (the minimum plus at most three more); anchors are ignored;
look-arounds are refused (:class:`UnsupportedSchema`).
"""

from __future__ import annotations

import random
import re
import re._constants as _sre  # type: ignore[import-not-found]  # (the re module's parser)
import re._parser as _parser  # type: ignore[import-not-found]
import string
from typing import Any, Final

__all__ = ["UnsupportedSchema", "regex_value", "schema_value"]

_MAX_DEPTH: Final = 12
_WORDS: Final = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
_PRINTABLE: Final = string.ascii_letters + string.digits + " _-.,:;!?"
_CATEGORIES: Final = {
    _sre.CATEGORY_DIGIT: string.digits,
    _sre.CATEGORY_NOT_DIGIT: string.ascii_letters,
    _sre.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
    _sre.CATEGORY_NOT_WORD: " .,-!?",
    _sre.CATEGORY_SPACE: " ",
    _sre.CATEGORY_NOT_SPACE: string.ascii_letters + string.digits,
}


class UnsupportedSchema(ValueError):
    """A schema or pattern the mock cannot answer (outside the documented subset)."""


def schema_value(schema: object, rng: random.Random) -> Any:
    """A value valid against ``schema`` (a dict, or ``True``), drawn with ``rng``."""
    if schema is True or schema == {}:
        return rng.choice(_WORDS)
    if not isinstance(schema, dict):
        raise UnsupportedSchema(f"a schema must be an object, got {type(schema).__name__}")
    return _Values(schema, rng).value(schema, "$", 0)


class _Values:
    def __init__(self, root: dict[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def resolve(self, schema: dict[str, Any], where: str) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema:
            ref = schema["$ref"]
            parts = ref.split("/") if isinstance(ref, str) else []
            if len(parts) != 3 or parts[0] != "#" or parts[1] not in ("$defs", "definitions"):
                raise UnsupportedSchema(f"{where}: unsupported $ref {ref!r}")
            target = self.root.get(parts[1], {}).get(parts[2])
            if not isinstance(target, dict):
                raise UnsupportedSchema(f"{where}: $ref {ref!r} names nothing")
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
            if seen > _MAX_DEPTH:
                raise UnsupportedSchema(f"{where}: $ref loop")
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                usable = [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
                branch = (usable or branches)[0]
                rest = {k: v for k, v in schema.items() if k != key}
                schema = {**rest, **self.resolve(branch, where)}
        parts_all = schema.get("allOf")
        if isinstance(parts_all, list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in parts_all:
                merged.update(self.resolve(part, where))
            schema = merged
        return schema

    def value(self, schema: object, where: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise UnsupportedSchema(f"{where}: nested too deeply")
        if schema is True or schema == {}:
            return self.rng.choice(_WORDS)
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"{where}: a schema must be an object")
        schema = self.resolve(schema, where)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        make = _MAKERS.get(kind) if isinstance(kind, str) else None
        if make is None:
            return self.rng.choice(_WORDS) if kind is None else _fail(where, f"type {kind!r}")
        return make(self, schema, where, depth)

    def object(self, schema: dict[str, Any], where: str, depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        out = {
            name: self.value(sub, f"{where}.{name}", depth + 1) for name, sub in properties.items()
        }
        for name in schema.get("required") or ():
            if name not in out:
                out[name] = self.rng.choice(_WORDS)
        return out

    def array(self, schema: dict[str, Any], where: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 2)))
        prefix = schema.get("prefixItems") or []
        count = max(low, min(high, len(prefix) or 2))
        items = schema.get("items", True)
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            for _ in range(20):
                value = self.value(sub, f"{where}[{i}]", depth + 1)
                if not schema.get("uniqueItems") or value not in out:
                    break
            out.append(value)
        return out

    def string(self, schema: dict[str, Any], where: str, depth: int) -> str:
        fixed = _FORMATS.get(str(schema.get("format")))
        if fixed is not None:
            return fixed(self.rng)
        if isinstance(schema.get("pattern"), str):
            return regex_value(schema["pattern"], self.rng)
        low = int(schema.get("minLength", 0))
        high = int(schema.get("maxLength", max(low, 24)))
        text = " ".join(self.rng.choice(_WORDS) for _ in range(3))
        while len(text) < low:
            text += " " + self.rng.choice(_WORDS)
        return text[: max(low, min(high, len(text)))]

    def number(self, schema: dict[str, Any], where: str, depth: int) -> float:
        low, high = _bounds(schema, 0.5)
        return round(low + (high - low) * self.rng.random(), 3) if high > low else low

    def integer(self, schema: dict[str, Any], where: str, depth: int) -> int:
        low, high = _bounds(schema, 1)
        low, high = int(-(-low // 1)), int(high // 1)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = -(-low // step) * step
            choices = list(range(first, high + 1, step))[:50] or [first]
            return self.rng.choice(choices)
        return self.rng.randint(low, max(low, high))

    def boolean(self, schema: dict[str, Any], where: str, depth: int) -> bool:
        return self.rng.random() < 0.5

    def null(self, schema: dict[str, Any], where: str, depth: int) -> None:
        return None


_MAKERS: Final = {
    "object": _Values.object,
    "array": _Values.array,
    "string": _Values.string,
    "number": _Values.number,
    "integer": _Values.integer,
    "boolean": _Values.boolean,
    "null": _Values.null,
}


def _fail(where: str, what: str) -> Any:
    raise UnsupportedSchema(f"{where}: unsupported {what}")


def _bounds(schema: dict[str, Any], epsilon: float) -> tuple[float, float]:
    low = schema.get("minimum", 0)
    high = schema.get("maximum", max(100, low + 100))
    if "exclusiveMinimum" in schema:
        low = max(low, schema["exclusiveMinimum"] + epsilon)
    if "exclusiveMaximum" in schema:
        high = min(high, schema["exclusiveMaximum"] - epsilon)
    return float(low), float(max(low, high))


_FORMATS: Final = {
    "date": lambda r: f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "date-time": lambda r: f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T12:00:00Z",
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00",
    "email": lambda r: f"{r.choice(_WORDS)}@example.com",
    "uuid": lambda r: (
        f"{r.getrandbits(32):08x}-{r.getrandbits(16):04x}-4{r.getrandbits(12):03x}"
        f"-8{r.getrandbits(12):03x}-{r.getrandbits(48):012x}"
    ),
    "uri": lambda r: f"https://example.com/{r.choice(_WORDS)}",
}


# --------------------------------------------------------------------------- regexes


def regex_value(pattern: str, rng: random.Random) -> str:
    """A string that ``re.fullmatch(pattern, ...)`` accepts, drawn with ``rng``.

    Raises:
        UnsupportedSchema: the pattern is not valid, or uses a look-around.
    """
    try:
        parsed = _parser.parse(pattern)
    except re.error as exc:
        raise UnsupportedSchema(f"guided_regex: not a valid regular expression: {exc}") from None
    groups: dict[int, str] = {}
    text = _emit(list(parsed), rng, groups)
    if re.fullmatch(pattern, text) is None:  # (a construct this generator reads loosely)
        raise UnsupportedSchema(f"guided_regex: the mock cannot generate a match for {pattern!r}")
    return text


def _emit(items: list[Any], rng: random.Random, groups: dict[int, str]) -> str:
    out = []
    for op, arg in items:
        out.append(_emit_one(op, arg, rng, groups))
    return "".join(out)


def _emit_one(op: Any, arg: Any, rng: random.Random, groups: dict[int, str]) -> str:
    if op is _sre.LITERAL:
        return chr(arg)
    if op is _sre.NOT_LITERAL:
        return next(c for c in _PRINTABLE if ord(c) != arg)
    if op is _sre.ANY:
        return rng.choice(string.ascii_letters)
    if op is _sre.IN:
        return _one_of(arg, rng)
    if op is _sre.BRANCH:
        return _emit(list(rng.choice(arg[1])), rng, groups)
    if op is _sre.SUBPATTERN:
        group, _add, _del, inner = arg
        text = _emit(list(inner), rng, groups)
        if group is not None:
            groups[group] = text
        return text
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)):
        low, high, inner = arg
        top = low + 3 if high is _sre.MAXREPEAT else min(high, low + 3)
        return "".join(_emit(list(inner), rng, groups) for _ in range(rng.randint(low, top)))
    if op is _sre.AT:
        return ""
    if op is _sre.GROUPREF:
        return groups.get(arg, "")
    if op is getattr(_sre, "ATOMIC_GROUP", None):
        return _emit(list(arg), rng, groups)
    raise UnsupportedSchema(f"guided_regex: unsupported construct {op}")


def _one_of(items: list[Any], rng: random.Random) -> str:
    allowed: set[str] = set()
    negate = False
    for op, arg in items:
        if op is _sre.NEGATE:
            negate = True
        elif op is _sre.LITERAL:
            allowed.add(chr(arg))
        elif op is _sre.RANGE:
            low, high = arg
            allowed.update(chr(c) for c in range(low, min(high, low + 200) + 1))
        elif op is _sre.CATEGORY:
            allowed.update(_CATEGORIES.get(arg, ""))
        else:
            raise UnsupportedSchema(f"guided_regex: unsupported class item {op}")
    candidates = [c for c in _PRINTABLE if c not in allowed] if negate else sorted(allowed)
    if not candidates:
        raise UnsupportedSchema("guided_regex: a character class the mock cannot satisfy")
    return rng.choice(candidates)
