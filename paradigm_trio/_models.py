"""Requests and responses: :class:`ChatRequest`, :class:`ChatCompletion` and their parts.

Plain frozen dataclasses with ``slots`` (no validation library): parsing a completion costs
microseconds, which matters at a hundred thousand requests.  Every parsed object keeps the
JSON it came from in ``raw`` so that fields this library does not model are still there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._errors import APIResponseValidationError, InvalidRequestError

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatRequest",
    "Choice",
    "Message",
    "ModelInfo",
    "Usage",
    "check_custom_id",
    "check_model",
    "checked_extra",
    "make_request",
    "usage_of",
]

VALID_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

# Keys of the request body that ChatRequest models itself; ``extra`` may not override them.
_MODELLED = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "max_tokens",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "stream",
    }
)


def _validate_messages(messages: object) -> tuple[Mapping[str, Any], ...]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidRequestError(
            f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
            f"got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidRequestError("messages must not be empty")
    checked: list[Mapping[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"messages[{i}] must be a dict, got {type(message).__name__}")
        role = message.get("role")
        if role is None:
            raise InvalidRequestError(f"messages[{i}] has no 'role'")
        if not isinstance(role, str) or role not in VALID_ROLES:
            raise InvalidRequestError(
                f"messages[{i}] has unknown role {role!r} "
                f"(expected one of {', '.join(sorted(VALID_ROLES))})"
            )
        if "content" not in message:
            if not (role == "assistant" and message.get("tool_calls")):
                raise InvalidRequestError(f"messages[{i}] ({role}) has no 'content'")
        else:
            content = message["content"]
            if content is None and not (role == "assistant" and message.get("tool_calls")):
                raise InvalidRequestError(f"messages[{i}] ({role}) has content None")
            if content is not None and not isinstance(content, str | list):
                raise InvalidRequestError(
                    f"messages[{i}].content must be a string or a list of parts, "
                    f"got {type(content).__name__}"
                )
        checked.append(dict(message))
    return tuple(checked)


def _check_float(name: str, value: object, lo: float, hi: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{name} must be a number, got {value!r}")
    if math.isnan(value) or not lo <= value <= hi:
        raise InvalidRequestError(f"{name} must be between {lo} and {hi}, got {value!r}")


def _dumps(value: object) -> bytes:
    """``value`` as compact JSON in UTF-8: no ``NaN`` or infinities, and no lone surrogate
    (which UTF-8 cannot hold; ``\\uXXXX`` escaping would only move the failure to the
    server)."""
    return _ENCODER.encode(value).encode("utf-8")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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


def _checked_stop(stop: object) -> str | tuple[str, ...] | None:
    """``stop`` as a string, a tuple of strings or ``None``."""
    if stop is None or isinstance(stop, str):
        return stop
    if isinstance(stop, list | tuple) and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise InvalidRequestError(f"stop must be a string or a list of strings, got {stop!r:.200}")


def check_model(model: object) -> None:
    """Refuse a ``model`` that is neither ``None`` nor a non-empty string."""
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidRequestError(f"model must be a non-empty string, got {model!r}")


def check_custom_id(custom_id: object) -> None:
    """Refuse a ``custom_id`` that is neither ``None`` nor a non-empty string."""
    if custom_id is not None and (not isinstance(custom_id, str) or not custom_id):
        raise InvalidRequestError(f"custom_id must be a non-empty string, got {custom_id!r}")


def checked_extra(extra: object, modelled: frozenset[str]) -> dict[str, Any]:
    """``extra`` as a new dict; refused when it is not a mapping or sets a ``modelled``
    field (those have keyword arguments of their own)."""
    if not isinstance(extra, Mapping):
        raise InvalidRequestError(f"extra must be a dict, got {type(extra).__name__}")
    clash = modelled.intersection(extra)
    if clash:
        raise InvalidRequestError(
            f"extra may not set {', '.join(sorted(clash))}: use the keyword arguments"
        )
    return dict(extra)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatRequest:
    """One logical chat-completion request.

    Validated at construction (an :class:`InvalidRequestError`, a ``ValueError``, says what
    is wrong and where), so a bad request is refused before anything is sent: a bad field,
    text that is not valid Unicode (a lone surrogate, anywhere, ``custom_id`` included) or
    a value JSON cannot hold (``NaN``, infinities, other types, a circular reference).
    ``model=None`` means the client's default model.

    Attributes:
        messages: the conversation, OpenAI format (``role`` and ``content`` each).
        model: model name, or ``None`` for the client's default.
        temperature, max_tokens, top_p, stop, seed, presence_penalty, frequency_penalty:
            the usual sampling parameters; ``None`` leaves them to the server.
        extra: more body fields passed through as they are (e.g. ``guided_json``,
            ``response_format``, ``tools``).  May not override the fields above.
        custom_id: a stable id for this logical request.  It is echoed on results and
            errors and derives the ``Idempotency-Key`` header, so the same ``custom_id``
            is the same request to the server across retries and resumed runs.
    """

    messages: Sequence[Mapping[str, Any]]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: str | Sequence[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    custom_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", _validate_messages(self.messages))
        check_model(self.model)
        _check_float("temperature", self.temperature, 0.0, 2.0)
        _check_float("top_p", self.top_p, 0.0, 1.0)
        _check_float("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_float("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens < 1
        ):
            raise InvalidRequestError(
                f"max_tokens must be a positive integer, got {self.max_tokens!r}"
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise InvalidRequestError(f"seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "stop", _checked_stop(self.stop))
        object.__setattr__(self, "extra", checked_extra(self.extra, _MODELLED))
        check_custom_id(self.custom_id)
        self._check_sendable()

    def _parts(self) -> dict[str, object]:
        return {
            "custom_id": self.custom_id,
            "model": self.model,
            "messages": self.messages,
            "stop": self.stop,
            "extra": self.extra,
        }

    def _check_sendable(self) -> None:
        """Refuse what JSON in UTF-8 cannot hold (naming where it is), before it is sent."""
        try:
            _dumps((self.custom_id, self.model, self.messages, self.stop, self.extra))
        except _JSON_ERRORS as exc:
            raise _unsendable(self._parts(), exc) from None

    def encode_body(self, body: Mapping[str, Any]) -> bytes:
        """``body`` (from :meth:`to_body`, perhaps with fields added) as UTF-8 JSON bytes.

        Raises:
            InvalidRequestError: a part of the request cannot be sent (changed since the
                request was built: a lone surrogate, ``NaN``, an object JSON cannot hold).
        """
        try:
            return _dumps(body)
        except _JSON_ERRORS as exc:
            raise _unsendable({**self._parts(), "": body}, exc) from None

    def to_body(self, default_model: str) -> dict[str, Any]:
        """The JSON body sent to ``/chat/completions``."""
        body: dict[str, Any] = {
            "model": self.model or default_model,
            "messages": [dict(m) for m in self.messages],
        }
        for name in (
            "temperature",
            "max_tokens",
            "top_p",
            "seed",
            "presence_penalty",
            "frequency_penalty",
        ):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.stop is not None:
            body["stop"] = self.stop if isinstance(self.stop, str) else list(self.stop)
        body.update(self.extra)
        return body

    def estimated_tokens(self) -> int:
        """A cheap upper-ish estimate of the tokens this request costs (for rate limits).

        About four characters a token for the prompt, four tokens of overhead per message,
        plus ``max_tokens`` (or 256 when unset) for the answer.
        """
        chars = 0
        for m in self.messages:
            content = m.get("content")
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        chars += len(part["text"])
        prompt = (chars + 3) // 4 + 4 * len(self.messages)
        return prompt + (self.max_tokens if self.max_tokens is not None else 256)


def make_request(messages: ChatRequest | Sequence[Mapping[str, Any]], **params: Any) -> ChatRequest:
    """A :class:`ChatRequest` from messages and keyword fields (``None`` means "not given").

    When ``messages`` is already a :class:`ChatRequest`, the keywords given override its
    fields.  Raises :class:`InvalidRequestError` when the result is not a valid request.
    """
    stop = params.get("stop")
    if isinstance(stop, Iterable) and not isinstance(stop, str | bytes | Mapping):
        params["stop"] = tuple(stop)
    given = {k: v for k, v in params.items() if v is not None}
    if isinstance(messages, ChatRequest):
        return replace(messages, **given) if given else messages
    return ChatRequest(messages=messages, **given)


def usage_of(completion: ChatCompletion) -> Usage | None:
    """A completion's usage, for the engine's token accounting (``None``: the estimate
    stands)."""
    return completion.usage


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts the server reported for one completion.

    A completion whose server reported no usage has ``usage=None`` (unknown), not a
    ``Usage`` of zeros: zeros are kept only when the server sent them.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )


@dataclass(frozen=True, slots=True)
class Message:
    """The assistant's message in a choice."""

    role: str
    content: str | None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True, slots=True)
