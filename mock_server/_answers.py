"""What the mock answers a chat request: ``n`` choices, structured content, tool calls,
log probabilities; as a ``chat.completion`` or as its stream of chunks.

Everything is deterministic: a function of the seed, the request and the choice's index.

* **Structured output** (``response_format`` of type ``json_schema``, ``guided_json``): JSON
  of a value valid against the schema (:mod:`._schema_values`), written with
  ``json.dumps`` (``", "`` and ``": "`` separators, so it splits into word pieces);
  ``json_object``: ``{"answer": <the usual reply text>}``; ``guided_choice``: one of the
  choices; ``guided_regex``: a string the pattern matches.
* **Tool calls** (``tools`` given): with ``tool_choice`` naming a function, a call of it;
  with ``"required"``, a call of each tool whose name appears in the last user message
  (or of the first tool when none does); with ``"auto"`` (the default), the same when a
  name appears and the last message is not a ``tool`` result, else a text answer; with
  ``"none"``, a text answer.  ``parallel_tool_calls: false`` keeps only the first call.
  The arguments are a value valid against the tool's ``parameters``.
* **Faults**: ``invalid_output`` answers a structured request with content that does not
  match (JSON of the wrong shape, or text that is not JSON); ``tool_call_malformed``
  answers with malformed tool calls (``arguments`` an object instead of JSON text; in a
  stream, argument deltas without their ``index``); ``tool_call_not_json``,
  ``tool_call_invalid`` and ``tool_call_unknown`` with well-formed calls whose arguments
  are not JSON, break the tool's ``parameters``, or whose tool was not offered.
* **Continuations** (``continue_final_message``): the rest of the original answer
  (``_continue``).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ._content import (
    ChatRequest,
    Reply,
    RequestError,
    make_reply,
    message_text,
    parse_chat_request,
)
from ._continue import continued_reply, continued_text, original_request
from ._determinism import digest, unit
from ._options import Options
from ._schema_values import UnsupportedSchema, regex_value, schema_value

__all__ = [
    "Options",
    "chunk_body",
    "completion_body",
    "make_replies",
    "parse_chat",
    "parse_options",
    "stream_events",
    "wants_tool_calls",
]

_SSE_DONE: Final = b"data: [DONE]\n\n"
_FRAGMENT: Final = 8  # characters of tool-call arguments per streamed delta
_FINGERPRINT: Final = "fp_paradigm_mock"


# --------------------------------------------------------------------------- parsing


def _bad(message: str, param: str, code: str = "invalid_value") -> RequestError:
    return RequestError(message, param=param, code=code)


def _int_in(data: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"Invalid '{name}': expected an integer from {low} to {high}.", name)
    return value


def _tools(data: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    tools = data.get("tools")
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise _bad("Invalid 'tools': expected an array.", "tools", "invalid_type")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(name, str)
            or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name)
        ):
            raise _bad(
                f'Invalid \'tools[{i}]\': expected {{"type": "function", "function": '
                '{"name": ...}} with a name of 1 to 64 letters, digits, _ or -.',
                f"tools[{i}]",
            )
    return tuple(tools)


def _tool_choice(data: Mapping[str, Any], tools: tuple[dict[str, Any], ...]) -> object:
    choice = data.get("tool_choice")
    if choice is None:
        return None
    names = {t["function"]["name"] for t in tools}
    if choice in ("none", "auto", "required"):
        if choice != "none" and not tools:
            raise _bad("'tool_choice' is only allowed when 'tools' are specified.", "tool_choice")
        return choice
    function = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(function, dict) or function.get("name") not in names:
        raise _bad("Invalid 'tool_choice': it names no tool given in 'tools'.", "tool_choice")
    return choice


def _structure(data: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    response_format = data.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise _bad(
                    "Invalid 'response_format.json_schema': expected an object with a "
                    "'schema' object.",
                    "response_format.json_schema",
                )
            fields["schema"] = spec["schema"]
        elif kind == "json_object":
            fields["json_object"] = True
        elif kind != "text":
            raise _bad(
                "Invalid 'response_format.type': expected text, json_object or json_schema.",
                "response_format.type",
            )
    guided = data.get("guided_json")
    if isinstance(guided, str):
        try:
            guided = json.loads(guided)
        except ValueError:
            raise _bad("Invalid 'guided_json': not a JSON Schema.", "guided_json") from None
    if guided is not None:
        if not isinstance(guided, dict):
            raise _bad("Invalid 'guided_json': not a JSON Schema.", "guided_json")
        fields["schema"] = guided
    choices = data.get("guided_choice")
    if choices is not None:
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, str) for c in choices)
        ):
            raise _bad(
                "Invalid 'guided_choice': expected a non-empty array of strings.", "guided_choice"
            )
        fields["choices"] = tuple(choices)
    regex = data.get("guided_regex")
    if regex is not None:
        if not isinstance(regex, str):
            raise _bad("Invalid 'guided_regex': expected a string.", "guided_regex")
        fields["regex"] = regex
    return fields


def parse_options(data: Mapping[str, Any]) -> Options:
    """The options of a chat body; :class:`RequestError` (400) naming a bad one."""
    logprobs = data.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _bad("Invalid 'logprobs': expected a boolean.", "logprobs", "invalid_type")
    top = _int_in(data, "top_logprobs", 0, 20, 0)
    if data.get("top_logprobs") is not None and not logprobs:
        raise _bad("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs")
    tools = _tools(data)
    parallel = data.get("parallel_tool_calls")
    return Options(
        n=_int_in(data, "n", 1, 128, 1),
        logprobs=bool(logprobs),
        top_logprobs=top,
        tools=tools,
        tool_choice=_tool_choice(data, tools),
        parallel_tool_calls=parallel is not False,
        **_structure(data),
    )


def parse_chat(body: bytes, *, models: tuple[str, ...] | None) -> ChatRequest:
    """Validate a chat completion body, options included (:class:`RequestError`: 400)."""
    chat = parse_chat_request(body, models=models)
    options = replace(parse_options(chat.body), continued=continued_text(chat.body, chat.messages))
    return replace(chat, options=options)


# --------------------------------------------------------------------------- answers


def _called(chat: ChatRequest, options: Options) -> list[dict[str, Any]]:
    """The tools an answer calls (see the module docstring)."""
    tools, choice = options.tools, options.tool_choice
    if not tools or choice == "none":
        return []
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return [t for t in tools if t["function"]["name"] == name]
    last = chat.messages[-1]
    if choice != "required" and last.get("role") == "tool":
        return []
    said = next(
        (message_text(m.get("content")) for m in reversed(chat.messages) if m["role"] == "user"),
        "",
    )
    named = [t for t in tools if t["function"]["name"] in said]
    if not named and choice == "required":
        named = [tools[0]]
    return named if options.parallel_tool_calls else named[:1]


def wants_tool_calls(chat: ChatRequest) -> bool:
    """Whether the answer to ``chat`` calls tools."""
    return bool(_called(chat, chat.options))


def _rng(seed: int, chat: ChatRequest, *parts: object) -> random.Random:
    canonical = json.dumps([chat.model, chat.messages], sort_keys=True, default=str)
    return random.Random(digest(seed, "answer", canonical, *parts))


def _tool_calls(seed: int, chat: ChatRequest, index: int) -> tuple[dict[str, Any], ...]:
    calls = []
    for k, tool in enumerate(_called(chat, chat.options)):
        function = tool["function"]
        rng = _rng(seed, chat, index, "tool", k)
        try:
            arguments = schema_value(function.get("parameters") or {"type": "object"}, rng)
        except UnsupportedSchema as exc:
            raise _bad(
                f"The mock cannot answer tools[{k}].function.parameters: {exc}", "tools"
            ) from None
        call_id = "call_" + digest(seed, "call", index, k, json.dumps(chat.messages)).hex()[:24]
        calls.append(
            {
                "id": call_id,
                "type": "function",
                "function": {"name": function["name"], "arguments": json.dumps(arguments)},
            }
        )
    return tuple(calls)


def _unknown_tool(
    calls: tuple[dict[str, Any], ...], tools: tuple[dict[str, Any], ...]
) -> tuple[dict[str, Any], ...]:
    """The first call names a tool that was not offered (``tool_call_unknown``)."""
    names = {t["function"]["name"] for t in tools}
    name = calls[0]["function"]["name"] + "_unknown"
    while name in names:
        name += "_"
    first = {**calls[0], "function": {**calls[0]["function"], "name": name}}
    return (first, *calls[1:])


def _arguments(calls: tuple[dict[str, Any], ...], make: Any) -> tuple[dict[str, Any], ...]:
    return tuple(
        {**call, "function": {**call["function"], "arguments": make(call)}} for call in calls
    )


def _not_json(
    calls: tuple[dict[str, Any], ...], tools: tuple[dict[str, Any], ...]
) -> tuple[dict[str, Any], ...]:
    """Each call's arguments cut short by a character (``tool_call_not_json``)."""
    return _arguments(calls, lambda call: call["function"]["arguments"][:-1])


