"""Paradigm's own endpoints on ``httpx2.MockTransport``: tokenize (its three answer
shapes), query, filter/chunks, document search; their requests, parsers, the engine path
(retries, events) and the endpoint batches (tokenize, query, mixed)."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

import paradigm_trio as pt

from . import paradigm_fixtures as fx
from .helpers import Events, Script, fixed, make_client, ok, status

pytestmark = pytest.mark.anyio


class Recorder:
    """Answers each path with a fixed body and keeps the JSON bodies it was sent."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.bodies: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.removeprefix("/api/v2")
        body = json.loads(request.content)
        self.bodies.append((path, body))
        answer = self.answers[path]
        return httpx2.Response(200, json=answer(body) if callable(answer) else answer)


@pytest.mark.parametrize(
    ("answer", "count", "model", "tokens"),
    [
        (fx.TOKENIZE_CURRENT, 12, "alfred-4.2", None),
        (fx.TOKENIZE_OLDER, 3, "alfred-4", 3),
        (fx.TOKENIZE_GUIDE, 4, "alfred-4", 4),
    ],
)
async def test_tokenize_reads_the_three_documented_shapes(
    answer: dict[str, Any], count: int, model: str, tokens: int | None
) -> None:
    rec = Recorder({"/tokenize": answer})
    async with make_client(rec) as client:
        result = await client.tokenize("This a test string", model="alfred-4")
    assert result.count == count
    assert result.model == model
    assert (None if result.tokens is None else len(result.tokens)) == tokens
    assert result.raw == answer
    assert rec.bodies == [("/tokenize", {"model": "alfred-4", "prompt": "This a test string"})]


async def test_tokenize_messages_and_chat_request() -> None:
    rec = Recorder({"/tokenize": fx.TOKENIZE_CURRENT})
    messages = [{"role": "user", "content": "Hi"}]
    async with make_client(rec, model="alfred-4.2") as client:
        await client.tokenize(messages)
        await client.tokenize(pt.ChatRequest(messages=messages, model="alfred-ft5"))
    assert rec.bodies[0][1] == {"model": "alfred-4.2", "messages": messages}
    assert rec.bodies[1][1] == {"model": "alfred-ft5", "messages": messages}


async def test_tokenize_without_a_count_is_an_invalid_response() -> None:
    rec = Recorder({"/tokenize": {"model": "alfred-4", "object": "tokenization"}})
    async with make_client(rec, retry=fixed(attempts=1)) as client:
        with pytest.raises(pt.APIResponseValidationError, match="no token count"):
            await client.tokenize("x")


@pytest.mark.parametrize(
    "bad",
    [{"prompt": ""}, {"prompt": "a", "messages": [{"role": "user", "content": "a"}]}, {}],
)
def test_tokenize_request_needs_exactly_one_non_empty_input(bad: dict[str, Any]) -> None:
    with pytest.raises(pt.InvalidRequestError):
        pt.TokenizeRequest(**bad)


async def test_tokenize_is_retried_by_the_engine() -> None:
    script = Script(status(503), httpx2.Response(200, json=fx.TOKENIZE_GUIDE))
    events = Events()
    async with make_client(script, retry=fixed(attempts=3), on_event=events) as client:
        result = await client.tokenize("x")
    assert result.count == 4
    assert len(script.requests) == 2
    assert len(events.of(pt.RetryScheduled)) == 1
    assert client.statistics().succeeded == 1


