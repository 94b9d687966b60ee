"""Structured outputs: what ``output=`` asks the model for, and the check of its answer.

An :class:`OutputSchema` holds a JSON Schema (a dict) or a pydantic model class.  It adds
to the request either the portable OpenAI form (``response_format`` of type
``json_schema``, the default) or Paradigm's vLLM form (``guided_json``), and it parses the
answer's text:

* with a pydantic model, ``Model.model_validate_json(text)``: the parsed object is a model
  instance, and pydantic's errors are the validation errors;
* with a dict, ``json.loads(text)``, then, when the ``jsonschema`` package is installed,
  its validator for the schema's draft (``jsonschema.validators.validator_for``).  Without
  ``jsonschema`` the answer is only checked to be JSON (:attr:`OutputSchema.validates` is
  then false): the server enforces the schema when it supports it, and paradigm-trio never
  hand-writes a JSON Schema validator.  Install ``paradigm-trio[structured]`` to validate.

A request's tool calls are checked the same way (:class:`ToolCallRules`): a call of a tool
that was not offered, or whose arguments are not JSON or do not match the tool's
``parameters`` (with the tool's pydantic model, or with ``jsonschema``), is an invalid
answer, a :class:`~paradigm_trio.ToolCallError` (an ``"invalid_tool_call"`` failure, which
the engine re-asks within ``RetryPolicy.invalid_output_retries``, one budget with
``output=``); :meth:`ToolCallRules.request_for` is what the re-ask sends: the request,
with a message that tells the model what was wrong with its last call.

Neither pydantic nor jsonschema is imported unless used.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._attempt_failure import AttemptFailure
from .._errors import InvalidRequestError, StructuredOutputError, ToolCallError, ToolCallReason
from .._json import parse_json
from ._tools import FunctionCall, ModelSchema, ToolCall, json_schema_of

if TYPE_CHECKING:
    from .._redact import Redactor

__all__ = ["OutputForm", "OutputSchema", "ToolCallRules", "scrub_output_error"]

R = TypeVar("R")

OutputForm = Literal["response_format", "guided_json"]

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_ERRORS = 20


def _validator(
    schema: Mapping[str, Any], where: str = "output"
) -> Callable[[Any], list[str]] | None:
    """The schema's validator (``value -> errors``), or ``None`` without jsonschema."""
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        return None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(f"not a valid JSON Schema: {exc.message}", where=where) from None
    validator = cls(schema)

    def errors(value: Any) -> list[str]:
        found = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        return [f"{_path(e.absolute_path)}: {e.message}" for e in found[:_MAX_ERRORS]]

    return errors


