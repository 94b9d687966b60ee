"""Tool calls checked like structured output: a call of a tool not offered, or whose
arguments are not JSON or do not match the tool's ``parameters``, is an invalid answer,
re-asked (the error stated to the model) within ``RetryPolicy.invalid_output_retries``,
then a :class:`pt.ToolCallError`; on plain, streamed and batched requests."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pydantic
import pytest

import paradigm_trio as pt
from paradigm_trio._endpoints._structured import ToolCallRules

from .helpers import API_KEY, Script, completion_json, fixed, make_client
from .test_streaming import DONE, collect, sse
from .test_tools import call_deltas, delta, event

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]


class Where(pydantic.BaseModel):
    city: str
    days: int = 1


WEATHER = pt.function_tool("get_weather", Where)
SEARCH = pt.function_tool(
    "search",
    {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["query"],
        "additionalProperties": False,
    },
)
TOOLS = [WEATHER, SEARCH]


def calling(name: str, arguments: str, call_id: str = "call_1") -> httpx2.Response:
    data = completion_json(finish_reason="tool_calls")
    data["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": name, "arguments": arguments}}
        ],
    }  # fmt: skip
    return httpx2.Response(200, json=data)


BAD_CALLS = [
    (("lookup", '{"query": "x"}'), "unknown_tool", "was offered"),
    (("search", '{"query": "x"'), "not_json", "not JSON"),
    (("search", '{"limit": 3}'), "invalid_arguments", "'query' is a required property"),
    (("search", '{"query": "x", "limit": "3"}'), "invalid_arguments", r"\$\.limit"),
    (("get_weather", '{"days": 2}'), "invalid_arguments", r"\$\.city: Field required"),
    (("get_weather", "[1, 2]"), "invalid_arguments", "\\$"),
]


@pytest.mark.parametrize(("call", "reason", "message"), BAD_CALLS)
async def test_an_invalid_call_is_a_tool_call_error(
    call: tuple[str, str], reason: str, message: str
) -> None:
    script = Script(calling(*call))
    async with make_client(script) as client:
        with pytest.raises(pt.ToolCallError, match=message) as info:
            await client.chat(MESSAGES, tools=TOOLS)
    error = info.value
    assert isinstance(error, pt.APIResponseValidationError)
    assert not isinstance(error, pt.StructuredOutputError)
    assert (error.tool, error.reason) == (call[0], reason)
    assert error.call.function.arguments == call[1]
    assert json.loads(error.raw)["function"] == {"name": call[0], "arguments": call[1]}
    assert error.completion.tool_calls[0].function.name == call[0]
    assert error.status_code == 200
    assert [a.cause for a in error.attempts] == ["invalid_tool_call"]  # not re-asked by default


async def test_valid_calls_pass_and_the_opt_out_hands_out_raw_calls() -> None:
    script = Script(
        calling("get_weather", '{"city": "Paris"}'),
        calling("search", ""),  # no arguments: {} (and "query" is required)
        calling("lookup", "not json"),
    )
    async with make_client(script) as client:
        completion = await client.chat(MESSAGES, tools=TOOLS)
        assert completion.tool_calls[0].function.parse_arguments() == {"city": "Paris"}
        with pytest.raises(pt.ToolCallError, match="'query' is a required property"):
            await client.chat(MESSAGES, tools=TOOLS)
        raw = await client.chat(MESSAGES, tools=TOOLS, validate_tool_calls=False)
    assert raw.tool_calls[0].function.arguments == "not json"
    assert "validate_tool_calls" not in script.bodies()[2]  # (not a body field)


async def test_calls_are_checked_against_the_tools_of_extra_too() -> None:
    script = Script(calling("anything", "not json"), calling("anything", "not json"))
    async with make_client(script) as client:
        with pytest.raises(pt.ToolCallError, match="not offered"):
            await client.chat(MESSAGES, extra={"tools": [SEARCH]})
        unchecked = await client.chat(
            MESSAGES, extra={"tools": [SEARCH]}, validate_tool_calls=False
        )
    assert unchecked.tool_calls[0].function.name == "anything"
    assert [body["tools"] for body in script.bodies()] == [[SEARCH], [SEARCH]]


async def test_a_re_ask_states_the_error_to_the_model() -> None:
    script = Script(
        calling("search", '{"limit": 3}'),
        calling("lookup", "{}"),
        calling("search", '{"query": "weather Paris"}'),
    )
    events: list[pt.Event] = []
    retry = fixed(invalid_output_retries=2)
    async with make_client(script, retry=retry, on_event=events.append) as client:
        completion = await client.chat(MESSAGES, tools=TOOLS, custom_id="w1")
        stats = client.statistics()
    assert completion.tool_calls[0].function.parse_arguments() == {"query": "weather Paris"}
    first, second, third = script.bodies()
    assert first["messages"] == MESSAGES
    said = second["messages"][-1]
    assert second["messages"][:-1] == MESSAGES
    assert said["role"] == "user"
    assert "search" in said["content"]
    assert "'query' is a required property" in said["content"]
    # The next re-ask states the last error only (the conversation does not grow).
    assert third["messages"][:-1] == MESSAGES
    assert "'lookup'" in third["messages"][-1]["content"]
    assert "get_weather, search" in third["messages"][-1]["content"]
    keys = script.header("idempotency-key")
    assert keys[0] == keys[1] == keys[2]
    assert stats.retries_by_cause == {"invalid_tool_call": 2}
    assert [e.cause for e in events if isinstance(e, pt.RetryScheduled)] == [
        "invalid_tool_call"
    ] * 2


async def test_re_asks_share_the_budget_and_the_last_error_is_raised() -> None:
    script = Script(default=calling("search", "{"))
    async with make_client(script, retry=fixed(invalid_output_retries=1)) as client:
        with pytest.raises(pt.ToolCallError) as info:
            await client.chat(MESSAGES, tools=TOOLS)
    assert script.calls == 2
    assert [a.cause for a in info.value.attempts] == ["invalid_tool_call"] * 2


async def test_every_choice_and_every_call_is_checked() -> None:
    data = completion_json(finish_reason="tool_calls")
    good = {"id": "a", "type": "function",
            "function": {"name": "search", "arguments": '{"query": "q"}'}}  # fmt: skip
    bad = {"id": "b", "type": "function", "function": {"name": "nope", "arguments": "{}"}}
    data["choices"] = [
        {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [good]},
         "finish_reason": "tool_calls"},
        {"index": 1, "message": {"role": "assistant", "content": None,
                                 "tool_calls": [good, bad]},
         "finish_reason": "tool_calls"},
    ]  # fmt: skip
    async with make_client(Script(httpx2.Response(200, json=data))) as client:
        with pytest.raises(pt.ToolCallError) as info:
            await client.chat(MESSAGES, tools=TOOLS, n=2)
    assert info.value.tool == "nope"
    assert info.value.call.id == "b"


async def test_the_api_key_never_shows_in_a_tool_call_error() -> None:
    arguments = json.dumps({"query": 5, "key": API_KEY})
    script = Script(calling(API_KEY, "{}"), calling("search", arguments))
    async with make_client(script) as client:
        for _ in range(2):
            with pytest.raises(pt.ToolCallError) as info:
                await client.chat(MESSAGES, tools=TOOLS)
            error = info.value
            shown = [str(error), repr(error), error.raw, error.tool, *error.errors]
            shown += [error.call.function.name, error.call.function.arguments, repr(error.call.raw)]
            assert not [text for text in shown if API_KEY in text]


async def test_a_parameters_that_is_no_json_schema_is_refused_before_sending() -> None:
    broken = {"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}
    with pytest.raises(pt.InvalidRequestError, match=r"tools\[0\]\.function\.parameters"):
        pt.ChatRequest(messages=MESSAGES, tools=[broken])
    request = pt.ChatRequest(messages=MESSAGES, tools=[broken], validate_tool_calls=False)
    assert ToolCallRules.of(request.tools, request.validate_tool_calls) is None
    with pytest.raises(pt.InvalidRequestError, match="validate_tool_calls"):
        pt.ChatRequest(messages=MESSAGES, validate_tool_calls="no")  # type: ignore[arg-type]


def test_a_pydantic_model_as_parameters_is_sent_as_its_schema() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": Where}}
    request = pt.ChatRequest(messages=MESSAGES, tools=[tool])
    body = json.loads(request.encode_body(request.to_body("m")))
    assert body["tools"][0]["function"]["parameters"] == Where.model_json_schema()
    assert request.tools == (WEATHER,)


# --------------------------------------------------------------------------- streams


def streamed_call(name: str, arguments: str) -> httpx2.Response:
    events = [event([delta(role="assistant", content=None)])]
    events += call_deltas(0, "call_s", name, arguments, 3)
    events += [event([delta(finish="tool_calls")]), DONE]
    return sse(*events)[0]


async def test_a_streamed_call_is_checked_once_complete_and_never_re_asked() -> None:
    script = Script(streamed_call("search", '{"query": 1}'))
    async with make_client(script, retry=fixed(invalid_output_retries=3)) as client:
        stream = client.chat_stream(MESSAGES, tools=TOOLS)
        with pytest.raises(pt.ToolCallError, match=r"\$\.query") as info:
            await collect(stream)
    assert info.value.call.function.arguments == '{"query": 1}'
    assert script.calls == 1  # its chunks were handed out: final
    script = Script(streamed_call("search", '{"query": "q"}'), streamed_call("nope", "{}"))
    async with make_client(script) as client:
        async with client.chat_stream(MESSAGES, tools=TOOLS) as stream:
            async for _ in stream:
                pass
        assert stream.completion.tool_calls[0].function.parse_arguments() == {"query": "q"}
        async with client.chat_stream(MESSAGES, tools=TOOLS, validate_tool_calls=False) as raw:
            async for _ in raw:
                pass
    assert raw.completion.tool_calls[0].function.name == "nope"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_batch_item_is_re_asked_then_ok_or_a_typed_error(stream: bool) -> None:
    make = streamed_call if stream else calling
    script = Script(
        make("nope", "{}"),  # item 0, attempt 1
        make("search", '{"query": "q"}'),  # item 0, attempt 2
        make("search", "{"),  # item 1, attempt 1
        make("search", "{"),  # item 1, attempt 2
    )
    requests = [pt.ChatRequest(messages=MESSAGES, tools=TOOLS, custom_id=f"i{i}") for i in range(2)]
    retry = fixed(invalid_output_retries=1)
    async with make_client(script, retry=retry, limits=pt.Limits(concurrency=1)) as client:
        results = await client.chat_batch(requests, stream=stream)
    assert results[0].ok
    assert results[0].attempts == 2
    assert results[0].completion is not None
    assert results[0].completion.tool_calls[0].function.name == "search"
    assert not results[1].ok
    assert isinstance(results[1].error, pt.ToolCallError)
    assert results[1].error.reason == "not_json"
    said = script.bodies()[1]["messages"][-1]["content"]
    assert "'nope'" in said
    assert "get_weather, search" in said


def test_any_completion_passes_without_tools() -> None:
    request = pt.ChatRequest(messages=MESSAGES)
    assert ToolCallRules.of(request.tools, request.validate_tool_calls) is None
    data: dict[str, Any] = completion_json()
    assert pt.ChatCompletion.from_json(data).text == "Hello there"


def test_a_request_with_a_pydantic_tool_survives_pickling_and_copying() -> None:
    import copy
    import pickle

    request = pt.ChatRequest(messages=MESSAGES, tools=TOOLS)
    for clone in (pickle.loads(pickle.dumps(request)), copy.deepcopy(request)):
        assert clone == request
        rules = ToolCallRules.of(clone.tools, clone.validate_tool_calls)
        assert rules is not None
        call = pt.ToolCall("c", pt.FunctionCall("get_weather", '{"days": "x"}'))
        found = rules.problems(call)
        assert found is not None
        assert found[0] == "invalid_arguments"
        assert any("city" in error for error in found[1])  # the model itself validated it
