"""Answers: :class:`ChatCompletion`, :class:`ChatCompletionChunk`, their parts and parsers.

Plain frozen dataclasses with ``slots`` (no validation library): parsing a completion costs
microseconds, which matters at a hundred thousand requests.  Every parsed object keeps the
JSON it came from in ``raw`` so that fields this library does not model are still there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .._attempt_failure import AttemptFailure
from .._errors import APIResponseValidationError, StructuredOutputError
from .._numbers import whole
from .._records import builder
from ._logprobs import ChoiceLogprobs, parse_logprobs
from ._structured import OutputSchema, ToolCallRules, scrub_output_error
from ._tools import ToolCall, parse_tool_calls

if TYPE_CHECKING:
    from .._redact import Redactor

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "Choice",
    "Message",
    "ModelInfo",
    "Usage",
    "checked_output",
    "completion_parser",
]


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
        cached: whether :meth:`Client.chat` (or :meth:`Client.send`) took it from the
            client's :class:`ResponseCache` instead of sending the request (not compared:
            a cached answer equals the one first received).
    """

    id: str
    model: str
    created: int
    choices: tuple[Choice, ...]
    usage: Usage | None
    request_id: str | None = None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)
    cached: bool = field(default=False, compare=False)

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
        return (_COMPLETION if cls is ChatCompletion else cls)(
            str(data.get("id", "")), str(data.get("model", "")),
            whole(data.get("created", 0), "created"), tuple(choices), usage, request_id, data,
            False,
        )  # fmt: skip


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
    message = _MESSAGE(
        str(msg.get("role", "assistant")), content, msg,
        parse_tool_calls(msg.get("tool_calls"), f"choices[{i}].message.tool_calls"), refusal,
        None,
    )  # fmt: skip
    return _CHOICE(
        whole(c.get("index", i), f"choices[{i}].index"), message, c.get("finish_reason"),
        parse_logprobs(c.get("logprobs")),
    )  # fmt: skip


_FROM_JSON = ChatCompletion.from_json  # (bound once, not per request)
# The parser's constructors: every field, in order (``_records``).
_COMPLETION = builder(ChatCompletion)
_CHOICE = builder(Choice)
_MESSAGE = builder(Message)
_USAGE = builder(Usage)


def completion_parser(
    output: OutputSchema | None,
    tools: ToolCallRules | None = None,
    redactor: Redactor | None = None,
) -> Callable[[object, str | None], ChatCompletion]:
    """The parser of a chat answer: with ``output``, it also parses and validates the
    answer, with ``tools`` it checks its tool calls (an answer that does not match is an
    ``"invalid_output"`` or ``"invalid_tool_call"`` failure, which the engine re-asks as
    ``RetryPolicy.invalid_output_retries`` allows); ``redactor`` scrubs the key from the
    error of an answer that does not match ``output``."""
    if output is None and tools is None:
        return _FROM_JSON

    def parse(data: object, request_id: str | None) -> ChatCompletion:
        completion = ChatCompletion.from_json(data, request_id)
        return checked_output(completion, output, tools, redactor)

    return parse


def checked_output(
    completion: ChatCompletion,
    output: OutputSchema | None,
    tools: ToolCallRules | None = None,
    redactor: Redactor | None = None,
) -> ChatCompletion:
    """``completion`` with its tool calls checked by ``tools`` and its answer parsed by
    ``output`` (each when given), or raise the attempt's failure (its error scrubbed of
    the API key by ``redactor``)."""
    if tools is not None:
        tools.check(completion)
    if output is None:
        return completion
    try:
        return completion.with_parsed(output)
    except StructuredOutputError as err:
        if redactor is not None:
            scrub_output_error(err, redactor)
        raise AttemptFailure(err, "invalid_output") from None


_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _parse_usage(raw: object) -> Usage | None:
    """The ``usage`` object as a :class:`Usage`; ``None`` (unknown) when there is none.

    ``null``, a missing ``usage`` or one without any token count is unknown usage; counts
    the server sent, zeros included, are kept.
    """
    if not isinstance(raw, dict) or all(raw.get(name) is None for name in _USAGE_FIELDS):
        return None
    prompt = whole(raw.get("prompt_tokens") or 0, "usage.prompt_tokens")
    completion = whole(raw.get("completion_tokens") or 0, "usage.completion_tokens")
    total = whole(raw.get("total_tokens") or (prompt + completion), "usage.total_tokens")
    return _USAGE(prompt, completion, total)


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
            created=whole(data.get("created") or 0, "created"),
            delta=content if isinstance(content, str) else "",
            role=None if role is None else str(role),
            finish_reason=None if finish is None else str(finish),
            usage=_parse_usage(data.get("usage")),
            raw=data,
            index=whole(index, "choices[].index"),
            tool_calls=tuple(calls) if isinstance(calls, list) else (),
        )
