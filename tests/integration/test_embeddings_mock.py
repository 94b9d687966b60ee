"""Embeddings against the mock over real sockets: a 10,000-input batch with faults, one
result per input, every vector the mock's own; judged from the server's side too."""

from __future__ import annotations

import pytest

import mock_server as ms
import paradigm_trio as pt

pytestmark = pytest.mark.anyio

FAST_RETRY = pt.RetryPolicy(attempts=8, initial_delay=0.01, max_delay=0.05, jitter=0.5)
MODEL = "multilingual-e5-large"


async def test_ten_thousand_inputs_with_faults() -> None:
    faults = ms.FaultRates(
        server_error=0.08, rate_limit=0.04, reset=0.02, close=0.02, malformed=0.02, truncated=0.02
    )
    config = ms.MockConfig(seed=11, faults=faults, retry_after=0.02, latency=ms.Latency.fixed(0.01))
    texts = [f"document {i // 7}, chunk {i % 7}: {'lorem ipsum ' * (i % 5)}" for i in range(10_000)]
    items: list[str | pt.EmbeddingRequest] = list(texts)
    items[5] = pt.EmbeddingRequest(inputs=texts[5], custom_id="five")
    progress: list[int] = []
    async with ms.serve(config) as server:
        async with pt.Client(
            api_key="test-key",
            base_url=server.url,
            retry=FAST_RETRY,
            limits=pt.Limits(concurrency=16),
        ) as client:
            results = await client.embed_batch(
                items, dimensions=16, on_progress=lambda s: progress.append(s.done)
            )
        log = server.requests()
    assert len(results) == 10_000
    assert [r.index for r in results] == list(range(10_000))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert results[5].custom_id == "five"
    for text, result in zip(texts, results, strict=True):
        assert list(result.vector or ()) == ms.embedding_vector(
            text, model=MODEL, dimensions=16, seed=11
        )
    stats = results.statistics
    assert stats.succeeded == 10_000
    assert stats.retries > 0
    assert progress == list(range(1, 10_001))
    # Packed: far fewer requests than inputs; the server counted every input's tokens once.
    served = [r for r in log if r.outcome == "ok"]
    assert len(served) <= 10_000 / 32
    assert stats.prompt_tokens == sum(r.prompt_tokens or 0 for r in served)
    # Faults of several kinds really happened.  (Not named ones: the packs' keys are random,
    # so which faults are drawn varies; about 190 requests at 2 % each left "malformed" or
    # "reset" out of about one run in 25.)
    assert len({r.outcome for r in log} - {"ok"}) >= 4


async def test_a_batch_without_packing_is_one_request_per_input() -> None:
    config = ms.MockConfig(seed=2, faults=ms.FaultRates(server_error=0.2))
    async with ms.serve(config) as server:
        async with pt.Client(
            api_key="sk-workload-test", base_url=server.url, retry=FAST_RETRY
        ) as client:
            results = await client.embed_batch(
                [f"t{i}" for i in range(200)], pack_inputs=1, encoding_format="float"
            )
        ok = [r for r in server.requests() if r.outcome == "ok"]
    assert len(ok) == 200
    assert all(r.ok for r in results)
    assert list(results[7].vector or ()) == ms.embedding_vector("t7", model=MODEL, seed=2)


async def test_a_refused_input_fails_alone() -> None:
    # The mock refuses an embeddings body over max_body_bytes (413): a pack holding the
    # huge input is sent again one input per request, and only the huge one fails.
    config = ms.MockConfig(max_body_bytes=20_000)
    huge = "x" * 30_000
    async with ms.serve(config) as server:
        async with pt.Client(api_key="sk-workload-test", base_url=server.url) as client:
            results = await client.embed_batch(["a", "b", huge, "c"], pack_tokens=100_000)
        outcomes = [r.outcome for r in server.requests()]
    assert [r.ok for r in results] == [True, True, False, True]
    assert isinstance(results[2].error, pt.APIStatusError)
    assert results[2].error.status_code == 413
    assert sorted(outcomes) == sorted(["413", "ok", "ok", "413", "ok"])
