"""Chat requests: :class:`ChatRequest`, validated at construction, and :func:`make_request`.

Plain frozen dataclasses with ``slots`` (no validation library).  A request is checked once,
when it is built: a bad field, text that is not valid Unicode or a value JSON cannot hold is
refused (an :class:`InvalidRequestError` naming where) before anything is sent.  What a
valid field is lives here, with the checks other requests share (``check_model``,
``check_custom_id``, ``checked_extra``, ``check_positive``); how a body becomes JSON bytes,
and which part JSON cannot hold, is :mod:`._encode`'s (every request's encoder, not only
chat's), imported here by name so a request's encoding calls it directly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from .._errors import InvalidRequestError
from .._records import builder
from ._encode import _JSON_ERRORS, _dumps, _unsendable
from ._structured import OutputSchema, ToolCallRules
from ._tools import checked_tool_choice, checked_tools

__all__ = [
    "ChatOptions",
    "ChatRequest",
    "check_custom_id",
    "check_model",
    "check_positive",
    "checked_extra",
    "make_request",
    "sealed_request",
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
# (how they were sent before they were typed); its ``tools`` become the field (checked),
# unless ``validate_tool_calls=False``.
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
    validate_tool_calls: bool | None


def _validate_messages(messages: object) -> tuple[Mapping[str, Any], ...]:
    if type(messages) is not list and (  # (a list: no ABC check, the usual case)
        isinstance(messages, str | bytes) or not isinstance(messages, Sequence)
    ):
        raise InvalidRequestError(
            f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
            f"got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidRequestError("messages must not be empty")
    checked: list[Mapping[str, Any]] = []
    for i, message in enumerate(messages):
        if type(message) is not dict and not isinstance(message, Mapping):
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


def _tools_of_extra(tools: object) -> tuple[dict[str, Any], ...]:
    """``extra["tools"]`` as ``tools=`` takes it (checked the same way, its calls then
    validated), or :class:`InvalidRequestError` naming ``extra.tools``."""
    try:
        checked = checked_tools(tools)
        ToolCallRules.of(checked, True)  # (each parameters a JSON Schema)
    except InvalidRequestError as exc:
        where = f"extra.{exc.where}" if exc.where else "extra.tools"
        message = str(exc).removeprefix(f"{exc.where}: ")
        raise InvalidRequestError(
            f"{message} (extra's tools are checked as tools= is; to send tools this library "
            "cannot check as they are, unchecked, pass validate_tool_calls=False)",
            where=where,
        ) from None
    return checked


def checked_extra(extra: object, modelled: frozenset[str]) -> dict[str, Any]:
    """``extra`` as a new dict; refused when it is not a mapping or sets a ``modelled``
    field (those have keyword arguments of their own)."""
    if type(extra) is not dict and not isinstance(extra, Mapping):  # (a dict: no ABC check)
        raise InvalidRequestError(f"extra must be a dict, got {type(extra).__name__}")
    clash = modelled.intersection(extra) if extra else None
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
        validate_tool_calls: whether the answer's tool calls are checked against
            ``tools`` (default ``True``): a call of a tool not offered, or whose arguments
            are not JSON or do not match the tool's ``parameters``, is an invalid answer
            (:class:`~paradigm_trio.ToolCallError`, re-asked like ``output=``).
            ``False`` hands the calls out as the model made them.
        extra: more body fields passed through as they are.  May not override the fields
            above (those from ``n`` to ``guided_regex`` it may still carry when they are
            unset, untyped).  Its ``tools`` are taken as ``tools`` (checked the same way,
            their calls validated; a tool that cannot be is an
            :class:`InvalidRequestError`), unless ``validate_tool_calls=False``: then
            they are sent as they are, unchecked (other kinds of tool).
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
    validate_tool_calls: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)
    custom_id: str | None = None
    _encoded: bytes = field(default=b"", init=False, repr=False, compare=False)
    """The body without its model, as JSON bytes, encoded when the request was checked."""
    _sealed: bool = field(default=False, init=False, repr=False, compare=False)
    """Whether ``_encoded`` is what is sent (``sealed_request``): a request built
    for one send, which nobody else holds, so nobody changed its messages since."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", _validate_messages(self.messages))
        check_model(self.model)
        if (  # (by identity: an unchecked value's __eq__ may raise)
            self.temperature is not None
            or self.top_p is not None
            or self.presence_penalty is not None
            or self.frequency_penalty is not None
            or self.max_tokens is not None
            or self.seed is not None
        ):
            self._check_sampling()
        if self.stop is not None:
            object.__setattr__(self, "stop", _checked_stop(self.stop))
        extra = checked_extra(self.extra, _MODELLED)
        if "tools" in extra and self.tools is None and self.validate_tool_calls is not False:
            object.__setattr__(self, "tools", _tools_of_extra(extra.pop("tools")))
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
        if not isinstance(self.validate_tool_calls, bool):
            raise InvalidRequestError(
                f"validate_tool_calls must be True or False, got {self.validate_tool_calls!r}"
            )
        check_custom_id(self.custom_id)
        object.__setattr__(self, "_encoded", self._sendable())

    def _check_sampling(self) -> None:
        """Check ``temperature`` to ``seed``."""
        _check_float("temperature", self.temperature, 0.0, 2.0)
        _check_float("top_p", self.top_p, 0.0, 1.0)
        _check_float("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_float("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        check_positive("max_tokens", self.max_tokens)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise InvalidRequestError(f"seed must be an integer, got {self.seed!r}")

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
            # (a parameters that is no JSON Schema: refused now, not when it is sent)
            ToolCallRules.of(self.tools, self.validate_tool_calls is not False)
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

    def _sendable(self) -> bytes:
        """The body without its model as JSON bytes, refusing what JSON in UTF-8 cannot
        hold (naming where) before anything is sent."""
        try:
            for text in (self.custom_id, self.model):  # (not in it: checked all the same)
                if text is not None:
                    text.encode("utf-8")  # (a lone surrogate: UnicodeEncodeError)
            return _dumps(self._fill({"messages": self.messages}))  # (a tuple: a JSON list)
        except _JSON_ERRORS as exc:
            raise _unsendable(self._parts(), exc) from None

    def encoded(self, default_model: str) -> bytes:
        """:meth:`to_body` as UTF-8 JSON bytes: for a sealed request (see
        ``sealed_request``), the body encoded when it was checked, with its model.

        Raises:
            InvalidRequestError: a part of the request cannot be sent (see
                :meth:`encode_body`).
        """
        if self._sealed:
            try:
                model = _dumps(self.model or default_model)
            except _JSON_ERRORS:
                pass  # (refused below, naming it)
            else:
                object.__setattr__(self, "_sealed", False)  # (once: a copy may be changed)
                return b'{"model":' + model + b"," + self._encoded[1:]
        return self.encode_body(self.to_body(default_model))

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
        return self._fill(body)

    def _fill(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` (its model and messages) with the request's other fields."""
        values = (
            self.temperature, self.max_tokens, self.top_p, self.seed, self.presence_penalty,
            self.frequency_penalty, self.n, self.logprobs, self.top_logprobs,
            self.tool_choice, self.response_format, self.guided_json, self.guided_regex,
        )  # fmt: skip
        if values != _NO_BODY_FIELDS:  # (the common case: none)
            for name, value in zip(_BODY_FIELDS, values, strict=True):
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
_NO_BODY_FIELDS = (None,) * len(_BODY_FIELDS)


def check_positive(name: str, value: object) -> None:
    """Refuse ``value`` unless it is ``None`` or a positive integer (not a bool)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidRequestError(f"{name} must be a positive integer, got {value!r}")


def _check_count(name: str, value: object, lo: int, hi: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidRequestError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")


def sealed_request(
    messages: ChatRequest | Sequence[Mapping[str, Any]], **params: Any
) -> ChatRequest:
    """:func:`make_request`, for a request built to be sent at once by the library itself
    (:meth:`Client.chat`, a batch's item), which its caller never holds: it is *sealed*,
    its first :meth:`ChatRequest.encoded` is the body encoded when it was checked (one
    encoding per request, not two).

    A request the caller built (or one returned as it was given) is not sealed: its
    message dicts may have changed since it was checked, so it is encoded again when sent.
    """
    request = make_request(messages, **params)
    if request is not messages:
        object.__setattr__(request, "_sealed", True)
    return request


def make_request(messages: ChatRequest | Sequence[Mapping[str, Any]], **params: Any) -> ChatRequest:
    """A :class:`ChatRequest` from messages and keyword fields (``None`` means "not given").

    When ``messages`` is already a :class:`ChatRequest`, the keywords given override its
    fields.  Raises :class:`InvalidRequestError` when the result is not a valid request.
    """
    stop = params.get("stop")
    if (
        stop is not None
        and isinstance(stop, Iterable)
        and not isinstance(stop, str | bytes | Mapping)
    ):
        params["stop"] = tuple(stop)
    given = {k: v for k, v in params.items() if v is not None}
    if isinstance(messages, ChatRequest):
        return replace(messages, **given) if given else messages
    if not given.keys() <= _PLACES.keys():  # (an unknown field: the constructor says so)
        return ChatRequest(messages=messages, **given)
    # As ``ChatRequest(messages=messages, **given)`` does, faster (``_records``).
    values = [messages, *_DEFAULTS]
    for name, value in given.items():
        values[_PLACES[name]] = value
    if values[_EXTRA] is _FACTORY:
        values[_EXTRA] = {}
    request: ChatRequest = _BUILD(*values)
    request.__post_init__()
    return request


def _layout() -> tuple[tuple[object, ...], dict[str, int], int]:
    """The defaults of :class:`ChatRequest`'s fields after ``messages`` (``_FACTORY`` for
    one made by a factory), each keyword field's place, and ``extra``'s."""
    fields = dataclasses.fields(ChatRequest)
    assert fields[0].name == "messages"
    defaults = tuple(
        _FACTORY if f.default is dataclasses.MISSING else f.default for f in fields[1:]
    )
    places = {f.name: i for i, f in enumerate(fields) if f.init and i > 0}
    extra = places["extra"]
    assert [i for i, d in enumerate(defaults, 1) if d is _FACTORY] == [extra]
    return defaults, places, extra


_FACTORY = object()
_BUILD = builder(ChatRequest)
_DEFAULTS, _PLACES, _EXTRA = _layout()
