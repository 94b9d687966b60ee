"""Auth, every bad-input case, wrong methods, oversized bodies, random garbage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import mock_server as ms

from ._helpers import assert_error_envelope, chat_body

pytestmark = pytest.mark.anyio

KEY = "sk-mock-secret-42"


async def test_auth_missing_wrong_and_right_key() -> None:
    async with (
        ms.serve(ms.MockConfig(api_key=KEY)) as server,
        httpx2.AsyncClient(base_url=server.url) as client,
    ):
        missing = await client.post("/chat/completions", json=chat_body())
        wrong = await client.post(
            "/chat/completions", json=chat_body(), headers={"Authorization": "Bearer nope"}
        )
        not_bearer = await client.post(
            "/chat/completions", json=chat_body(), headers={"Authorization": KEY}
        )
        right = await client.post(
            "/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {KEY}"}
        )
        models_denied = await client.get("/models")
        models_ok = await client.get("/models", headers={"Authorization": f"Bearer {KEY}"})
        stats = await client.get(server.root_url + "/_mock/config")
    for response in (missing, wrong, not_bearer, models_denied):
        assert_error_envelope(response, 401, "invalid_api_key")
        assert KEY not in response.text
    assert right.status_code == 200
    assert models_ok.status_code == 200
    assert KEY not in stats.text
    assert stats.json()["api_key"] == "***"
    assert [r.outcome for r in server.requests()] == ["401", "401", "401", "ok"]


BAD_BODIES: list[tuple[str, bytes, str | None, str | None]] = [
    ("empty body", b"", None, "invalid_json"),
    ("invalid json", b'{"model": "m", ', None, "invalid_json"),
    ("invalid utf-8", b'{"model": "\xff\xfe"}', None, "invalid_json"),
    ("deep nesting", b"[" * 100_000, None, "invalid_json"),
    ("array body", b"[1, 2]", None, "invalid_body"),
    ("string body", b'"hello"', None, "invalid_body"),
    ("null body", b"null", None, "invalid_body"),
    ("missing model", b'{"messages": [{"role": "user", "content": "x"}]}', "model", None),
    ("model not a string", b'{"model": 3, "messages": []}', "model", "invalid_type"),
    ("empty model", b'{"model": "", "messages": []}', "model", "invalid_type"),
    ("missing messages", b'{"model": "m"}', "messages", "missing_required_parameter"),
    ("messages not a list", b'{"model": "m", "messages": "hi"}', "messages", "invalid_type"),
    ("messages empty", b'{"model": "m", "messages": []}', "messages", "empty_array"),
    ("message not an object", b'{"model": "m", "messages": ["hi"]}', "messages[0]", "invalid_type"),
    (
        "message without role",
        b'{"model": "m", "messages": [{"content": "x"}]}',
        "messages[0].role",
        "missing_required_parameter",
    ),
    (
        "unknown role",
        b'{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}',
        "messages[0].role",
        "invalid_value",
    ),
    (
        "message without content",
        b'{"model": "m", "messages": [{"role": "user"}]}',
        "messages[0].content",
        "missing_required_parameter",
    ),
    (
        "content not a string",
        b'{"model": "m", "messages": [{"role": "user", "content": 5}]}',
        "messages[0].content",
        "invalid_type",
    ),
    (
        "null user content",
        b'{"model": "m", "messages": [{"role": "user", "content": null}]}',
        "messages[0].content",
        "invalid_type",
    ),
    (
        "bad content part",
        b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}',
        "messages[0].content[0].text",
        "invalid_type",
    ),
    (
        "stream not a boolean",
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
        "stream",
        "invalid_type",
    ),
    (
        "stream_options not an object",
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": 1}',
        "stream_options",
        "invalid_type",
    ),
    (
        "max_tokens zero",
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
        "max_tokens",
        "integer_below_min_value",
    ),
    (
        "max_tokens a string",
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"}',
        "max_tokens",
        "invalid_type",
    ),
]


async def test_every_bad_body_gets_a_400_naming_the_problem() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        for name, body, param, code in BAD_BODIES:
            response = await client.post(
                "/chat/completions", content=body, headers={"Content-Type": "application/json"}
            )
            error = assert_error_envelope(response, 400, code)
            assert error["param"] == param, name
            assert error["type"] == "invalid_request_error"
            if param is not None:
                assert param.split("[")[0].split(".")[0] in error["message"], name
        # the server is fine after all that
        ok = await client.post("/chat/completions", json=chat_body())
    assert ok.status_code == 200
    assert server.stats().by_outcome == {"400": len(BAD_BODIES), "ok": 1}


async def test_unknown_model_when_models_are_configured() -> None:
    async with (
        ms.serve(ms.MockConfig(models=("alfred-4.2",))) as server,
        httpx2.AsyncClient(base_url=server.url) as client,
    ):
        unknown = await client.post("/chat/completions", json=chat_body(model="gpt-9"))
        known = await client.post("/chat/completions", json=chat_body(model="alfred-4.2"))
    error = assert_error_envelope(unknown, 400, "model_not_found")
    assert error["param"] == "model"
    assert "gpt-9" in error["message"]
    assert known.status_code == 200


async def test_wrong_method_and_unknown_path() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        get_chat = await client.get("/api/v2/chat/completions")
        put_chat = await client.put("/v1/chat/completions", json=chat_body())
        post_models = await client.post("/api/v2/models")
        get_reset = await client.get("/_mock/reset")
        missing = await client.get("/api/v2/completions")
    for response in (get_chat, put_chat, post_models, get_reset):
        assert_error_envelope(response, 405, "method_not_allowed")
    assert "POST" in get_chat.headers["allow"]
    assert_error_envelope(missing, 404, "not_found")
    assert server.stats().total == 0  # none of these reached the chat handler


async def test_oversized_bodies_get_413() -> None:
    async with (
        ms.serve(ms.MockConfig(max_body_bytes=1000)) as server,
        httpx2.AsyncClient(base_url=server.url) as client,
    ):
        big = chat_body("x" * 2000)
        declared = await client.post("/chat/completions", json=big)

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b" " * 400
            yield json.dumps(chat_body()).encode()

        streamed = await client.post("/chat/completions", content=chunked())
        small = await client.post("/chat/completions", json=chat_body("x" * 100))
    assert_error_envelope(declared, 413, "request_too_large")
    assert_error_envelope(streamed, 413, "request_too_large")
    assert small.status_code == 200
    assert [r.outcome for r in server.requests()] == ["413", "413", "ok"]


async def test_default_body_limit_is_one_mebibyte() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        over = await client.post("/chat/completions", json=chat_body("y" * (1 << 20)))
        under = await client.post("/chat/completions", json=chat_body("y" * 1000))
    assert_error_envelope(over, 413)
    assert under.status_code == 200


async def test_garbage_on_the_wire_does_not_kill_the_server() -> None:
    async with ms.serve() as server:
        host, port = server.root_url.removeprefix("http://").split(":")
        replies = []
        for garbage in (b"\x00\xff\x13garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"POST\r\n"):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(garbage)
                await stream.send_eof()
                received = b""
                with trio.fail_after(2):  # the server answers and/or closes promptly
                    while chunk := await stream.receive_some(4096):
                        received += chunk
                replies.append(received)
        async with httpx2.AsyncClient(base_url=server.url) as client:
            ok = await client.post("/chat/completions", json=chat_body())
    assert replies[0].startswith(b"HTTP/1.1 400")
    assert ok.status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
chatty_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values | st.sampled_from(["alfred-4.2", "m"]),
        "messages": json_values
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "role": json_values | st.sampled_from(["user", "assistant", "system"]),
                    "content": json_values,
                },
            ),
            max_size=3,
        ),
        "stream": json_values,
        "stream_options": json_values,
        "max_tokens": json_values,
        "max_completion_tokens": json_values,
    },
)


@given(bodies=st.lists(chatty_bodies | json_values, min_size=1, max_size=8))
async def test_random_json_bodies_never_crash_the_server(bodies: list[Any]) -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        for body in bodies:
            response = await client.post("/chat/completions", content=json.dumps(body).encode())
            assert response.status_code in (200, 400), response.text
            if response.headers["content-type"].startswith("text/event-stream"):
                assert response.text.endswith("data: [DONE]\n\n")
                continue
            data = response.json()
            if response.status_code == 400:
                assert set(data["error"]) == {"message", "type", "param", "code"}
            else:
                assert data["object"] == "chat.completion"
        ok = await client.post("/chat/completions", json=chat_body())
    assert ok.status_code == 200
    assert server.stats().in_flight == 0
    assert set(server.stats().by_outcome) <= {"ok", "400"}
