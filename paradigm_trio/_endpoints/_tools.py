"""Tool calls: the ``tools`` a request offers, the ``tool_calls`` an answer makes, and the
assembly of streamed tool-call deltas.

``tools`` and ``tool_choice`` are checked (:func:`checked_tools`, :func:`checked_tool_choice`)
and sent as plain JSON; :func:`function_tool` builds one from a JSON Schema or a pydantic
model.  An answer's calls are :class:`ToolCall` objects.  A stream sends each call in
pieces (``delta.tool_calls``: an ``index``, then the ``id`` and the function ``name``, then
fragments of the ``arguments``); :class:`ToolCallAssembler` joins them, by index and in
order, into whole calls.  No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import InvalidRequestError
from .._json import parse_json

__all__ = [
    "FunctionCall",
    "ModelSchema",
    "ToolCall",
    "ToolCallAssembler",
    "checked_tool_choice",
    "checked_tools",
    "function_tool",
    "json_schema_of",
    "parse_tool_calls",
]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHOICES = ("none", "auto", "required")


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """The function a tool call calls.

    Attributes:
        name: the function's name.
        arguments: its arguments, as the JSON text the model wrote (not checked: a model
            may write invalid JSON; :meth:`parse_arguments` says).
    """

    name: str
    arguments: str

    def parse_arguments(self) -> Any:
        """The arguments as a Python value.

        Raises:
            ValueError: they are not valid JSON (``json.JSONDecodeError``).
        """
        return parse_json(self.arguments) if self.arguments.strip() else {}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asks for (``message.tool_calls[i]``).

    Attributes:
        id: the call's id; a ``"tool"`` message answering it names it as ``tool_call_id``.
        function: the function and its arguments.
        type: ``"function"``.
        raw: the call's JSON.
    """

    id: str
    function: FunctionCall
    type: str = "function"
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