async def test_query_one_and_several() -> None:
    def answer(body: dict[str, Any]) -> list[dict[str, Any]]:
        queries = body["query"] if isinstance(body["query"], list) else [body["query"]]
        return [{**fx.QUERY[0], "query": q} for q in queries]

    rec = Recorder({"/query": answer})
    async with make_client(rec) as client:
        [one] = await client.query("What is the notice period?", collection="hr", n=3)
        two = await client.query(["a", "b"])
    assert one.query == "What is the notice period?"
    [chunk] = one.chunks
    assert (chunk.uuid, chunk.text, chunk.score, chunk.metadata) == (
        "3c90c3cc-0d44-4b50-8888-8dd25736052a", "The notice period is three months.", 0.82, {},
    )  # fmt: skip
    assert [r.query for r in two] == ["a", "b"]
    assert rec.bodies[0][1] == {"query": "What is the notice period?", "collection": "hr", "n": 3}
    assert rec.bodies[1][1] == {"query": ["a", "b"]}


async def test_query_answer_without_chunks_is_invalid() -> None:
    rec = Recorder({"/query": [{"query": "a"}]})
    async with make_client(rec, retry=fixed(attempts=1)) as client:
        with pytest.raises(pt.APIResponseValidationError, match="chunks"):
            await client.query("a")


async def test_query_tolerates_missing_optional_fields_and_keeps_unknown_ones() -> None:
    rec = Recorder({"/query": [{"chunks": [{"uuid": "u", "new_field": 1}]}]})
    async with make_client(rec) as client:
        [result] = await client.query("a")
    assert result.query == "a"
    [chunk] = result.chunks
    assert (chunk.text, chunk.score, chunk.metadata, chunk.raw["new_field"]) == ("", None, {}, 1)


async def test_filter_chunks() -> None:
    rec = Recorder({"/filter/chunks": fx.FILTER})
    async with make_client(rec) as client:
        result = await client.filter_chunks("What is the notice period?", ["u1", "u2"], n=1)
    assert result.chunks[0].score == 0.9
    assert rec.bodies == [
        (
            "/filter/chunks",
            {"query": "What is the notice period?", "chunk_ids": ["u1", "u2"], "n": 1},
        )
    ]
    with pytest.raises(pt.InvalidRequestError):
        pt.FilterRequest(query="q", chunk_ids=[])
    with pytest.raises(pt.InvalidRequestError):
        pt.FilterRequest(query="q", chunk_ids="u1")


async def test_document_search_scopes_tool_and_answer() -> None:
    rec = Recorder({"/chat/document-search": fx.DOCUMENT_SEARCH})
    async with make_client(rec) as client:
        answer = await client.document_search(
            "What is the notice period?", workspace_ids=[12], company_scope=True,
            tool="VisionDocumentSearch", extra_body={"guided_choice": ["a", "b"]},
        )  # fmt: skip
    assert answer.answer == "Three months."
    assert answer.chat_session_id == 123
    [doc] = answer.documents
    assert (doc.id, doc.name) == (7, "contract.pdf")
    [extract] = answer.extracts
    assert extract.metadata["pages"] == "3"
    assert answer.raw["chat_settings"] == {"company": "ACME", "instruction": ""}
    assert rec.bodies[0][1] == {
        "query": "What is the notice period?", "workspace_ids": [12], "company_scope": True,
        "tool": "VisionDocumentSearch", "extra_body": {"guided_choice": ["a", "b"]},
    }  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        {"tool": "WebSearch"},
        {"extra_body": {"temperature": 0}},
        {"workspace_ids": ["a"]},
        {"company_scope": "yes"},
    ],
)
def test_document_search_request_is_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(pt.InvalidRequestError):
        pt.DocumentSearchRequest(query="q", **bad)


async def test_document_search_without_answer_is_invalid() -> None:
    rec = Recorder({"/chat/document-search": {"documents": []}})
    async with make_client(rec, retry=fixed(attempts=1)) as client:
        with pytest.raises(pt.APIResponseValidationError, match="answer"):
            await client.document_search("q")


