"""Paradigm's own routes take the chat route's path: auth, request log, scripted and
drawn faults, quotas, stats; an upload or a delete that fails changes nothing."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

import mock_server as ms
from mock_server._determinism import body_key

from ._helpers import assert_error_envelope, keyed
from ._paradigm import paradigm, upload, upload_docs

pytestmark = pytest.mark.anyio

CHUNK = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
#: (method, path under the root, JSON body or None); files 1-3 exist (see _prepare).
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/v2/tokenize", {"model": "alfred-4", "prompt": "hello"}),
    ("POST", "/api/v2/query", {"query": "cat"}),
    ("POST", "/api/v2/filter/chunks", {"query": "cat", "chunk_ids": [CHUNK]}),
    ("POST", "/api/v2/chat/document-search", {"query": "cat", "private_scope": True}),
    ("POST", "/v1/completions", {"model": "alfred-4", "prompt": "hello"}),
    ("POST", "/api/v3/threads/turns", {"query": "cat"}),
    ("GET", "/api/v2/files", None),
    ("GET", "/v1/files/1", None),
    ("DELETE", "/api/v2/files/2", None),
    ("POST", "/api/v2/files", None),
]
IDS = [f"{method} {path}" for method, path, _ in ROUTES]


async def _prepare(client: httpx2.AsyncClient) -> str:
    """Upload the three documents; the UUID of a chunk (for /filter/chunks)."""
    await upload_docs(client)
    found = (await client.post("/query", json={"query": "cat", "n": 1})).json()
    return str(found[0]["chunks"][0]["uuid"])


async def _send(
    client: httpx2.AsyncClient,
    root: str,
    route: tuple[str, str, dict[str, Any] | None],
    chunk: str,
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    method, path, body = route
    if path.endswith("/files") and method == "POST":
        return await upload(client, "new.txt", "a new cat file", headers=headers)
    if body is not None and "chunk_ids" in body:
        body = {**body, "chunk_ids": [chunk]}
    return await client.request(method, root + path, json=body, headers=headers)


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
async def test_scripted_faults_by_key_then_success(
    route: tuple[str, str, dict[str, Any] | None],
) -> None:
    async with paradigm() as (server, client):
        chunk = await _prepare(client)
        files_before = server.files()
        server.reset()
        server.script("k1", ["503", "500"])
        first = await _send(client, server.root_url, route, chunk, keyed("k1"))
        second = await _send(client, server.root_url, route, chunk, keyed("k1"))
        assert server.files() == files_before  # a failed request changed nothing
        third = await _send(client, server.root_url, route, chunk, keyed("k1"))
        records = server.requests()
        stats = server.stats()
    assert_error_envelope(first, 503, "service_unavailable")
    assert_error_envelope(second, 500)
    assert third.status_code in (200, 201), third.text
    assert [(r.key, r.attempt, r.outcome) for r in records] == [
        ("k1", 1, "503"),
        ("k1", 2, "500"),
        ("k1", 3, "ok"),
    ]
    assert {r.path for r in records} == {route[1]}
    assert records[2].status == third.status_code
    assert all(r.finish is not None for r in records)
    assert stats.total == 3
    assert dict(stats.by_outcome) == {"503": 1, "500": 1, "ok": 1}
    assert dict(stats.by_path) == {route[1]: 3}


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
async def test_drawn_faults_reach_every_route(
    route: tuple[str, str, dict[str, Any] | None],
) -> None:
    async with paradigm() as (server, client):
        chunk = await _prepare(client)
        server.configure(faults=ms.FaultRates(rate_limit=1.0), retry_after=2.5)
        limited = await _send(client, server.root_url, route, chunk)
        server.configure(faults=ms.FaultRates(malformed=1.0))
        malformed = await _send(client, server.root_url, route, chunk, keyed("m"))
    assert_error_envelope(limited, 429, "rate_limit_exceeded")
    assert limited.headers["retry-after"] == "3"
    assert limited.headers["retry-after-ms"] == "2500"
    assert malformed.status_code in (200, 201)
    with pytest.raises(ValueError, match=r"Expecting|Unterminated|Extra"):
        malformed.json()


async def test_quotas_count_every_route() -> None:
    async with paradigm() as (server, client):
        chunk = await _prepare(client)
        server.configure(rpm=len(ROUTES))
        answers = [await _send(client, server.root_url, route, chunk) for route in ROUTES]
        over = await client.post("/query", json={"query": "one more"})
        records = server.requests()
    assert [a.status_code for a in answers] == [200] * 9 + [201]
    assert answers[0].headers["x-ratelimit-limit-requests"] == str(len(ROUTES))
    assert answers[-1].headers["x-ratelimit-remaining-requests"] == "0"
    error = assert_error_envelope(over, 429, "rate_limit_exceeded")
    assert error["type"] == "requests"
    assert records[-1].outcome == "quota"


async def test_tokens_per_minute_are_charged_by_what_runs_a_model() -> None:
    async with paradigm(tpm=100, default_max_tokens=64) as (server, client):
        tokenize = await client.post("/tokenize", json={"model": "m", "prompt": "x" * 400})
        files = await client.get("/files")
        search = await client.post("/chat/document-search", json={"query": "x" * 200})
        small = await client.post("/query", json={"query": "x" * 40})
        records = server.requests()
    assert tokenize.status_code == files.status_code == small.status_code == 200
    assert tokenize.json()["total_tokens"] == 100
    error = assert_error_envelope(search, 429, "rate_limit_exceeded")
    assert error["type"] == "tokens"
    assert search.headers["x-should-retry"] == "false"  # 50 + 64 tokens never fit in 100
    assert small.headers["x-ratelimit-remaining-tokens"] == "90"
    assert [r.outcome for r in records] == ["ok", "ok", "quota", "ok"]


async def test_a_reset_upload_is_not_stored_and_its_retry_is_stored_once() -> None:
    async with paradigm() as (server, client):
        server.script("up", ["reset", "ok"])
        with pytest.raises(httpx2.TransportError):
            await upload(client, "a.txt", "alpha", headers=keyed("up"))
        assert server.files() == []
        retried = await upload(client, "a.txt", "alpha", headers=keyed("up"))
        assert retried.status_code == 201
        assert [f["filename"] for f in server.files()] == ["a.txt"]
        # A broken answer comes after the file was stored: a retry would store it again.
        server.script("broken", ["truncated"])
        with pytest.raises(httpx2.TransportError):
            await upload(client, "b.txt", "beta", headers=keyed("broken"))
        assert [f["filename"] for f in server.files()] == ["a.txt", "b.txt"]


async def test_keys_of_requests_without_a_body_name_the_method_and_path() -> None:
    async with paradigm() as (server, client):
        await client.get("/files", params={"page": 1})
        await client.get("/files", params={"page": 1})
        await client.get("/files/1")
        records = server.requests()
    expected = body_key(b"GET /api/v2/files?page=1")
    assert [(r.key, r.attempt) for r in records] == [
        (expected, 1),
        (expected, 2),
        (body_key(b"GET /api/v2/files/1?"), 1),
    ]
    assert records[2].status == 404


async def test_every_route_needs_the_key_when_one_is_set() -> None:
    async with paradigm(api_key="sk-test") as (server, client):
        answers = [await _send(client, server.root_url, route, CHUNK) for route in ROUTES]
        assert server.files() == []
    for answer in answers:
        assert_error_envelope(answer, 401, "invalid_api_key")


async def test_latency_delays_every_route() -> None:
    async with paradigm(latency=ms.Latency.fixed(0.05)) as (server, client):
        chunk = await _prepare(client)
        server.reset()
        for route in ROUTES:
            await _send(client, server.root_url, route, chunk)
        records = server.requests()
    assert len(records) == len(ROUTES)
    for record in records:
        assert record.finish is not None
        assert record.finish - record.arrival >= 0.05, record.path