class Choice:
    """One choice of a completion."""

    index: int
    message: Message
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class ChatCompletion:
    """A chat completion as returned by the API.

    Attributes:
        id, model, created: as in the response.
        choices: the choices, usually one.
        usage: the token usage the server reported, or ``None`` when it reported none
            (a response without ``usage``, or a stream whose server ignored
            ``stream_options.include_usage``): unknown, not zero.
        request_id: the server's ``x-request-id``, if it sent one.
        raw: the whole response JSON.
    """

    id: str
    model: str
    created: int
    choices: tuple[Choice, ...]
    usage: Usage | None
    request_id: str | None = None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def text(self) -> str:
        """The first choice's content (``""`` when it has none)."""
        if not self.choices:
            return ""
        return self.choices[0].message.content or ""

    @property
    def finish_reason(self) -> str | None:
        """The first choice's ``finish_reason``."""
        return self.choices[0].finish_reason if self.choices else None

    @classmethod
    def from_json(cls, data: object, request_id: str | None = None) -> ChatCompletion:
        """Parse a response body; raises :class:`APIResponseValidationError` if it is not one."""
        try:
            return cls._parse(data, request_id)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise APIResponseValidationError(
                f"the response is not a valid chat completion: {exc}",
                request_id=request_id,
                body=data,
            ) from exc

    @classmethod
    def _parse(cls, data: object, request_id: str | None) -> ChatCompletion:
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        raw_choices = data["choices"]
        if not isinstance(raw_choices, list) or not raw_choices:
            raise ValueError("'choices' must be a non-empty list")
        choices = []
        for i, c in enumerate(raw_choices):
            msg = c["message"]
            if not isinstance(msg, dict):
                raise TypeError(f"choices[{i}].message must be an object")
            content = msg.get("content")
            if content is not None and not isinstance(content, str):
                raise TypeError(f"choices[{i}].message.content must be a string or null")
            choices.append(
                Choice(
                    index=int(c.get("index", i)),
                    message=Message(
                        role=str(msg.get("role", "assistant")), content=content, raw=msg
                    ),
                    finish_reason=c.get("finish_reason"),
                )
            )
        usage = _parse_usage(data.get("usage"))
        return cls(
            id=str(data.get("id", "")),
            model=str(data.get("model", "")),
            created=int(data.get("created", 0)),
            choices=tuple(choices),
            usage=usage,
            request_id=request_id,
            raw=data,
        )


