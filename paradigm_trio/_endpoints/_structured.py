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

Neither pydantic nor jsonschema is imported unless used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import InvalidRequestError, StructuredOutputError
from .._json import parse_json
from ._tools import json_schema_of

__all__ = ["OutputForm", "OutputSchema"]

OutputForm = Literal["response_format", "guided_json"]

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_ERRORS = 20


def _validator(schema: Mapping[str, Any]) -> Callable[[Any], list[str]] | None:
    """The schema's validator (``value -> errors``), or ``None`` without jsonschema."""
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        return None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(
            f"not a valid JSON Schema: {exc.message}", where="output"
        ) from None
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
            raw_errors = getattr(exc, "errors", None)
            listed = raw_errors() if callable(raw_errors) else []
            errors = tuple(
                f"${''.join(f'.{p}' if isinstance(p, str) else f'[{p}]' for p in e['loc'])}: "
                f"{e['msg']}"
                for e in listed[:_MAX_ERRORS]
            ) or (str(exc),)
            raise StructuredOutputError(
                f"the answer does not validate as {self.name}: {errors[0]}"
                + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                raw=text,
                errors=errors,
            ) from None
