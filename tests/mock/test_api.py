"""The happy path over real sockets: completions, streaming, models, headers."""

from __future__ import annotations

import json

import httpx2
import pytest
import trio

import mock_server as ms

from .. import pace
from ..pace import slack
from ._helpers import (
    WELCOME,
    chat_body,
    keyed,
    parse_sse,
    stream_chunks,
    validate_chunk,
    validate_completion,
)

pytestmark = pytest.mark.anyio


async def test_completion_follows_the_openai_schema() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        response = await client.post("/chat/completions", json=chat_body("What is trio?"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    completion = validate_completion(data)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "alfred-4.2"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert choice.message.content is not None
    assert choice.message.content.startswith('You said: "What is trio?".')
    usage = completion.usage
    assert usage is not None
    # 3 + 4 + ceil(len("What is trio?") / 4) = 3 + 4 + 4
    assert usage.prompt_tokens == 11
    assert usage.completion_tokens == len(choice.message.content.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    [record] = server.requests()
    assert record.outcome == "ok"
    assert record.status == 200
    assert record.prompt_tokens == 11
    assert record.completion_tokens == usage.completion_tokens
    assert record.request_id == response.headers["x-request-id"]


async def test_reference_page_welcome_messages_are_personalised() -> None:
    names = ["Alice", "Bob", "Charlie", "Grace"]
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        for name in names:
            body = chat_body(WELCOME.format(name=name), temperature=0.4, max_tokens=150)
            response = await client.post("/chat/completions", json=body)
            content = validate_completion(response.json()).choices[0].message.content
            assert content is not None
            assert content.startswith(f"Welcome to Paradigm, {name}!")


async def test_content_is_deterministic_per_seed() -> None:
    body = chat_body("Write a haiku about cancellation")
    contents = []
    for seed in (1, 1, 2):
        async with ms.serve(ms.MockConfig(seed=seed)) as server:
            async with httpx2.AsyncClient(base_url=server.url) as client:
                response = await client.post("/chat/completions", json=body)
            contents.append(response.json()["choices"][0]["message"]["content"])
    assert contents[0] == contents[1]
    assert contents[0] != contents[2]


async def test_max_tokens_truncates_with_finish_reason_length() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        full = (await client.post("/chat/completions", json=chat_body("Explain it"))).json()
        short = (
            await client.post("/chat/completions", json=chat_body("Explain it", max_tokens=3))
        ).json()
        newer = (
            await client.post(
                "/chat/completions", json=chat_body("Explain it", max_completion_tokens=2)
            )
        ).json()
    validate_completion(short)
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 3
    assert short["choices"][0]["message"]["content"] == 'You said: "Explain'
    assert full["choices"][0]["message"]["content"].startswith(
        short["choices"][0]["message"]["content"]
    )
    assert newer["usage"]["completion_tokens"] == 2
    assert newer["choices"][0]["finish_reason"] == "length"


async def test_streaming_chunks_usage_and_done() -> None:
    body = chat_body("Stream me something", stream=True, stream_options={"include_usage": True})
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        plain = (
            await client.post("/chat/completions", json=chat_body("Stream me something"))
        ).json()
        response = await client.post("/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [validate_chunk(json.loads(data)) for _, data in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({chunk.id for chunk in chunks}) == 1
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    *content_chunks, finish, usage_chunk = chunks
    assert finish.choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in content_chunks)
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == plain["choices"][0]["message"]["content"]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == plain["usage"]["completion_tokens"]
    assert usage_chunk.usage.prompt_tokens == plain["usage"]["prompt_tokens"]
    record = server.requests()[-1]
    assert record.stream
    assert record.outcome == "ok"


async def test_stream_without_usage_option_and_with_truncation() -> None:
    body = chat_body("Stream a little", stream=True, max_tokens=4)
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        response = await client.post("/chat/completions", json=body)
    chunks = stream_chunks(response.text)
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) == 4


async def test_stream_timing_follows_latency_ttft_and_token_delay() -> None:
    config = ms.MockConfig(
        latency=ms.Latency.fixed(0.1),
        ttft=ms.Latency.fixed(0.15),
        token_delay=0.02,
        reply_tokens=(10, 10),
    )
    body = chat_body("", stream=True)  # empty prompt: reply "Hello!" + filler, 10 words
    async with ms.serve(config) as server, httpx2.AsyncClient(base_url=server.url) as client:
        now = await pace.round_trip(server.url + "/models")
        start = trio.current_time()
        async with client.stream("POST", "/chat/completions", json=body) as response:
            headers_at = trio.current_time() - start
            arrivals = []
            async for _ in response.aiter_bytes():
                arrivals.append(trio.current_time() - start)
        total = trio.current_time() - start
    assert headers_at >= 0.1
    assert arrivals[0] >= 0.25
    # role chunk + 10 content chunks + finish chunk + [DONE]: 12 delays of 20 ms after the first
    assert total >= 0.25 + 12 * 0.02
    assert total < slack(2.0, now)


async def test_latency_is_applied_before_the_response() -> None:
    config = ms.MockConfig(latency=ms.Latency.uniform(0.2, 0.3))
    async with ms.serve(config) as server, httpx2.AsyncClient(base_url=server.url) as client:
        now = await pace.round_trip(server.url + "/models")
        start = trio.current_time()
        response = await client.post("/chat/completions", json=chat_body("slow"))
        elapsed = trio.current_time() - start
    assert response.status_code == 200
    assert 0.2 <= elapsed < slack(1.0, now)
    [record] = server.requests()
    assert record.finish is not None
    assert record.finish - record.arrival >= 0.2


async def test_models_endpoint_and_v1_paths() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        default = (await client.get("/api/v2/models")).json()
        server.configure(models=("alfred-4.2", "tiny"))
        configured = (await client.get("/v1/models")).json()
        ok = await client.post("/v1/chat/completions", json=chat_body(model="tiny"))
    assert default["object"] == "list"
    assert [m["id"] for m in default["data"]] == list(ms.DEFAULT_MODELS)
    for model in default["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model"
    assert [m["id"] for m in configured["data"]] == ["alfred-4.2", "tiny"]
    assert ok.status_code == 200
    assert ok.json()["model"] == "tiny"


async def test_any_model_is_accepted_without_a_model_list() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        response = await client.post("/chat/completions", json=chat_body(model="whatever-7b"))
    assert response.status_code == 200


async def test_request_ids_are_unique_on_every_response() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        responses = [
            await client.post("/api/v2/chat/completions", json=chat_body()),
            await client.post("/api/v2/chat/completions", json=chat_body()),
            await client.get("/api/v2/models"),
            await client.get("/nowhere"),
            await client.get("/_mock/stats"),
            await client.post("/api/v2/chat/completions", content=b"nope"),
        ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert len(set(ids)) == len(ids)


async def test_attempts_count_per_key_and_completion_ids_differ() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        a1 = await client.post("/chat/completions", json=chat_body("a"), headers=keyed("k1"))
        a2 = await client.post("/chat/completions", json=chat_body("b"), headers=keyed("k1"))
        b1 = await client.post("/chat/completions", json=chat_body("a"))
        b2 = await client.post("/chat/completions", json=chat_body("a"))
    records = server.requests()
    assert [(r.key, r.attempt) for r in records][:2] == [("k1", 1), ("k1", 2)]
    assert records[2].key == records[3].key
    assert records[2].key.startswith("body-")
    assert [r.attempt for r in records[2:]] == [1, 2]
    assert len({r.json()["id"] for r in (a1, a2, b1, b2)}) == 4