_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _parse_usage(raw: object) -> Usage | None:
    """The ``usage`` object as a :class:`Usage`; ``None`` (unknown) when there is none.

    ``null``, a missing ``usage`` or one without any token count is unknown usage; counts
    the server sent, zeros included, are kept.
    """
    if not isinstance(raw, dict) or all(raw.get(name) is None for name in _USAGE_FIELDS):
        return None
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    total = int(raw.get("total_tokens") or (prompt + completion))
    return Usage(prompt, completion, total)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model the API offers (from ``GET /models``)."""

    id: str
    owned_by: str | None = None
    created: int | None = None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def list_from_json(cls, data: object, request_id: str | None = None) -> list[ModelInfo]:
        """Parse a ``/models`` answer; raises :class:`APIResponseValidationError` if not one."""
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise APIResponseValidationError(
                "the /models response has no 'data' list", body=data, request_id=request_id
            )
        models = []
        for item in data["data"]:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise APIResponseValidationError(
                    f"a /models entry has no 'id': {item!r}"[:300], body=data, request_id=request_id
                )
            created = item.get("created")
            models.append(
                cls(
                    id=item["id"],
                    owned_by=None if item.get("owned_by") is None else str(item["owned_by"]),
                    created=created if isinstance(created, int) else None,
                    raw=item,
                )
            )
        return models


@dataclass(frozen=True, slots=True)
class ChatCompletionChunk:
    """One piece of a streamed chat completion (an OpenAI ``chat.completion.chunk``).

    Only the first choice is modelled (``n`` is always 1 here); ``raw`` holds the whole
    JSON, tool-call deltas included.

    Attributes:
        id, model, created: as in the chunk.
        delta: the text this chunk adds (``""`` when it adds none).
        role: the role, on the first chunk of a message (usually ``"assistant"``).
        finish_reason: why the answer ended, on its last content chunk.
        usage: the token usage, on the final usage chunk (``include_usage=True``);
            ``None`` on every other chunk.
        raw: the chunk's JSON.
    """

    id: str
    model: str
    created: int
    delta: str
    role: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def from_json(cls, data: object, request_id: str | None = None) -> ChatCompletionChunk:
        """Parse a chunk; raises :class:`APIResponseValidationError` if it is not one."""
        try:
            return cls._parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise APIResponseValidationError(
                f"a stream event is not a valid chat completion chunk: {exc}",
                request_id=request_id,
                body=data,
            ) from exc

    @classmethod
    def _parse(cls, data: object) -> ChatCompletionChunk:
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices") or []
        if not isinstance(choices, list):
            raise TypeError("'choices' must be a list")
        content: object = None
        role: object = None
        finish: object = None
        if choices:
            choice = next(
                (c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), choices[0]
            )
            if not isinstance(choice, dict):
                raise TypeError("a choice must be an object")
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise TypeError("'delta' must be an object")
            content = delta.get("content")
            role = delta.get("role")
            finish = choice.get("finish_reason")
            if content is not None and not isinstance(content, str):
                raise TypeError("'delta.content' must be a string or null")
        return cls(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or ""),
            created=int(data.get("created") or 0),
            delta=content if isinstance(content, str) else "",
            role=None if role is None else str(role),
            finish_reason=None if finish is None else str(finish),
            usage=_parse_usage(data.get("usage")),
            raw=data,
        )
