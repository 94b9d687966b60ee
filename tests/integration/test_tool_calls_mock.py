"""Tool calls checked against the mock over real sockets: a batch of 1,000 tool-calling
requests whose answers are 5 % malformed (arguments not JSON, arguments breaking the
tool's parameters, a tool never offered) ends every item with a valid call or a typed
error, never with an invalid call marked ok; re-asked (the error stated to the model),
every item ends valid."""

from __future__ import annotations

import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pydantic
import pytest

import mock_server as ms
import paradigm_trio as pt

pytestmark = pytest.mark.anyio


class Clock(pydantic.BaseModel):
    timezone: str
    hour24: bool


WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
TOOLS = [
    pt.function_tool("get_weather", WEATHER_PARAMETERS),
    pt.function_tool("get_time", Clock),
]
FAULTS = ms.FaultRates(tool_call_not_json=0.02, tool_call_invalid=0.02, tool_call_unknown=0.01)
TOOL_OUTCOMES = {"tool_call_not_json", "tool_call_invalid", "tool_call_unknown"}


def requests(count: int) -> list[pt.ChatRequest]:
    return [
        pt.ChatRequest(
            messages=[{"role": "user", "content": f"Item {i}: call {tool} now"}],
            tools=TOOLS,
            tool_choice="required",
            custom_id=f"item-{i}",
        )
        for i in range(count)
        for tool in (("get_weather", "get_time")[i % 2],)
    ]


def assert_valid(call: pt.ToolCall) -> None:
    """The call is valid, judged here, independently of the client's own check."""
    arguments: Any = json.loads(call.function.arguments)
    if call.function.name == "get_weather":
        jsonschema.validate(arguments, WEATHER_PARAMETERS)
    else:
        assert call.function.name == "get_time"
        Clock.model_validate(arguments)


def judge(results: list[pt.BatchResult]) -> tuple[int, int]:
    """``(ok, typed errors)``; fails on anything else, or an invalid call marked ok."""
    ok = errors = 0
    for result in results:
        if result.ok:
            assert result.completion is not None
            assert result.completion.tool_calls, result.custom_id
            for call in result.completion.tool_calls:
                assert_valid(call)
            ok += 1
        else:
            assert isinstance(result.error, pt.ToolCallError), repr(result.error)
            assert result.error.reason in ("unknown_tool", "not_json", "invalid_arguments")
            errors += 1
    return ok, errors


async def test_a_thousand_tool_calls_with_5_percent_malformed_end_valid_or_typed() -> None:
    config = ms.MockConfig(seed=28, faults=FAULTS)
    batch = requests(1000)
    async with ms.serve(config) as server:
        async with pt.Client(api_key="sk-tools-test", base_url=server.url) as client:
            plain = await client.chat_batch(batch)
            faulted = sum(r.outcome in TOOL_OUTCOMES for r in server.requests())
            server.reset()
            streamed = await client.chat_batch(batch[:100], stream=True)
            faulted_streams = sum(r.outcome in TOOL_OUTCOMES for r in server.requests())
    ok, errors = judge(plain)
    assert ok + errors == 1000
    assert errors == faulted  # each malformed answer, and only those, is a typed error
    assert 25 <= errors <= 80  # about 5 % of 1,000
    ok, errors = judge(streamed)
    assert errors == faulted_streams
    assert ok + errors == 100


async def test_re_asked_every_item_ends_with_a_valid_call() -> None:
    config = ms.MockConfig(seed=28, faults=FAULTS)
    retry = pt.RetryPolicy(initial_delay=0.001, max_delay=0.01, invalid_output_retries=3)
    batch = requests(400)
    async with ms.serve(config) as server:
        async with pt.Client(api_key="sk-tools-test", base_url=server.url, retry=retry) as client:
            results = await client.chat_batch(batch)
            streamed = await client.chat_batch(batch[:100], stream=True)
        log = server.requests()
    assert judge(results) == (400, 0)
    assert judge(streamed) == (100, 0)
    re_asks = results.statistics.retries_by_cause["invalid_tool_call"]
    # Each malformed answer of the plain batch, and only those, was re-asked.
    assert re_asks == sum(r.outcome in TOOL_OUTCOMES for r in log if not r.stream)
    assert re_asks > 8
