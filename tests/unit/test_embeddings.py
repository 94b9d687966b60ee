"""Embeddings on ``httpx2.MockTransport``: the request, base64 and float decoding, the
parser's checks, numpy on demand, and batches (packing, splitting, a refused pack sent
again one by one, retries, deadlines, token estimates)."""

from __future__ import annotations

import base64
import json
import struct
import sys
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._endpoints._embeddings import joins, merge, split

from .helpers import Events, Script, fixed, make_client, status

pytestmark = pytest.mark.anyio


def vector_of(text: str, dimensions: int = 3) -> list[float]:
    """The test server's vector of ``text``: exact float32 values."""
    values = [float(len(text)), 0.5, -0.25, 2.0**-10][:dimensions]
    values += [0.125] * (dimensions - len(values))
    return values


class Embedder:
    """A handler answering ``/embeddings`` like the API: one vector per input."""

    def __init__(self, fail: Any = None, usage: bool = True) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail = fail
        self.usage = usage

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.path.endswith("/embeddings")
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.fail is not None:
            answer = self.fail(body, len(self.bodies))
            if answer is not None:
                return answer  # type: ignore[no-any-return]
        await trio.sleep(0.1)
        data = []
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        for index, text in enumerate(texts):
            vector = vector_of(text, body.get("dimensions", 3))
            embedding: object = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        data.reverse()  # the order of ``data`` is not promised: ``index`` is
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if self.usage:
            tokens = sum(len(text) for text in texts)
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return httpx2.Response(200, json=answer)


async def test_embed_sends_the_request_and_decodes_base64() -> None:
    handler = Embedder()
    async with make_client(handler) as client:
        answer = await client.embed(["hello", "hi"])
    [body] = handler.bodies
    assert body == {
        "model": "multilingual-e5-large",
        "input": ["hello", "hi"],
        "encoding_format": "base64",
    }
    assert [list(v) for v in answer.vectors] == [vector_of("hello"), vector_of("hi")]
    assert [e.index for e in answer.data] == [0, 1]
    assert answer.data[0].dimensions == 3
    # The OpenAI SDK's name for the vector, beside ours.
    assert [list(e.embedding) for e in answer.data] == [vector_of("hello"), vector_of("hi")]
    assert answer.data[1].embedding is answer.data[1].vector
    assert answer.model == "multilingual-e5-large"
    assert answer.usage == pt.Usage(7, 0, 7)
    assert "dimensions=3" in repr(answer.data[0])


async def test_embed_with_floats_dimensions_and_a_model() -> None:
    handler = Embedder()
    async with make_client(handler, embedding_model="e5") as client:
        answer = await client.embed(
            "one", encoding_format="float", dimensions=4, extra={"user": "u1"}
        )
        other = await client.embed(pt.EmbeddingRequest(inputs=["x"], model="m2"))
    assert handler.bodies[0] == {
        "model": "e5",
        "input": ["one"],
        "encoding_format": "float",
        "dimensions": 4,
        "user": "u1",
    }
    assert handler.bodies[1]["model"] == "m2"
    assert isinstance(answer.data[0].vector, list)
    assert answer.vectors == [vector_of("one", 4)]
    assert other.vectors[0][0] == 1.0


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ("", r"input\[0\] is empty"),
        ([], "input must not be empty"),
        (["ok", 3], r"input\[1\] must be a string"),
        (["x"] * 2049, "more than the 2048"),
        ("\ud800", "lone surrogate"),
    ],
)
async def test_an_invalid_embedding_request_sends_nothing(inputs: Any, message: str) -> None:
    script = Script()
    async with make_client(script) as client:
        with pytest.raises(pt.InvalidRequestError, match=message):
            await client.embed(inputs)
    assert script.calls == 0


def test_request_fields_are_validated() -> None:
    with pytest.raises(pt.InvalidRequestError, match="dimensions"):
        pt.EmbeddingRequest(inputs="x", dimensions=0)
    with pytest.raises(pt.InvalidRequestError, match="encoding_format"):
        pt.EmbeddingRequest(inputs="x", encoding_format="int8")  # type: ignore[arg-type]
    with pytest.raises(pt.InvalidRequestError, match="extra may not set input"):
        pt.EmbeddingRequest(inputs="x", extra={"input": "y"})
    assert pt.EmbeddingRequest(inputs="abcd").estimated_tokens() == 2
    assert pt.EmbeddingRequest(inputs=["abcd", "abcdefgh"]).estimated_tokens() == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": [{"index": 0, "embedding": "!!"}]}, "not valid base64"),
        ({"data": [{"index": 0, "embedding": "AAA="}]}, "not a whole number of float32s"),
        ({"data": [{"index": 0, "embedding": [1, "x"]}]}, "finite numbers"),
        ({"data": [{"index": 0, "embedding": [1.0]}]}, "expected 2 embedding"),
        ({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}, "index"),
        ({"object": "list"}, "data"),
    ],
)
async def test_a_bad_answer_is_an_invalid_response(data: Any, message: str) -> None:
    script = Script(default=httpx2.Response(200, json=data))
    async with make_client(script, retry=fixed(attempts=2)) as client:
        with pytest.raises(pt.APIResponseValidationError, match=message) as info:
            await client.embed(["a", "b"])
    assert script.calls == 2  # retried like any invalid response
    assert [a.cause for a in info.value.attempts] == ["invalid_response"] * 2
    assert info.value.status_code == 200


