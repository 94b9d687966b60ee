"""Embeddings as Paradigm documents them (``input`` a string): the first request of
several inputs that the server refuses switches the client to one input per request for
that model: one wasted request (the other packs wait for the probe), a log record, an
event; ``pack_embeddings=False`` sends one input per request from the start."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt

from .helpers import Events, make_client

pytestmark = pytest.mark.anyio


class StringsOnly:
    """``/embeddings`` that takes a string ``input`` only (a list: 400), per model
    (``lists`` names the models that take lists)."""

    def __init__(self, lists: frozenset[str] = frozenset()) -> None:
        self.lists = lists
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        await trio.sleep(0.05)
        inputs = body["input"]
        if not isinstance(inputs, str) and body["model"] not in self.lists:
            return httpx2.Response(400, json={"detail": "input: Not a valid string."})
        texts = inputs if isinstance(inputs, list) else [inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 0.5]}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        return httpx2.Response(
            200, json={"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    def lists_sent(self, model: str | None = None) -> int:
        return sum(
            isinstance(b["input"], list) and (model is None or b["model"] == model)
            for b in self.bodies
        )


async def test_a_refused_pack_switches_the_model_once(caplog: pytest.LogCaptureFixture) -> None:
    server = StringsOnly()
    events = Events()
    texts = [f"text {i:03d}" for i in range(200)]
    caplog.set_level(logging.WARNING, logger="paradigm_trio")
    async with make_client(server, on_event=events, limits=pt.Limits(concurrency=16)) as client:
        results = await client.embed_batch(texts, pack_inputs=8, encoding_format="float")
        again = await client.embed_batch(texts[:20], pack_inputs=8, encoding_format="float")
    assert [r.ok for r in results] == [True] * 200
    assert [r.vector[0] for r in results] == [float(len(t)) for t in texts]
    assert all(r.ok for r in again)
    assert server.lists_sent() == 1  # the probe; the packs in waiting never went out
    assert len(server.bodies) == 1 + 200 + 20
    [event] = events.of(pt.EmbeddingPackingDisabled)
    assert (event.model, event.status) == (pt.DEFAULT_EMBEDDING_MODEL, 400)
    [record] = [
        r for r in caplog.records if getattr(r, "event", "") == "embedding_packing_disabled"
    ]
    assert record.levelno == logging.WARNING


async def test_learning_is_per_model() -> None:
    server = StringsOnly(lists=frozenset({"lists-ok"}))
    async with make_client(server) as client:
        items = [
            pt.EmbeddingRequest(inputs=f"t{i}", model=m)
            for m in ("lists-ok", "strings")
            for i in range(10)
        ]
        results = await client.embed_batch(items, pack_inputs=5)
    assert all(r.ok for r in results)
    assert server.lists_sent("lists-ok") == 2  # two packs of 5, both taken
    assert server.lists_sent("strings") == 1


async def test_embed_of_several_inputs_learns_and_splits() -> None:
    server = StringsOnly()
    events = Events()
    async with make_client(server, on_event=events) as client:
        first = await client.embed(["a", "bb", "ccc"], encoding_format="float")
        second = await client.embed(["dddd", "e"], encoding_format="float")
    assert [e.vector[0] for e in first.data] == [1.0, 2.0, 3.0]
    assert [e.index for e in first.data] == [0, 1, 2]
    assert first.usage == pt.Usage(3, 0, 3)
    assert [e.vector[0] for e in second.data] == [4.0, 1.0]
    assert server.lists_sent() == 1
    assert len(events.of(pt.EmbeddingPackingDisabled)) == 1


async def test_packing_off_up_front_sends_no_list() -> None:
    server = StringsOnly()
    events = Events()
    async with make_client(server, pack_embeddings=False, on_event=events) as client:
        results = await client.embed_batch([f"t{i}" for i in range(30)], pack_inputs=10)
        one = await client.embed(["a", "b"])
        item = await client.embed_batch([pt.EmbeddingRequest(inputs=["x", "yy"])])
    assert all(r.ok for r in results)
    assert len(one.data) == 2
    assert item[0].ok and len(item[0].embeddings.data) == 2  # noqa: PT018
    assert server.lists_sent() == 0
    assert events.of(pt.EmbeddingPackingDisabled) == []


async def test_a_server_that_takes_lists_still_gets_packs() -> None:
    server = StringsOnly(lists=frozenset({pt.DEFAULT_EMBEDDING_MODEL}))
    async with make_client(server, limits=pt.Limits(concurrency=8)) as client:
        results = await client.embed_batch([f"t{i}" for i in range(64)], pack_inputs=16)
    assert all(r.ok for r in results)
    assert len(server.bodies) == 4


def test_pack_embeddings_is_checked() -> None:
    with pytest.raises(pt.ConfigurationError, match="pack_embeddings"):
        make_client(StringsOnly(), pack_embeddings="no")