def _breaking(
    calls: tuple[dict[str, Any], ...], tools: tuple[dict[str, Any], ...]
) -> tuple[dict[str, Any], ...]:
    """Each call's arguments JSON that breaks the tool's parameters (``tool_call_invalid``)."""
    parameters = {t["function"]["name"]: t["function"].get("parameters") for t in tools}

    def wrong(call: dict[str, Any]) -> str:
        schema = parameters.get(call["function"]["name"]) or {"type": "object"}
        if "type" not in schema:
            schema = {**schema, "type": "object"}
        return _mismatch(schema)

    return _arguments(calls, wrong)


_BREAKS: Final = {
    "tool_call_not_json": _not_json,
    "tool_call_invalid": _breaking,
    "tool_call_unknown": _unknown_tool,
}
"""How each tool-call fault breaks the calls of an answer."""


def _structured_text(seed: int, chat: ChatRequest, index: int, invalid: bool) -> str | None:
    options = chat.options
    rng = _rng(seed, chat, index, "structured")
    try:
        if options.schema is not None:
            if invalid:
                return _mismatch(options.schema)
            return json.dumps(schema_value(options.schema, rng), ensure_ascii=False)
        if options.choices is not None:
            return (
                "none of these" + "?" * max(map(len, options.choices))
                if invalid
                else (rng.choice(options.choices))
            )
        if options.regex is not None:
            return "\x00 does not match" if invalid else regex_value(options.regex, rng)
    except UnsupportedSchema as exc:
        raise _bad(f"The mock cannot answer this schema: {exc}", "response_format") from None
    return None


