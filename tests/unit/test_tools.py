"""Tool calls, ``n`` > 1 and log probabilities on ``httpx2.MockTransport``: typed in the
request, typed in answers, and assembled from streamed deltas."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pydantic
import pytest

import paradigm_trio as pt

from .helpers import Script, completion_json, fixed, make_client
from .test_streaming import DONE, collect, sse

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Weather in Paris and Lyon?"}]


class Where(pydantic.BaseModel):
    city: str
    unit: str = "celsius"


WEATHER = pt.function_tool("get_weather", Where, description="The weather in a city")
TIME = pt.function_tool("get_time", {"type": "object", "properties": {}})


def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return b"data: " + json.dumps({**body, "choices": choices, **extra}).encode() + b"\n\n"


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish}


def call_deltas(index: int, call_id: str, name: str, arguments: str, size: int) -> list[bytes]:
    first = {"index": index, "id": call_id, "type": "function",
             "function": {"name": name, "arguments": ""}}  # fmt: skip
    pieces = [arguments[i : i + size] for i in range(0, len(arguments), size)]
    return [event([delta(tool_calls=[first])])] + [
        event([delta(tool_calls=[{"index": index, "function": {"arguments": p}}])]) for p in pieces
    ]


def test_function_tool_and_request_checks() -> None:
    assert WEATHER["function"]["parameters"] == Where.model_json_schema()
    assert WEATHER["function"]["description"] == "The weather in a city"
    request = pt.ChatRequest(messages=MESSAGES, tools=[WEATHER, TIME], tool_choice="get_time")
    body = request.to_body("m")
    assert body["tools"] == [WEATHER, TIME]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert pt.ChatRequest(messages=MESSAGES, tools=[TIME], tool_choice="required").tool_choice == (
        "required"
    )
    bad: list[tuple[dict[str, Any], str]] = [
        ({"tools": [TIME, TIME]}, "offered twice"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, r"tools\[0\]"),
        ({"tools": [{"type": "retrieval"}]}, r"tools\[0\]"),
        ({"tools": [TIME], "tool_choice": "get_weather"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "x"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "needs tools"),
        ({"n": 0}, "n must be"),
        ({"top_logprobs": 3}, "needs logprobs=True"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs must be"),
    ]
    for fields, message in bad:
        with pytest.raises(pt.InvalidRequestError, match=message):
            pt.ChatRequest(messages=MESSAGES, **fields)
    assert pt.ChatRequest(messages=MESSAGES, tool_choice="none").tool_choice == "none"
    untyped = pt.ChatRequest(
        messages=MESSAGES, tool_choice="get_x", extra={"tools": [TIME]}, validate_tool_calls=False
    )
    assert untyped.to_body("m")["tool_choice"] == "get_x"  # unchecked tools: passed through
    with pytest.raises(pt.InvalidRequestError, match="tool_choice"):  # (checked ones: not)
        pt.ChatRequest(messages=MESSAGES, tool_choice="get_x", extra={"tools": [TIME]})


@pytest.mark.parametrize(
    ("tools", "where", "words"),
    [
        ([TIME, TIME], "extra.tools[1].function.name", "offered twice"),
        ([{"type": "retrieval"}], "extra.tools[0]", '{"type": "function"'),
        ({"type": "function"}, "extra.tools", "must be a list of tools"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}],
         "extra.tools[0].function.parameters", "not a valid JSON Schema"),
    ],
)  # fmt: skip
def test_tools_in_extra_are_checked_as_tools_is(tools: Any, where: str, words: str) -> None:
    with pytest.raises(pt.InvalidRequestError) as caught:
        pt.ChatRequest(messages=MESSAGES, extra={"tools": tools})
    assert caught.value.where == where
    assert str(caught.value).startswith(f"{where}: ")
    assert words in str(caught.value)
    assert "validate_tool_calls=False" in str(caught.value)  # how to send them anyway
    unchecked = pt.ChatRequest(
        messages=MESSAGES, extra={"tools": tools, "top_k": 1}, validate_tool_calls=False
    )
    assert unchecked.tools is None
    assert unchecked.to_body("m")["tools"] == tools  # as they are


def test_tools_in_extra_become_the_field() -> None:
    request = pt.ChatRequest(messages=MESSAGES, extra={"tools": [TIME], "top_k": 1})
    assert request.tools == (TIME,)
    assert request.extra == {"top_k": 1}
    assert request.to_body("m")["tools"] == [TIME]
    assert request == pt.ChatRequest(messages=MESSAGES, tools=[TIME], extra={"top_k": 1})
    with pytest.raises(pt.InvalidRequestError, match="given both"):
        pt.ChatRequest(messages=MESSAGES, tools=[TIME], extra={"tools": [TIME]})


async def test_an_answer_with_tool_calls_is_typed() -> None:
    data = completion_json(finish_reason="tool_calls")
    data["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}},
        ],
    }  # fmt: skip
    script = Script(httpx2.Response(200, json=data))
    async with make_client(script) as client:
        completion = await client.chat(MESSAGES, tools=[WEATHER], tool_choice="auto")
    assert script.bodies()[0]["tool_choice"] == "auto"
    calls = completion.tool_calls
    assert [c.id for c in calls] == ["call_1", "call_2"]
    assert calls[0].function.name == "get_weather"
    assert calls[1].function.parse_arguments() == {"city": "Lyon"}
    assert Where.model_validate_json(calls[0].function.arguments) == Where(city="Paris")
    assert completion.finish_reason == "tool_calls"
    assert completion.text == ""


async def test_streamed_tool_call_deltas_assemble_into_whole_calls() -> None:
    events = [event([delta(role="assistant", content=None)])]
    events += call_deltas(0, "call_a", "get_weather", '{"city": "Paris", "unit": "celsius"}', 5)
    events += call_deltas(1, "call_b", "get_time", "{}", 1)
    events += [event([delta(finish="tool_calls")]), DONE]
    script = Script(sse(*events)[0])
    async with make_client(script) as client:
        async with client.chat_stream(MESSAGES, tools=[WEATHER, TIME]) as stream:
            chunks = [c async for c in stream]
    completion = stream.completion
    assert [c.id for c in completion.tool_calls] == ["call_a", "call_b"]
    assert completion.tool_calls[0].function.parse_arguments() == {
        "city": "Paris",
        "unit": "celsius",
    }
    assert completion.tool_calls[1].function.arguments == "{}"
    assert completion.finish_reason == "tool_calls"
    assert completion.choices[0].message.content is None
    assert chunks[1].tool_calls[0]["id"] == "call_a"
    assert sum(len(c.tool_calls) for c in chunks) == len(events) - 3


@pytest.mark.parametrize(
    "bad",
    [
        [{"function": {"arguments": "{}"}}],  # no index
        [{"index": 0, "id": "x", "function": {"name": "f", "arguments": {"a": 1}}}],  # not text
        "not a list",
    ],
)
async def test_a_malformed_tool_call_delta_is_an_invalid_response(bad: object) -> None:
    broken = [event([delta(role="assistant")]), event([delta(tool_calls=bad)]), DONE]
    good = [event([delta(role="assistant", content="ok")]), event([delta(finish="stop")]), DONE]
    script = Script(sse(*broken)[0], sse(*good)[0])
    async with make_client(script, retry=fixed()) as client:
        [result] = await client.chat_batch([MESSAGES], stream=True)
    assert result.ok
    assert result.attempts == 2
    assert result.completion is not None
    assert result.completion.text == "ok"


async def test_a_changed_call_id_or_a_call_without_name_is_malformed() -> None:
    changed = [
        event([delta(tool_calls=[{"index": 0, "id": "a", "function": {"name": "f"}}])]),
        event([delta(tool_calls=[{"index": 0, "id": "b", "function": {"arguments": "{}"}}])]),
        event([delta(finish="tool_calls")]),
        DONE,
    ]
    nameless = [
        event([delta(tool_calls=[{"index": 0, "id": "a", "function": {"arguments": "{}"}}])]),
        event([delta(finish="tool_calls")]),
        DONE,
    ]
    script = Script(sse(*changed)[0], sse(*nameless)[0])
    async with make_client(script, retry=pt.RetryPolicy.no_retries()) as client:
        for message in ("changed from 'a' to 'b'", "never got its function name"):
            with pytest.raises(pt.APIResponseValidationError, match=message):
                await collect(client.chat_stream(MESSAGES))


async def test_n_choices_streamed_interleaved_are_assembled_apart() -> None:
    events = [
        event([delta(0, role="assistant", content="")]),
        event([delta(1, role="assistant", content="")]),
        event([delta(0, content="Hel")]),
        event([delta(1, content="Bon")]),
        event([delta(1, content="jour")]),
        event([delta(0, content="lo")]),
        event([delta(1, finish="stop")]),
        event([delta(0, finish="length")]),
        event([], usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
        DONE,
    ]
    script = Script(sse(*events)[0])
    async with make_client(script) as client:
        async with client.chat_stream(MESSAGES, n=2) as stream:
            chunks = [c async for c in stream]
            assert stream.text == "Hello"  # the first choice's
    assert script.bodies()[0]["n"] == 2
    completion = stream.completion
    assert [c.message.content for c in completion.choices] == ["Hello", "Bonjour"]
    assert [c.finish_reason for c in completion.choices] == ["length", "stop"]
    assert [c.index for c in chunks[:6]] == [0, 1, 0, 1, 1, 0]
    assert completion.usage == pt.Usage(3, 4, 7)


async def test_logprobs_are_typed_and_joined_across_chunks() -> None:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        top = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
        return {"token": token, "logprob": logprob, "bytes": list(token.encode()),
                "top_logprobs": top}  # fmt: skip

    events = [
        event([{**delta(content="Hi"), "logprobs": {"content": [entry("Hi", -0.1)]}}]),
        event([{**delta(content="!"), "logprobs": {"content": [entry("!", -0.5)]}}]),
        event([delta(finish="stop")]),
        DONE,
    ]
    data = completion_json("Hi!")
    data["choices"][0]["logprobs"] = {"content": [entry("Hi", -0.1), entry("!", -0.5)]}
    script = Script(httpx2.Response(200, json=data), sse(*events)[0])
    async with make_client(script) as client:
        plain = await client.chat(MESSAGES, logprobs=True, top_logprobs=1)
        async with client.chat_stream(MESSAGES, logprobs=True) as stream:
            async for _ in stream:
                pass
    assert script.bodies()[0]["top_logprobs"] == 1
    for completion in (plain, stream.completion):
        logprobs = completion.choices[0].logprobs
        assert logprobs is not None
        assert logprobs.content is not None
        assert [(t.token, t.logprob) for t in logprobs.content] == [("Hi", -0.1), ("!", -0.5)]
        assert logprobs.content[0].bytes == (72, 105)
        assert logprobs.content[1].top_logprobs[0].token == "!"


def test_n_multiplies_the_answer_estimate_and_tools_count_in_the_prompt() -> None:
    one = pt.ChatRequest(messages=MESSAGES, max_tokens=10)
    assert pt.ChatRequest(messages=MESSAGES, max_tokens=10, n=3).estimated_tokens() == (
        one.estimated_tokens() + 20
    )
    assert pt.ChatRequest(messages=MESSAGES, max_tokens=10, tools=[WEATHER]).estimated_tokens() > (
        one.estimated_tokens() + len(json.dumps(WEATHER)) // 5
    )
