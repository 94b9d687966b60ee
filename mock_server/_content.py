"""Request validation, token accounting and deterministic replies.

Token approximation (documented in ``docs/mock-server.md``):

* prompt tokens: ``3 + sum(4 + ceil(len(text) / 4))`` over the messages, where
  ``text`` is the message content (the ``text`` of its text parts when the
  content is a list of parts);
* completion tokens: the number of words of the reply (a word and its trailing
  space is one "token", and one streamed chunk).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Final

from ._checks import strict_json
from ._determinism import digest
from ._options import Options

__all__ = [
    "ChatRequest",
    "Reply",
    "RequestError",
    "check_messages",
    "check_text",
    "count_prompt_tokens",
    "json_object",
    "make_reply",
    "message_text",
    "parse_chat_request",
    "type_name",
]

_ROLES: Final[frozenset[str]] = frozenset(
    {"system", "developer", "user", "assistant", "tool", "function"}
)
_WELCOME: Final = re.compile(r"\bwelcome\b[^:\n]*:\s*(?P<name>[^\n]+)", re.IGNORECASE)
_WELCOME_REPLIES: Final[tuple[str, ...]] = (
    "Welcome to Paradigm, {name}! We're thrilled to have you here and can't wait to see "
    "what you create.",
    "Welcome to Paradigm, {name}! Your journey with us starts today, and we're delighted "
    "you chose to join.",
    "Welcome to Paradigm, {name}! It's wonderful to have you on board, so make yourself at "
    "home and explore.",
    "Welcome to Paradigm, {name}! We're so glad you're here, and we hope every conversation "
    "sparks something new.",
)
_FILLER: Final[tuple[str, ...]] = (
    "Here is a deterministic answer from the mock server.",
    "The same seed and request always produce these words.",
    "Every word of this reply counts as one token.",
    "Streaming sends the words as separate chunks, in order.",
    "Paradigm would give a real answer here, but this one is offline.",
    "Your request was received and understood.",
    "Latency, faults and quotas are all configurable.",
    "Nothing here needs a network connection or an API key.",
    "Tests can rely on this text staying exactly the same.",
    "Thank you for your patience while the mock thinks.",
    "A longer reply simply repeats a few of these sentences.",
    "That is all the mock has to say about it.",
)
_QUOTE_WORDS: Final = 12
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class RequestError(ValueError):
    """A 400-class problem with a request: becomes an OpenAI error envelope."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The fields of a chat completion request the mock acts on (``options``: the rest,
    parsed by ``_answers.parse_options``)."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens: int
    body: dict[str, Any] = field(repr=False, default_factory=dict)
    options: Options = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Reply:
    """One choice of the reply to a request: its pieces (one per token and streamed
    chunk), or its tool calls (``tool_calls``: JSON, arguments as text)."""

    pieces: tuple[str, ...]
    finish_reason: str
    tool_calls: tuple[dict[str, Any], ...] = ()

    @property
    def content(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        """A token a piece; for a tool call, one plus one per 8 characters of arguments."""
        calls = sum(1 + math.ceil(len(c["function"]["arguments"]) / 8) for c in self.tool_calls)
        return len(self.pieces) + calls


def _lone_surrogate(text: str) -> str | None:
    match = _SURROGATE.search(text)
    return None if match is None else f"U+{ord(match.group()):04X}"


def check_text(data: object) -> None:
    """Refuse a parsed JSON value holding a lone surrogate, in any string or key.

    Python's ``json`` accepts ``"\\ud800"`` escapes and the surrogate's own UTF-8-like
    bytes, but such a string is not text: it cannot be encoded, echoed or hashed as
    UTF-8.  Raise a 400 :class:`RequestError` (``invalid_unicode``) naming where it is.
    """
    stack: list[tuple[str | None, object]] = [(None, data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            found = _lone_surrogate(value)
        elif isinstance(value, dict):
            found = next(filter(None, map(_lone_surrogate, value)), None)
            stack += [(f"{path}.{k}" if path else k, v) for k, v in reversed(value.items())]
        elif isinstance(value, list):
            found = None
            stack += [(f"{path or ''}[{i}]", v) for i, v in reversed(list(enumerate(value)))]
        else:
            continue
        if found is not None:
            where = f"'{path}'" if path else "the request body"
            raise RequestError(
                f"Invalid Unicode in {where}: it holds a lone surrogate ({found}), which is "
                "not valid text. Send well-formed UTF-8 (a \\uD800-\\uDFFF escape is only "
                "valid as half of a pair).",
                param=path,
                code="invalid_unicode",
            )


def message_text(content: object) -> str:
    """The text of a message ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """``3 + sum(4 + ceil(len(text) / 4))`` over the messages."""
    return 3 + sum(4 + math.ceil(len(message_text(m.get("content"))) / 4) for m in messages)


def type_name(value: object) -> str:
    """The JSON type of ``value``: object, array, string, boolean, number or null."""
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def _check_parts(index: int, content: list[Any]) -> None:
    for j, part in enumerate(content):
        param = f"messages[{index}].content[{j}]"
        if not isinstance(part, dict):
            raise RequestError(
                f"Invalid type for '{param}': expected an object, but got {type_name(part)}.",
                param=param,
                code="invalid_type",
            )
        kind = part.get("type")
        if not isinstance(kind, str):
            raise RequestError(
                f"Missing or invalid '{param}.type': expected a string.",
                param=f"{param}.type",
                code="invalid_type",
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise RequestError(
                f"Missing or invalid '{param}.text': expected a string.",
                param=f"{param}.text",
                code="invalid_type",
            )


def _check_message(index: int, message: object) -> dict[str, Any]:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise RequestError(
            f"Invalid type for '{param}': expected an object, but got {type_name(message)}.",
            param=param,
            code="invalid_type",
        )
    if "role" not in message:
        raise RequestError(
            f"Missing required parameter: '{param}.role'.",
            param=f"{param}.role",
            code="missing_required_parameter",
        )
    role = message["role"]
    if not isinstance(role, str) or role not in _ROLES:
        raise RequestError(
            f"Invalid value for '{param}.role': expected one of {', '.join(sorted(_ROLES))}, "
            f"got {json.dumps(role)[:40]}.",
            param=f"{param}.role",
            code="invalid_value",
        )
    if "content" not in message and not (role == "assistant" and "tool_calls" in message):
        raise RequestError(
            f"Missing required parameter: '{param}.content'.",
            param=f"{param}.content",
            code="missing_required_parameter",
        )
    content = message.get("content")
    if isinstance(content, list):
        _check_parts(index, content)
    elif not isinstance(content, str) and not (content is None and role == "assistant"):
        raise RequestError(
            f"Invalid type for '{param}.content': expected a string or an array of content "
            f"parts, but got {type_name(content)}.",
            param=f"{param}.content",
            code="invalid_type",
        )
    return message


def _optional_int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(
            f"Invalid type for '{name}': expected an integer, but got {type_name(value)}.",
            param=name,
            code="invalid_type",
        )
    if value < 1:
        raise RequestError(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    return value


def _optional_bool(data: dict[str, Any], name: str, param: str) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(
            f"Invalid type for '{param}': expected a boolean, but got {type_name(value)}.",
            param=param,
            code="invalid_type",
        )
    return value


def parse_chat_request(body: bytes, *, models: tuple[str, ...] | None) -> ChatRequest:
    """Validate a chat completion body; raise :class:`RequestError` naming the problem."""
    data = json_object(body)
    model = _model(data, models)
    messages = check_messages(data)
    stream, include_usage = _streaming(data)
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        max_tokens=_max_tokens(data),
        prompt_tokens=count_prompt_tokens(messages),
        body=data,
    )


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object of valid text, or a 400 :class:`RequestError`."""
    try:
        data = strict_json(body)
    except (ValueError, RecursionError):
        raise RequestError(
            "We could not parse the JSON body of your request. (HINT: This likely means "
            "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
            "payload, but what was sent was not valid JSON.)",
            code="invalid_json",
        ) from None
    check_text(data)
    if not isinstance(data, dict):
        raise RequestError(
            f"The request body must be a JSON object, but got {type_name(data)}.",
            code="invalid_body",
        )
    return data


def _model(data: dict[str, Any], models: tuple[str, ...] | None) -> str:
    """The ``model``: a non-empty string, one of ``models`` unless that is ``None``."""
    if "model" not in data or data["model"] is None:
        raise RequestError(
            "You must provide a model parameter.",
            param="model",
            code="missing_required_parameter",
        )
    model = data["model"]
    if not isinstance(model, str) or not model:
        raise RequestError(
            f"Invalid type for 'model': expected a non-empty string, but got {type_name(model)}.",
            param="model",
            code="invalid_type",
        )
    if models is not None and model not in models:
        raise RequestError(
            f"The model `{model[:100]}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return model


def check_messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    """``data``'s ``messages``: a non-empty array of valid messages, or a 400 naming the
    first problem (``messages[i].role``...)."""
    if "messages" not in data or data["messages"] is None:
        raise RequestError(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    raw_messages = data["messages"]
    if not isinstance(raw_messages, list):
        raise RequestError(
            f"Invalid type for 'messages': expected an array, but got {type_name(raw_messages)}.",
            param="messages",
            code="invalid_type",
        )
    if not raw_messages:
        raise RequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    return [_check_message(i, m) for i, m in enumerate(raw_messages)]


def _streaming(data: dict[str, Any]) -> tuple[bool, bool]:
    """``(stream, stream_options.include_usage)``; ``stream_options`` only with ``stream``."""
    stream = _optional_bool(data, "stream", "stream")
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError(
            f"Invalid type for 'stream_options': expected an object, but got {type_name(options)}.",
            param="stream_options",
            code="invalid_type",
        )
    if options is not None and not stream:
        raise RequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    include_usage = _optional_bool(options or {}, "include_usage", "stream_options.include_usage")
    return stream, include_usage


def _max_tokens(data: dict[str, Any]) -> int | None:
    """``max_completion_tokens``, else the legacy ``max_tokens`` (both checked)."""
    max_tokens = _optional_int(data, "max_completion_tokens")
    legacy_max = _optional_int(data, "max_tokens")
    return legacy_max if max_tokens is None else max_tokens


def _clean_name(raw: str) -> str:
    name = " ".join(raw.split()).strip(" \t.!?;,:\"'`")
    return name[:80] or "friend"


def _reply_text(
    seed: int, request: ChatRequest, reply_tokens: tuple[int, int], variant: int
) -> str:
    canonical = json.dumps(
        [request.model, request.messages], sort_keys=True, ensure_ascii=False, default=str
    )
    if variant:  # choice ``variant`` of ``n`` (choice 0 is the answer of n=1)
        canonical += f"\x1fchoice {variant}"
    seed_bytes = digest(seed, "reply", canonical)
    last_user = next(
        (
            message_text(m.get("content"))
            for m in reversed(request.messages)
            if m.get("role") == "user"
        ),
        "",
    )
    match = _WELCOME.search(last_user)
    if match:
        template = _WELCOME_REPLIES[seed_bytes[0] % len(_WELCOME_REPLIES)]
        return template.format(name=_clean_name(match["name"]))
    low, high = reply_tokens
    target = low + int.from_bytes(seed_bytes[1:5], "big") % (high - low + 1)
    quoted = last_user.split()
    if quoted:
        quote = " ".join(quoted[:_QUOTE_WORDS]) + (" ..." if len(quoted) > _QUOTE_WORDS else "")
        words = f'You said: "{quote}".'.split()
    else:
        words = ["Hello!"]
    target = max(target, len(words))
    stream = seed_bytes[5:]
    counter = 0
    while len(words) < target:
        if not stream:
            counter += 1
            stream = digest(seed, "reply", canonical, counter)
        words += _FILLER[stream[0] % len(_FILLER)].split()
        stream = stream[1:]
    words = words[:target]
    if words[-1][-1] not in '.!?"':
        words[-1] += "."
    return " ".join(words)


def make_reply(
    seed: int, request: ChatRequest, reply_tokens: tuple[int, int], variant: int = 0
) -> Reply:
    """The deterministic reply to ``request``: a function of seed, model and messages
    (and of ``variant``, the choice's index, for the other choices of ``n``).

    ``max_tokens`` truncates it to a prefix, with ``finish_reason="length"``.
    """
    text = _reply_text(seed, request, reply_tokens, variant)
    pieces = re.findall(r"\S+\s*", text)
    finish_reason = "stop"
    if request.max_tokens is not None and request.max_tokens < len(pieces):
        pieces = pieces[: request.max_tokens]
        pieces[-1] = pieces[-1].rstrip()
        finish_reason = "length"
    return Reply(pieces=tuple(pieces), finish_reason=finish_reason)