def parse_tool_calls(value: object, where: str) -> tuple[ToolCall, ...]:
    """An answer's ``tool_calls`` (``None`` or missing: none); ``TypeError``/``ValueError``
    naming ``where`` when they are not well formed."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TypeError(f"{where} must be a list")
    calls = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(raw, dict):
            raise TypeError(f"{at} must be an object")
        function = raw.get("function")
        if not isinstance(function, dict):
            raise TypeError(f"{at}.function must be an object")
        name, arguments = function.get("name"), function.get("arguments", "")
        if not isinstance(name, str) or not name:
            raise TypeError(f"{at}.function.name must be a non-empty string")
        if not isinstance(arguments, str):
            raise TypeError(f"{at}.function.arguments must be a string (JSON text)")
        call_id = raw.get("id")
        if not isinstance(call_id, str):
            raise TypeError(f"{at}.id must be a string")
        kind = raw.get("type", "function")
        calls.append(ToolCall(call_id, FunctionCall(name, arguments), str(kind), raw))
    return tuple(calls)


# --------------------------------------------------------------------------- requests


class ModelSchema(dict[str, Any]):
    """A pydantic model's JSON Schema (a dict, sent as one) that remembers its model, so
    that the arguments of a call of the tool are validated by the model itself."""

    __slots__ = ("model",)

    def __init__(self, model: Any, schema: Mapping[str, Any]) -> None:
        super().__init__(schema)
        self.model = model


def _parameters_of(value: object, what: str) -> dict[str, Any]:
    """A tool's ``parameters``: a JSON Schema dict, or a pydantic model's (a ModelSchema)."""
    if isinstance(value, ModelSchema):
        return value
    schema = json_schema_of(value, what)
    return ModelSchema(value, schema) if isinstance(value, type) else schema


def json_schema_of(schema: object, what: str) -> dict[str, Any]:
    """A JSON Schema as a dict, from a dict or a pydantic model class."""
    make = getattr(schema, "model_json_schema", None) if isinstance(schema, type) else None
    if callable(make):
        result = make()
        if not isinstance(result, dict):
            raise InvalidRequestError(f"{what}: model_json_schema() did not return a dict")
        return result
    if isinstance(schema, Mapping):
        return dict(schema)
    raise InvalidRequestError(
        f"{what} must be a JSON Schema (a dict) or a pydantic model class, got "
        f"{type(schema).__name__}"
    )


def function_tool(
    name: str,
    parameters: object = None,
    *,
    description: str | None = None,
    strict: bool | None = None,
) -> dict[str, Any]:
    """A ``tools`` entry for a function: ``{"type": "function", "function": {...}}``.

    ``parameters`` is the JSON Schema of its arguments, as a dict or a pydantic model
    class (``None``: no arguments); a model's calls are validated by the model itself.
    """
    function: dict[str, Any] = {"name": name}
    if description is not None:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = _parameters_of(parameters, "parameters")
    if strict is not None:
        function["strict"] = strict
    tool = {"type": "function", "function": function}
    checked_tools([tool])
    return tool


def checked_tools(tools: object) -> tuple[dict[str, Any], ...]:
    """``tools`` as a tuple of dicts, each ``{"type": "function", "function": {"name",
    ...}}`` with a valid name, names distinct; :class:`InvalidRequestError` otherwise.
    A ``parameters`` given as a pydantic model class becomes its JSON Schema."""
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
        raise InvalidRequestError(
            f"must be a list of tools, got {type(tools).__name__}", where="tools"
        )
    names: set[str] = set()
    checked = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise InvalidRequestError(
                'must be {"type": "function", "function": {"name": ...}}', where=where
            )
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise InvalidRequestError("must be an object", where=f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidRequestError(
                f"must be 1 to 64 letters, digits, _ or -, got {name!r}",
                where=f"{where}.function.name",
            )
        if name in names:
            raise InvalidRequestError(f"{name!r} is offered twice", where=f"{where}.function.name")
        names.add(name)
        parameters = function.get("parameters")
        function = dict(function)
        if isinstance(parameters, type) and hasattr(parameters, "model_json_schema"):
            function["parameters"] = _parameters_of(parameters, f"{where}.function.parameters")
        elif parameters is not None and not isinstance(parameters, Mapping):
            raise InvalidRequestError(
                "must be a JSON Schema object or a pydantic model class",
                where=f"{where}.function.parameters",
            )
        checked.append({**tool, "function": function})
    return tuple(checked)


def checked_tool_choice(choice: object, tools: Sequence[Mapping[str, Any]] | None) -> object:
    """``tool_choice`` checked against ``tools``: ``"none"``, ``"auto"``, ``"required"``, a
    tool's name (sent as ``{"type": "function", "function": {"name": ...}}``) or that
    object."""
    names = {t["function"]["name"] for t in tools or ()}
    if isinstance(choice, str):
        if choice in _CHOICES:
            if choice != "none" and not tools:
                raise InvalidRequestError(
                    f"{choice!r} needs tools to choose from: give tools=", where="tool_choice"
                )
            return choice
        if choice not in names:
            raise InvalidRequestError(
                f"must be one of {', '.join(_CHOICES)} or the name of a tool offered, "
                f"got {choice!r}",
                where="tool_choice",
            )
        return {"type": "function", "function": {"name": choice}}
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if choice.get("type") != "function" or name not in names:
            raise InvalidRequestError(
                f"names no tool offered in tools: {choice!r:.200}", where="tool_choice"
            )
        return dict(choice)
    raise InvalidRequestError(
        f"must be a string or an object, got {type(choice).__name__}", where="tool_choice"
    )


# --------------------------------------------------------------------------- streams


@dataclass(slots=True)
class _Partial:
    id: str = ""
    type: str = "function"
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Joins the tool-call deltas of one streamed choice into whole calls.

    Each delta names its call by ``index``; the ``id``, ``type`` and function ``name``
    arrive once (repeating the same value is allowed), the ``arguments`` in fragments that
    are joined in the order they arrive.  A delta that breaks these rules raises
    ``ValueError`` (the stream is malformed).
    """

    def __init__(self) -> None:
        self._calls: dict[int, _Partial] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, deltas: object) -> None:
        """Take a delta's ``tool_calls`` list."""
        if not isinstance(deltas, list):
            raise ValueError("delta.tool_calls must be a list")
        for delta in deltas:
            if not isinstance(delta, dict):
                raise ValueError("a tool-call delta must be an object")
            index = delta.get("index")
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ValueError(f"a tool-call delta has no valid index: {delta!r:.200}")
            call = self._calls.setdefault(index, _Partial())
            call.id = _once(call.id, delta.get("id"), f"tool call {index}: id")
            kind = delta.get("type")
            if kind is not None:
                call.type = str(kind)
            function = delta.get("function")
            if function is None:
                continue
            if not isinstance(function, dict):
                raise ValueError(f"tool call {index}: function must be an object")
            call.name = _once(call.name, function.get("name"), f"tool call {index}: name")
            fragment = function.get("arguments")
            if fragment is not None:
                if not isinstance(fragment, str):
                    raise ValueError(f"tool call {index}: an arguments fragment is not text")
                call.arguments.append(fragment)

    def snapshot(self) -> dict[int, tuple[str, str, bool]]:
        """Each call so far by index: its name, its arguments, whether its id arrived."""
        return {k: (c.name, "".join(c.arguments), bool(c.id)) for k, c in self._calls.items()}

    def calls(self) -> list[dict[str, Any]]:
        """The calls assembled so far, in index order, as ``tool_calls`` JSON.

        Raises:
            ValueError: a call never got its function name.
        """
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call.name:
                raise ValueError(f"tool call {index} never got its function name")
            out.append(
                {
                    "id": call.id,
                    "type": call.type,
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
            )
        return out


def _once(current: str, value: object, what: str) -> str:
    """A field sent once per call (repeating it is allowed, changing it is not)."""
    if value is None or value == "":
        return current
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if current and value != current:
        raise ValueError(f"{what} changed from {current!r} to {value!r}")
    return value
