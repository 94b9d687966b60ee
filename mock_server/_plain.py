"""What a plain (JSON, never streamed) Paradigm request is to the API routes: its model and
tokens for the log and the quotas, and an answer made from the mock's state once its
fault and delay are decided; plus the checks of JSON fields these requests share.

Every check raises a :class:`RequestError` (400, or the status given) that names the
field at fault in ``param``, so a bad request gets the same error envelope as chat.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._content import RequestError, type_name
from ._content import json_object as load_object

if TYPE_CHECKING:
    from ._state import MockState

__all__ = [
    "Answer",
    "EventStream",
    "PlainRequest",
    "bad",
    "int_list",
    "load_object",
    "model_field",
    "optional_bool",
    "optional_int",
    "optional_str",
    "required_str",
    "text_tokens",
    "type_name",
]


@dataclass(frozen=True, slots=True)
class EventStream:
    """A streamed answer: its SSE events (``data: [DONE]`` last), the content chunks of
    each choice among them (a token each), and the id a ``malformed`` fault breaks."""

    events: tuple[bytes, ...]
    pieces: tuple[int, ...]
    stream_id: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to a plain request: JSON body, HTTP status, completion tokens to log;
    or, with ``stream``, Server-Sent Events (``body`` unused)."""

    body: Any
    status: int = 200
    completion_tokens: int | None = None
    stream: EventStream | None = None


class PlainRequest(Protocol):
    """A parsed request that the API routes answer with :meth:`answer`.

    ``model`` and ``prompt_tokens`` go to the request log; ``quota_tokens`` is what the
    request takes from the ``tpm`` bucket.  :meth:`answer` runs after the fault and the
    delay, so a request that draws a 5xx or a reset never changes the state (no file
    stored or deleted).  It may raise :class:`RequestError` (a 404 for a file gone).
    """

    @property
    def model(self) -> str | None: ...

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def quota_tokens(self) -> int: ...

    def answer(self, state: MockState) -> Answer: ...


def text_tokens(text: str) -> int:
    """The mock tokenizer's count of a text: ``ceil(len(text) / 4)`` (characters, not bytes)."""
    return math.ceil(len(text) / 4)


def bad(message: str, param: str | None, code: str = "invalid_value") -> RequestError:
    """A 400 naming ``param``."""
    return RequestError(message, param=param, code=code)


def _wrong_type(name: str, expected: str, value: object) -> RequestError:
    return bad(
        f"Invalid type for '{name}': expected {expected}, but got {type_name(value)}.",
        name,
        "invalid_type",
    )


def required_str(data: Mapping[str, Any], name: str, *, max_length: int | None = None) -> str:
    """A required non-empty string field."""
    if data.get(name) is None:
        raise bad(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    value = optional_str(data, name, max_length=max_length)
    if not value:
        raise bad(f"Invalid '{name}': expected a non-empty string.", name)
    return value


def optional_str(
    data: Mapping[str, Any], name: str, *, max_length: int | None = None
) -> str | None:
    """An optional string field (``null`` is absent), at most ``max_length`` characters."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong_type(name, "a string", value)
    if max_length is not None and len(value) > max_length:
        raise bad(
            f"Invalid '{name}': at most {max_length} characters, got {len(value)}.",
            name,
            "string_above_max_length",
        )
    return value


def optional_bool(data: Mapping[str, Any], name: str) -> bool | None:
    """An optional boolean field."""
    value = data.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise _wrong_type(name, "a boolean", value)


def optional_int(
    data: Mapping[str, Any], name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """An optional integer field within ``[minimum, maximum]``."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(name, "an integer", value)
    if minimum is not None and value < minimum:
        raise bad(
            f"Invalid '{name}': expected a value >= {minimum}, but got {value}.",
            name,
            "integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise bad(
            f"Invalid '{name}': expected a value <= {maximum}, but got {value}.",
            name,
            "integer_above_max_value",
        )
    return value


def model_field(
    data: Mapping[str, Any],
    name: str,
    models: tuple[str, ...] | None,
    *,
    required: bool = False,
) -> str | None:
    """A model name, one of ``models`` unless that is ``None`` (``MockConfig.models``)."""
    value = required_str(data, name) if required else optional_str(data, name)
    if value is not None and models is not None and value not in models:
        raise bad(
            f"The model `{value[:100]}` does not exist or you do not have access to it.",
            name,
            "model_not_found",
        )
    return value


def int_list(data: Mapping[str, Any], name: str) -> tuple[int, ...] | None:
    """An optional array of integers (ids)."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _wrong_type(name, "an array of integers", value)
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int):
            raise _wrong_type(f"{name}[{i}]", "an integer", item)
    return tuple(value)
