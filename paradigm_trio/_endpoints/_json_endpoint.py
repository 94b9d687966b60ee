"""What Paradigm's own JSON endpoints share: one :class:`JsonEndpoint` for all of them,
and the lenient readers of their answers.

Each of these endpoints is a request class (``_tokenize``, ``_query``, ``_filter_chunks``,
``_document_search``, ``_threads``, ``_text_completion``) that knows its path
(``endpoint``), its body (``to_body``), how to parse its answer (``parse``) and what the
answer says it cost (``usage``), with no I/O.  :class:`JsonEndpoint` presents any of them
as an :class:`~._endpoint.Endpoint`, so that the client sends them on the one send path
(``Sender.send``: the engine's retries, timeouts, limits, events, statistics and
telemetry), and a batch of them is one generic ``Kind`` (``_endpoint_kind``).

The readers are lenient where the reference is silent (unknown fields are kept in
``raw``; a missing optional field is ``None``) and strict on what an answer must have:
what is missing or of the wrong type raises :class:`APIResponseValidationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from .._errors import APIResponseValidationError, InvalidRequestError
from ._completion import Usage
from ._encode import encode_json

__all__ = [
    "EndpointRequest",
    "JsonEndpoint",
    "check_text",
    "given_fields",
    "int_list",
    "obj",
    "opt_int",
    "opt_number",
    "opt_str",
    "req_list",
]


class EndpointRequest(Protocol):
    """A request to one of Paradigm's JSON endpoints (validated when built; no I/O).

    A request class whose request must not be sent twice blindly (it creates something:
    a thread's turn) says so with a class attribute ``idempotent = False`` (read by
    :class:`JsonEndpoint`; ``True`` when absent).
    """

    @property
    def custom_id(self) -> str | None: ...

    @property
    def model(self) -> str | None: ...

    @property
    def endpoint(self) -> str:
        """The path under the API root, e.g. ``"/tokenize"`` (or ``/api/v3/...``)."""
        ...

    def to_body(self, default_model: str) -> dict[str, Any]: ...

    def estimated_tokens(self) -> int: ...

    def parse(self, data: object, request_id: str | None) -> Any: ...


class JsonEndpoint:
    """Any :class:`EndpointRequest`'s endpoint, as an :class:`~._endpoint.Endpoint`.

    Args:
        operation: its name in telemetry (``"tokenize"``, ``"query"``...).
        path: its path.
        model: the model of a request that names none (the client's ``model``).
        idempotent: whether its requests may be resent after any retryable failure
            (``Plan.idempotent``; from the request class's ``idempotent``).
    """

    __slots__ = ("idempotent", "model", "operation", "path")

    token_types = ("input", "output")

    def __init__(self, operation: str, path: str, model: str, idempotent: bool = True) -> None:
        self.operation = operation
        self.path = path
        self.model = model
        self.idempotent = idempotent

    def encode(self, request: EndpointRequest) -> bytes:
        return encode_json(request.to_body(self.model))

    @staticmethod
    def deterministic(request: EndpointRequest) -> bool:
        """What the request says (its ``deterministic()``: a tokenize request, a seeded
        or greedy text completion); not claimed by the others (a search's answer follows
        the documents, a thread's turn the thread), whose answers are never shared."""
        says = getattr(request, "deterministic", None)
        return bool(says()) if callable(says) else False

    def parser(self, request: EndpointRequest) -> Callable[[object, str | None], Any]:
        return request.parse

    @staticmethod
    def follow_up(request: EndpointRequest, stream: bool) -> None:
        """Every attempt sends the same request."""

    @staticmethod
    def usage(answer: Any) -> Usage | None:
        """The answer's ``usage`` when it has one (a text completion's), else ``None``."""
        usage = getattr(answer, "usage", None)
        return usage if isinstance(usage, Usage) else None

    @staticmethod
    def request_attributes(request: EndpointRequest) -> Iterator[tuple[str, Any]]:
        return iter(())

    @staticmethod
    def answer_attributes(answer: Any) -> Iterator[tuple[str, Any]]:
        model = getattr(answer, "model", None)
        if isinstance(model, str) and model:
            yield "gen_ai.response.model", model

    @staticmethod
    def content_attributes(request: EndpointRequest, answer: Any) -> Iterator[tuple[str, str]]:
        return iter(())  # (no messages: the conventions record none)


def given_fields(request: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields ``names`` of ``request`` that are not ``None``, for a JSON body (tuples
    as lists): the server's defaults stand for the others."""
    body: dict[str, Any] = {}
    for name in names:
        value = getattr(request, name)
        if value is not None:
            body[name] = list(value) if isinstance(value, tuple) else value
    return body


def check_text(name: str, value: object) -> str:
    """``value`` as a non-empty string, or :class:`InvalidRequestError` naming it."""
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{name} must be a non-empty string, got {value!r:.200}")
    return value


def _bad(what: str, data: object, request_id: str | None) -> APIResponseValidationError:
    return APIResponseValidationError(what[:300], body=data, request_id=request_id)


def obj(data: object, what: str, request_id: str | None, whole: object = None) -> Mapping[str, Any]:
    """``data`` as a JSON object, or the error naming ``what``."""
    if not isinstance(data, dict):
        raise _bad(
            f"{what} is not a JSON object: {data!r}",
            whole if whole is not None else data,
            request_id,
        )
    return data


def req_list(data: Mapping[str, Any], key: str, what: str, request_id: str | None) -> list[Any]:
    """``data[key]``, which must be a list."""
    value = data.get(key)
    if not isinstance(value, list):
        raise _bad(f"{what} has no {key!r} list", data, request_id)
    return value


def opt_str(data: Mapping[str, Any], key: str) -> str | None:
    """``data[key]`` as a string (a number is written out), ``None`` when absent."""
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


def opt_int(data: Mapping[str, Any], key: str) -> int | None:
    """``data[key]`` as an int (a digit string too), ``None`` when absent or not one."""
    value = data.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def opt_number(data: Mapping[str, Any], key: str) -> float | None:
    """``data[key]`` as a float, ``None`` when absent or not a number."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def int_list(name: str, values: object) -> tuple[int, ...] | None:
    """A list of ids (ints) as a tuple; ``None`` stays ``None``."""
    if values is None:
        return None
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise InvalidRequestError(f"{name} must be a list of integers, got {values!r:.200}")
    out = tuple(values)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
        raise InvalidRequestError(f"{name} must be a list of integers, got {values!r:.200}")
    return out
