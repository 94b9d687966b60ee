"""Property: hedging and dedupe never break "exactly one result per input".

Each example is a batch of items (repeated texts, greedy or sampled) against an
``httpx2.MockTransport`` whose answers, per text and send, are drawn by hypothesis: a
latency (some of them stragglers), a success, a 503, a 400 or a dropped connection.  The
batch hedges aggressively and dedupes (``"auto"`` or ``"all"``), on trio's autojump clock.
Whatever happens: one result per item, in its own place, with its own ``custom_id``; a
success's text is an answer to the item's own text; a duplicate's answer is its leader's;
the requests sent are the items, less the duplicates, plus the retries and the hedges.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st

import paradigm_trio as pt

from .strategies import examples

OUTCOMES = st.sampled_from(["ok", "ok", "ok", "503", "400", "drop"])
LATENCIES = st.sampled_from([0.5, 1.0, 1.5, 40.0])


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    texts = draw(st.lists(st.integers(0, 12), min_size=6, max_size=40))
    greedy = draw(st.lists(st.booleans(), min_size=len(texts), max_size=len(texts)))
    plan = draw(
        st.dictionaries(
            st.tuples(st.integers(0, 12), st.integers(0, 2)),
            st.tuples(LATENCIES, OUTCOMES),
            min_size=4,
            max_size=30,
        )
    )
    return {
        "texts": texts,
        "greedy": greedy,
        "plan": plan,
        "dedupe": draw(st.sampled_from(["auto", "all"])),
        "concurrency": draw(st.integers(1, 6)),
    }


def run(case: dict[str, Any]) -> tuple[pt.BatchResults, list[str]]:
    sent: list[str] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        text = json.loads(request.content)["messages"][0]["content"]
        n = sent.count(text)
        sent.append(text)
        latency, outcome = case["plan"].get((int(text), n), (1.0, "ok"))
        await trio.sleep(latency)
        if outcome == "drop":
            raise httpx2.RemoteProtocolError("dropped", request=request)
        if outcome != "ok":
            return httpx2.Response(int(outcome), json={"error": {"message": "no"}})
        body = {
            "id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"{text}/{n}"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }  # fmt: skip
        return httpx2.Response(200, json=body)

    items = [
        pt.ChatRequest(
            messages=[{"role": "user", "content": str(t)}],
            temperature=0 if g else 0.9,
            custom_id=f"id-{i}",
        )
        for i, (t, g) in enumerate(zip(case["texts"], case["greedy"], strict=True))
    ]
    retry = pt.RetryPolicy(attempts=2, initial_delay=0.1, jitter=0)

    async def main() -> pt.BatchResults:
        async with pt.Client(
            api_key="sk-property-key-123", base_url="http://test/api/v2",
            transport=httpx2.MockTransport(handler), retry=retry,
            limits=pt.Limits(concurrency=case["concurrency"]),
        ) as client:  # fmt: skip
            hedge = pt.Hedge(min_samples=2, max_share=0.5, quiet=0.0, floor=0.1)
            return await client.chat_batch(items, hedge=hedge, dedupe=case["dedupe"])

    results = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return results, sent


@settings(max_examples=examples(1.0), deadline=None)
@given(batches())
def test_hedging_and_dedupe_keep_one_result_per_input(case: dict[str, Any]) -> None:
    results, sent = run(case)
    texts = case["texts"]
    assert [r.index for r in results] == list(range(len(texts)))
    assert [r.custom_id for r in results] == [f"id-{i}" for i in range(len(texts))]
    for result, text in zip(results, texts, strict=True):
        assert (result.completion is None) != (result.error is None)
        if result.completion is not None:
            answered, _ = result.completion.text.split("/")
            assert answered == str(text)  # an answer to its own text
        assert not (result.hedged and result.deduplicated and result.attempts)
    stats = results.statistics
    event(f"hedged: {stats.hedges > 0}, won: {stats.hedges_won > 0}")
    event(f"deduplicated: {stats.deduplicated > 0}")
    assert stats.succeeded + stats.failed + stats.cancelled == len(texts)
    assert stats.hedges_won <= stats.hedges <= 0.5 * len(texts)
    own = len(texts) - stats.deduplicated
    assert own <= len(sent) <= 2 * own + stats.hedges  # each item: 2 attempts at most
    assert sum(r.deduplicated for r in results) == stats.deduplicated
    # A duplicate shares its leader's answer and marks (a hedge's answer included).
    assert sum(r.hedged and not r.deduplicated for r in results) == stats.hedges_won
