"""``/tokenize`` (the mock's documented tokenizer), the legacy ``/completions``, and the
option that refuses embedding lists."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx2
import pytest

import mock_server as ms
from mock_server._cli import build_parser, config_from_args

from . import _paradigm_reference as ref
from ._helpers import assert_error_envelope, chat_body, keyed, parse_sse
from ._paradigm import paradigm

pytestmark = pytest.mark.anyio

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": "Count these tokens, please."}]},
]


async def test_tokenize_counts_as_documented_with_the_reference_shape() -> None:
    async with paradigm() as (server, client):
        prompt = await client.post("/tokenize", json={"model": "alfred-4", "prompt": "héllo wörld"})
        messages = await client.post("/tokenize", json={"model": "alfred-4", "messages": MESSAGES})
        chat = await client.post(
            "/chat/completions", json={"model": "alfred-4", "messages": MESSAGES}
        )
        again = await client.post(
            server.root_url + "/v1/tokenize", json={"model": "alfred-4", "prompt": "héllo wörld"}
        )
    assert prompt.status_code == 200
    ref.assert_shape(prompt.json(), ref.TOKENIZE)
    assert prompt.json()["total_tokens"] == math.ceil(len("héllo wörld") / 4) == 3
    assert prompt.json()["model"] == prompt.json()["model_used"] == "alfred-4"
    assert prompt.json()["request_model"] == "alfred-4"
    assert prompt.json()["tokenizer_type"] == "mock-chars-4"
    expected = 3 + (4 + math.ceil(14 / 4)) + (4 + math.ceil(27 / 4))
    assert messages.json()["total_tokens"] == expected
    # The same count as the chat route's prompt tokens, for the client's dry run.
    assert chat.json()["usage"]["prompt_tokens"] == expected
    assert again.json() == prompt.json()  # the id too: a function of seed and input
    record = server.requests()[0]
    assert (record.prompt_tokens, record.model) == (3, "alfred-4")


async def test_legacy_completions_stream_the_same_text() -> None:
    body = {"model": "alfred-4.2", "prompt": "Once upon", "n": 2, "echo": True}
    async with paradigm() as (server, client):
        whole = (await client.post("/completions", json=body)).json()
        streamed = await client.post("/completions", json={**body, "stream": True})
        [_, record] = server.requests()
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(streamed.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    texts = ["", ""]
    finishes = [None, None]
    for chunk in chunks:
        assert chunk["object"] == "text_completion"
        assert chunk["id"] == whole["id"]
        [choice] = chunk["choices"]
        texts[choice["index"]] += choice["text"]
        finishes[choice["index"]] = choice["finish_reason"] or finishes[choice["index"]]
    assert texts == [c["text"] for c in whole["choices"]]
    assert finishes == [c["finish_reason"] for c in whole["choices"]]
    assert record.stream is True
    assert record.completion_tokens == whole["usage"]["completion_tokens"]


@pytest.mark.parametrize("kind", ["stream_no_done", "stream_error", "malformed"])
async def test_stream_faults_break_a_streamed_completion(kind: str) -> None:
    body = {"model": "alfred-4.2", "prompt": "Once upon a time", "stream": True}
    async with paradigm() as (server, client):
        server.script("s", [kind])
        broken = await client.post("/completions", json=body, headers=keyed("s"))
        plain = await client.post("/completions", json={**body, "stream": False})
        [record, _] = server.requests()
    events = parse_sse(broken.text)
    assert record.outcome == kind
    if kind == "stream_no_done":
        assert events[-1][1] != "[DONE]"
        assert json.loads(events[-1][1])["choices"][0]["finish_reason"] is not None
    elif kind == "stream_error":
        assert events[-1][0] == "error"
        assert json.loads(events[-1][1])["error"]["code"] == "stream_error"
    else:
        with pytest.raises(ValueError, match="Expecting"):
            [json.loads(data) for _, data in events if data != "[DONE]"]
    assert plain.status_code == 200  # a stream fault does not apply to a plain request


async def test_a_cut_stream_closes_the_connection() -> None:
    body = {"model": "alfred-4.2", "prompt": "Once upon a time", "stream": True}
    async with paradigm() as (server, client):
        server.script("c", ["stream_cut"])
        with pytest.raises(httpx2.TransportError):
            await client.post("/completions", json=body, headers=keyed("c"))
        [record] = server.requests()
    assert record.outcome == "stream_cut"
    assert record.completion_tokens is not None


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        ({"prompt": "x"}, "model", "missing_required_parameter"),
        ({"model": "alfred-4"}, "prompt", "missing_required_parameter"),
        ({"model": "alfred-4", "prompt": "x", "messages": MESSAGES}, "messages", "invalid_value"),
        ({"model": "alfred-4", "prompt": 3}, "prompt", "invalid_type"),
        ({"model": "alfred-4", "messages": [{"content": "x"}]}, "messages[0].role", None),
        ({"model": "alfred-4", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "multilingual-e5-large", "prompt": "x"}, "model", "invalid_model"),
    ],
)
async def test_bad_tokenize_requests_are_named(
    payload: dict[str, Any], param: str, code: str | None
) -> None:
    async with paradigm() as (_, client):
        response = await client.post("/tokenize", json=payload)
    assert assert_error_envelope(response, 400, code)["param"] == param


async def test_tokenize_with_a_model_list_refuses_other_models() -> None:
    async with paradigm(models=("alfred-4",)) as (_, client):
        response = await client.post("/tokenize", json={"model": "gpt-9", "prompt": "x"})
    assert assert_error_envelope(response, 400, "model_not_found")["param"] == "model"


async def test_legacy_completions() -> None:
    async with paradigm() as (server, client):
        plain = await client.post(
            "/completions", json={"model": "alfred-4.2", "prompt": "Once upon", "max_tokens": 3}
        )
        echo = await client.post(
            "/completions",
            json={"model": "alfred-4.2", "prompt": "Once upon", "echo": True, "n": 2,
                  "stop": ["\n"]},
        )  # fmt: skip
        same = await client.post(
            server.root_url + "/v1/completions",
            json={"model": "alfred-4.2", "prompt": "Once upon", "max_tokens": 3},
        )
    assert plain.status_code == 200
    data = plain.json()
    ref.assert_shape(data, ref.COMPLETION)
    [choice] = data["choices"]
    assert choice["finish_reason"] == "length"
    assert len(choice["text"].split()) == 3
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    texts = [c["text"] for c in echo.json()["choices"]]
    assert len(texts) == 2
    assert all(text.startswith("Once upon") for text in texts)
    assert same.json()["choices"] == data["choices"]
    assert server.requests()[0].completion_tokens == 3


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        ({"prompt": "x"}, "model", "missing_required_parameter"),
        ({"model": "m", "prompt": ["a"]}, "prompt", "invalid_type"),
        ({"model": "m", "stream": "yes"}, "stream", "invalid_type"),
        ({"model": "m", "max_tokens": 0}, "max_tokens", "integer_below_min_value"),
        ({"model": "m", "temperature": 3}, "temperature", "invalid_value"),
        ({"model": "m", "stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"model": "m", "logit_bias": []}, "logit_bias", "invalid_value"),
        ({"model": "m", "n": 17}, "n", "integer_above_max_value"),
    ],
)
async def test_bad_completions_are_named(
    payload: dict[str, Any], param: str, code: str | None
) -> None:
    async with paradigm() as (_, client):
        response = await client.post("/completions", json=payload)
    assert assert_error_envelope(response, 400, code)["param"] == param


async def test_strings_only_refuses_embedding_lists() -> None:
    body = {"model": "multilingual-e5-large", "input": ["a", "b"]}
    async with paradigm(embeddings_strings_only=True) as (server, client):
        refused = await client.post("/embeddings", json=body)
        one = await client.post("/embeddings", json={**body, "input": "a"})
        server.configure(embeddings_strings_only=False)
        accepted = await client.post("/embeddings", json=body)
        config = await client.post(
            server.root_url + "/_mock/config", json={"embeddings_strings_only": True}
        )
        again = await client.post("/embeddings", json=body)
    error = assert_error_envelope(refused, 400, "invalid_type")
    assert error["param"] == "input"
    assert "one string per request" in error["message"]
    assert one.status_code == 200
    assert len(one.json()["data"]) == 1
    assert len(accepted.json()["data"]) == 2
    assert config.json()["embeddings_strings_only"] is True
    assert_error_envelope(again, 400, "invalid_type")
    assert [r.outcome for r in server.requests()] == ["400", "ok", "ok", "400"]


def test_cli_flags_of_the_paradigm_options() -> None:
    args = build_parser().parse_args(
        ["--embeddings-strings-only", "--file-processing-time", "2.5", "--max-file-bytes", "0"]
    )
    config = config_from_args(args)
    assert config.embeddings_strings_only is True
    assert config.file_processing_time == 2.5
    assert config.max_file_bytes is None
    default = config_from_args(build_parser().parse_args([]))
    assert default == ms.MockConfig()
    limited = config_from_args(build_parser().parse_args(["--max-file-bytes", "1000"]))
    assert limited.max_file_bytes == 1000


async def test_tokenize_needs_the_key_like_chat() -> None:
    async with paradigm(api_key="sk-test") as (_, client):
        denied = await client.post("/tokenize", json={"model": "alfred-4", "prompt": "x"})
        allowed = await client.post(
            "/tokenize",
            json={"model": "alfred-4", "prompt": "x"},
            headers={"Authorization": "Bearer sk-test"},
        )
        chat = await client.post("/chat/completions", json=chat_body())
    assert_error_envelope(denied, 401, "invalid_api_key")
    assert allowed.status_code == 200
    assert_error_envelope(chat, 401, "invalid_api_key")