def test_numpy_arrays_when_asked_for() -> None:
    np = pytest.importorskip("numpy")
    answer = pt.Embeddings.from_json(
        {"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": "AACAPwAAAEA="}]}
    )
    matrix = answer.numpy()
    assert matrix.dtype == np.float32
    assert matrix.tolist() == [[1.0, 2.0], [1.0, 2.0]]
    assert answer.data[1].numpy().tolist() == [1.0, 2.0]


def test_numpy_missing_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    answer = pt.Embeddings.from_json({"data": [{"index": 0, "embedding": [1.0]}]})
    with pytest.raises(ImportError, match=r"needs numpy.*\.vector"):
        answer.numpy()
    assert list(answer.vectors[0]) == [1.0]


async def test_embed_runs_on_the_engine() -> None:
    handler = Embedder(fail=lambda body, n: status(503) if n == 1 else None)
    events = Events()
    async with make_client(handler, on_event=events, retry=fixed()) as client:
        answer = await client.embed("x", custom_id="doc-1")
        stats = client.statistics()
    assert [list(v) for v in answer.vectors] == [vector_of("x")]
    assert events.kinds() == [
        "AttemptStarted",
        "AttemptFailed",
        "RetryScheduled",
        "AttemptStarted",
        "RequestFinished",
    ]
    assert {e.custom_id for e in events} == {"doc-1"}
    assert stats.retries_by_cause == {"503": 1}
    assert stats.prompt_tokens == 1


# --------------------------------------------------------------------------- packing


def test_packing_rules() -> None:
    a = pt.EmbeddingRequest(inputs=["a" * 40])  # 11 tokens
    b = pt.EmbeddingRequest(inputs=["b" * 40, "c"])  # 11 + 2
    assert joins([a], b, max_inputs=3, max_tokens=100)
    assert not joins([a], b, max_inputs=2, max_tokens=100)
    assert not joins([a], b, max_inputs=3, max_tokens=23)
    for other in (
        pt.EmbeddingRequest(inputs="x", dimensions=8),
        pt.EmbeddingRequest(inputs="x", model="m"),
        pt.EmbeddingRequest(inputs="x", encoding_format="float"),
        pt.EmbeddingRequest(inputs="x", extra={"user": "u"}),
    ):
        assert not joins([a], other, max_inputs=9, max_tokens=99)
    merged = merge([a, b])
    assert merged.inputs == ("a" * 40, "b" * 40, "c")
    answer = pt.Embeddings.from_json(
        {
            "model": "m",
            "data": [{"index": i, "embedding": [float(i)]} for i in range(3)],
            "usage": {"prompt_tokens": 10, "total_tokens": 10},
        }
    )
    first, second = split(answer, [a, b])
    assert first.vectors == [[0.0]]
    assert second.vectors == [[1.0], [2.0]]
    assert [e.index for e in second.data] == [0, 1]
    assert second.raw["data"][1]["index"] == 1
    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.prompt_tokens + second.usage.prompt_tokens == 10
    assert (first.usage.prompt_tokens, second.usage.prompt_tokens) == (5, 5)


def packs(handler: Embedder) -> list[list[str]]:
    """The inputs of each request, in input order (trio starts the packs in any order)."""
    return sorted(body["input"] for body in handler.bodies)


async def test_embed_batch_packs_small_inputs_and_splits_the_answers() -> None:
    handler = Embedder()
    texts = [f"text number {i}" for i in range(10)]
    async with make_client(handler) as client:
        results = await client.embed_batch(texts, pack_inputs=4)
    assert [len(inputs) for inputs in packs(handler)] == [4, 4, 2]
    assert [r.index for r in results] == list(range(10))
    assert all(r.ok and r.attempts == 1 for r in results)
    assert [list(r.vector or []) for r in results] == [vector_of(t) for t in texts]
    assert results.statistics.succeeded == 10
    assert results.statistics.prompt_tokens == sum(len(t) for t in texts)  # shares add up
    assert results.statistics.completion_tokens == 0


async def test_pack_tokens_bounds_a_pack_and_pack_inputs_one_turns_packing_off() -> None:
    handler = Embedder()
    texts = ["x" * 400] * 3 + ["y"] * 3  # 101 tokens each, then 2 each
    async with make_client(handler) as client:  # (identical texts: not shared, for this test)
        await client.embed_batch(texts, pack_tokens=210, dedupe="off")
        packed = [len(inputs) for inputs in packs(handler)]
        handler.bodies.clear()
        await client.embed_batch(texts, pack_inputs=1, dedupe="off")
    assert packed == [2, 4]
    assert [len(body["input"]) for body in handler.bodies] == [1] * 6


