"""The mock answers what the API answers: structured output (``response_format``,
``guided_*``), tool calls, ``n`` choices, log probabilities, ``stream_options`` checks,
``GET /models/{id}``; their faults; plain HTTP here, the official SDK in
``test_openai_compat.py``."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx2
import jsonschema  # type: ignore[import-untyped]
import pydantic
import pytest

import mock_server as ms

from ._helpers import (
    assert_error_envelope,
    chat_body,
    keyed,
    stream_chunks,
    validate_chunk,
    validate_completion,
)

pytestmark = pytest.mark.anyio


class Line(pydantic.BaseModel):
    sku: str = pydantic.Field(pattern=r"^[A-Z]{3}-\d{4}$")
    quantity: int = pydantic.Field(ge=1, le=99)
    price: float = pydantic.Field(gt=0)


class Invoice(pydantic.BaseModel):
    number: str
    issued: str = pydantic.Field(json_schema_extra={"format": "date"})
    currency: str = pydantic.Field(json_schema_extra={"enum": ["EUR", "USD"]})
    lines: list[Line] = pydantic.Field(min_length=1, max_length=4)
    paid: bool
    note: str | None = None


INVOICE = Invoice.model_json_schema()
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city"],
        },
    },
}
CLOCK: dict[str, Any] = {"type": "function", "function": {"name": "get_time"}}


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


async def post(server: ms.MockServer, body: dict[str, Any], **kw: Any) -> httpx2.Response:
    async with httpx2.AsyncClient(base_url=server.url) as client:
        return await client.post("/chat/completions", json=body, **kw)


def content(response: httpx2.Response, index: int = 0) -> Any:
    assert response.status_code == 200, response.text
    message = validate_completion(response.json()).choices[index].message
    return message.content


async def test_structured_output_validates_and_is_deterministic() -> None:
    async with ms.serve() as server:
        answers = []
        for extra in (
            {"response_format": json_schema_format(INVOICE)},
            {"guided_json": INVOICE},
            {"guided_json": json.dumps(INVOICE)},
        ):
            response = await post(server, chat_body("Invoice 12", **extra))
            value = json.loads(content(response))
            jsonschema.validate(value, INVOICE)
            Invoice.model_validate(value)
            answers.append(value)
        again = await post(server, chat_body("Invoice 12", guided_json=INVOICE))
        other = await post(server, chat_body("Invoice 13", guided_json=INVOICE))
        streamed = await post(server, chat_body("Invoice 12", guided_json=INVOICE, stream=True))
    assert answers[0] == answers[1] == answers[2] == json.loads(content(again))
    assert json.loads(content(other)) != answers[0]
    chunks = stream_chunks(streamed.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert json.loads(text) == answers[0]


async def test_json_object_choice_and_regex() -> None:
    async with ms.serve() as server:
        obj = await post(server, chat_body("x", response_format={"type": "json_object"}))
        choice = await post(server, chat_body("x", guided_choice=["yes", "no", "maybe"]))
        regex = await post(server, chat_body("x", guided_regex=r"[A-Z]{2}\d{3}(-v\d)?"))
        bad_regex = await post(server, chat_body("x", guided_regex=r"a(?=b)"))
        bad_schema = await post(server, chat_body("x", guided_json={"type": "tuple"}))
    assert isinstance(json.loads(content(obj))["answer"], str)
    assert content(choice) in ("yes", "no", "maybe")
    assert re.fullmatch(r"[A-Z]{2}\d{3}(-v\d)?", content(regex))
    assert_error_envelope(bad_regex, 400)
    assert_error_envelope(bad_schema, 400)


async def test_invalid_output_fault_breaks_only_structured_answers() -> None:
    async with ms.serve() as server:
        server.script("s", ["invalid_output"])
        server.script("c", ["invalid_output"])
        server.script("p", ["invalid_output"])
        bad = await post(server, chat_body("x", guided_json=INVOICE), headers=keyed("s"))
        off = await post(server, chat_body("x", guided_choice=["a", "b"]), headers=keyed("c"))
        plain = await post(server, chat_body("x"), headers=keyed("p"))
        outcomes = [r.outcome for r in server.requests()]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(content(bad)), INVOICE)
    assert content(off) not in ("a", "b")
    assert content(plain).startswith("You said")
    assert outcomes == ["invalid_output", "invalid_output", "ok"]


async def test_tool_calls_follow_tool_choice() -> None:
    tools = [WEATHER, CLOCK]
    cases: list[tuple[str, Any, dict[str, Any], list[str]]] = [
        ("What is the weather?", {"type": "function", "function": {"name": "get_weather"}},
         {}, ["get_weather"]),
        ("get_weather for Paris and get_time", "auto", {}, ["get_weather", "get_time"]),
        ("get_weather for Paris and get_time", None, {"parallel_tool_calls": False},
         ["get_weather"]),
        ("Hello", "auto", {}, []),
        ("Hello", "required", {}, ["get_weather"]),
        ("get_time please", "none", {}, []),
    ]  # fmt: skip
    async with ms.serve() as server:
        for text, choice, extra, called in cases:
            body = chat_body(text, tools=tools, **extra)
            if choice is not None:
                body["tool_choice"] = choice
            response = await post(server, body)
            data = response.json()
            completion = validate_completion(data)
            message = completion.choices[0].message
            names = [c.function.name for c in message.tool_calls or []]
            assert names == called, (text, choice)
            if called:
                assert message.content is None
                assert completion.choices[0].finish_reason == "tool_calls"
                arguments = json.loads(message.tool_calls[0].function.arguments)  # type: ignore[index, union-attr]
                jsonschema.validate(arguments, tools[0 if names[0] == "get_weather" else 1]
                                    ["function"].get("parameters", {}))  # fmt: skip
            else:
                assert message.content


async def test_a_tool_result_gets_a_text_answer() -> None:
    messages = [
        {"role": "user", "content": "get_weather in Paris"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"},
    ]  # fmt: skip
    async with ms.serve() as server:
        response = await post(
            server, {"model": "alfred-4.2", "messages": messages, "tools": [WEATHER]}
        )
    assert content(response)
    assert response.json()["choices"][0]["finish_reason"] == "stop"


async def test_streamed_tool_calls_and_their_malformed_fault() -> None:
    body = chat_body("get_weather in Paris and get_time", tools=[WEATHER, CLOCK], stream=True)
    async with ms.serve() as server:
        plain = (await post(server, {**body, "stream": False})).json()
        streamed = await post(server, body)
        server.script("bad", ["tool_call_malformed", "tool_call_malformed"])
        bad_stream = await post(server, body, headers=keyed("bad"))
        bad_plain = await post(server, {**body, "stream": False}, headers=keyed("bad"))
    calls: dict[int, dict[str, Any]] = {}
    for chunk in stream_chunks(streamed.text):
        validate_chunk(chunk)
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(delta["index"], {"arguments": ""})
                call.update({k: delta[k] for k in ("id", "type") if k in delta})
                function = delta.get("function") or {}
                call["name"] = function.get("name") or call.get("name")
                call["arguments"] += function.get("arguments") or ""
    expected = plain["choices"][0]["message"]["tool_calls"]
    assert [
        {"id": c["id"], "type": "function",
         "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in (calls[i] for i in sorted(calls))
    ] == expected  # fmt: skip
    assert len(expected) == 2
    broken = [
        d
        for chunk in stream_chunks(bad_stream.text)
        for choice in chunk["choices"]
        for d in choice["delta"].get("tool_calls") or []
    ]
    assert any("index" not in d for d in broken)
    tool_call = bad_plain.json()["choices"][0]["message"]["tool_calls"][0]
    assert isinstance(tool_call["function"]["arguments"], dict)


async def test_n_choices_and_logprobs() -> None:
    async with ms.serve() as server:
        one = await post(server, chat_body("Tell me"))
        two = await post(server, chat_body("Tell me", n=2, logprobs=True, top_logprobs=2))
        streamed = await post(server, chat_body("Tell me", n=2, logprobs=True, stream=True))
    data = two.json()
    validate_completion(data)
    assert [c["index"] for c in data["choices"]] == [0, 1]
    first, second = (c["message"]["content"] for c in data["choices"])
    assert first == content(one)
    assert second != first
    logprobs = data["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in logprobs) == first
    assert all(len(t["top_logprobs"]) == 2 and t["logprob"] <= 0 for t in logprobs)
    assert data["usage"]["completion_tokens"] == len(logprobs) + len(
        data["choices"][1]["logprobs"]["content"]
    )
    texts = {0: "", 1: ""}
    tokens = {0: "", 1: ""}
    for chunk in stream_chunks(streamed.text):
        validate_chunk(chunk)
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
            for entry in (choice.get("logprobs") or {}).get("content") or []:
                tokens[choice["index"]] += entry["token"]
    assert texts == {0: first, 1: second} == tokens


async def test_requests_the_api_refuses() -> None:
    cases = [
        (chat_body("x", stream_options={"include_usage": True}), "stream_options"),
        (chat_body("x", n=0), "n"),
        (chat_body("x", top_logprobs=2), "top_logprobs"),
        (chat_body("x", tools=[{"type": "function"}]), "tools[0]"),
        (chat_body("x", tool_choice="required"), "tool_choice"),
        (chat_body("x", tools=[CLOCK], tool_choice={"type": "function",
                                                    "function": {"name": "nope"}}), "tool_choice"),
        (chat_body("x", response_format={"type": "yaml"}), "response_format.type"),
        (chat_body("x", guided_choice=[]), "guided_choice"),
    ]  # fmt: skip
    async with ms.serve() as server:
        for body, param in cases:
            error = assert_error_envelope(await post(server, body), 400)
            assert error["param"] == param, body


async def test_models_retrieve_one() -> None:
    config = ms.MockConfig(models=("alfred-4.2", "org/model-x"))
    async with ms.serve(config) as server, httpx2.AsyncClient(base_url=server.url) as client:
        found = await client.get("/models/alfred-4.2")
        nested = await client.get("/models/org/model-x")
        missing = await client.get("/models/gpt-9")
    assert found.json() == {
        "id": "alfred-4.2",
        "object": "model",
        "created": 1_700_000_000,
        "owned_by": "lighton",
    }
    assert nested.json()["id"] == "org/model-x"
    assert assert_error_envelope(missing, 404, "model_not_found")["param"] == "model"
