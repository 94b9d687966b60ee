"""``/query``, ``/filter/chunks``, ``/chat/document-search`` and ``/api/v3/threads/turns``
over the mock's files: the reference's shapes, deterministic lexical scores, citations,
scopes, and bad requests named."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from . import _paradigm_reference as ref
from ._helpers import assert_error_envelope
from ._paradigm import DOCS, paradigm, upload, upload_docs

pytestmark = pytest.mark.anyio


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"\w+", text)}


async def test_query_answers_one_item_per_query_with_lexical_scores() -> None:
    async with paradigm() as (server, client):
        await upload_docs(client)
        one = await client.post("/query", json={"query": "the cat on the mat"})
        several = await client.post("/query", json={"query": ["red robin", "dog door"], "n": 2})
        v1 = await client.post(server.root_url + "/v1/query", json={"query": "red robin"})
    assert one.status_code == 200
    ref.assert_shape(one.json(), ref.QUERY)
    [item] = one.json()
    assert item["query"] == "the cat on the mat"
    assert len(item["chunks"]) == 3  # default n is 5; three one-chunk files
    best = item["chunks"][0]
    assert best["metadata"] == {"file_id": 1, "filename": "cats.txt"}
    query = _words("the cat on the mat")
    expected = round(len(query & _words(DOCS["cats.txt"])) / len(query), 4)
    assert best["score"] == expected == 1.0
    scores = [c["score"] for c in item["chunks"]]
    assert scores == sorted(scores, reverse=True)
    ref.assert_shape(several.json(), ref.QUERY)
    assert [i["query"] for i in several.json()] == ["red robin", "dog door"]
    assert [len(i["chunks"]) for i in several.json()] == [2, 2]
    assert several.json()[0]["chunks"][0]["metadata"]["filename"] == "birds.txt"
    assert several.json()[0] == v1.json()[0] | {"chunks": v1.json()[0]["chunks"][:2]}


async def test_scores_and_chunk_ids_are_deterministic_across_servers() -> None:
    answers = []
    for seed in (0, 0, 1):
        async with paradigm(seed=seed) as (_, client):
            await upload_docs(client, chunk_size=4, chunk_overlap=1)
            answers.append((await client.post("/query", json={"query": "dog", "n": 3})).json())
    assert answers[0] == answers[1]
    chunks = answers[0][0]["chunks"]
    # dogs.txt in runs of 4 words, each 3 after the last; "Dogs" is not the word "dog".
    assert [(c["text"], c["score"]) for c in chunks] == [
        ("page two the dog", 1.0),
        ("dog sleeps by the", 1.0),
        ("The cat sat on", 0.0),
    ]
    other_seed = answers[2][0]["chunks"]
    assert [c["text"] for c in other_seed] == [c["text"] for c in chunks]
    assert {c["uuid"] for c in other_seed}.isdisjoint(c["uuid"] for c in chunks)


async def test_collection_selects_the_files_uploaded_to_it() -> None:
    async with paradigm() as (_, client):
        await upload(client, "a.txt", "apples grow on trees", collection=7)
        await upload(client, "b.txt", "apples are red", collection=8)
        seven = await client.post("/query", json={"query": "apples", "collection": "7"})
        every = await client.post("/query", json={"query": "apples", "collection": None})
    assert [c["metadata"]["filename"] for c in seven.json()[0]["chunks"]] == ["a.txt"]
    assert len(every.json()[0]["chunks"]) == 2


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        ({}, "query", "missing_required_parameter"),
        ({"query": 3}, "query", "invalid_value"),
        ({"query": []}, "query", "invalid_value"),
        ({"query": ["ok", ""]}, "query[1]", "invalid_value"),
        ({"query": "x", "n": 0}, "n", "integer_below_min_value"),
        ({"query": "x", "n": "5"}, "n", "invalid_type"),
        ({"query": "x", "collection": 3}, "collection", "invalid_type"),
    ],
)
async def test_bad_queries_are_named(payload: dict[str, Any], param: str, code: str) -> None:
    async with paradigm() as (_, client):
        response = await client.post("/query", json=payload)
    assert assert_error_envelope(response, 400, code)["param"] == param


async def test_filter_chunks_keeps_those_that_pass_best_first() -> None:
    async with paradigm() as (_, client):
        await upload_docs(client)
        found = (await client.post("/query", json={"query": "the", "n": 3})).json()
        ids = [c["uuid"] for c in found[0]["chunks"]]
        ranked = await client.post(
            "/filter/chunks", json={"query": "cat mat dog", "chunk_ids": ids, "model": "x"}
        )
        first = await client.post(
            "/filter/chunks", json={"query": "cat mat dog", "chunk_ids": ids, "n": 1}
        )
    assert ranked.status_code == 200
    ref.assert_shape(ranked.json(), ref.FILTER_CHUNKS)
    chunks = ranked.json()["chunks"]
    assert [c["metadata"]["filename"] for c in chunks] == ["cats.txt", "dogs.txt"]  # birds: 0
    query, cats = _words("cat mat dog"), _words(chunks[0]["text"])
    expected = round(len(query & cats) / math.sqrt(len(query) * len(cats)), 4)
    assert chunks[0]["filter_score"] == expected
    assert [c["uuid"] for c in first.json()["chunks"]] == [chunks[0]["uuid"]]


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        ({"chunk_ids": ["3c90c3cc-0d44-4b50-8888-8dd25736052a"]}, "query", None),
        ({"query": "q"}, "chunk_ids", "missing_required_parameter"),
        ({"query": "q", "chunk_ids": []}, "chunk_ids", "invalid_value"),
        ({"query": "q", "chunk_ids": ["nope"]}, "chunk_ids[0]", "invalid_value"),
        (
            {"query": "q", "chunk_ids": ["3c90c3cc-0d44-4b50-8888-8dd25736052a"]},
            "chunk_ids[0]",
            "chunk_not_found",
        ),
    ],
)
async def test_bad_filters_are_named(payload: dict[str, Any], param: str, code: str | None) -> None:
    async with paradigm() as (_, client):
        response = await client.post("/filter/chunks", json=payload)
    assert assert_error_envelope(response, 400, code)["param"] == param


async def test_document_search_cites_the_chunks_it_used() -> None:
    async with paradigm() as (server, client):
        ids = await upload_docs(client, chunk_size=6)
        response = await client.post(
            "/chat/document-search",
            json={"query": "where does the dog sleep", "file_ids": [ids["dogs.txt"]]},
        )
        follow = await client.post(
            "/chat/document-search",
            json={"query": "dog", "file_ids": [2], "chat_session_id": 1, "model": "alfred-4"},
        )
    assert response.status_code == 200
    data = response.json()
    ref.assert_shape(data, ref.DOCUMENT_SEARCH)
    assert data["chat_session_id"] == 1
    assert data["model"] == "alfred-4.2"
    [doc] = data["documents"]
    assert (doc["id"], doc["name"]) == (ids["dogs.txt"], "dogs.txt")
    extracts = doc["document_extracts"]
    assert 1 <= len(extracts) <= 3
    for extract in extracts:
        assert extract["text"].split()[0] in data["answer"]  # each one is quoted
        assert extract["metadata"]["total_pages"] == "2"
    pages = {e["metadata"]["pages"] for e in extracts}
    assert "2" in pages  # "the dog sleeps by the door" is on page two
    assert follow.json()["chat_session_id"] == 1
    assert follow.json()["model"] == "alfred-4"
    *_, first, _ = server.requests()
    assert first.path == "/api/v2/chat/document-search"
    assert first.completion_tokens == len(data["answer"].split())


async def test_document_search_scopes_and_tools() -> None:
    async with paradigm() as (_, client):
        await upload(client, "mine.txt", "private notes about owls")
        await upload(client, "firm.txt", "company policy about owls", collection_type="company")
        await upload(
            client, "team.txt", "team wiki about owls", collection_type="workspace", workspace_id=4
        )

        async def cited(**scope: Any) -> list[str]:
            answer = await client.post("/chat/document-search", json={"query": "owls", **scope})
            assert answer.status_code == 200, answer.text
            return [d["name"] for d in answer.json()["documents"]]

        assert await cited() == []
        assert await cited(private_scope=True) == ["mine.txt"]
        assert await cited(company_scope=True) == ["firm.txt"]
        assert await cited(workspace_ids=[4]) == ["team.txt"]
        assert await cited(workspace_ids=[5], file_ids=[1]) == ["mine.txt"]
        assert sorted(await cited(private_scope=True, company_scope=True)) == [
            "firm.txt",
            "mine.txt",
        ]
        text = await client.post("/chat/document-search", json={"query": "owls", "file_ids": [1]})
        vision = await client.post(
            "/chat/document-search",
            json={"query": "owls", "file_ids": [1], "tool": "VisionDocumentSearch"},
        )
        nothing = await client.post("/chat/document-search", json={"query": "owls"})
    assert vision.json()["documents"] == text.json()["documents"]
    assert "image of page 1" in vision.json()["answer"]
    assert "image" not in text.json()["answer"]
    assert nothing.json()["answer"] == "I could not find the answer in the documents in scope."


async def test_document_search_guided_choice_picks_one_choice() -> None:
    async with paradigm() as (_, client):
        await upload_docs(client)
        body = {
            "query": "is the cat happy?",
            "private_scope": True,
            "extra_body": {"guided_choice": ["positive", "negative"]},
        }
        answer = (await client.post("/chat/document-search", json=body)).json()
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
        body["extra_body"] = {"guided_json": schema}
        as_json = (await client.post("/chat/document-search", json=body)).json()
    assert answer["answer"] in ("positive", "negative")
    assert isinstance(json.loads(as_json["answer"])["n"], int)


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        ({}, "query", "missing_required_parameter"),
        ({"query": "q", "tool": "WebSearch"}, "tool", "invalid_value"),
        ({"query": "q", "file_ids": ["1"]}, "file_ids[0]", "invalid_type"),
        ({"query": "q", "file_ids": [99]}, "file_ids[0]", "file_not_found"),
        ({"query": "q", "workspace_ids": 3}, "workspace_ids", "invalid_type"),
        ({"query": "q", "company_scope": "yes"}, "company_scope", "invalid_type"),
        ({"query": "q", "extra_body": {"temperature": 0}}, "extra_body.temperature", None),
        ({"query": "q", "extra_body": {"guided_choice": []}}, "extra_body.guided_choice", None),
        ({"query": "q", "chat_session_id": 0}, "chat_session_id", None),
        ({"query": "q", "rewrite_query": 1}, "rewrite_query", "invalid_type"),
    ],
)
async def test_bad_document_searches_are_named(
    payload: dict[str, Any], param: str, code: str | None
) -> None:
    async with paradigm() as (_, client):
        response = await client.post("/chat/document-search", json=payload)
    assert assert_error_envelope(response, 400, code)["param"] == param


async def test_thread_turn_answers_with_a_tool_call_and_a_text_part() -> None:
    async with paradigm() as (server, client):
        await upload_docs(client)
        url = server.root_url + "/api/v3/threads/turns"
        turn = await client.post(url, json={"query": "red robin", "private_scope": True})
        plain = await client.post(url, json={"query": "hello"})
        immediate = await client.post(
            url, json={"query": "red robin", "file_ids": [3], "immediate_final_answer": True}
        )
    assert turn.status_code == 200
    data = turn.json()
    ref.assert_shape(data, ref.TURN)
    assert data["status"] in ref.TURN_STATUSES
    user, agent = data["messages"]
    assert (user["role"], agent["role"]) == ("user", "assistant")
    assert user["parts"] == [{"type": "text", "text": "red robin"}]
    call, text = agent["parts"]
    assert [call["type"], text["type"]] == ["tool_call", "text"]
    assert all(part["type"] in ref.PART_TYPES for part in agent["parts"])
    result = call["tool_call"]["result"]
    assert set(result) == {"text", "chunk_sources", "web_sources", "file_artifacts"}
    assert result["chunk_sources"][0]["filename"] == "birds.txt"
    assert "birds.txt" in text["text"]
    assert [p["type"] for p in plain.json()["messages"][1]["parts"]] == ["text"]
    assert [p["type"] for p in immediate.json()["messages"][1]["parts"]] == ["text"]
    assert data["thread"] != plain.json()["thread"]


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        ({}, "query", "missing_required_parameter"),
        ({"query": "q", "background": True}, "background", "unsupported_by_mock"),
        ({"query": "q", "max_steps": 21}, "max_steps", "integer_above_max_value"),
        ({"query": "q", "name": "n" * 256}, "name", "string_above_max_length"),
        ({"query": "q", "agent_id": "a"}, "agent_id", "invalid_type"),
        ({"query": "q", "response_format": "json"}, "response_format", None),
    ],
)
async def test_bad_turns_are_named(payload: dict[str, Any], param: str, code: str | None) -> None:
    async with paradigm() as (server, client):
        response = await client.post(server.root_url + "/api/v3/threads/turns", json=payload)
    assert assert_error_envelope(response, 400, code)["param"] == param