async def test_requests_of_other_options_are_not_packed_together() -> None:
    handler = Embedder()
    items: list[str | pt.EmbeddingRequest] = [
        "a",
        "b",
        pt.EmbeddingRequest(inputs=["c", "d"], dimensions=2, custom_id="cd"),
        pt.EmbeddingRequest(inputs="e", dimensions=2),
        "f",
    ]
    async with make_client(handler) as client:
        results = await client.embed_batch(items, encoding_format="float")
    assert packs(handler) == [["a", "b"], ["c", "d", "e"], ["f"]]
    assert all(body["encoding_format"] == "float" for body in handler.bodies)
    assert results[2].custom_id == "cd"
    assert results[2].embeddings is not None
    assert results[2].embeddings.vectors == [vector_of("c", 2), vector_of("d", 2)]
    assert results[3].vector == vector_of("e", 2)


async def test_a_refused_pack_is_sent_again_one_by_one() -> None:
    def refuse_bad(body: dict[str, Any], n: int) -> httpx2.Response | None:
        if "bad" in body["input"]:
            return status(400, {"error": {"message": "input too long", "code": "too_long"}})
        return None

    handler = Embedder(fail=refuse_bad)
    async with make_client(handler) as client:
        results = await client.embed_batch(["a", "bad", "c"])
    assert handler.bodies[0]["input"] == ["a", "bad", "c"]
    # The refusal teaches the client that the model takes one input per request
    # (test_embeddings_learning.py): each is sent again alone, as a string.
    assert sorted(b["input"] for b in handler.bodies[1:]) == ["a", "bad", "c"]
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, pt.BadRequestError)
    assert [r.attempts for r in results] == [2, 2, 2]


async def test_a_pack_is_retried_whole_and_every_item_counts_its_attempts() -> None:
    handler = Embedder(fail=lambda body, n: status(503) if n == 1 else None)
    async with make_client(handler, retry=fixed()) as client:
        results = await client.embed_batch(["a", "b", "c"])
        stats = results.statistics
    assert all(r.ok and r.attempts == 2 for r in results)
    assert stats.retries == 1
    assert stats.retries_by_cause == {"503": 1}


async def test_invalid_items_are_results_and_the_others_run() -> None:
    handler = Embedder()
    items: list[Any] = ["a", "", 42, pt.EmbeddingRequest(inputs="d", custom_id="d"), "e"]
    async with make_client(handler) as client:
        results = await client.embed_batch(items)
    assert [r.ok for r in results] == [True, False, False, True, True]
    assert isinstance(results[1].error, pt.InvalidRequestError)
    assert "item 1" in str(results[1].error)
    assert "pass a string or an EmbeddingRequest" in str(results[2].error)
    assert [body["input"] for body in handler.bodies] == [["a", "d", "e"]]


async def test_the_deadline_reports_unsent_items_cancelled() -> None:
    handler = Embedder()
    async with make_client(handler, limits=pt.Limits(concurrency=1)) as client:
        deadline = trio.current_time() + 0.15
        results = await client.embed_batch(
            [f"t{i}" for i in range(6)], pack_inputs=2, deadline=deadline
        )
    assert [r.ok for r in results] == [True, True, False, False, False, False]
    assert all(r.cancelled for r in results[2:])
    assert results.statistics.cancelled == 4


async def test_token_estimates_are_charged_to_the_rate_limit() -> None:
    handler = Embedder()
    # 100 tokens a minute: two packs of 51 estimated tokens cannot go in the same minute.
    limits = pt.Limits(tokens_per_minute=100, adaptive=False)
    async with make_client(handler, limits=limits) as client:
        start = trio.current_time()
        await client.embed_batch(["x" * 200, "y" * 200], pack_inputs=1)
        elapsed = trio.current_time() - start
    assert elapsed > 1.0  # the second waited for the bucket to refill


async def test_embed_batch_refuses_chat_options_and_bad_pack_sizes() -> None:
    async with make_client(Script()) as client:
        with pytest.raises(ValueError, match="temperature"):
            await client.embed_batch(["a"], temperature=0.2)
        with pytest.raises(ValueError, match="stream"):
            await client.embed_batch(["a"], stream=True)
        with pytest.raises(ValueError, match="pack_inputs"):
            await client.embed_batch(["a"], pack_inputs=0)
        with pytest.raises(ValueError, match="pack_tokens"):
            await client.embed_batch(["a"], pack_tokens=True)  # type: ignore[arg-type]
        with pytest.raises(pt.InvalidRequestError, match="dimensions"):
            await client.embed_batch(["a"], dimensions=-1)


async def test_stream_embed_batch_yields_results_as_they_finish() -> None:
    handler = Embedder(usage=False)
    seen: list[int] = []
    async with make_client(handler) as client:
        async with client.stream_embed_batch(
            (f"t{i}" for i in range(5)), pack_inputs=2, model="e5-small"
        ) as results:
            async for result in results:
                seen.append(result.index)
                assert result.ok
            stats = results.statistics()
    assert sorted(seen) == list(range(5))
    assert {body["model"] for body in handler.bodies} == {"e5-small"}
    assert stats.unknown_usage == 5
    assert client.statistics().unknown_usage == 3  # requests: packs of 2, 2 and 1
