"""ChatRequest validation and body building; ChatCompletion / Usage / ModelInfo parsing."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

import paradigm_trio as pt

from .helpers import MESSAGES, completion_json

# ---------------------------------------------------------------------------- ChatRequest


def test_request_defaults_and_body() -> None:
    req = pt.ChatRequest(messages=MESSAGES)
    assert req.model is None
    assert req.custom_id is None
    assert req.extra == {}
    assert req.to_body("alfred-4.2") == {
        "model": "alfred-4.2",
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_request_body_has_every_given_field_and_extra() -> None:
    req = pt.ChatRequest(
        messages=MESSAGES,
        model="m",
        temperature=0.4,
        max_tokens=150,
        top_p=0.9,
        stop=["a", "b"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        extra={"guided_json": {"type": "object"}},
    )
    assert req.stop == ("a", "b")
    assert req.to_body("default") == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.4,
        "max_tokens": 150,
        "top_p": 0.9,
        "stop": ["a", "b"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "guided_json": {"type": "object"},
    }


def test_request_copies_its_inputs() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    extra = {"guided_json": {}}
    req = pt.ChatRequest(messages=messages, extra=extra)
    messages[0]["content"] = "changed"
    messages.append({"role": "user", "content": "more"})
    extra["tools"] = []  # type: ignore[assignment]
    assert req.messages == ({"role": "user", "content": "Hi"},)
    assert req.extra == {"guided_json": {}}


def test_request_is_frozen_and_keyword_only() -> None:
    req = pt.ChatRequest(messages=MESSAGES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.temperature = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        pt.ChatRequest(MESSAGES)  # type: ignore[misc]


def test_assistant_tool_call_message_may_have_no_content() -> None:
    msgs = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "1"},
    ]
    assert len(pt.ChatRequest(messages=msgs).messages) == 3


def test_content_may_be_a_list_of_parts() -> None:
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert pt.ChatRequest(messages=msgs).messages[0]["content"] == [{"type": "text", "text": "hi"}]


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "must not be empty"),
        ((), "must not be empty"),
        ("Hi", "must be a list"),
        (None, "must be a list"),
        ([["user", "Hi"]], r"messages\[0\] must be a dict"),
        ([{"content": "Hi"}], r"messages\[0\] has no 'role'"),
        ([{"role": "user"}], r"messages\[0\] \(user\) has no 'content'"),
        ([{"role": "user", "content": None}], "content None"),
        ([{"role": "user", "content": 42}], "must be a string or a list"),
        ([{"role": "robot", "content": "Hi"}], "unknown role 'robot'"),
        (
            [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}],
            r"messages\[1\] has unknown role",
        ),
        ([{"role": "assistant"}], "has no 'content'"),
    ],
)
def test_bad_messages(messages: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pt.ChatRequest(messages=messages)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("temperature", "hot", "temperature must be a number"),
        ("temperature", True, "temperature must be a number"),
        ("temperature", -0.1, "temperature must be between"),
        ("temperature", 2.5, "temperature must be between"),
        ("temperature", math.nan, "temperature must be between"),
        ("top_p", 1.5, "top_p must be between"),
        ("presence_penalty", 3, "presence_penalty"),
        ("frequency_penalty", -3, "frequency_penalty"),
        ("max_tokens", 0, "max_tokens must be a positive integer"),
        ("max_tokens", -5, "max_tokens"),
        ("max_tokens", 1.5, "max_tokens"),
        ("max_tokens", "100", "max_tokens"),
        ("max_tokens", True, "max_tokens"),
        ("seed", 1.0, "seed must be an integer"),
        ("seed", False, "seed"),
        ("stop", ["a", 1], "stop must be a string or a list of strings"),
        ("model", "", "model must be a non-empty string"),
        ("model", 3, "model"),
        ("custom_id", "", "custom_id must be a non-empty string"),
        ("custom_id", 12, "custom_id"),
        ("extra", ["x"], "extra must be a dict"),
    ],
)
def test_bad_parameters(field: str, value: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pt.ChatRequest(messages=MESSAGES, **{field: value})


@pytest.mark.parametrize("key", ["model", "messages", "temperature", "max_tokens", "stream", "n"])
def test_extra_may_not_override_a_modelled_field(key: str) -> None:
    with pytest.raises(ValueError, match=f"extra may not set {key}"):
        pt.ChatRequest(messages=MESSAGES, extra={key: 1})


def test_good_boundary_parameters() -> None:
    req = pt.ChatRequest(messages=MESSAGES, temperature=0, top_p=1, max_tokens=1, stop="END")
    assert req.to_body("m")["temperature"] == 0
    assert req.to_body("m")["stop"] == "END"
    assert pt.ChatRequest(messages=MESSAGES, temperature=2).temperature == 2


def test_estimated_tokens() -> None:
    req = pt.ChatRequest(messages=[{"role": "user", "content": "x" * 40}], max_tokens=100)
    assert req.estimated_tokens() == 10 + 4 + 100
    parts = [{"role": "user", "content": [{"type": "text", "text": "y" * 8}]}]
    assert pt.ChatRequest(messages=parts).estimated_tokens() == 2 + 4 + 256


# ---------------------------------------------------------------------------- ChatCompletion


def test_parse_completion() -> None:
    data = completion_json("Bonjour", id="c-1", model="alfred", prompt_tokens=3)
    c = pt.ChatCompletion.from_json(data, "req-1")
    assert c.text == "Bonjour"
    assert c.id == "c-1"
    assert c.model == "alfred"
    assert c.created == 1_700_000_000
    assert c.request_id == "req-1"
    assert c.finish_reason == "stop"
    assert c.usage == pt.Usage(3, 7, 10)
    (choice,) = c.choices
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert (choice.message.role, choice.message.content) == ("assistant", "Bonjour")
    assert c.choices[0].message.raw == {"role": "assistant", "content": "Bonjour"}
    assert c.raw is data


def test_parse_keeps_unmodelled_fields_in_raw() -> None:
    data = completion_json()
    data["system_fingerprint"] = "fp"
    data["choices"][0]["message"]["annotations"] = [{"type": "url_citation"}]
    c = pt.ChatCompletion.from_json(data)
    assert c.raw["system_fingerprint"] == "fp"
    assert c.choices[0].message.raw["annotations"] == [{"type": "url_citation"}]


def test_a_malformed_tool_call_is_an_invalid_response() -> None:
    # (Tool calls are typed: one without its function cannot be used.)
    data = completion_json()
    data["choices"][0]["message"]["tool_calls"] = [{"id": "t"}]
    with pytest.raises(pt.APIResponseValidationError, match=r"tool_calls\[0\]\.function"):
        pt.ChatCompletion.from_json(data)


def test_parse_without_usage_or_content() -> None:
    data = completion_json()
    del data["usage"]
    data["choices"][0]["message"]["content"] = None
    c = pt.ChatCompletion.from_json(data)
    assert c.usage is None  # unknown, not zero
    assert c.text == ""


@pytest.mark.parametrize(
    "usage", [None, {}, {"prompt_tokens": None, "completion_tokens": None}, "n/a"]
)
def test_usage_without_token_counts_is_unknown(usage: object) -> None:
    data = completion_json()
    data["usage"] = usage
    assert pt.ChatCompletion.from_json(data).usage is None


def test_usage_of_zeros_sent_by_the_server_is_kept() -> None:
    data = completion_json()
    data["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert pt.ChatCompletion.from_json(data).usage == pt.Usage(0, 0, 0)
    data["usage"] = {"completion_tokens": 0}
    assert pt.ChatCompletion.from_json(data).usage == pt.Usage(0, 0, 0)


def test_usage_total_is_computed_when_missing() -> None:
    data = completion_json()
    data["usage"] = {"prompt_tokens": 2, "completion_tokens": 3}
    assert pt.ChatCompletion.from_json(data).usage.total_tokens == 5


def test_usage_adds() -> None:
    assert pt.Usage(1, 2, 3) + pt.Usage(10, 20, 30) == pt.Usage(11, 22, 33)


def _without_choices() -> dict[str, Any]:
    data = completion_json()
    del data["choices"]
    return data


def _choices(value: Any) -> dict[str, Any]:
    data = completion_json()
    data["choices"] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        [],
        "text",
        None,
        {},
        _without_choices(),
        _choices([]),
        _choices("x"),
        _choices([{"index": 0}]),
        _choices([{"message": "hello"}]),
        _choices([{"message": {"role": "assistant", "content": 5}}]),
        {**completion_json(), "created": "yesterday"},
    ],
)
def test_invalid_completion_bodies(data: Any) -> None:
    with pytest.raises(pt.APIResponseValidationError) as info:
        pt.ChatCompletion.from_json(data, "req-2")
    assert info.value.request_id == "req-2"
    assert info.value.body == data


def test_completion_is_frozen() -> None:
    c = pt.ChatCompletion.from_json(completion_json())
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.id = "other"  # type: ignore[misc]


def test_model_info_defaults() -> None:
    info = pt.ModelInfo("alfred-4.2")
    assert (info.id, info.owned_by, info.created, info.raw) == ("alfred-4.2", None, None, {})


def test_chunk_usage_is_none_unless_the_server_sent_counts() -> None:
    base = {"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}}]}
    assert pt.ChatCompletionChunk.from_json({**base, "usage": None}).usage is None
    assert pt.ChatCompletionChunk.from_json({**base, "usage": {}}).usage is None
    zeros = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert pt.ChatCompletionChunk.from_json({**base, "usage": zeros}).usage == pt.Usage()