def _path(parts: Any) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return "$" + text


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """The structured output a chat request asks for, and how its answer is checked.

    ``chat(..., output=...)`` takes one, or a JSON Schema dict, or a pydantic model class
    (turned into an ``OutputSchema`` with the defaults below).

    Attributes:
        schema: the JSON Schema, as a dict (a pydantic model's ``model_json_schema()``).
        model: the pydantic model class given, or ``None``.
        name: the schema's name in ``response_format`` (default: the model's class name,
            or the schema's ``title``, or ``"output"``).
        strict: ``response_format.json_schema.strict``, when given (``None``: not sent).
        form: ``"response_format"`` (OpenAI's portable form, the default) or
            ``"guided_json"`` (Paradigm's vLLM form, a top-level body field).
    """

    schema: Mapping[str, Any]
    model: Any = None
    name: str = ""
    strict: bool | None = None
    form: Literal["response_format", "guided_json"] = "response_format"
    _check: Callable[[Any], list[str]] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        if self.form not in ("response_format", "guided_json"):
            raise InvalidRequestError(
                f"form must be 'response_format' or 'guided_json', got {self.form!r}",
                where="output",
            )
        if self.strict is not None and not isinstance(self.strict, bool):
            raise InvalidRequestError(f"strict must be a bool, got {self.strict!r}")
        schema = json_schema_of(self.schema, "output")
        name = self.name or (
            self.model.__name__ if self.model is not None else str(schema.get("title", ""))
        )
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "name", _NAME_CHARS.sub("_", name)[:64] or "output")
        if self.model is None:
            object.__setattr__(self, "_check", _validator(schema))

    @classmethod
    def of(cls, output: object) -> OutputSchema:
        """``output=`` as an :class:`OutputSchema` (a dict, a pydantic model or one)."""
        if isinstance(output, OutputSchema):
            return output
        if isinstance(output, type) and callable(getattr(output, "model_validate_json", None)):
            return cls(json_schema_of(output, "output"), model=output)
        if isinstance(output, Mapping):
            return cls(output)
        raise InvalidRequestError(
            "must be a JSON Schema (a dict), a pydantic model class or a pt.OutputSchema, "
            f"got {type(output).__name__}",
            where="output",
        )

    @property
    def validates(self) -> bool:
        """Whether answers are validated against the schema (not only parsed as JSON):
        always with a pydantic model; with a dict, when ``jsonschema`` is installed."""
        return self.model is not None or self._check is not None

    def body_fields(self) -> dict[str, Any]:
        """What the request body gets: ``response_format`` or ``guided_json``."""
        if self.form == "guided_json":
            return {"guided_json": dict(self.schema)}
        spec: dict[str, Any] = {"name": self.name, "schema": dict(self.schema)}
        if self.strict is not None:
            spec["strict"] = self.strict
        return {"response_format": {"type": "json_schema", "json_schema": spec}}

    def parse(self, text: str | None) -> Any:
        """The answer's text parsed (and validated).

        Raises:
            StructuredOutputError: it is not JSON, or does not validate; the error holds
                the text (``raw``) and the errors (``errors``).
        """
        if text is None:
            raise StructuredOutputError(
                "the answer has no content to parse", raw="", errors=("$: no content",)
            )
        if self.model is not None:
            return self._parse_model(text)
        try:
            value = parse_json(text)
        except ValueError as exc:
            raise StructuredOutputError(
                f"the answer is not JSON: {exc}", raw=text, errors=(f"$: not JSON: {exc}",)
            ) from None
        errors = self._check(value) if self._check is not None else []
        if errors:
            raise StructuredOutputError(
                f"the answer does not validate against the schema {self.name!r}: {errors[0]}"
                + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                raw=text,
                errors=tuple(errors),
            )
        return value

    def _parse_model(self, text: str) -> Any:
        assert self.model is not None
        try:
            return self.model.model_validate_json(text)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            errors = _model_errors(exc)
            raise StructuredOutputError(
                f"the answer does not validate as {self.name}: {errors[0]}"
                + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                raw=text,
                errors=errors,
            ) from None


def scrub_output_error(error: StructuredOutputError, redactor: Redactor) -> None:
    """Remove the API key from ``error``, built of the model's answer: its message, its
    ``raw`` text, its ``errors`` (a validator's message quotes the value) and its notes
    (the model's refusal)."""
    error.message = redactor.text(error.message)
    error.args = (error.message,)
    error.raw = redactor.text(error.raw)
    error.errors = tuple(map(redactor.text, error.errors))
    notes = getattr(error, "__notes__", None)
    if notes:
        error.__notes__ = [redactor.text(note) for note in notes]


def _model_errors(exc: ValueError) -> tuple[str, ...]:
    """A pydantic ``ValidationError``'s errors, one ``"$.path: message"`` each."""
    raw_errors = getattr(exc, "errors", None)
    listed = raw_errors() if callable(raw_errors) else []
    return tuple(
        f"${''.join(f'.{p}' if isinstance(p, str) else f'[{p}]' for p in e['loc'])}: {e['msg']}"
        for e in listed[:_MAX_ERRORS]
    ) or (str(exc),)


# --------------------------------------------------------------------------- tool calls


_ArgumentsCheck = tuple[Any, Callable[[Any], list[str]] | None]
"""A tool's check of its arguments: its pydantic model (or ``None``), its JSON Schema's
validator (or ``None``: no parameters, or no ``jsonschema``)."""


@functools.lru_cache(maxsize=256)
def _schema_validator(schema_json: str, where: str) -> Callable[[Any], list[str]] | None:
    """The validator of a schema given as JSON text (built once per schema: a batch's
    requests offer the same tools)."""
    return _validator(json.loads(schema_json), where)


def _arguments_check(parameters: object, where: str) -> _ArgumentsCheck:
    if isinstance(parameters, ModelSchema):
        return parameters.model, None
    if not isinstance(parameters, Mapping):
        return None, None
    return None, _schema_validator(json.dumps(parameters, sort_keys=True), where)


