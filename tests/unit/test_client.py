"""``Client``: construction, lifecycle, chat, models, error mapping, timeouts, events,
statistics, security and checkpoints.  No sockets: ``httpx2.MockTransport`` + MockClock."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

import paradigm_trio as pt

from .helpers import (
    API_KEY,
    BASE_URL,
    MESSAGES,
    Events,
    Script,
    after,
    completion_json,
    fixed,
    hang,
    make_client,
    ok,
    status,
)
from .test_streaming import answer, sse

NO_RETRY = pt.RetryPolicy.no_retries()

# ============================================================================ construction


def test_missing_api_key_names_the_env_var() -> None:
    with pytest.raises(pt.ConfigurationError, match="PARADIGM_API_KEY"):
        pt.Client(base_url=BASE_URL)


def test_empty_api_key_is_missing() -> None:
    with pytest.raises(pt.ConfigurationError, match="PARADIGM_API_KEY"):
        pt.Client(api_key="")


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        pt.Client()


@pytest.mark.parametrize("key", [API_KEY + "\n", " " + API_KEY, "sk-a\rb", "sk\0x"])
def test_key_with_whitespace_or_control_characters_is_refused(key: str) -> None:
    with pytest.raises(pt.ConfigurationError) as info:
        pt.Client(api_key=key)
    assert key.strip() not in str(info.value)


@pytest.mark.anyio
async def test_api_key_and_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARADIGM_API_KEY", "sk-from-env")
    monkeypatch.setenv("PARADIGM_BASE_URL", "http://env.example/api/v9/")
    script = Script(ok())
    async with pt.Client(transport=httpx2.MockTransport(script)) as client:
        assert client.base_url == "http://env.example/api/v9"
        await client.chat(MESSAGES)
    (request,) = script.requests
    assert request.headers["authorization"] == "Bearer sk-from-env"
    assert str(request.url) == "http://env.example/api/v9/chat/completions"


@pytest.mark.anyio
async def test_explicit_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARADIGM_API_KEY", "sk-from-env")
    monkeypatch.setenv("PARADIGM_BASE_URL", "http://env.example/api/v9")
    script = Script(ok())
    async with make_client(script) as client:
        assert client.base_url == BASE_URL
        await client.chat(MESSAGES)
    (request,) = script.requests
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert str(request.url) == f"{BASE_URL}/chat/completions"


def test_default_base_url() -> None:
    client = pt.Client(api_key=API_KEY)
    assert client.base_url == pt.DEFAULT_BASE_URL


def test_empty_base_url_env_falls_back_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARADIGM_BASE_URL", "")
    assert pt.Client(api_key=API_KEY).base_url == pt.DEFAULT_BASE_URL


@pytest.mark.parametrize(
    "url", ["ftp://example.com/api", "example.com/api", "/api/v2", "http://", "", "not a url"]
)
def test_bad_base_url(url: str) -> None:
    with pytest.raises(pt.ConfigurationError, match="base URL"):
        pt.Client(api_key=API_KEY, base_url=url)


def test_bad_base_url_from_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARADIGM_BASE_URL", "localhost:8000")
    with pytest.raises(pt.ConfigurationError, match="PARADIGM_BASE_URL"):
        pt.Client(api_key=API_KEY)


@pytest.mark.anyio
async def test_http_client_and_transport_together_are_refused() -> None:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(Script()))
    with pytest.raises(pt.ConfigurationError, match="not both"):
        pt.Client(api_key=API_KEY, http_client=http, transport=httpx2.MockTransport(Script()))
    await http.aclose()


@pytest.mark.parametrize("model", ["", None, 3])
def test_bad_default_model(model: Any) -> None:
    with pytest.raises(pt.ConfigurationError, match="model"):
        pt.Client(api_key=API_KEY, model=model)


def test_defaults_are_exposed() -> None:
    client = pt.Client(api_key=API_KEY)
    assert client.model == pt.DEFAULT_MODEL
    assert client.retry == pt.RetryPolicy()
    assert client.timeouts == pt.Timeouts()
    assert client.limits == pt.Limits()
    assert client.statistics().concurrency == 64


# ============================================================================ lifecycle


@pytest.mark.anyio
async def test_state_transitions() -> None:
    client = make_client(Script())
    assert client.state is pt.ClientState.UNOPENED
    async with client as entered:
        assert entered is client
        assert client.state is pt.ClientState.OPENED
    assert client.state is pt.ClientState.CLOSED


@pytest.mark.anyio
async def test_aclose_is_idempotent() -> None:
    client = make_client(Script())
    async with client:
        pass
    await client.aclose()
    await client.aclose()
    assert client.state is pt.ClientState.CLOSED


@pytest.mark.anyio
async def test_aclose_without_opening() -> None:
    client = make_client(Script())
    await client.aclose()
    assert client.state is pt.ClientState.CLOSED
    with pytest.raises(RuntimeError):
        async with client:
            pass


@pytest.mark.anyio
async def test_use_after_close_is_a_runtime_error() -> None:
    script = Script(default=lambda r: ok())
    client = make_client(script)
    async with client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await client.chat(MESSAGES)
    with pytest.raises(RuntimeError, match="closed"):
        await client.send(pt.ChatRequest(messages=MESSAGES))
    with pytest.raises(RuntimeError, match="closed"):
        await client.models()
    assert script.calls == 0


@pytest.mark.anyio
async def test_reentering_is_a_runtime_error() -> None:
    client = make_client(Script())
    async with client:
        with pytest.raises(RuntimeError, match="open"):
            async with client:
                pass
        assert client.state is pt.ClientState.OPENED
    with pytest.raises(RuntimeError, match="closed"):
        async with client:
            pass


@pytest.mark.anyio
async def test_usable_without_a_context_manager() -> None:
    client = make_client(Script(ok()))
    assert (await client.chat(MESSAGES)).text == "Hello there"
    # like httpx: using a client does not open it, so `async with` is still possible
    assert client.state is pt.ClientState.UNOPENED
    await client.aclose()
    assert client.state is pt.ClientState.CLOSED


@pytest.mark.anyio
async def test_injected_http_client_is_used_and_not_closed() -> None:
    script = Script(default=lambda r: ok())
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(script))
    async with pt.Client(api_key=API_KEY, base_url=BASE_URL, http_client=http) as client:
        await client.chat(MESSAGES)
    assert script.calls == 1
    assert not http.is_closed
    response = await http.get("http://test/anything")
    assert response.status_code == 200
    await http.aclose()


class ClosingTransport(httpx2.MockTransport):
    closed = 0

    async def aclose(self) -> None:
        self.closed += 1
        await super().aclose()


@pytest.mark.anyio
async def test_the_transport_it_sends_with_is_closed_with_it() -> None:
    transport = ClosingTransport(Script())
    async with pt.Client(api_key=API_KEY, transport=transport):
        pass
    assert transport.closed == 1


@pytest.mark.anyio
async def test_its_own_transport_is_closed_and_no_httpx2_client_is_built() -> None:
    client = pt.Client(api_key=API_KEY)
    assert client._httpx is None  # (its settings would apply to nothing)
    async with client:
        pass
    assert isinstance(client._direct, pt.TrioTransport)
    assert client._direct._pool.closed


# ============================================================================ checkpoints


@pytest.mark.anyio
async def test_aclose_on_closed_client_checkpoints() -> None:
    client = make_client(Script())
    await client.aclose()
    with trio.testing.assert_checkpoints():
        await client.aclose()


@pytest.mark.anyio
async def test_aclose_with_injected_http_client_checkpoints() -> None:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(Script()))
    client = pt.Client(api_key=API_KEY, http_client=http)
    with trio.testing.assert_checkpoints():
        await client.aclose()
    await http.aclose()


@pytest.mark.anyio
async def test_first_aclose_checkpoints() -> None:
    # Every public async function checkpoints (STYLE.md, "Checkpoint discipline"), even when
    # closing the owned transport does not (``MockTransport.aclose`` is a no-op).
    client = make_client(Script())
    with trio.testing.assert_checkpoints():
        await client.aclose()


@pytest.mark.anyio
async def test_aenter_and_chat_checkpoint() -> None:
    client = make_client(Script(default=lambda r: ok()))
    with trio.testing.assert_checkpoints():
        await client.__aenter__()
    with trio.testing.assert_checkpoints():
        await client.chat(MESSAGES)
    with trio.testing.assert_checkpoints():
        await client.chat(MESSAGES, retry=NO_RETRY)
    await client.aclose()


# ============================================================================ chat


@pytest.mark.anyio
async def test_chat_sends_the_expected_request() -> None:
    script = Script(ok(headers={"x-request-id": "req-42"}))
    async with make_client(script, headers={"X-Team": "blue"}) as client:
        c = await client.chat(
            MESSAGES,
            temperature=0.4,
            max_tokens=150,
            top_p=0.5,
            stop=["\n"],
            seed=3,
            extra={"guided_json": {"type": "object"}},
        )
    (request,) = script.requests
    assert request.method == "POST"
    assert str(request.url) == "http://test/api/v2/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("paradigm-trio/")
    assert request.headers["x-team"] == "blue"
    assert request.headers["idempotency-key"]
    assert json.loads(request.content) == {
        "model": "alfred-4.2",
        "messages": MESSAGES,
        "temperature": 0.4,
        "max_tokens": 150,
        "top_p": 0.5,
        "stop": ["\n"],
        "seed": 3,
        "guided_json": {"type": "object"},
    }
    assert c.request_id == "req-42"


@pytest.mark.anyio
async def test_chat_returns_a_typed_completion() -> None:
    body = completion_json("Bonjour !", id="cmpl-7", model="alfred-4.2", prompt_tokens=11)
    script = Script(httpx2.Response(200, json=body))
    async with make_client(script) as client:
        c = await client.chat(MESSAGES)
    assert isinstance(c, pt.ChatCompletion)
    assert c.text == "Bonjour !"
    assert c.id == "cmpl-7"
    assert c.model == "alfred-4.2"
    assert c.usage == pt.Usage(11, 7, 18)
    assert c.choices[0].message.content == "Bonjour !"
    assert c.raw == body
    assert c.request_id is None


@pytest.mark.anyio
async def test_default_model_and_per_call_model() -> None:
    script = Script(ok(), ok())
    async with make_client(script, model="my-model") as client:
        await client.chat(MESSAGES)
        await client.chat(MESSAGES, model="other")
    assert [b["model"] for b in script.bodies()] == ["my-model", "other"]


@pytest.mark.anyio
async def test_chat_accepts_a_chat_request_and_keywords_override_it() -> None:
    script = Script(ok(), ok())
    request = pt.ChatRequest(messages=MESSAGES, model="m1", temperature=0.1, custom_id="a")
    async with make_client(script) as client:
        await client.chat(request)
        await client.chat(request, temperature=0.9, model="m2")
    first, second = script.bodies()
    assert (first["model"], first["temperature"]) == ("m1", 0.1)
    assert (second["model"], second["temperature"]) == ("m2", 0.9)


@pytest.mark.anyio
async def test_send_a_prepared_request() -> None:
    script = Script(ok())
    async with make_client(script) as client:
        request = client.make_request(MESSAGES, max_tokens=5, custom_id="x")
        assert request == pt.ChatRequest(messages=MESSAGES, max_tokens=5, custom_id="x")
        c = await client.send(request)
    assert c.text == "Hello there"
    assert script.bodies()[0]["max_tokens"] == 5


# ============================================================================ validation


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("messages", "kwargs", "match"),
    [
        ([], {}, "messages must not be empty"),
        ([{"content": "Hi"}], {}, "has no 'role'"),
        ([{"role": "user"}], {}, "has no 'content'"),
        ([{"role": "wizard", "content": "Hi"}], {}, "unknown role"),
        ("Hi", {}, "must be a list|must be a dict"),
        (MESSAGES, {"temperature": "warm"}, "temperature must be a number"),
        (MESSAGES, {"temperature": 7}, "temperature must be between"),
        (MESSAGES, {"temperature": -1}, "temperature must be between"),
        (MESSAGES, {"max_tokens": 0}, "max_tokens"),
        (MESSAGES, {"max_tokens": "150"}, "max_tokens"),
        (MESSAGES, {"top_p": 2}, "top_p"),
        (MESSAGES, {"extra": {"model": "x"}}, "extra may not set model"),
        (MESSAGES, {"extra": {"stream": True}}, "extra may not set stream"),
        (MESSAGES, {"extra": {"messages": []}}, "extra may not set messages"),
        (MESSAGES, {"model": ""}, "model"),
        (MESSAGES, {"custom_id": ""}, "custom_id"),
    ],
)
async def test_bad_input_is_refused_before_sending(
    messages: Any, kwargs: dict[str, Any], match: str
) -> None:
    script = Script(default=lambda r: ok())
    async with make_client(script) as client:
        with pytest.raises(ValueError, match=match):
            await client.chat(messages, **kwargs)
        assert client.statistics().started == 0
    assert script.calls == 0


# ============================================================================ idempotency


@pytest.mark.anyio
async def test_idempotency_key_is_stable_across_retries_and_unique_per_request() -> None:
    script = Script(status(503), httpx2.ReadError, ok(), status(500), ok(), default=None)
    async with make_client(script, retry=fixed()) as client:
        await client.chat(MESSAGES)
        await client.chat(MESSAGES)
    keys = script.header("idempotency-key")
    assert all(keys)
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] == keys[4]
    assert keys[0] != keys[3]


@pytest.mark.anyio
async def test_idempotency_key_is_derived_stably_from_custom_id() -> None:
    script = Script(default=lambda r: ok())
    async with make_client(script) as a, make_client(script) as b:
        await a.chat(MESSAGES, custom_id="row-1")
        await b.chat(MESSAGES, custom_id="row-1")
        await a.chat([{"role": "user", "content": "other"}], custom_id="row-1")
        await a.chat(MESSAGES, custom_id="row-2")
    k1, k2, k3, k4 = script.header("idempotency-key")
    assert k1 == k2 == k3
    assert k4 != k1
    assert k1 is not None
    assert "row-1" not in k1


@pytest.mark.anyio
async def test_models_sends_an_idempotency_key() -> None:
    script = Script(httpx2.Response(200, json={"data": []}))
    async with make_client(script) as client:
        await client.models()
    assert script.header("idempotency-key")[0]


# ============================================================================ error mapping


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, pt.BadRequestError),
        (401, pt.AuthenticationError),
        (403, pt.PermissionDeniedError),
        (404, pt.NotFoundError),
        (409, pt.ConflictError),
        (422, pt.UnprocessableEntityError),
        (429, pt.RateLimitError),
        (500, pt.InternalServerError),
        (502, pt.InternalServerError),
        (503, pt.InternalServerError),
        (504, pt.InternalServerError),
        (507, pt.InternalServerError),
        (408, pt.APIStatusError),
        (418, pt.APIStatusError),
        (451, pt.APIStatusError),
    ],
)
async def test_status_maps_to_error_class(code: int, cls: type[pt.APIStatusError]) -> None:
    script = Script(status(code, headers={"x-request-id": f"req-{code}"}))
    async with make_client(script, retry=NO_RETRY) as client:
        with pytest.raises(pt.APIStatusError) as info:
            await client.chat(MESSAGES)
    assert type(info.value) is cls
    assert info.value.status_code == code
    assert info.value.request_id == f"req-{code}"
    assert str(info.value).startswith(f"Error code: {code} - ")
    assert f"req-{code}" in str(info.value)


@pytest.mark.anyio
async def test_openai_error_envelope() -> None:
    body = {
        "error": {
            "message": "temperature is too high",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }
    script = Script(status(400, body, headers={"x-request-id": "abc"}))
    async with make_client(script) as client:
        with pytest.raises(pt.BadRequestError) as info:
            await client.chat(MESSAGES)
    err = info.value
    assert err.message == "Error code: 400 - temperature is too high"
    assert (err.code, err.type, err.param) == (
        "invalid_value",
        "invalid_request_error",
        "temperature",
    )
    assert err.body == body
    assert err.request_id == "abc"
    assert err.headers["x-request-id"] == "abc"
    assert err.custom_id is None


@pytest.mark.anyio
async def test_detail_string_body() -> None:
    script = Script(status(401, {"detail": "Invalid token."}))
    async with make_client(script) as client:
        with pytest.raises(pt.AuthenticationError) as info:
            await client.chat(MESSAGES, custom_id="c-1")
    assert info.value.message == "Error code: 401 - Invalid token."
    assert info.value.body == {"detail": "Invalid token."}
    assert info.value.code is None
    assert info.value.custom_id == "c-1"


@pytest.mark.anyio
async def test_detail_list_body() -> None:
    detail = [{"loc": ["body", "messages"], "msg": "field required", "type": "missing"}]
    script = Script(status(422, {"detail": detail}))
    async with make_client(script) as client:
        with pytest.raises(pt.UnprocessableEntityError) as info:
            await client.chat(MESSAGES)
    assert "field required" in info.value.message
    assert info.value.body == {"detail": detail}


@pytest.mark.anyio
async def test_error_string_and_message_bodies() -> None:
    script = Script(status(403, {"error": "forbidden model"}), status(404, {"message": "nope"}))
    async with make_client(script) as client:
        with pytest.raises(pt.PermissionDeniedError, match="forbidden model"):
            await client.chat(MESSAGES)
        with pytest.raises(pt.NotFoundError, match="nope"):
            await client.chat(MESSAGES)


@pytest.mark.anyio
async def test_plain_text_error_body() -> None:
    script = Script(status(502, text="<html>Bad Gateway (nginx)</html>"))
    async with make_client(script, retry=NO_RETRY) as client:
        with pytest.raises(pt.InternalServerError) as info:
            await client.chat(MESSAGES)
    assert info.value.body == "<html>Bad Gateway (nginx)</html>"
    assert "Bad Gateway (nginx)" in info.value.message
    assert info.value.code is None


@pytest.mark.anyio
async def test_empty_error_body_uses_the_reason_phrase() -> None:
    script = Script(httpx2.Response(503, content=b""))
    async with make_client(script, retry=NO_RETRY) as client:
        with pytest.raises(pt.InternalServerError) as info:
            await client.chat(MESSAGES)
    assert info.value.message == "Error code: 503 - Service Unavailable"


@pytest.mark.anyio
async def test_error_carries_custom_id_and_history() -> None:
    script = Script(status(500), status(400))
    async with make_client(script, retry=fixed()) as client:
        with pytest.raises(pt.BadRequestError) as info:
            await client.chat(MESSAGES, custom_id="job-9")
    assert info.value.custom_id == "job-9"
    assert [a.status for a in info.value.attempts] == [500, 400]


# ============================================================================ timeouts


@pytest.mark.anyio
async def test_http_timeouts_reach_the_transport() -> None:
    seen: list[Any] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.extensions["timeout"])
        return ok()

    timeouts = pt.Timeouts(connect=1, read=2, write=3)
    async with make_client(handler, timeouts=timeouts) as client:
        await client.chat(MESSAGES)
        await client.chat(MESSAGES, timeouts=pt.Timeouts(connect=4, read=None, write=6))
    assert seen == [
        {"connect": 1, "read": 2, "write": 3, "pool": None},
        {"connect": 4, "read": None, "write": 6, "pool": None},
    ]


def test_the_fast_lane_converts_the_one_timeouts_value_where_it_applies_it() -> None:
    from paradigm_trio._transport import FastLane

    timeouts = pt.Timeouts(connect=1, read=None, write=3)
    assert FastLane.timeouts(timeouts) == (1, math.inf, 3)


@pytest.mark.anyio
async def test_a_streamed_exchange_has_no_http_read_timeout() -> None:
    seen: list[Any] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.extensions["timeout"])
        return sse(*answer("hi"))[0]

    async with make_client(handler, timeouts=pt.Timeouts(connect=1, read=2, write=3)) as client:
        async with client.chat_stream(MESSAGES) as stream:
            async for _ in stream:
                pass
    assert seen == [{"connect": 1, "read": None, "write": 3, "pool": None}]


@pytest.mark.anyio
async def test_total_timeout_fires_during_an_attempt_with_history() -> None:
    script = Script(default=hang)
    timeouts = pt.Timeouts(attempt=3, total=10)
    async with make_client(script, retry=fixed(attempts=10), timeouts=timeouts) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            await client.chat(MESSAGES)
    err = info.value
    assert err.which == "total"
    assert trio.current_time() == 10
    assert script.times == [0, 3.5, 7.5]
    assert [(a.number, a.status, a.cause, a.delay) for a in err.attempts] == [
        (1, None, "timeout", 0.5),
        (2, None, "timeout", 1.0),
        (3, None, "timeout", None),
    ]
    assert err.attempts[2].elapsed == pytest.approx(2.5)
    assert "Timeouts.total=10s" in str(err)
    stats = client.statistics()
    assert (stats.failed, stats.cancelled, stats.in_flight) == (1, 0, 0)


@pytest.mark.anyio
async def test_total_timeout_on_a_single_slow_attempt() -> None:
    script = Script(after(100, ok()))
    async with make_client(script, timeouts=pt.Timeouts(total=4)) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            await client.chat(MESSAGES)
    assert info.value.which == "total"
    assert trio.current_time() == 4
    assert len(info.value.attempts) == 1


@pytest.mark.anyio
async def test_per_call_timeouts_win() -> None:
    script = Script(default=hang)
    async with make_client(script, timeouts=pt.Timeouts(total=100)) as client:
        with pytest.raises(pt.APITimeoutError):
            await client.chat(MESSAGES, timeouts=pt.Timeouts(total=2))
    assert trio.current_time() == 2


@pytest.mark.anyio
async def test_deadline_in_the_past_sends_nothing() -> None:
    script = Script(default=lambda r: ok())
    async with make_client(script) as client:
        await trio.sleep(5)
        request = pt.ChatRequest(messages=MESSAGES)
        with pytest.raises(pt.RequestCancelled) as info:
            await client.send(request, deadline=trio.current_time() - 1)
        with pytest.raises(pt.RequestCancelled):
            await client.send(request, deadline=trio.current_time())
        stats = client.statistics()
    assert info.value.reason == "deadline"
    assert script.calls == 0
    assert trio.current_time() == 5
    assert stats.attempts == 0
    assert (stats.cancelled, stats.failed) == (2, 0)


@pytest.mark.anyio
async def test_deadline_in_the_past_reports_nothing_sent() -> None:
    # RequestCancelled.sent: "whether any attempt of it was sent"; APIError.attempts:
    # "every attempt made".  Nothing was sent, so neither may claim an attempt.
    script = Script(default=lambda r: ok())
    async with make_client(script) as client:
        with pytest.raises(pt.RequestCancelled) as info:
            await client.send(pt.ChatRequest(messages=MESSAGES), deadline=-1)
    assert script.calls == 0
    assert info.value.sent is False
    assert info.value.attempts == ()


@pytest.mark.anyio
async def test_deadline_while_waiting_for_a_slot_reports_nothing_sent() -> None:
    script = Script(hang, default=lambda r: ok())
    client = make_client(script, limits=pt.Limits(concurrency=1))
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(client.chat, MESSAGES)  # holds the only slot
        await trio.sleep(1)
        with pytest.raises(pt.RequestCancelled) as info:
            await client.send(pt.ChatRequest(messages=MESSAGES), deadline=2)
        nursery.cancel_scope.cancel()
    assert script.calls == 1
    assert info.value.sent is False
    assert info.value.attempts == ()


@pytest.mark.anyio
async def test_deadline_during_an_attempt() -> None:
    script = Script(after(10, ok()))
    async with make_client(script) as client:
        with pytest.raises(pt.RequestCancelled) as info:
            await client.send(pt.ChatRequest(messages=MESSAGES), deadline=3)
        stats = client.statistics()
    err = info.value
    assert (err.reason, err.sent) == ("deadline", True)
    assert trio.current_time() == 3
    assert "deadline" in str(err)
    assert [(a.number, a.status, a.elapsed) for a in err.attempts] == [(1, None, 3)]
    assert (stats.cancelled, stats.failed, stats.in_flight) == (1, 0, 0)


@pytest.mark.anyio
async def test_total_timeout_before_the_deadline_is_a_timeout() -> None:
    script = Script(default=hang)
    async with make_client(script, timeouts=pt.Timeouts(total=2)) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            await client.send(pt.ChatRequest(messages=MESSAGES), deadline=50)
    assert info.value.which == "total"
    assert trio.current_time() == 2


# ============================================================================ cancellation


@pytest.mark.anyio
async def test_external_cancellation_propagates_and_is_counted() -> None:
    events = Events()
    script = Script(hang)
    async with make_client(script, on_event=events) as client:
        with trio.move_on_after(5) as scope:
            await client.chat(MESSAGES)
        assert scope.cancelled_caught
        stats = client.statistics()
    assert trio.current_time() == 5
    assert (stats.started, stats.cancelled, stats.failed, stats.succeeded) == (1, 1, 0, 0)
    assert stats.in_flight == 0
    assert not events.of(pt.AttemptFailed)


@pytest.mark.anyio
async def test_cancellation_is_not_converted_to_an_api_error() -> None:
    script = Script(hang)
    async with make_client(script) as client:
        with trio.CancelScope() as scope:
            scope.deadline = trio.current_time() + 1
            try:
                await client.chat(MESSAGES)
            except pt.APIError:  # pragma: no cover - the bug this test guards against
                pytest.fail("cancellation surfaced as an APIError")
        assert scope.cancelled_caught


@pytest.mark.anyio
async def test_cancellation_during_backoff_stops_retrying() -> None:
    script = Script(status(503), default=lambda r: ok())
    async with make_client(script, retry=fixed(initial_delay=10)) as client:
        with trio.move_on_after(5):
            await client.chat(MESSAGES)
        await trio.sleep(30)
        stats = client.statistics()
    assert script.calls == 1
    assert stats.cancelled == 1
    assert stats.retries == 0  # scheduled (RetryScheduled), never made: not counted


@pytest.mark.anyio
async def test_cancelled_requests_do_not_leak_concurrency_slots() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await trio.sleep(1)
            return ok()
        finally:
            in_flight -= 1

    async with make_client(handler, limits=pt.Limits(concurrency=10)) as client:
        for _ in range(100):
            with trio.move_on_after(0.5):
                async with trio.open_nursery() as nursery:
                    for _ in range(10):
                        nursery.start_soon(client.chat, MESSAGES)
        assert client.statistics().cancelled == 1000
        assert client.statistics().in_flight == 0
        peak = 0
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(client.chat, MESSAGES)
        assert trio.current_time() - start == 2  # 20 requests of 1 s at concurrency 10
        assert peak == 10
        assert client.statistics().succeeded == 20


@pytest.mark.anyio
async def test_concurrency_is_capped_by_limits() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await trio.sleep(1)
        in_flight -= 1
        return ok()

    async with make_client(handler, limits=pt.Limits(concurrency=3)) as client:
        assert client.statistics().concurrency == 3
        async with trio.open_nursery() as nursery:
            for _ in range(7):
                nursery.start_soon(client.chat, MESSAGES)
    assert peak == 3
    assert trio.current_time() == 3


# ============================================================================ events


@pytest.mark.anyio
async def test_events_for_a_rate_limited_then_successful_request() -> None:
    events = Events()
    headers = {
        "retry-after-ms": "200",
        "x-ratelimit-remaining-requests": "0",
        "x-request-id": "r1",
        "set-cookie": "a=b",
    }
    script = Script(status(429, headers=headers), ok(prompt_tokens=4, completion_tokens=6))
    async with make_client(script, retry=fixed(), on_event=events) as client:
        await client.chat(MESSAGES, custom_id="cid")
    key = script.header("idempotency-key")[0]
    assert events.kinds() == [
        "AttemptStarted",
        "RateLimited",
        "AttemptFailed",
        "RetryScheduled",
        "AttemptStarted",
        "RequestFinished",
    ]
    started1, limited, failed, scheduled, started2, finished = events
    assert started1 == pt.AttemptStarted("cid", key, 1, 0.0)
    assert started2 == pt.AttemptStarted("cid", key, 2, 0.2)
    assert limited.custom_id == "cid"
    assert limited.idempotency_key == key
    assert limited.retry_after == 0.2
    assert dict(limited.headers) == {
        "retry-after-ms": "200",
        "x-ratelimit-remaining-requests": "0",
    }
    assert failed.custom_id == "cid"
    assert failed.will_retry is True
    assert failed.attempt.number == 1
    assert failed.attempt.status == 429
    assert failed.attempt.cause == "429"
    assert failed.attempt.delay == 0.2
    assert failed.attempt.request_id == "r1"
    assert scheduled == pt.RetryScheduled("cid", key, 1, "429", 0.2, True)
    assert finished == pt.RequestFinished("cid", key, True, 2, pytest.approx(0.2), 10)


@pytest.mark.anyio
async def test_events_for_a_failed_request() -> None:
    events = Events()
    script = Script(httpx2.ConnectError, status(401))
    async with make_client(script, retry=fixed(), on_event=events) as client:
        with pytest.raises(pt.AuthenticationError):
            await client.chat(MESSAGES)
    assert events.kinds() == [
        "AttemptStarted",
        "AttemptFailed",
        "RetryScheduled",
        "AttemptStarted",
        "AttemptFailed",
        "RequestFinished",
    ]
    scheduled = events[2]
    assert (scheduled.cause, scheduled.delay, scheduled.server_requested) == (
        "connection",
        0.5,
        False,
    )
    last_failed = events[4]
    assert last_failed.will_retry is False
    assert last_failed.attempt.status == 401
    finished = events[5]
    assert finished.custom_id is None
    assert finished.ok is False
    assert finished.attempts == 2
    assert finished.total_tokens is None  # a failure reports no usage
    assert finished.error is not None
    assert finished.error.startswith("AuthenticationError: Error code: 401")


@pytest.mark.anyio
async def test_events_are_frozen() -> None:
    events = Events()
    async with make_client(Script(ok()), on_event=events) as client:
        await client.chat(MESSAGES)
    for event in events:
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.custom_id = "x"  # type: ignore[misc]


@pytest.mark.anyio
async def test_event_hook_exception_propagates() -> None:
    class Boom(Exception):
        pass

    def hook(event: pt.Event) -> None:
        if isinstance(event, pt.RequestFinished):
            raise Boom

    async with make_client(Script(ok()), on_event=hook) as client:
        with pytest.raises(Boom):
            await client.chat(MESSAGES)


@pytest.mark.anyio
async def test_event_hook_exception_on_attempt_started_does_not_leak_in_flight() -> None:
    def hook(event: pt.Event) -> None:
        if isinstance(event, pt.AttemptStarted):
            raise RuntimeError("hook failed")

    script = Script(default=lambda r: ok())
    async with make_client(script, on_event=hook) as client:
        with pytest.raises(RuntimeError, match="hook failed"):
            await client.chat(MESSAGES)
        assert client.statistics().in_flight == 0


@pytest.mark.anyio
async def test_event_hook_exception_is_not_counted_as_cancellation() -> None:
    def hook(event: pt.Event) -> None:
        if isinstance(event, pt.AttemptFailed):
            raise RuntimeError("hook failed")

    script = Script(default=lambda r: status(503))
    async with make_client(script, on_event=hook) as client:
        with pytest.raises(RuntimeError, match="hook failed"):
            await client.chat(MESSAGES)
        # ClientStatistics.cancelled: "logical requests cancelled from outside".
        assert client.statistics().cancelled == 0


# ============================================================================ statistics


@pytest.mark.anyio
async def test_statistics_start_at_zero() -> None:
    async with make_client(Script(), limits=pt.Limits(concurrency=5)) as client:
        stats = client.statistics()
    assert stats == pt.ClientStatistics(
        in_flight=0,
        concurrency=5,
        started=0,
        succeeded=0,
        failed=0,
        cancelled=0,
        attempts=0,
        retries=0,
        retries_by_cause={},
        prompt_tokens=0,
        completion_tokens=0,
        total_tokens=0,
        latency_p50=None,
        latency_p90=None,
        latency_p99=None,
    )


@pytest.mark.anyio
async def test_statistics_count_everything() -> None:
    script = Script(
        status(429),
        status(503),
        ok(prompt_tokens=3, completion_tokens=4),
        httpx2.ConnectError,
        ok(prompt_tokens=10, completion_tokens=20),
        status(400),
        status(503),
        status(503),
    )
    async with make_client(script, retry=fixed(attempts=3)) as client:
        await client.chat(MESSAGES)
        await client.chat(MESSAGES)
        with pytest.raises(pt.BadRequestError):
            await client.chat(MESSAGES)
        with pytest.raises(pt.InternalServerError):
            await client.chat(MESSAGES, retry=fixed(attempts=2))
        stats = client.statistics()
    assert stats.started == 4
    assert stats.succeeded == 2
    assert stats.failed == 2
    assert stats.cancelled == 0
    assert stats.attempts == 8
    assert stats.retries == 4
    assert dict(stats.retries_by_cause) == {"429": 1, "503": 2, "connection": 1}
    assert list(stats.retries_by_cause) == sorted(stats.retries_by_cause)
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (13, 24, 37)
    assert stats.in_flight == 0


@pytest.mark.anyio
async def test_statistics_in_flight_during_a_request() -> None:
    seen: list[int] = []
    client: pt.Client

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(0.5)
        seen.append(client.statistics().in_flight)
        await trio.sleep(0.5)
        return ok()

    async with make_client(handler) as client:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(client.chat, MESSAGES)
        assert client.statistics().in_flight == 0
    assert seen == [3, 3, 3]


@pytest.mark.anyio
async def test_latency_percentiles() -> None:
    latencies = iter(range(1, 101))

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(next(latencies))
        return ok()

    async with make_client(handler) as client:
        for _ in range(100):
            await client.chat(MESSAGES)
        stats = client.statistics()
    assert stats.latency_p50 == pytest.approx(50, rel=0.02)
    assert stats.latency_p90 == pytest.approx(90, rel=0.02)
    assert stats.latency_p99 == pytest.approx(99, rel=0.02)


@pytest.mark.anyio
async def test_latency_includes_retries() -> None:
    script = Script(status(503), after(2, ok()))
    async with make_client(script, retry=fixed(initial_delay=1)) as client:
        await client.chat(MESSAGES)
        stats = client.statistics()
    assert stats.latency_p50 == pytest.approx(3, rel=0.02)


@pytest.mark.anyio
async def test_statistics_are_a_frozen_snapshot() -> None:
    async with make_client(Script(ok())) as client:
        before = client.statistics()
        await client.chat(MESSAGES)
        after_ = client.statistics()
    assert before.succeeded == 0
    assert after_.succeeded == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        after_.succeeded = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        after_.retries_by_cause["x"] = 1  # type: ignore[index]


# ============================================================================ unknown usage


def ok_without_usage(text: str = "Hello there") -> httpx2.Response:
    """A 200 whose completion has no ``usage`` (a server that does not report it)."""
    body = completion_json(text)
    del body["usage"]
    return httpx2.Response(200, json=body)


@pytest.mark.anyio
async def test_a_completion_without_usage_is_unknown_not_zero() -> None:
    events = Events()
    script = Script(ok_without_usage(), ok(prompt_tokens=3, completion_tokens=4))
    async with make_client(script, on_event=events) as client:
        unknown = await client.chat(MESSAGES)
        known = await client.chat(MESSAGES)
        stats = client.statistics()
    assert unknown.usage is None
    assert known.usage == pt.Usage(3, 4, 7)
    assert [f.total_tokens for f in events.of(pt.RequestFinished)] == [None, 7]
    assert stats.succeeded == 2
    assert stats.unknown_usage == 1
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (3, 4, 7)


@pytest.mark.anyio
async def test_usage_of_zeros_sent_by_the_server_is_known() -> None:
    events = Events()
    script = Script(ok(prompt_tokens=0, completion_tokens=0))
    async with make_client(script, on_event=events) as client:
        c = await client.chat(MESSAGES)
        stats = client.statistics()
    assert c.usage == pt.Usage(0, 0, 0)
    assert stats.unknown_usage == 0
    assert events.of(pt.RequestFinished)[0].total_tokens == 0


@pytest.mark.anyio
async def test_models_and_failures_are_not_counted_as_unknown_usage() -> None:
    body = {"object": "list", "data": [{"id": "m"}]}
    script = Script(httpx2.Response(200, json=body), status(400))
    async with make_client(script) as client:
        await client.models()
        with pytest.raises(pt.BadRequestError):
            await client.chat(MESSAGES)
        stats = client.statistics()
    assert (stats.succeeded, stats.failed, stats.unknown_usage) == (1, 1, 0)


@pytest.mark.anyio
async def test_the_rate_limiter_keeps_its_estimate_when_usage_is_unknown() -> None:
    # estimate: 1 message "Hi" = 1 + 4 prompt, + max_tokens 595 = 600: the whole budget.
    # With no usage reported nothing is refunded: the next request waits for a full refill.
    script = Script(default=lambda r: ok_without_usage())
    async with make_client(script, limits=pt.Limits(tokens_per_minute=600)) as client:
        for _ in range(2):
            await client.chat(MESSAGES, max_tokens=595)
    assert script.times == pytest.approx([0.0, 60.0])


# ============================================================================ models()


@pytest.mark.anyio
async def test_models_are_parsed() -> None:
    body = {
        "object": "list",
        "data": [
            {"id": "alfred-4.2", "object": "model", "owned_by": "lighton", "created": 1700},
            {"id": "llama-3", "object": "model"},
        ],
    }
    script = Script(httpx2.Response(200, json=body))
    async with make_client(script) as client:
        models = await client.models()
    assert [m.id for m in models] == ["alfred-4.2", "llama-3"]
    assert (models[0].owned_by, models[0].created) == ("lighton", 1700)
    assert (models[1].owned_by, models[1].created) == (None, None)
    assert models[0].raw == body["data"][0]
    assert all(isinstance(m, pt.ModelInfo) for m in models)
    (request,) = script.requests
    assert request.method == "GET"
    assert str(request.url) == "http://test/api/v2/models"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.content == b""
    assert "content-type" not in request.headers


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body", [{"object": "list"}, {"data": "x"}, [1, 2], {"data": [{"object": "model"}]}]
)
async def test_invalid_models_body(body: Any) -> None:
    script = Script(httpx2.Response(200, json=body))
    async with make_client(script, retry=NO_RETRY) as client:
        with pytest.raises(pt.APIResponseValidationError) as info:
            await client.models()
    assert json.loads(info.value.raw) == body


@pytest.mark.anyio
async def test_models_are_retried_and_mapped() -> None:
    script = Script(status(503), status(401))
    async with make_client(script, retry=fixed()) as client:
        with pytest.raises(pt.AuthenticationError):
            await client.models()
        stats = client.statistics()
    assert script.calls == 2
    assert stats.failed == 1


# ============================================================================ security


def _leaks(text: str) -> bool:
    return API_KEY in text or API_KEY[8:] in text


def test_repr_masks_the_key() -> None:
    client = pt.Client(api_key=API_KEY, base_url=BASE_URL)
    text = repr(client)
    assert not _leaks(text)
    assert "***" in text
    assert not _leaks(str(client))


def _error_texts(err: BaseException) -> str:
    parts = [str(err), repr(err), *getattr(err, "__notes__", [])]
    if isinstance(err, pt.APIError):
        parts += [err.message, repr(err.body), repr(err.attempts)]
        parts += [str(a.error) for a in err.attempts]
    if isinstance(err, pt.APIStatusError):
        parts.append(repr(dict(err.headers)))
    if isinstance(err, pt.APIResponseValidationError):
        parts.append(err.raw)
    return "\n".join(parts)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response",
    [
        lambda: status(401, {"error": {"message": f"Incorrect API key provided: {API_KEY}"}}),
        lambda: status(401, {"detail": f"bad key {API_KEY}"}),
        lambda: status(403, {"detail": [{"msg": "bad", "input": API_KEY}]}),
        lambda: status(500, text=f"Traceback: Authorization: Bearer {API_KEY}"),
        lambda: status(503, {"error": {"message": "busy", "param": API_KEY, "code": API_KEY}}),
        lambda: httpx2.Response(200, text=f"<html>{API_KEY}"),
        lambda: httpx2.Response(200, json={"echo": API_KEY}),
    ],
)
async def test_server_echoing_the_key_never_leaks_it(response: Any) -> None:
    events = Events()
    script = Script(default=lambda r: response())
    async with make_client(script, retry=fixed(attempts=2), on_event=events) as client:
        with pytest.raises(pt.APIError) as info:
            await client.chat(MESSAGES)
        stats = client.statistics()
    assert not _leaks(_error_texts(info.value))
    assert not _leaks(repr(list(events)))
    assert not _leaks(repr(stats))


@pytest.mark.anyio
async def test_transport_error_mentioning_the_key_does_not_leak_it() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(
            f"proxy refused: Authorization: {request.headers['authorization']}", request=request
        )

    events = Events()
    async with make_client(handler, retry=fixed(attempts=2), on_event=events) as client:
        with pytest.raises(pt.APIConnectionError) as info:
            await client.chat(MESSAGES)
    assert not _leaks(_error_texts(info.value))
    assert not _leaks(repr(list(events)))


@pytest.mark.anyio
async def test_key_not_in_events_statistics_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    events = Events()
    script = Script(status(429, headers={"retry-after": "1"}), httpx2.ReadError, ok())
    async with make_client(script, retry=fixed(), on_event=events) as client:
        await client.chat(MESSAGES)
        stats = client.statistics()
    assert len(events) == 9
    assert not _leaks(repr(list(events)))
    assert not _leaks(repr(stats))
    assert not any(_leaks(r.getMessage()) for r in caplog.records)
    assert not any("authorization" in r.getMessage().lower() for r in caplog.records)


def test_configuration_errors_do_not_show_the_key() -> None:
    with pytest.raises(pt.ConfigurationError) as info:
        pt.Client(api_key=API_KEY, base_url="ftp://nope")
    assert not _leaks(str(info.value))
    with pytest.raises(pt.ConfigurationError) as info:
        pt.Client(api_key=API_KEY + "\n")
    assert not _leaks(str(info.value))


MAINTENANCE = {
    "error": "service_maintenance",
    "mode": "read_only",
    "reason": "database upgrade",
    "started_at": "2026-12-02T01:00:00Z",
}


@pytest.mark.anyio
async def test_the_maintenance_answer_is_retried_after_its_retry_after_with_its_reason() -> None:
    script = Script(
        status(503, MAINTENANCE, headers={"Retry-After": "7"}),
        status(503, MAINTENANCE, headers={"Retry-After": "7"}),
        default=lambda request: status(503, MAINTENANCE, headers={"Retry-After": "7"}),
    )
    async with make_client(script, retry=fixed(attempts=3, initial_delay=0.1)) as client:
        with pytest.raises(pt.InternalServerError) as info:
            await client.chat(MESSAGES)
    assert [round(b - a, 3) for a, b in itertools.pairwise(script.times)] == [7.0, 7.0]
    error = info.value
    assert error.message == (
        "Error code: 503 - Paradigm is under maintenance (read_only) since "
        "2026-12-02T01:00:00Z: database upgrade"
    )
    assert error.code == "service_maintenance"
    assert error.body == MAINTENANCE
    assert [a.cause for a in error.attempts] == ["503", "503", "503"]


@pytest.mark.anyio
async def test_a_maintenance_answer_with_fields_missing() -> None:
    script = Script(status(503, {"error": "service_maintenance"}))
    async with make_client(script, retry=fixed(attempts=1)) as client:
        with pytest.raises(pt.InternalServerError) as info:
            await client.chat(MESSAGES)
    assert info.value.message == "Error code: 503 - Paradigm is under maintenance"
