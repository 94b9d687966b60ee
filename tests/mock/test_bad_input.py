"""Auth, every bad-input case, wrong methods, oversized bodies, random garbage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
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
        "temperature NaN (Python's JSON reads it; strict JSON has no NaN)",
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
        None,
        "invalid_json",
    ),
    (
        "top_p -Infinity",
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": -Infinity}',
        None,
        "invalid_json",
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
        missing = await client.get("/api/v2/edits")
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


LONE = "\ud800"


def _escaped(body: object) -> bytes:
    """JSON with ``\\ud800`` escapes, as ``json.dumps`` writes a lone surrogate."""
    return json.dumps(body).encode()


def _raw(body: object) -> bytes:
    """UTF-8 with the surrogate's own three bytes (``ED A0 80``), which Python's json accepts."""
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


SURROGATE_BODIES: list[tuple[str, object, str]] = [
    ("content", chat_body(f"Hi {LONE} there"), "messages[0].content"),
    ("low surrogate", chat_body("\udc00"), "messages[0].content"),
    ("streamed", chat_body(f"Hi {LONE}", stream=True), "messages[0].content"),
    (
        "content part",
        {
            "model": "alfred-4.2",
            "messages": [
                {"role": "system", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": f"x{LONE}"}]},
            ],
        },
        "messages[1].content[0].text",
    ),
    ("model", chat_body(model=f"alfred{LONE}"), "model"),
    ("role", {"model": "m", "messages": [{"role": LONE, "content": "x"}]}, "messages[0].role"),
    ("other field", chat_body(user=f"u{LONE}"), "user"),
    ("object key", chat_body(metadata={f"k{LONE}": 1}), "metadata"),
]


@pytest.mark.parametrize("encode", [_escaped, _raw])
@pytest.mark.parametrize(("name", "body", "param"), SURROGATE_BODIES)
async def test_a_lone_surrogate_gets_a_400_not_a_500(
    name: str, body: object, param: str, encode: Callable[[object], bytes]
) -> None:
    async with (
        ms.serve(ms.MockConfig(models=("alfred-4.2", "m"))) as server,
        httpx2.AsyncClient(base_url=server.url) as client,
    ):
        response = await client.post(
            "/chat/completions", content=encode(body), headers={"Content-Type": "application/json"}
        )
        ok = await client.post("/chat/completions", json=chat_body(stream=True))
    error = assert_error_envelope(response, 400, "invalid_unicode")
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, name
    assert param in error["message"]
    assert "surrogate" in error["message"]
    assert "U+D800" in error["message"] or "U+DC00" in error["message"]
    assert ok.status_code == 200
    assert [r.outcome for r in server.requests()] == ["400", "ok"]


async def test_admin_routes_refuse_lone_surrogates_and_keep_working() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        headers = {"Content-Type": "application/json"}
        script = await client.post(
            "/_mock/script", content=_escaped({"key": LONE, "outcomes": ["503"]}), headers=headers
        )
        models = await client.post(
            "/_mock/config", content=_raw({"models": [f"m{LONE}"]}), headers=headers
        )
        unknown_field = await client.post(
            "/_mock/config", content=_escaped({f"x{LONE}": 1}), headers=headers
        )
        listing = await client.get("/api/v2/models")
        config = await client.get("/_mock/config")
    for response in (script, models, unknown_field):
        assert "surrogate" in assert_error_envelope(response, 400, "invalid_unicode")["message"]
    assert listing.status_code == 200
    assert config.json()["models"] is None


texts_with_surrogates = st.text(
    alphabet=st.characters(codec=None, categories=["Cs", "L", "Zs"]), max_size=12
)
surrogate_values = st.recursive(
    st.none() | st.integers() | texts_with_surrogates,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(texts_with_surrogates, children, max_size=3)
    ),
    max_leaves=8,
)


def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    return False


@given(
    bodies=st.lists(
        st.tuples(
            st.fixed_dictionaries(
                {
                    "model": st.sampled_from(["alfred-4.2"]) | texts_with_surrogates,
                    "messages": st.lists(
                        st.fixed_dictionaries(
                            {"role": st.just("user"), "content": texts_with_surrogates}
                        ),
                        min_size=1,
                        max_size=2,
                    ),
                    "stream": st.booleans(),
                },
                optional={"extra": surrogate_values},
            ),
            st.sampled_from([_escaped, _raw]),
        ),
        min_size=1,
        max_size=6,
    )
)
async def test_random_text_with_surrogates_never_gets_a_500(
    bodies: list[tuple[dict[str, Any], Callable[[object], bytes]]],
) -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        for body, encode in bodies:
            response = await client.post("/chat/completions", content=encode(body))
            if _has_surrogate(body):
                assert_error_envelope(response, 400, "invalid_unicode")
            elif body["model"]:
                assert response.status_code == 200, response.text
    assert server.stats().in_flight == 0
    assert set(server.stats().by_outcome) <= {"ok", "400"}