class ToolCallRules:
    """What the tool calls of an answer must be, given the ``tools`` a request offers.

    A call must name a tool offered; its arguments must be JSON (an empty text counts as
    ``{}``) and, when the tool has ``parameters``, match them: validated by the tool's
    pydantic model when it was given as one, else by ``jsonschema`` when it is installed
    (without it, the arguments are only checked to be JSON, as ``output=`` does).

    Attributes:
        names: the names of the tools offered.
        redactor: what scrubs the API key from an error built of the model's answer.
    """

    __slots__ = ("_checks", "names", "redactor")

    def __init__(
        self, tools: Sequence[Mapping[str, Any]], redactor: Redactor | None = None
    ) -> None:
        checks: dict[str, _ArgumentsCheck] = {}
        for i, tool in enumerate(tools):
            function = tool["function"]
            where = f"tools[{i}].function.parameters"
            checks[function["name"]] = _arguments_check(function.get("parameters"), where)
        self._checks = checks
        self.names = tuple(checks)
        self.redactor = redactor

    @classmethod
    def of(
        cls,
        tools: Sequence[Mapping[str, Any]] | None,
        validate: bool,
        redactor: Redactor | None = None,
    ) -> ToolCallRules | None:
        """The rules of a request's ``tools`` (``None``: its calls are not checked, for want
        of tools or with ``validate_tool_calls=False``).

        Raises:
            InvalidRequestError: a tool's ``parameters`` is not a valid JSON Schema.
        """
        return cls(tools, redactor) if tools and validate else None

    def request_for(self, request: R, error: ToolCallError) -> R:
        """``request`` (a ``ChatRequest``) as a re-ask after ``error`` sends it: with a
        message appended that tells the model what was wrong with its last call."""
        feedback = {"role": "user", "content": self._feedback(error)}
        messages = (*request.messages, feedback)  # type: ignore[attr-defined]
        return replace(request, messages=messages)  # type: ignore[type-var]

    def problems(self, call: ToolCall) -> tuple[ToolCallReason, tuple[str, ...]] | None:
        """What is wrong with ``call``: ``(reason, errors)``, or ``None`` when it is valid."""
        name = call.function.name
        check = self._checks.get(name)
        if check is None:
            offered = ", ".join(self.names) or "none"
            return "unknown_tool", (f"$: no tool named {name!r} was offered (offered: {offered})",)
        text = call.function.arguments
        try:
            value = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            return "not_json", (f"$: not JSON: {exc}",)
        model, validate = check
        if model is not None:
            try:
                model.model_validate_json(text if text.strip() else "{}")
            except ValueError as exc:
                return "invalid_arguments", _model_errors(exc)
            return None
        errors = validate(value) if validate is not None else []
        return ("invalid_arguments", tuple(errors)) if errors else None

    def check(self, completion: Any) -> None:
        """Raise the attempt's failure (cause ``"invalid_tool_call"``) for the first invalid
        call of ``completion`` (of any choice); return when every call is valid."""
        for choice in completion.choices:
            for call in choice.message.tool_calls:
                found = self.problems(call)
                if found is not None:
                    error = self._error(call, *found)
                    error.request_id, error.status_code = completion.request_id, 200
                    error.completion = completion
                    raise AttemptFailure(error, "invalid_tool_call") from None

    def _error(
        self, call: ToolCall, reason: ToolCallReason, errors: tuple[str, ...]
    ) -> ToolCallError:
        name, arguments, raw = call.function.name, call.function.arguments, dict(call.raw)
        redactor = self.redactor
        if redactor is not None:
            name, arguments = redactor.text(name), redactor.text(arguments)
            errors = tuple(map(redactor.text, errors))
            raw = redactor.value(raw)  # type: ignore[assignment]
        what = {
            "unknown_tool": "calls a tool that was not offered",
            "not_json": f"calls {name!r} with arguments that are not JSON",
            "invalid_arguments": f"calls {name!r} with arguments that do not match its parameters",
        }[reason]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return ToolCallError(
            f"the answer {what}: {errors[0]}{more}",
            tool=name,
            reason=reason,
            call=ToolCall(call.id, FunctionCall(name, arguments), call.type, raw),
            raw=json.dumps(raw, ensure_ascii=False, default=str),
            errors=errors,
        )

    def _feedback(self, error: ToolCallError) -> str:
        """What a re-ask tells the model about ``error``."""
        if error.reason == "unknown_tool":
            return (
                f"Your previous answer called a tool named {error.tool!r}, which does not "
                f"exist. The tools you may call are: {', '.join(self.names)}. Answer again."
            )
        problems = "; ".join(error.errors[:5])
        return (
            f"Your previous answer called the tool {error.tool} with invalid arguments "
            f"({problems}). Call {error.tool} again with arguments that are a JSON object "
            "matching its parameters."
        )