def _mismatch(schema: dict[str, Any]) -> str:
    """Content that does not match ``schema`` (the ``invalid_output`` fault)."""
    kind = schema.get("type")
    if kind == "object" and schema.get("required"):
        return "{}"
    wrong = {
        "object": "[]",
        "array": "{}",
        "string": "42",
        "number": '"x"',
        "integer": '"x"',
        "boolean": '"x"',
        "null": "0",
    }
    if isinstance(kind, str) and kind in wrong:
        return wrong[kind]
    return "I am sorry, I cannot answer in JSON."


def _pieces(text: str) -> tuple[str, ...]:
    pieces = re.findall(r"\s*\S+\s*", text)
    return tuple(pieces) if "".join(pieces) == text else (text,)


def make_replies(
    seed: int, chat: ChatRequest, reply_tokens: tuple[int, int], kind: str
) -> list[Reply]:
    """The ``n`` choices answering ``chat`` (``kind``: the fault drawn, if it shapes them).

    A request continuing its final message gets the rest of the answer to the original
    request (see ``_continue``).
    """
    prefix = chat.options.continued
    if prefix is not None:
        replies = make_replies(seed, original_request(chat), reply_tokens, kind)
        return [continued_reply(reply, prefix, chat.max_tokens) for reply in replies]
    replies = []
    for index in range(chat.options.n):
        reply = make_reply(seed, chat, reply_tokens, variant=index)
        calls = _tool_calls(seed, chat, index)
        if calls and kind in _BREAKS:
            calls = _BREAKS[kind](calls, chat.options.tools)
        if calls:
            reply = Reply(pieces=(), finish_reason="tool_calls", tool_calls=calls)
        else:
            text = _structured_text(seed, chat, index, kind == "invalid_output")
            if text is None and chat.options.json_object:
                text = json.dumps({"answer": reply.content}, ensure_ascii=False)
                text = "{not json" if kind == "invalid_output" else text
            if text is not None:
                reply = _truncated(chat, Reply(pieces=_pieces(text), finish_reason="stop"))
        replies.append(reply)
    return replies


def _truncated(chat: ChatRequest, reply: Reply) -> Reply:
    if chat.max_tokens is not None and chat.max_tokens < len(reply.pieces):
        return Reply(pieces=reply.pieces[: chat.max_tokens], finish_reason="length")
    return reply


# --------------------------------------------------------------------------- bodies


