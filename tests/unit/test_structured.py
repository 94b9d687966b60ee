"""Structured outputs on ``httpx2.MockTransport``: ``output=`` (a JSON Schema or a pydantic
model) in the request, the answer parsed and validated into ``parsed``, the typed error,
the bounded re-ask on the engine, batches and streams; and the typed ``guided_*`` and
``response_format`` fields."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx2
import pydantic
import pytest

import paradigm_trio as pt

from .helpers import API_KEY, Events, Script, completion_json, fixed, make_client
from .test_streaming import DONE, chunk, collect, sse

pytestmark = pytest.mark.anyio

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


class Person(pydantic.BaseModel):
    name: str
    age: int


def answering(*texts: str) -> Script:
    """A script answering each request with the next text as the completion content."""
    return Script(*(httpx2.Response(200, json=completion_json(t)) for t in texts))


async def test_output_asks_for_the_schema_and_parses_the_answer() -> None:
    script = answering('{"name": "Ada", "age": 36}')
    async with make_client(script) as client:
        completion = await client.chat([{"role": "user", "content": "Ada, 36"}], output=PERSON)
    [body] = script.bodies()
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": PERSON},
    }
    assert completion.parsed == {"name": "Ada", "age": 36}
    assert completion.choices[0].message.parsed == {"name": "Ada", "age": 36}


async def test_paradigm_form_and_a_pydantic_model() -> None:
    script = answering('{"name": "Ada", "age": 36}', '{"name": "Bob", "age": 7}')
    async with make_client(script) as client:
        guided = await client.chat(
            [{"role": "user", "content": "x"}],
            output=pt.OutputSchema(PERSON, form="guided_json"),
        )
        modelled = await client.chat([{"role": "user", "content": "x"}], output=Person)
    first, second = script.bodies()
    assert first["guided_json"] == PERSON
    assert "response_format" not in first
    spec = second["response_format"]["json_schema"]
    assert spec["name"] == "Person"
    assert spec["schema"] == Person.model_json_schema()
    assert guided.parsed == {"name": "Ada", "age": 36}
    assert modelled.parsed == Person(name="Bob", age=7)


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("Sure! Here it is: {", ("$: not JSON",)),
        ('{"name": "Ada"}', ("$: 'age' is a required property",)),
        ('{"name": "Ada", "age": -1, "x": 1}', ("$: Additional properties", "$.age: -1 is less")),
    ],
)
async def test_an_answer_that_does_not_match_raises_a_typed_error(
    text: str, errors: tuple[str, ...]
) -> None:
    script = answering(text)
    async with make_client(script) as client:
        with pytest.raises(pt.StructuredOutputError) as info:
            await client.chat([{"role": "user", "content": "x"}], output=PERSON)
    error = info.value
    assert isinstance(error, pt.APIResponseValidationError)
    assert error.raw == text
    assert len(error.errors) == len(errors)
    for got, want in zip(error.errors, errors, strict=True):
        assert got.startswith(want)
    assert error.completion is not None
    assert error.completion.text == text
    assert error.status_code == 200
    assert [a.cause for a in error.attempts] == ["invalid_output"]  # not retried by default
    assert script.calls == 1


async def test_pydantic_errors_name_the_field() -> None:
    script = answering('{"name": "Ada", "age": "old"}')
    async with make_client(script) as client:
        with pytest.raises(pt.StructuredOutputError) as info:
            await client.chat([{"role": "user", "content": "x"}], output=Person)
    assert info.value.errors[0].startswith("$.age: Input should be a valid integer")


async def test_the_re_ask_policy_resends_a_bounded_number_of_times() -> None:
    good = '{"name": "Ada", "age": 36}'
    events = Events()
    retry = fixed(invalid_output_retries=2)
    script = answering("nope", '{"name": 1}', good)
    async with make_client(script, retry=retry, on_event=events) as client:
        completion = await client.chat([{"role": "user", "content": "x"}], output=PERSON)
        stats = client.statistics()
    assert completion.parsed == {"name": "Ada", "age": 36}
    assert script.calls == 3
    assert stats.retries_by_cause == {"invalid_output": 2}
    assert [e.cause for e in events.of(pt.RetryScheduled)] == ["invalid_output"] * 2
    keys = script.header("idempotency-key")
    assert len(set(keys)) == 1  # the same logical request

    # Bounded: one re-ask, then the error (even though RetryPolicy.attempts allows more).
    script = answering("nope", "still not", good)
    async with make_client(script, retry=fixed(invalid_output_retries=1)) as client:
        with pytest.raises(pt.StructuredOutputError) as info:
            await client.chat([{"role": "user", "content": "x"}], output=PERSON)
    assert script.calls == 2
    assert [a.cause for a in info.value.attempts] == ["invalid_output"] * 2


async def test_other_failures_do_not_spend_the_re_asks() -> None:
    script = Script(
        httpx2.Response(503, json={"error": {"message": "busy"}}),
        httpx2.Response(200, json=completion_json("nope")),
        httpx2.Response(200, json=completion_json('{"name": "A", "age": 1}')),
    )
    async with make_client(script, retry=fixed(invalid_output_retries=1)) as client:
        completion = await client.chat([{"role": "user", "content": "x"}], output=PERSON)
    assert completion.parsed == {"name": "A", "age": 1}
    assert script.calls == 3


async def test_without_jsonschema_a_dict_schema_is_only_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    output = pt.OutputSchema(PERSON)
    assert not output.validates
    assert pt.OutputSchema.of(Person).validates  # pydantic validates by itself
    script = answering('{"name": 5}', "not json")
    async with make_client(script) as client:
        loose = await client.chat([{"role": "user", "content": "x"}], output=output)
        with pytest.raises(pt.StructuredOutputError, match="not JSON"):
            await client.chat([{"role": "user", "content": "x"}], output=output)
    assert loose.parsed == {"name": 5}


async def test_a_refusal_is_noted_on_the_error() -> None:
    data = completion_json()
    data["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "No."}
    async with make_client(Script(httpx2.Response(200, json=data))) as client:
        with pytest.raises(pt.StructuredOutputError) as info:
            await client.chat([{"role": "user", "content": "x"}], output=PERSON)
    assert info.value.errors == ("$: no content",)
    assert "the model refused: No." in info.value.__notes__


def _shown(error: pt.StructuredOutputError) -> list[str]:
    """Everything of ``error`` a user, a log or a record can see."""
    return [str(error), repr(error), error.message, error.raw, *error.errors,
            *getattr(error, "__notes__", ()), *map(str, error.args)]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "outputs"),
    [
        (f"Your key is {API_KEY}", (PERSON, Person)),  # not JSON
        (json.dumps({"name": "Ada", "age": API_KEY}), (PERSON, Person)),  # the value quoted
        (json.dumps({"name": "Ada", "age": 3, API_KEY: 1}), (PERSON,)),  # ... the property
    ],
)
async def test_the_api_key_never_shows_in_a_structured_output_error(
    text: str, outputs: tuple[Any, ...]
) -> None:
    # A server (or a proxy) that echoes the Authorization header into the answer.
    for output in outputs:
        async with make_client(answering(text)) as client:
            with pytest.raises(pt.StructuredOutputError) as info:
                await client.chat([{"role": "user", "content": "x"}], output=output)
        assert info.value.raw
        assert not [shown for shown in _shown(info.value) if API_KEY in shown]


async def test_the_api_key_never_shows_in_a_refusal_nor_a_streamed_answer() -> None:
    data = completion_json()
    data["choices"][0]["message"] = {
        "role": "assistant", "content": None, "refusal": f"Not with {API_KEY}."
    }  # fmt: skip
    script = Script(
        httpx2.Response(200, json=data), sse(*_stream_of(f'{{"name": "{API_KEY}"}}'))[0]
    )
    async with make_client(script) as client:
        with pytest.raises(pt.StructuredOutputError) as refused:
            await client.chat([{"role": "user", "content": "x"}], output=PERSON)
        stream = client.chat_stream([{"role": "user", "content": "x"}], output=PERSON)
        with pytest.raises(pt.StructuredOutputError) as streamed:
            await collect(stream)
    assert any("the model refused: Not with ***." in note for note in refused.value.__notes__)
    assert streamed.value.raw == '{"name": "***"}'
    for error in (refused.value, streamed.value):
        assert not [shown for shown in _shown(error) if API_KEY in shown]


async def test_a_batch_puts_the_parsed_object_in_each_result_and_re_asks() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        name = body["messages"][0]["content"]
        seen = answer.calls.setdefault(name, 0)  # type: ignore[attr-defined]
        answer.calls[name] = seen + 1  # type: ignore[attr-defined]
        text = "garbage" if name == "bad" and seen == 0 else json.dumps({"name": name, "age": 1})
        return httpx2.Response(200, json=completion_json(text))

    answer.calls = {}  # type: ignore[attr-defined]
    requests = [
        pt.ChatRequest(messages=[{"role": "user", "content": n}], output=PERSON, custom_id=n)
        for n in ("a", "bad", "c")
    ]
    async with make_client(answer, retry=fixed(invalid_output_retries=1)) as client:
        results = await client.chat_batch(requests)
        modelled = await client.chat_batch(
            [pt.ChatRequest(messages=[{"role": "user", "content": "d"}], output=Person)]
        )
    assert [r.completion.parsed["name"] for r in results if r.completion] == ["a", "bad", "c"]
    assert [r.attempts for r in results] == [1, 2, 1]
    assert results.statistics.retries_by_cause == {"invalid_output": 1}
    assert modelled[0].completion is not None
    assert modelled[0].completion.parsed == Person(name="d", age=1)


def _stream_of(text: str) -> list[bytes]:
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    return [chunk("", role="assistant"), *map(chunk, pieces), chunk(finish="stop"), DONE]


async def test_a_streamed_batch_item_with_invalid_output_is_resent_whole() -> None:
    script = Script(
        sse(*_stream_of("{oops"))[0],
        sse(*_stream_of('{"name": "Ada", "age": 3}'))[0],
    )
    request = pt.ChatRequest(messages=[{"role": "user", "content": "x"}], output=PERSON)
    async with make_client(script, retry=fixed(invalid_output_retries=1)) as client:
        [result] = await client.chat_batch([request], stream=True)
    assert result.completion is not None
    assert result.completion.parsed == {"name": "Ada", "age": 3}
    assert result.attempts == 2


async def test_chat_stream_parses_at_the_end_and_never_resends() -> None:
    good = '{"name": "Ada", "age": 3}'
    script = Script(sse(*_stream_of(good))[0], sse(*_stream_of("{oops"))[0])
    async with make_client(script, retry=fixed(invalid_output_retries=3)) as client:
        async with client.chat_stream([{"role": "user", "content": "x"}], output=PERSON) as s:
            text = "".join([c.delta async for c in s])
        assert text == good
        assert s.completion.parsed == {"name": "Ada", "age": 3}
        stream = client.chat_stream([{"role": "user", "content": "x"}], output=PERSON)
        with pytest.raises(pt.StructuredOutputError) as info:
            await collect(stream)
        stats = client.statistics()
    assert script.calls == 2
    assert "not retried" in " ".join(info.value.__notes__)
    assert stats.failed == 1


def test_request_checks() -> None:
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(pt.InvalidRequestError, match="output= sets the request's response_format"):
        pt.ChatRequest(messages=messages, output=PERSON, response_format={"type": "json_object"})
    with pytest.raises(pt.InvalidRequestError, match="guided_json"):
        pt.ChatRequest(messages=messages, output=PERSON, extra={"guided_json": {}})
    with pytest.raises(pt.InvalidRequestError, match="given both as keyword and in extra"):
        pt.ChatRequest(messages=messages, guided_regex="a+", extra={"guided_regex": "b"})
    with pytest.raises(pt.InvalidRequestError, match="not a valid JSON Schema"):
        pt.ChatRequest(messages=messages, output={"type": "no-such-type"})
    with pytest.raises(pt.InvalidRequestError, match="pydantic model class"):
        pt.ChatRequest(messages=messages, output="Person")  # type: ignore[arg-type]
    with pytest.raises(pt.InvalidRequestError, match="response_format"):
        pt.ChatRequest(messages=messages, response_format={"type": "yaml"})
    with pytest.raises(pt.InvalidRequestError, match="guided_choice"):
        pt.ChatRequest(messages=messages, guided_choice=[])
    # Untyped, in extra, as before they were typed: still passed through.
    legacy = pt.ChatRequest(messages=messages, extra={"guided_json": PERSON})
    assert legacy.to_body("m")["guided_json"] == PERSON


def test_guided_fields_and_response_format_are_sent() -> None:
    request = pt.ChatRequest(
        messages=[{"role": "user", "content": "x"}],
        guided_choice=["yes", "no"],
        guided_regex=r"\d+",
        response_format={"type": "json_object"},
        guided_json='{"type": "object"}',
    )
    body = request.to_body("alfred-4.2")
    assert body["guided_choice"] == ["yes", "no"]
    assert body["guided_regex"] == r"\d+"
    assert body["response_format"] == {"type": "json_object"}
    assert body["guided_json"] == '{"type": "object"}'


def test_output_schema_names_and_strict() -> None:
    titled = pt.OutputSchema({"title": "An invoice!", "type": "object"}, strict=True)
    fields: dict[str, Any] = titled.body_fields()
    assert fields["response_format"]["json_schema"]["name"] == "An_invoice_"
    assert fields["response_format"]["json_schema"]["strict"] is True
    with pytest.raises(pt.InvalidRequestError, match="form"):
        pt.OutputSchema(PERSON, form="xml")  # type: ignore[arg-type]
