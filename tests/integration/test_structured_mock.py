"""Structured extraction and tool calls against the mock over real sockets: a batch whose
invalid answers are re-asked and end valid, tool calls streamed and assembled, malformed
tool-call streams resent."""

from __future__ import annotations

import hashlib
import json

import jsonschema  # type: ignore[import-untyped]
import pydantic
import pytest

import mock_server as ms
import paradigm_trio as pt

pytestmark = pytest.mark.anyio

FAST_RETRY = pt.RetryPolicy(
    attempts=8, initial_delay=0.01, max_delay=0.05, jitter=0.5, invalid_output_retries=6
)


class Contact(pydantic.BaseModel):
    name: str
    email: str = pydantic.Field(json_schema_extra={"format": "email"})
    phone: str = pydantic.Field(pattern=r"^\+33 \d \d{2} \d{2} \d{2} \d{2}$")
    tags: list[str] = pydantic.Field(max_length=3)


SCHEMA = Contact.model_json_schema()


async def test_a_structured_extraction_batch_re_asks_the_invalid_answers() -> None:
    faults = ms.FaultRates(invalid_output=0.3, server_error=0.05)
    config = ms.MockConfig(seed=5, faults=faults, latency=ms.Latency.fixed(0.005))
    requests = [
        pt.ChatRequest(
            messages=[{"role": "user", "content": f"Extract the contact of letter {i}"}],
            output=Contact if i % 2 else pt.OutputSchema(SCHEMA, form="guided_json"),
            custom_id=f"letter-{i}",
        )
        for i in range(300)
    ]
    async with ms.serve(config) as server:
        async with pt.Client(
            api_key="sk-workload-test", base_url=server.url, retry=FAST_RETRY
        ) as client:
            results = await client.chat_batch(requests, stream=False)
            streamed = await client.chat_batch(requests[:60], stream=True)
        log = server.requests()
    for result in [*results, *streamed]:
        assert result.completion is not None, result.error
        parsed = result.completion.parsed
        if isinstance(parsed, Contact):
            parsed = parsed.model_dump()
        jsonschema.validate(parsed, SCHEMA)
        assert parsed == json.loads(result.completion.text)
    assert isinstance(results[1].completion.parsed, Contact)  # type: ignore[union-attr]
    invalid = sum(r.outcome == "invalid_output" for r in log)
    assert invalid > 50
    assert results.statistics.retries_by_cause["invalid_output"] > 0
    assert results.statistics.succeeded == 300


async def test_without_re_asks_an_invalid_answer_is_a_typed_failure() -> None:
    async with ms.serve(ms.MockConfig(seed=1)) as server:
        server.script("pt-" + hashlib.sha256(b"c1").hexdigest()[:32], ["invalid_output"])
        async with pt.Client(api_key="sk-workload-test", base_url=server.url) as client:
            with pytest.raises(pt.StructuredOutputError) as info:
                await client.chat(
                    [{"role": "user", "content": "x"}], output=Contact, custom_id="c1"
                )
    assert info.value.errors
    assert info.value.raw == info.value.completion.text


async def test_tool_calls_through_the_mock_plain_and_streamed() -> None:
    weather = pt.function_tool(
        "get_weather",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    messages = [{"role": "user", "content": "get_weather in Nice, then get_time"}]
    clock = pt.function_tool("get_time")
    config = ms.MockConfig(faults=ms.FaultRates(tool_call_malformed=0.4))
    async with ms.serve(config) as server:
        async with pt.Client(
            api_key="sk-workload-test",
            base_url=server.url,
            retry=pt.RetryPolicy(attempts=10, initial_delay=0.01),
        ) as client:
            plain = await client.chat(messages, tools=[weather, clock], custom_id="p")
            [item] = await client.chat_batch(
                [pt.ChatRequest(messages=messages, tools=[weather, clock], custom_id="s")],
                stream=True,
            )
            # (A stream that breaks after its first chunk is not resent: this key's draw is
            # a clean stream.)
            async with client.chat_stream(
                messages, tools=[weather, clock], custom_id="t"
            ) as stream:
                deltas = [c.tool_calls async for c in stream]
    assert [c.function.name for c in plain.tool_calls] == ["get_weather", "get_time"]
    assert "city" in plain.tool_calls[0].function.parse_arguments()
    assert item.completion is not None
    for answer in (item.completion, stream.completion):
        assert [c.function.name for c in answer.tool_calls] == ["get_weather", "get_time"]
        assert answer.finish_reason == "tool_calls"
    assert sum(len(d) for d in deltas) > 2  # it came in pieces