async def test_tokenize_batch_one_result_per_item_with_faults() -> None:
    seen: dict[str, int] = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        prompt = body["prompt"]
        seen[prompt] = seen.get(prompt, 0) + 1
        if prompt.endswith("7") and seen[prompt] == 1:
            return httpx2.Response(503)
        if prompt == "p13":
            return httpx2.Response(400, json={"detail": "bad"})
        return httpx2.Response(200, json={**fx.TOKENIZE_CURRENT, "total_tokens": len(prompt)})

    items: list[Any] = [f"p{i}" for i in range(20)]
    items[5] = 42  # not a prompt: that item's error, nothing sent
    async with make_client(handler, retry=fixed(attempts=3)) as client:
        results = await client.tokenize_batch(items, model="alfred-4")
    assert [r.index for r in results] == list(range(20))
    assert isinstance(results[5].error, pt.InvalidRequestError)
    assert isinstance(results[13].error, pt.BadRequestError)
    assert results[7].ok
    assert results[7].attempts == 2
    assert results[7].value.count == 2
    assert results[17].value.count == 3
    assert sum(r.ok for r in results) == 18
    assert results.statistics.done == 20


async def test_query_batch() -> None:
    rec = Recorder({"/query": lambda b: [{"query": b["query"], "chunks": []}]})
    async with make_client(rec) as client:
        results = await client.query_batch(["a", "b", "c"], collection="hr", n=2)
    assert [r.value[0].query for r in results] == ["a", "b", "c"]
    assert all(body["collection"] == "hr" and body["n"] == 2 for _, body in rec.bodies)


async def test_mixed_batch_any_endpoint() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.removeprefix("/api/v2")
        if path == "/chat/completions":
            return ok()
        if path == "/embeddings":
            return httpx2.Response(
                200, json={"object": "list", "model": "e", "data": [
                    {"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]},
            )  # fmt: skip
        return httpx2.Response(200, json={
            "/tokenize": fx.TOKENIZE_GUIDE, "/query": fx.QUERY, "/filter/chunks": fx.FILTER,
            "/chat/document-search": fx.DOCUMENT_SEARCH,
        }[path])  # fmt: skip

    requests = [
        pt.ChatRequest(messages=[{"role": "user", "content": "Hi"}], custom_id="c"),
        pt.EmbeddingRequest(inputs="x", encoding_format="float"),
        pt.TokenizeRequest(prompt="x"),
        pt.QueryRequest(query="q"),
        pt.FilterRequest(query="q", chunk_ids=["u"]),
        pt.DocumentSearchRequest(query="q"),
        "not a request",
    ]
    async with make_client(handler) as client:
        results = await client.batch_requests(requests)
    values = [r.value for r in results]
    assert isinstance(values[0], pt.ChatCompletion)
    assert results[0].custom_id == "c"
    assert results[0].usage is not None
    assert isinstance(values[1], pt.Embeddings)
    assert values[2].count == 4
    assert values[3][0].chunks[0].score == 0.82
    assert values[4].chunks[0].score == 0.9
    assert values[5].answer == "Three months."
    assert isinstance(results[6].error, pt.InvalidRequestError)


async def test_legacy_completion() -> None:
    rec = Recorder({"/completions": fx.TEXT_COMPLETION})
    async with make_client(rec, model="alfred-4.2") as client:
        done = await client.complete("The notice period is", max_tokens=5)
    assert done.text == " three months."
    assert done.usage == pt.Usage(5, 3, 8)
    assert rec.bodies == [
        ("/completions", {"model": "alfred-4.2", "prompt": "The notice period is", "max_tokens": 5})
    ]


async def test_thread_turn_goes_to_the_v3_root() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.path)
        return httpx2.Response(200, json=fx.TURN)

    async with make_client(handler) as client:
        turn = await client.thread_turn("What is the notice period?", workspace_ids=[12])
    assert seen == ["/api/v3/threads/turns"]
    assert turn.text == "Three months."
    assert [p["type"] for p in turn.parts] == ["text", "reasoning", "tool_call", "text"]
    assert (turn.status, turn.thread) == ("completed", "thread-1")
    with pytest.raises(pt.InvalidRequestError):
        pt.TurnRequest(query="q", max_steps=30)