def _logprobs(seed: int, pieces: tuple[str, ...], top: int) -> dict[str, Any]:
    content = []
    for position, piece in enumerate(pieces):
        logprob = -round(2.0 * unit(seed, "logprob", position, piece), 4)
        alternatives = [{"token": piece, "logprob": logprob, "bytes": list(piece.encode())}]
        alternatives += [
            {
                "token": f"alt{k}",
                "logprob": round(logprob - k - 1.0, 4),
                "bytes": list(f"alt{k}".encode()),
            }
            for k in range(max(0, top - 1))
        ]
        content.append({**alternatives[0], "top_logprobs": alternatives[:top]})
    return {"content": content, "refusal": None}


def _message(reply: Reply, malformed: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["content"] = None
        message["tool_calls"] = [
            {
                **call,
                "function": {
                    **call["function"],
                    "arguments": json.loads(call["function"]["arguments"]),
                },
            }
            if malformed
            else call
            for call in reply.tool_calls
        ]
    return message


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(
    *,
    completion_id: str,
    created: int,
    request: ChatRequest,
    replies: list[Reply],
    seed: int,
    kind: str,
) -> dict[str, Any]:
    """A ``chat.completion`` object (OpenAI schema) with one choice per reply."""
    options = request.options
    choices = [
        {
            "index": index,
            "message": _message(reply, kind == "tool_call_malformed"),
            "logprobs": _logprobs(seed, reply.pieces, options.top_logprobs)
            if options.logprobs
            else None,
            "finish_reason": reply.finish_reason,
        }
        for index, reply in enumerate(replies)
    ]
    tokens = sum(reply.completion_tokens for reply in replies)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": request.model,
        "system_fingerprint": _FINGERPRINT,
        "choices": choices,
        "usage": _usage(request.prompt_tokens, tokens),
    }


def chunk_body(
    *,
    completion_id: str,
    created: int,
    request: ChatRequest,
    choice: dict[str, Any] | None,
    usage: int | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object; ``choice=None`` makes the final usage chunk."""
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": request.model,
        "system_fingerprint": _FINGERPRINT,
        "choices": [] if choice is None else [choice],
    }
    if request.include_usage:
        chunk["usage"] = None if usage is None else _usage(request.prompt_tokens, usage)
    return chunk


@dataclass(slots=True)
class _Events:
    request: ChatRequest
    ids: tuple[str, int]
    events: list[bytes] = field(default_factory=list)

    def add(
        self,
        index: int,
        delta: dict[str, Any],
        finish: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> None:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        body = chunk_body(
            completion_id=self.ids[0], created=self.ids[1], request=self.request, choice=choice
        )
        self.events.append(b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n")


def _call_deltas(index: int, call: dict[str, Any], malformed: bool) -> list[dict[str, Any]]:
    arguments = call["function"]["arguments"]
    first = {
        "index": index,
        "id": call["id"],
        "type": "function",
        "function": {"name": call["function"]["name"], "arguments": ""},
    }
    rest = [
        {"function": {"arguments": arguments[i : i + _FRAGMENT]}}
        if malformed
        else {"index": index, "function": {"arguments": arguments[i : i + _FRAGMENT]}}
        for i in range(0, len(arguments), _FRAGMENT)
    ]
    return [first, *rest]


def stream_events(
    request: ChatRequest, replies: list[Reply], ids: tuple[str, int], seed: int, kind: str
) -> list[bytes]:
    """The SSE events of a healthy stream: a role chunk per choice, the content pieces
    (choices in turn) or the tool-call deltas, a finish chunk per choice, [usage], [DONE]."""
    out = _Events(request, ids)
    options = request.options
    for index in range(len(replies)):
        out.add(index, {"role": "assistant", "content": ""})
    longest = max((len(r.pieces) for r in replies), default=0)
    entries = [_logprobs(seed, r.pieces, options.top_logprobs)["content"] for r in replies]
    for position in range(longest):
        for index, reply in enumerate(replies):
            if position < len(reply.pieces):
                logprobs = None
                if options.logprobs:
                    logprobs = {"content": [entries[index][position]], "refusal": None}
                out.add(index, {"content": reply.pieces[position]}, logprobs=logprobs)
    for index, reply in enumerate(replies):
        for k, call in enumerate(reply.tool_calls):
            for delta in _call_deltas(k, call, kind == "tool_call_malformed"):
                out.add(index, {"tool_calls": [delta]})
    for index, reply in enumerate(replies):
        out.add(index, {}, finish=reply.finish_reason)
    events = out.events
    if request.include_usage:
        total = sum(r.completion_tokens for r in replies)
        body = chunk_body(
            completion_id=ids[0], created=ids[1], request=request, choice=None, usage=total
        )
        events.append(b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n")
    events.append(_SSE_DONE)
    return events
