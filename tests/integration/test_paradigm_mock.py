"""Paradigm's own endpoints against the mock over real sockets: each endpoint plain, and
in batches with faults (every input exactly one result, judged from the server's side);
files uploaded, found by query and document search, waited for, listed, deleted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import mock_server as ms
import paradigm_trio as pt

pytestmark = pytest.mark.anyio

FAST_RETRY = pt.RetryPolicy(attempts=10, initial_delay=0.01, max_delay=0.05, jitter=0.5)
FAULTS = ms.FaultRates(server_error=0.1, rate_limit=0.05, reset=0.03, malformed=0.03)
DOCS = {
    "contract.txt": "The notice period of this contract is three months. Salaries are monthly.",
    "holidays.txt": "Employees have twenty five days of paid holidays each year.",
    "security.txt": "Badges must be worn at all times inside the building.",
}


def client_for(server: ms.MockServer, **kwargs: object) -> pt.Client:
    return pt.Client(api_key="test-key", base_url=server.url, retry=FAST_RETRY, **kwargs)  # type: ignore[arg-type]


async def _upload_all(client: pt.Client, folder: Path) -> list[pt.FileInfo]:
    infos = []
    for name, text in DOCS.items():
        (folder / name).write_text(text)
        infos.append(await client.files.upload(folder / name, collection_type="company"))
    return [await client.files.wait(i.id, timeout=30, interval=0.05) for i in infos]


async def test_each_endpoint_plain(tmp_path: Path) -> None:
    config = ms.MockConfig(seed=1, file_processing_time=0.2)
    async with ms.serve(config) as server, client_for(server) as client:
        count = await client.tokenize("This a test string", model="alfred-4.2")
        assert count.count == math.ceil(len("This a test string") / 4)
        chat = await client.tokenize([{"role": "user", "content": "Hello there"}])
        assert chat.count == 3 + 4 + math.ceil(len("Hello there") / 4)

        processed = await _upload_all(client, tmp_path)
        assert all(f.status == "embedded" for f in processed)
        [found] = await client.query("notice period contract", n=2)
        assert found.chunks
        assert "notice period" in found.chunks[0].text
        assert found.chunks[0].score is not None and found.chunks[0].uuid  # noqa: PT018
        several = await client.query(["paid holidays", "badges building"], n=1)
        assert [len(r.chunks) for r in several] == [1, 1]
        kept = await client.filter_chunks("notice period", [c.uuid or "" for c in found.chunks])
        assert kept.chunks and kept.chunks[0].score is not None  # noqa: PT018
        answer = await client.document_search("What is the notice period?", company_scope=True)
        assert answer.answer
        assert answer.documents and answer.extracts  # noqa: PT018
        vision = await client.document_search(
            "notice period", company_scope=True, tool="VisionDocumentSearch"
        )
        assert vision.answer

        listed = await client.files.list()
        assert {f.filename for f in listed} == set(DOCS)
        assert await client.files.delete(processed[0].id)
        with pytest.raises(pt.NotFoundError):
            await client.files.get(processed[0].id)
    held = server.files()
    assert len(held) == len(DOCS) - 1


async def test_endpoint_batches_with_faults_one_result_each(tmp_path: Path) -> None:
    config = ms.MockConfig(seed=5, retry_after=0.02, file_processing_time=0.1)
    prompts = [f"prompt number {i} " + "word " * (i % 13) for i in range(300)]
    async with ms.serve(config) as server:
        async with client_for(server, limits=pt.Limits(concurrency=16)) as client:
            # Before the faults: an upload is not idempotent, so one that may have been
            # stored (a 500, a reset, a malformed answer) is not resent.
            await _upload_all(client, tmp_path)
            server.configure(faults=FAULTS)
            counts = await client.tokenize_batch(prompts, model="alfred-4.2")
            queries = await client.query_batch([f"notice period {i}" for i in range(100)], n=2)
            mixed_items: list[object] = [
                pt.TokenizeRequest(prompt="hello", custom_id="t"),
                pt.QueryRequest(query="paid holidays", custom_id="q"),
                pt.DocumentSearchRequest(query="badges?", company_scope=True, custom_id="d"),
                pt.ChatRequest(messages=[{"role": "user", "content": "Hi"}], custom_id="c"),
                pt.EmbeddingRequest(inputs="embed me", custom_id="e"),
                "not a request",
            ]
            mixed = await client.batch_requests(mixed_items)
        log = server.requests()
    assert [r.index for r in counts] == list(range(300))
    assert all(r.ok for r in counts), [r.error for r in counts if not r.ok][:3]
    assert [r.value.count for r in counts] == [math.ceil(len(p) / 4) for p in prompts]
    assert all(r.ok and len(r.value[0].chunks) == 2 for r in queries)
    assert [r.ok for r in mixed] == [True] * 5 + [False]
    assert [r.custom_id for r in mixed[:5]] == ["t", "q", "d", "c", "e"]
    assert counts.statistics.retries > 0
    faulted = {r.outcome for r in log if r.path.endswith("/tokenize")} - {"ok"}
    assert len(faulted) >= 2
    # Every prompt reached the tokenizer and was answered ok exactly once.
    assert sum(r.outcome == "ok" and r.path.endswith("/tokenize") for r in log) == 301


async def test_embeddings_strings_only_server_costs_one_wasted_request() -> None:
    config = ms.MockConfig(seed=3, embeddings_strings_only=True)
    events: list[pt.Event] = []
    texts = [f"chunk {i}" for i in range(120)]
    async with ms.serve(config) as server:
        async with client_for(
            server, on_event=events.append, limits=pt.Limits(concurrency=8)
        ) as client:
            results = await client.embed_batch(texts, pack_inputs=16, dimensions=8)
            joined = await client.embed(["a", "b", "c"], dimensions=8)
        log = server.requests()
    assert all(r.ok for r in results)
    assert len(joined.data) == 3
    refused = [r for r in log if r.path.endswith("/embeddings") and r.outcome == "400"]
    assert len(refused) == 1
    assert len([e for e in events if isinstance(e, pt.EmbeddingPackingDisabled)]) == 1


async def test_upload_of_a_large_sparse_file_streams(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    size = 96 * 1024 * 1024
    with path.open("wb") as f:
        f.truncate(size)
    config = ms.MockConfig(max_file_bytes=None, file_processing_time=0.05)
    async with ms.serve(config) as server, client_for(server) as client:
        info = await client.files.upload(path, collection_type="private")
        assert info.id
    [held] = server.files()
    assert held["bytes"] == size


async def test_legacy_completion_and_v3_turn(tmp_path: Path) -> None:
    config = ms.MockConfig(seed=4, file_processing_time=0.1)
    async with ms.serve(config) as server, client_for(server) as client:
        done = await client.complete("Once upon a time", max_tokens=8)
        assert done.text
        assert done.usage is not None
        await _upload_all(client, tmp_path)
        turn = await client.thread_turn("What is the notice period?", company_scope=True)
    assert turn.status == "completed"
    assert turn.text
    assert any(p.get("type") == "tool_call" for p in turn.parts)
