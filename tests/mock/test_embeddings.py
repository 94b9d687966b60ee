"""``POST /embeddings``: deterministic unit vectors, dimensions, base64, usage, the same
checks, faults and quotas as chat; and the official ``openai`` SDK against it."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import httpx2
import openai
import pytest
from openai.types import CreateEmbeddingResponse

import mock_server as ms

from ._helpers import assert_error_envelope, keyed

pytestmark = pytest.mark.anyio


def body(inputs: Any = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": "multilingual-e5-large", "input": inputs, **extra}


async def test_vectors_are_deterministic_unit_vectors() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        response = await client.post("/embeddings", json=body(["a text", "another"]))
        v1 = httpx2.URL(server.url).copy_with(path="/v1/embeddings")
        again = await client.post(v1, json=body(["another"]))
    assert response.status_code == 200
    data = response.json()
    CreateEmbeddingResponse.model_validate(data)
    assert data["object"] == "list"
    assert data["model"] == "multilingual-e5-large"
    assert [item["index"] for item in data["data"]] == [0, 1]
    first, second = (item["embedding"] for item in data["data"])
    assert len(first) == ms.DEFAULT_EMBEDDING_DIMENSIONS == 1024
    assert math.isclose(math.hypot(*first), 1.0, rel_tol=1e-5)
    assert first != second
    # A function of (seed, model, text) only: the same text in another request.
    assert again.json()["data"][0]["embedding"] == second
    assert first == ms.embedding_vector("a text", model="multilingual-e5-large")
    # 1 + ceil(6 / 4) + 1 + ceil(7 / 4)
    assert data["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    [record, other] = server.requests()
    assert (record.path, other.path) == ("/api/v2/embeddings", "/v1/embeddings")
    assert record.prompt_tokens == 6
    assert record.completion_tokens == 0


async def test_seed_model_and_dimensions_change_the_vector() -> None:
    config = ms.MockConfig(seed=7)
    async with ms.serve(config) as server, httpx2.AsyncClient(base_url=server.url) as client:
        short = (await client.post("/embeddings", json=body("x", dimensions=8))).json()
        other = (await client.post("/embeddings", json=body("x", model="e5-small"))).json()
    vector = short["data"][0]["embedding"]
    assert vector == ms.embedding_vector("x", model="multilingual-e5-large", dimensions=8, seed=7)
    assert len(vector) == 8
    assert vector != ms.embedding_vector("x", model="multilingual-e5-large", dimensions=8)
    assert other["data"][0]["embedding"][:8] != vector


async def test_base64_carries_the_same_float32_numbers() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        response = await client.post(
            "/embeddings", json=body("text", encoding_format="base64", dimensions=16)
        )
    encoded = response.json()["data"][0]["embedding"]
    decoded = list(struct.unpack("<16f", base64.b64decode(encoded)))
    assert decoded == ms.embedding_vector("text", model="multilingual-e5-large", dimensions=16)


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        ({"input": "x"}, "model", "missing_required_parameter"),
        ({"model": "m"}, "input", "missing_required_parameter"),
        (body([]), "input", "invalid_value"),
        (body(["ok", ""]), "input[1]", "invalid_value"),
        (body([[1, 2, 3]]), "input[0]", "invalid_type"),
        (body("x", encoding_format="int8"), "encoding_format", "invalid_value"),
        (body("x", dimensions=0), "dimensions", "invalid_value"),
        (body("x", dimensions=True), "dimensions", "invalid_value"),
        (body(["x"] * 2049), "input", "invalid_value"),
    ],
)
async def test_invalid_requests_get_a_400_naming_the_parameter(
    payload: dict[str, Any], param: str, code: str
) -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        response = await client.post("/embeddings", json=payload)
    error = assert_error_envelope(response, 400, code)
    assert error["param"] == param
    assert server.requests()[0].outcome == "400"


async def test_an_unknown_model_and_a_wrong_key_are_refused() -> None:
    config = ms.MockConfig(models=("e5",), api_key="sk-mock-key-1234")
    async with ms.serve(config) as server, httpx2.AsyncClient(base_url=server.url) as client:
        unknown = await client.post(
            "/embeddings", json=body("x"), headers={"Authorization": "Bearer sk-mock-key-1234"}
        )
        no_key = await client.post("/embeddings", json=body("x", model="e5"))
    assert_error_envelope(unknown, 400, "model_not_found")
    assert_error_envelope(no_key, 401, "invalid_api_key")


async def test_faults_apply_to_embeddings_as_to_chat() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.url) as client:
        server.script("k", ["503", "malformed", "ok"])
        statuses = []
        texts = []
        for _ in range(3):
            response = await client.post("/embeddings", json=body("x"), headers=keyed("k"))
            statuses.append(response.status_code)
            texts.append(response.text)
    assert statuses == [503, 200, 200]
    with pytest.raises(ValueError, match=r"Expecting|Unterminated"):
        json.loads(texts[1])
    assert [r.outcome for r in server.requests()] == ["503", "malformed", "ok"]
    assert [r.attempt for r in server.requests()] == [1, 2, 3]


async def test_the_tokens_quota_charges_the_inputs() -> None:
    # Each request: 1 + ceil(40 / 4) = 11 tokens; 25 tokens a minute admit two.
    config = ms.MockConfig(tpm=25)
    async with ms.serve(config) as server, httpx2.AsyncClient(base_url=server.url) as client:
        statuses = [
            (await client.post("/embeddings", json=body("x" * 40))).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 429]
    assert server.requests()[-1].outcome == "quota"


async def test_the_openai_sdk_embeds_against_the_mock() -> None:
    async with (
        ms.serve() as server,
        httpx2.AsyncClient() as http_client,
        openai.AsyncOpenAI(
            base_url=server.url, api_key="unused", max_retries=0, http_client=http_client
        ) as client,
    ):
        answer = await client.embeddings.create(
            model="multilingual-e5-large", input=["first", "second"], dimensions=32
        )
        floats = await client.embeddings.create(
            model="multilingual-e5-large", input="first", encoding_format="float"
        )
    assert [len(item.embedding) for item in answer.data] == [32, 32]
    expected = ms.embedding_vector("first", model="multilingual-e5-large", dimensions=32)
    assert answer.data[0].embedding == pytest.approx(expected, abs=0)
    assert (
        floats.data[0].embedding[:4]
        == ms.embedding_vector("first", model="multilingual-e5-large")[:4]
    )
    assert answer.usage.prompt_tokens == 6
