"""Requests and responses: :class:`ChatRequest`, :class:`ChatCompletion` and their parts.

Plain frozen dataclasses with ``slots`` (no validation library): parsing a completion costs
microseconds, which matters at a hundred thousand requests.  Every parsed object keeps the
JSON it came from in ``raw`` so that fields this library does not model are still there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from ._errors import APIResponseValidationError, InvalidRequestError, StructuredOutputError
from ._logprobs import ChoiceLogprobs, parse_logprobs
from ._structured import InvalidOutputs, OutputSchema
from ._tools import ToolCall, checked_tool_choice, checked_tools, parse_tool_calls

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatOptions",
    "ChatRequest",
    "Choice",
    "Message",
    "ModelInfo",
    "Usage",
    "check_custom_id",
    "check_model",
    "checked_extra",
    "checked_output",
    "completion_parser",
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

# Body fields ChatRequest types too, which ``extra`` may still carry when they are unset
# (how they were sent before they were typed).
_TYPED = frozenset(
    {
        "logprobs",
        "top_logprobs",
        "tools",
        "tool_choice",
        "response_format",
        "guided_json",
        "guided_choice",
        "guided_regex",
    }
)
_RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
_NO_OPTIONS = (None,) * 10


class ChatOptions(TypedDict, total=False):
    """The keywords of :meth:`Client.chat` beyond the sampling parameters: the fields of
    :class:`ChatRequest` of the same names (type checking only)."""

    n: int | None
    logprobs: bool | None
    top_logprobs: int | None
    tools: Sequence[Mapping[str, Any]] | None
    tool_choice: str | Mapping[str, Any] | None
    response_format: Mapping[str, Any] | None
    guided_json: Mapping[str, Any] | str | None
    guided_choice: Sequence[str] | None
    guided_regex: str | None
    output: Any


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
        n: how many choices to generate (1 to 128).
        logprobs, top_logprobs: ask for the log probability of each token of the answer,
            and of the ``top_logprobs`` (0 to 20) likeliest tokens at each position
            (``Choice.logprobs``).
        tools: the tools the model may call: ``{"type": "function", "function": {"name",
            "description", "parameters"}}`` each (:func:`function_tool` builds one).
        tool_choice: ``"none"``, ``"auto"``, ``"required"``, or the name of one tool
            (sent as ``{"type": "function", "function": {"name": ...}}``).
        response_format: OpenAI's ``response_format``, as a dict (``{"type":
            "json_object"}``, or ``"json_schema"`` with its schema), passed through.
        guided_json, guided_choice, guided_regex: Paradigm's (vLLM's) guided decoding: a
            JSON Schema, a list of allowed answers, a regular expression; passed through.
        output: the structured output wanted (an :class:`OutputSchema`, a JSON Schema
            dict or a pydantic model class): it adds ``response_format`` (or
            ``guided_json``) to the request and the answer is parsed and validated into
            ``ChatCompletion.parsed``.  Not together with ``response_format`` or
            ``guided_json``.
        extra: more body fields passed through as they are.  May not override the fields
            above (those from ``n`` to ``guided_regex`` it may still carry when they are
            unset, untyped).
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
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    response_format: Mapping[str, Any] | None = None
    guided_json: Mapping[str, Any] | str | None = None
    guided_choice: Sequence[str] | None = None
    guided_regex: str | None = None
    output: OutputSchema | None = None
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
        extra = checked_extra(self.extra, _MODELLED)
        object.__setattr__(self, "extra", extra)
        options = (
            self.n, self.logprobs, self.top_logprobs, self.tools, self.tool_choice,
            self.response_format, self.guided_json, self.guided_choice, self.guided_regex,
            self.output,
        )  # fmt: skip
        if options != _NO_OPTIONS:  # (the common case: none)
            self._check_options()
            both = sorted(
                name for name in _TYPED.intersection(extra) if getattr(self, name) is not None
            )
            if both:
                raise InvalidRequestError(
                    f"{', '.join(both)} given both as keyword and in extra: give it once"
                )
        check_custom_id(self.custom_id)
        self._check_sendable()

    def _check_options(self) -> None:
        """Check and normalise ``n`` to ``output`` (see the class docstring)."""
        _check_count("n", self.n, 1, 128)
        _check_count("top_logprobs", self.top_logprobs, 0, 20)
        if self.logprobs is not None and not isinstance(self.logprobs, bool):
            raise InvalidRequestError(f"logprobs must be True or False, got {self.logprobs!r}")
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequestError("top_logprobs needs logprobs=True")
        if self.tools is not None:
            object.__setattr__(self, "tools", checked_tools(self.tools))
        if self.tool_choice is not None and not (self.tools is None and "tools" in self.extra):
            choice = checked_tool_choice(self.tool_choice, self.tools)  # (typed tools only)
            object.__setattr__(self, "tool_choice", choice)
        format_ = self.response_format
        if format_ is not None and (
            not isinstance(format_, Mapping) or format_.get("type") not in _RESPONSE_FORMATS
        ):
            raise InvalidRequestError(
                "must be a dict whose type is text, json_object or json_schema",
                where="response_format",
            )
        if self.guided_json is not None and not isinstance(self.guided_json, Mapping | str):
            raise InvalidRequestError("guided_json must be a JSON Schema (a dict or its text)")
        if self.guided_choice is not None:
            choices = self.guided_choice
            if isinstance(choices, str) or not isinstance(choices, Sequence) or not choices:
                raise InvalidRequestError("guided_choice must be a non-empty list of strings")
            if not all(isinstance(c, str) for c in choices):
                raise InvalidRequestError("guided_choice must be a list of strings")
            object.__setattr__(self, "guided_choice", tuple(choices))
        if self.guided_regex is not None and not isinstance(self.guided_regex, str):
            raise InvalidRequestError("guided_regex must be a string")
        if self.output is not None:
            object.__setattr__(self, "output", OutputSchema.of(self.output))
            given = [k for k in ("response_format", "guided_json") if self._given(k)]
            if given:
                raise InvalidRequestError(
                    f"output= sets the request's {given[0]}: give one or the other"
                )

    def _given(self, name: str) -> bool:
        return getattr(self, name) is not None or name in self.extra

    def _parts(self) -> dict[str, object]:
        parts: dict[str, object] = {
            "custom_id": self.custom_id,
            "model": self.model,
            "messages": self.messages,
            "stop": self.stop,
        }
        for name in ("tools", "tool_choice", "response_format", "guided_json"):
            parts[name] = getattr(self, name)
        parts["guided_choice"] = self.guided_choice
        parts["guided_regex"] = self.guided_regex
        parts["extra"] = self.extra
        return parts

    def _check_sendable(self) -> None:
        """Refuse what JSON in UTF-8 cannot hold (naming where it is), before it is sent."""
        try:
            _dumps(
                (self.custom_id, self.model, self.messages, self.stop, self.tools,
                 self.tool_choice, self.response_format, self.guided_json, self.guided_choice,
                 self.guided_regex, self.extra)
            )  # fmt: skip
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
            "messages": list(self.messages),  # (the request's own copies, only serialised)
        }
        for name in _BODY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.stop is not None:
            body["stop"] = self.stop if isinstance(self.stop, str) else list(self.stop)
        if self.tools is not None:
            body["tools"] = list(self.tools)
        if self.guided_choice is not None:
            body["guided_choice"] = list(self.guided_choice)
        if self.output is not None:
            body.update(self.output.body_fields())
        body.update(self.extra)
        return body

    def estimated_tokens(self) -> int:
        """A cheap upper-ish estimate of the tokens this request costs (for rate limits).

        About four characters a token for the prompt (the tools' definitions included),
        four tokens of overhead per message, plus ``max_tokens`` (or 256 when unset) for
        each of the ``n`` answers.
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
        if self.tools is not None:
            chars += len(_dumps(self.tools))
        prompt = (chars + 3) // 4 + 4 * len(self.messages)
        answer = self.max_tokens if self.max_tokens is not None else 256
        return prompt + answer * (self.n or 1)


_BODY_FIELDS = (
    "temperature",
    "max_tokens",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "logprobs",
    "top_logprobs",
    "tool_choice",
    "response_format",
    "guided_json",
    "guided_regex",
)


def _check_count(name: str, value: object, lo: int, hi: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidRequestError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")


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
    """The assistant's message in a choice.

    Attributes:
        role: ``"assistant"``.
        content: the text, or ``None`` (a message that only calls tools, say).
        raw: the message's JSON.
        tool_calls: the tools the model calls (:class:`ToolCall`), in order; empty when
            it calls none.
        refusal: the model's refusal, when it refused to answer.
        parsed: for a request with ``output=``, the content parsed and validated (a dict,
            list... or a pydantic model instance); ``None`` otherwise.
    """

    role: str
    content: str | None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    parsed: Any = None


@dataclass(frozen=True, slots=True)
class Choice:
    """One choice of a completion (``n`` of them when the request asked for ``n``).

    Attributes:
        index: its place among the choices.
        message: the answer.
        finish_reason: why it ended: ``"stop"``, ``"length"``, ``"tool_calls"``...
        logprobs: the tokens' log probabilities, when the request asked for them.
    """

    index: int
    message: Message
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


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

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The first choice's tool calls (empty when it calls no tool)."""
        return self.choices[0].message.tool_calls if self.choices else ()

    @property
    def parsed(self) -> Any:
        """For a request with ``output=``, the first choice's answer parsed and validated
        against the schema (a pydantic model instance for a model); ``None`` otherwise."""
        return self.choices[0].message.parsed if self.choices else None

    def with_parsed(self, output: OutputSchema) -> ChatCompletion:
        """This completion with every choice's answer parsed by ``output``.

        Raises:
            StructuredOutputError: an answer does not parse or validate.
        """
        choices = []
        for choice in self.choices:
            message = choice.message
            try:
                parsed = output.parse(message.content)
            except StructuredOutputError as err:
                if message.refusal:
                    err.add_note(f"the model refused: {message.refusal}")
                err.request_id, err.status_code, err.completion = self.request_id, 200, self
                raise
            choices.append(replace(choice, message=replace(message, parsed=parsed)))
        return replace(self, choices=tuple(choices))

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
        choices = [_parse_choice(i, c) for i, c in enumerate(raw_choices)]
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


def _parse_choice(i: int, c: object) -> Choice:
    if not isinstance(c, dict):
        raise TypeError(f"choices[{i}] must be an object")
    msg = c["message"]
    if not isinstance(msg, dict):
        raise TypeError(f"choices[{i}].message must be an object")
    content, refusal = msg.get("content"), msg.get("refusal")
    if content is not None and not isinstance(content, str):
        raise TypeError(f"choices[{i}].message.content must be a string or null")
    if refusal is not None and not isinstance(refusal, str):
        raise TypeError(f"choices[{i}].message.refusal must be a string or null")
    message = Message(
        role=str(msg.get("role", "assistant")),
        content=content,
        raw=msg,
        tool_calls=parse_tool_calls(msg.get("tool_calls"), f"choices[{i}].message.tool_calls"),
        refusal=refusal,
    )
    return Choice(
        index=int(c.get("index", i)),
        message=message,
        finish_reason=c.get("finish_reason"),
        logprobs=parse_logprobs(c.get("logprobs")),
    )


def completion_parser(
    output: OutputSchema | None, retries: int
) -> Callable[[object, str | None], ChatCompletion]:
    """The parser of a chat answer: with ``output``, it also parses and validates the
    answer (an answer that does not match is an ``"invalid_output"`` failure, retried
    ``retries`` times at most)."""
    if output is None:
        return ChatCompletion.from_json
    invalid = InvalidOutputs(retries)

    def parse(data: object, request_id: str | None) -> ChatCompletion:
        return checked_output(ChatCompletion.from_json(data, request_id), output, invalid)

    return parse


def checked_output(
    completion: ChatCompletion, output: OutputSchema | None, invalid: InvalidOutputs
) -> ChatCompletion:
    """``completion`` parsed by ``output`` (when given), or raise the attempt's failure."""
    if output is None:
        return completion
    try:
        return completion.with_parsed(output)
    except StructuredOutputError as err:
        raise invalid.failure(err) from None


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

    One choice's delta is modelled: the first choice's when the chunk carries it, else
    the first the chunk carries (``index`` says which; with ``n`` > 1 the chunks of the
    choices are interleaved).  ``raw`` holds the whole JSON.

    Attributes:
        id, model, created: as in the chunk.
        index: the choice this chunk's delta belongs to.
        delta: the text this chunk adds (``""`` when it adds none).
        tool_calls: the tool-call deltas this chunk adds (fragments, as JSON: ``index``,
            then ``id`` and ``function.name``, then pieces of ``function.arguments``);
            the stream's ``completion`` has them joined into whole calls.
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
    index: int = 0
    tool_calls: tuple[Mapping[str, Any], ...] = ()

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
        index: object = 0
        calls: object = None
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
            index = choice.get("index", 0)
            calls = delta.get("tool_calls")
            if content is not None and not isinstance(content, str):
                raise TypeError("'delta.content' must be a string or null")
            if calls is not None and not isinstance(calls, list):
                raise TypeError("'delta.tool_calls' must be a list")
        return cls(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or ""),
            created=int(data.get("created") or 0),
            delta=content if isinstance(content, str) else "",
            role=None if role is None else str(role),
            finish_reason=None if finish is None else str(finish),
            usage=_parse_usage(data.get("usage")),
            raw=data,
            index=index if isinstance(index, int) and not isinstance(index, bool) else 0,
            tool_calls=tuple(calls) if isinstance(calls, list) else (),
        )
