"""A client nobody here wrote: the official ``openai`` package, run under trio."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionMessageParam

import mock_server as ms

from ._helpers import WELCOME

pytestmark = pytest.mark.anyio

# The SDK's AsyncStream stops iterating its inner async generators at ``[DONE]`` (or at
# an error event) without closing them; under trio the garbage-collected generators
# trigger trio's "Async generator ... was garbage collected" ResourceWarning.  That is
# the SDK's hygiene, not the mock's, so it is silenced for the streaming tests only
# (and gc is forced inside the test so the warning cannot leak into another test).
sdk_stream_warning = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx2|httpcore2)\.:ResourceWarning"
)


@asynccontextmanager
async def openai_client(
    server: ms.MockServer, api_key: str = "unused"
) -> AsyncIterator[openai.AsyncOpenAI]:
    async with httpx2.AsyncClient() as http_client:
        client = openai.AsyncOpenAI(
            base_url=server.url, api_key=api_key, max_retries=0, http_client=http_client
        )
        async with client:
            yield client


async def test_openai_completion() -> None:
    async with (
        ms.serve(ms.MockConfig(api_key="sk-real-looking")) as server,
        openai_client(server, "sk-real-looking") as client,
    ):
        completion = await client.chat.completions.create(
            model="alfred-4.2",
            messages=[{"role": "user", "content": WELCOME.format(name="Alice")}],
            temperature=0.4,
            max_tokens=150,
        )
    assert completion.object == "chat.completion"
    content = completion.choices[0].message.content
    assert content is not None
    assert content.startswith("Welcome to Paradigm, Alice!")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0


@sdk_stream_warning
async def test_openai_streaming_with_usage() -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Stream me a reply"}]
    async with ms.serve() as server, openai_client(server) as client:
        plain = await client.chat.completions.create(model="m", messages=messages)
        stream = await client.chat.completions.create(
            model="m",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = []
        usage = None
        finish = None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    assert "".join(pieces) == plain.choices[0].message.content
    assert finish == "stop"
    assert usage is not None
    assert plain.usage is not None
    assert usage.completion_tokens == plain.usage.completion_tokens
    gc.collect()


async def test_openai_maps_a_scripted_429_to_rate_limit_error() -> None:
    async with ms.serve() as server, openai_client(server) as client:
        server.script("job-7", [ms.Fault("429", retry_after=0.5)])
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"Idempotency-Key": "job-7"},
            )
    error = info.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.response.headers["retry-after-ms"] == "500"
    assert error.request_id is None or error.request_id  # openai reads x-request-id
    assert error.response.headers["x-request-id"].startswith("req_")


async def test_openai_errors_for_auth_bad_request_and_server_error() -> None:
    async with ms.serve(ms.MockConfig(api_key="right", models=("m",))) as server:
        server.script("boom", ["503"])
        async with openai_client(server, "wrong") as client:
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}]
                )
        async with openai_client(server, "right") as client:
            with pytest.raises(openai.BadRequestError) as bad:
                await client.chat.completions.create(
                    model="nope", messages=[{"role": "user", "content": "x"}]
                )
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": "x"}],
                    extra_headers={"Idempotency-Key": "boom"},
                )
            models = await client.models.list()
    assert bad.value.code == "model_not_found"
    assert [m.id for m in models.data] == ["m"]


@sdk_stream_warning
async def test_openai_stream_error_event_raises_api_error() -> None:
    async with ms.serve() as server, openai_client(server) as client:
        server.script("s", ["stream_error"])
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            extra_headers={"Idempotency-Key": "s"},
        )
        received: list[object] = []

        async def consume() -> None:
            async for chunk in stream:
                received.append(chunk)

        with pytest.raises(openai.APIError, match="injected by mock_server"):
            await consume()
    assert len(received) >= 1
    gc.collect()


class Weather(pydantic.BaseModel):
    city: str
    days: int


class Forecast(pydantic.BaseModel):
    city: str
    temperatures: list[float]
    summary: str


async def test_openai_models_retrieve_n_logprobs_and_stream_options() -> None:
    async with ms.serve() as server, openai_client(server) as client:
        model = await client.models.retrieve("alfred-4.2")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("no-such-model")
        completion = await client.chat.completions.create(
            model="alfred-4.2",
            messages=[{"role": "user", "content": "Two answers please"}],
            n=2,
            logprobs=True,
            top_logprobs=3,
        )
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="alfred-4.2",
                messages=[{"role": "user", "content": "x"}],
                stream_options={"include_usage": True},
            )
    assert model.id == "alfred-4.2"
    assert len(completion.choices) == 2
    assert completion.choices[0].message.content != completion.choices[1].message.content
    logprobs = completion.choices[1].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert all(len(t.top_logprobs) == 3 for t in logprobs.content)
    assert refused.value.param == "stream_options"


async def test_openai_parse_gets_a_validated_pydantic_object() -> None:
    async with ms.serve() as server, openai_client(server) as client:
        completion = await client.chat.completions.parse(
            model="alfred-4.2",
            messages=[{"role": "user", "content": "Forecast for Lyon"}],
            response_format=Forecast,
        )
        called = await client.chat.completions.parse(
            model="alfred-4.2",
            messages=[{"role": "user", "content": "Weather please"}],
            tools=[openai.pydantic_function_tool(Weather)],
            tool_choice="required",
        )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Forecast)
    [call] = called.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, Weather)  # type: ignore[union-attr]


@sdk_stream_warning
async def test_openai_streams_tool_calls_and_assembles_them() -> None:
    async with ms.serve() as server, openai_client(server) as client:
        plain = await client.chat.completions.create(
            model="alfred-4.2",
            messages=[{"role": "user", "content": "Weather and get_time"}],
            tools=[openai.pydantic_function_tool(Weather), TIME_TOOL],
        )
        async with client.chat.completions.stream(
            model="alfred-4.2",
            messages=[{"role": "user", "content": "Weather and get_time"}],
            tools=[openai.pydantic_function_tool(Weather), TIME_TOOL],
        ) as stream:
            done = []
            async for event in stream:
                if event.type == "tool_calls.function.arguments.done":
                    done.append(event.name)
            final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    expected = plain.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        (c.id, c.function.name, c.function.arguments)
        for c in expected  # type: ignore[union-attr]
    ]
    assert done == ["Weather", "get_time"]
    assert isinstance(calls[0].function.parsed_arguments, Weather)  # type: ignore[union-attr]
    gc.collect()


TIME_TOOL: Any = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
