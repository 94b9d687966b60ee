"""The repeats of Paradigm's endpoint batches (``tokenize_batch``, ``query_batch``,
``batch_requests``) on ``httpx2.MockTransport`` and the autojump clock: identical
deterministic requests sent once, the response cache, hedged stragglers; never for what
must not be sent twice (a thread's turn) nor shared when it may change (a search)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt

from . import paradigm_fixtures as fx
from .helpers import make_client, ok

pytestmark = pytest.mark.anyio

HEDGE = pt.Hedge(min_samples=5, max_share=0.5, percentile=90)


class Paths:
    """Answers ``/tokenize`` (its count: the prompt's length), ``/query``, the threads'
    turns and chat after ``latency(key, n)`` virtual seconds (``key``: the prompt, query
    or message; ``n``: its sends so far); keeps each send and those cancelled."""

    def __init__(self, latency: Callable[[str, int], float] = lambda key, n: 1.0) -> None:
        self.latency = latency
        self.sent: list[tuple[str, str]] = []
        self.cancelled: list[str] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.rsplit("/api/v2", 1)[-1]
        body = json.loads(request.content)
        key = str(body.get("prompt") or body.get("query") or body.get("messages"))
        n = sum(1 for sent in self.sent if sent[1] == key)
        self.sent.append((path, key))
        try:
            await trio.sleep(self.latency(key, n))
        except trio.Cancelled:
            self.cancelled.append(key)
            raise
        if path == "/tokenize":
            answer: Any = {**fx.TOKENIZE_CURRENT, "total_tokens": len(key) + 100 * n}
        elif path == "/query":
            answer = [{"query": key, "chunks": []}]
        elif path.endswith("/threads/turns"):
            answer = fx.TURN
        else:
            return ok(text=f"{key} #{n}")
        return httpx2.Response(200, json=answer)

    def count(self, path: str) -> int:
        return sum(1 for sent in self.sent if sent[0].endswith(path))


def client(handler: Paths, **kwargs: Any) -> pt.Client:
    kwargs.setdefault("limits", pt.Limits(concurrency=4))
    return make_client(handler, **kwargs)


async def test_identical_tokenize_requests_are_sent_once_searches_each_time() -> None:
    handler = Paths()
    async with client(handler) as c:
        counts = await c.tokenize_batch(["ab", "abc", "ab", "ab"])
        queries = await c.query_batch(["q", "q"])
        shared_queries = await c.query_batch(["q", "q"], dedupe="all")
    assert handler.count("/tokenize") == 2
    assert [r.value.count for r in counts] == [2, 3, 2, 2]
    assert [r.deduplicated for r in counts] == [False, False, True, True]
    assert [r.attempts for r in counts] == [1, 1, 0, 0]
    assert counts.statistics.deduplicated == 2
    assert not any(r.deduplicated for r in queries)  # a search follows the documents
    assert [r.deduplicated for r in shared_queries] == [False, True]  # asked for
    assert handler.count("/query") == 3


async def test_a_thread_turn_is_never_shared_nor_hedged() -> None:
    handler = Paths(lambda key, n: 100.0 if (key == "t3" and n == 0) else 1.0)
    turns = [pt.TurnRequest(query=f"t{i}") for i in range(8)]
    async with client(handler) as c:
        same = await c.batch_requests([pt.TurnRequest(query="x")] * 2, dedupe="all")
        results = await c.batch_requests(turns, hedge=HEDGE)
    assert not any(r.deduplicated for r in same)
    assert handler.count("/threads/turns") == 2 + 8  # each turn posted once, no copy
    assert results.statistics.hedges == 0
    assert not results[3].hedged


async def test_a_straggling_tokenize_request_is_hedged() -> None:
    handler = Paths(lambda key, n: 100.0 if (key == "p12" and n == 0) else 1.0)
    async with client(handler) as c:
        start = trio.current_time()
        results = await c.tokenize_batch([f"p{i}" for i in range(20)], hedge=HEDGE)
        took = trio.current_time() - start
    assert results[12].hedged
    assert results[12].value.count == 103  # the second send's answer
    assert handler.cancelled == ["p12"]
    assert (results.statistics.hedges, results.statistics.hedges_won) == (1, 1)
    assert not any(r.hedged for i, r in enumerate(results) if i != 12)
    assert took < 50


async def test_mixed_batch_keywords_fill_chat_requests_before_they_are_compared() -> None:
    handler = Paths()
    hi = [{"role": "user", "content": "hi"}]
    requests = [pt.ChatRequest(messages=hi), pt.ChatRequest(messages=hi),
                pt.TokenizeRequest(prompt="ab")]  # fmt: skip
    async with client(handler) as c:
        sampled = await c.batch_requests(requests)
        greedy = await c.batch_requests(requests, temperature=0)
    assert not any(r.deduplicated for r in sampled)  # sampled: each sent
    assert [r.deduplicated for r in greedy] == [False, True, False]
    assert handler.count("/chat/completions") == 3


async def test_endpoint_batches_read_and_fill_the_response_cache(tmp_path: Path) -> None:
    handler = Paths()
    cache = pt.ResponseCache(tmp_path / "answers.sqlite")
    async with client(handler, cache=cache) as c:
        first = await c.tokenize_batch(["ab", "abc"])
        first_queries = await c.query_batch(["q"])
    async with client(handler, cache=cache) as c:  # another client, the same file
        again = await c.tokenize_batch(["ab", "abc", "abcd"])
        queries = await c.query_batch(["q"])
    assert not any(r.cached for r in [*first, *first_queries])
    assert [r.cached for r in again] == [True, True, False]
    assert [r.value.count for r in again] == [2, 3, 4]
    assert again[0].value.raw == {**fx.TOKENIZE_CURRENT, "total_tokens": 2}
    assert again.statistics.cached == 2
    assert not queries[0].cached  # a search is never cached
    assert handler.count("/tokenize") == 3
    assert handler.count("/query") == 2
