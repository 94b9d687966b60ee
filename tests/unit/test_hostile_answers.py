"""Answers a hostile or broken server may send: numbers that are not finite or out of
range, and JSON nested deeper than anything can walk.  Each is the request's own
:class:`~paradigm_trio.APIResponseValidationError`, retried like any invalid answer;
never an ``OverflowError`` or a ``RecursionError``, never a success that is not JSON."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx2
import pytest

import paradigm_trio as pt

from .helpers import MESSAGES, Script, completion_json, fixed, make_client

pytestmark = pytest.mark.anyio


def _raw(body: str, content_type: str = "application/json") -> httpx2.Response:
    return httpx2.Response(200, content=body.encode(), headers={"content-type": content_type})


def _chat_with(path: str, token: str) -> str:
    """A chat completion's JSON with ``token`` written at ``path`` (dotted) as is."""
    body = completion_json()
    marker = "__VALUE__"
    node: Any = body
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = marker
    return json.dumps(body).replace(f'"{marker}"', token)


PLACES = ["usage.prompt_tokens", "usage.completion_tokens", "usage.total_tokens", "created",
          "choices.0.index"]  # fmt: skip
TOKENS = ["Infinity", "-Infinity", "NaN", "1e999", "1e300", "-5", "9007199254740993"]


@pytest.mark.parametrize("path", PLACES)
@pytest.mark.parametrize("token", TOKENS)
async def test_a_number_out_of_range_in_a_chat_answer_is_an_invalid_response(
    path: str, token: str
) -> None:
    script = Script(default=_raw(_chat_with(path, token)))
    async with make_client(script, retry=fixed(attempts=2, initial_delay=0)) as client:
        with pytest.raises(pt.APIResponseValidationError) as info:
            await client.chat(MESSAGES)
    assert script.calls == 2  # retried like any invalid answer
    assert [a.cause for a in info.value.attempts] == ["invalid_response"] * 2


def _chunk(token: str, where: str) -> str:
    chunk: dict[str, Any] = {
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
    }  # fmt: skip
    if where == "usage":
        chunk["choices"] = []
        chunk["usage"] = {"prompt_tokens": "__V__", "completion_tokens": 1}
    elif where == "created":
        chunk["created"] = "__V__"
    else:
        chunk["choices"][0]["index"] = "__V__"
    return json.dumps(chunk).replace('"__V__"', token)


@pytest.mark.parametrize("where", ["usage", "created", "index"])
@pytest.mark.parametrize("token", ["Infinity", "1e999", "NaN"])
async def test_a_number_out_of_range_in_a_stream_chunk_is_an_invalid_response(
    where: str, token: str
) -> None:
    events = f"data: {_chunk(token, where)}\n\ndata: [DONE]\n\n"
    script = Script(default=_raw(events, "text/event-stream"))
    async with make_client(script, retry=fixed(attempts=2, initial_delay=0)) as client:
        with pytest.raises(pt.APIResponseValidationError):
            await _drain(client)
    assert script.calls == 2


async def _drain(client: pt.Client) -> None:
    async with client.chat_stream(MESSAGES) as stream:
        async for _ in stream:
            pass


def _vector(*values: float) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"index": 0, "embedding": _vector(0.5, float("nan"))}]},
        {"data": [{"index": 0, "embedding": _vector(float("inf"), 0.5)}]},
        {"data": [{"index": 0, "embedding": _vector(0.5)}], "usage": {"prompt_tokens": 1e300}},
        '{"data": [{"index": 0, "embedding": [0.5]}], "usage": {"prompt_tokens": Infinity}}',
        '{"data": [{"index": 0, "embedding": [0.5]}], "usage": {"total_tokens": 1e999}}',
        '{"data": [{"index": 0, "embedding": [0.5]}], "usage": {"completion_tokens": NaN}}',
    ],
)
async def test_a_non_finite_number_in_embeddings_is_an_invalid_response(body: Any) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    script = Script(default=_raw(text))
    async with make_client(script, retry=fixed(attempts=2, initial_delay=0)) as client:
        with pytest.raises(pt.APIResponseValidationError):
            await client.embed("a")
    assert script.calls == 2


async def test_an_answer_nested_too_deep_is_an_invalid_response() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    script = Script(default=_raw('{"choices": ' + deep + "}"))
    async with make_client(script, retry=fixed(attempts=2, initial_delay=0)) as client:
        with pytest.raises(pt.APIResponseValidationError, match="nested deeper"):
            await client.chat(MESSAGES)
    assert script.calls == 2


@pytest.mark.parametrize(
    "content",
    ['{"x": NaN, "y": Infinity}', '{"x": 1e999, "y": 1}', '{"x": ' + "[" * 5000 + "]" * 5000 + "}"],
)
async def test_structured_output_that_is_not_strict_json_is_refused(content: str) -> None:
    script = Script(default=httpx2.Response(200, json=completion_json(content)))
    output = pt.OutputSchema({"type": "object"})
    async with make_client(script, retry=fixed(attempts=2, initial_delay=0)) as client:
        with pytest.raises(pt.StructuredOutputError):
            await client.chat(MESSAGES, output=output)


def test_parse_json_limits() -> None:
    assert pt.parse_json('{"a": [1, 2.5, "[[["]}') == {"a": [1, 2.5, "[[["]}
    assert pt.parse_json(b"[" * pt.MAX_JSON_DEPTH + b"]" * pt.MAX_JSON_DEPTH) is not None
    too_deep = "[" * (pt.MAX_JSON_DEPTH + 1) + "]" * (pt.MAX_JSON_DEPTH + 1)
    for bad in [too_deep, "[NaN]", "[-Infinity]", "[1e999]", "[1" + "0" * 400 + ".0]"]:
        with pytest.raises(ValueError, match=r"nested deeper|not a JSON number|too large"):
            pt.parse_json(bad)
    # Brackets and escapes inside strings are not nesting.
    assert pt.parse_json(json.dumps(["\\", "[" * 500, '"[[['])) == ["\\", "[" * 500, '"[[[']
    assert pt.parse_json("[1e-999, 1e308]") == [0.0, 1e308]
    # In any encoding JSON may come in (the checks read its UTF-8).
    for encoding in ("utf-16", "utf-16-le", "utf-32", "utf-8-sig"):
        for bad in ["[1e999]", "[1E+400]", too_deep]:
            with pytest.raises(ValueError, match=r"nested deeper|too large"):
                pt.parse_json(bad.encode(encoding))
        assert pt.parse_json("[1e308]".encode(encoding)) == [1e308]


@pytest.mark.parametrize("text", ["inf", "nan", "-inf", "1e999"])
def test_a_non_finite_duration_in_a_header_is_no_duration(text: str) -> None:
    from paradigm_trio._engine._ratelimit import parse_duration

    assert parse_duration(text) is None
    assert parse_duration("1.5") == 1.5
