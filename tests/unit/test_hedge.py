"""Hedged requests (``BatchOptions.hedge``) on ``httpx2.MockTransport`` and the autojump
clock: a slow item hedged once, the first answer wins and the other is cancelled, the
caps, no hedge while the server sheds load, the events and statistics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt

from .helpers import Events, make_client, ok, status
from .test_batch import msgs

pytestmark = pytest.mark.anyio


class Tail:
    """Answers after ``latency(text, n)`` virtual seconds (``n``: sends of that text so
    far); records each send, and the sends cancelled mid-way."""

    def __init__(self, latency: Callable[[str, int], float], fail: Callable[[str, int], object]
                 = lambda text, n: None) -> None:  # fmt: skip
        self.latency = latency
        self.fail = fail
        self.sent: list[str] = []
        self.cancelled: list[str] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        text = self.text(body)
        n = self.sent.count(text)
        self.sent.append(text)
        try:
            await trio.sleep(self.latency(text, n))
        except trio.Cancelled:
            self.cancelled.append(text)
            raise
        failure = self.fail(text, n)
        if isinstance(failure, httpx2.Response):
            return failure
        return self.answer(body, text, n)

    @staticmethod
    def text(body: dict[str, Any]) -> str:
        """What identifies a request in ``sent``: its last message."""
        return str(body["messages"][-1]["content"])

    @staticmethod
    def answer(body: dict[str, Any], text: str, n: int) -> httpx2.Response:
        return ok(text=f"{text} #{n}", prompt_tokens=1, completion_tokens=1)


def straggler(slow: str) -> Callable[[str, int], float]:
    """Every answer takes 1 s, but the first send of ``slow`` takes 100 s."""
    return lambda text, n: 100.0 if (text == slow and n == 0) else 1.0


HEDGE = pt.Hedge(min_samples=5, max_share=0.5, percentile=90)


async def test_a_straggler_is_hedged_the_hedge_wins_and_the_original_is_cancelled() -> None:
    handler = Tail(straggler("item 12"))
    events = Events()
    async with make_client(handler, limits=pt.Limits(concurrency=4), on_event=events) as client:
        start = trio.current_time()
        results = await client.chat_batch([msgs(i) for i in range(20)], hedge=HEDGE)
        took = trio.current_time() - start
        client_stats = client.statistics()
    slow = results[12]
    assert slow.ok
    assert slow.hedged
    assert slow.completion is not None
    assert slow.completion.text == "item 12 #1"
    assert slow.attempts == 2  # the original's and the hedge's
    assert handler.cancelled == ["item 12"]  # the loser, cancelled mid-way
    assert not any(r.hedged for i, r in enumerate(results) if i != 12)
    assert [r.index for r in results] == list(range(20))
    stats = results.statistics
    assert (stats.hedges, stats.hedges_won, stats.succeeded) == (1, 1, 20)
    assert took < 10  # not the straggler's 100 s
    hedges = [e for e in events.of(pt.AttemptStarted) if e.hedge]
    assert len(hedges) == 1
    assert client_stats.hedges == 1
    assert client_stats.cancelled == 1  # the original that lost


async def test_without_hedging_the_straggler_sets_the_wall_time() -> None:
    handler = Tail(straggler("item 12"))
    async with make_client(handler, limits=pt.Limits(concurrency=4)) as client:
        start = trio.current_time()
        results = await client.chat_batch([msgs(i) for i in range(20)])
        assert trio.current_time() - start >= 100
    assert results.statistics.hedges == 0
    assert handler.sent.count("item 12") == 1


async def test_the_original_wins_when_the_hedge_is_slower() -> None:
    # The first send of item 12 takes 3 s (hedged after ~1 s); the hedge would take 100.
    handler = Tail(lambda text, n: {0: 3.0, 1: 100.0}[n] if text == "item 12" else 1.0)
    async with make_client(handler, limits=pt.Limits(concurrency=4)) as client:
        results = await client.chat_batch([msgs(i) for i in range(20)], hedge=HEDGE)
    assert results[12].completion is not None
    assert results[12].completion.text == "item 12 #0"
    assert not results[12].hedged
    assert handler.cancelled == ["item 12"]  # the hedge, cancelled
    assert (results.statistics.hedges, results.statistics.hedges_won) == (1, 0)


async def test_no_hedge_before_enough_samples_nor_beyond_the_share() -> None:
    slow = {"item 2", "item 15", "item 16", "item 17"}
    handler = Tail(lambda text, n: 50.0 if (text in slow and n == 0) else 1.0)
    policy = pt.Hedge(min_samples=5, max_share=0.1, percentile=90)
    async with make_client(handler, limits=pt.Limits(concurrency=6)) as client:
        results = await client.chat_batch([msgs(i) for i in range(20)], hedge=policy)
    assert all(r.ok for r in results)
    assert not results[2].hedged  # too early: fewer than 5 successes when it was slow
    assert results.statistics.hedges <= 0.1 * 20
    assert results.statistics.hedges >= 1


async def test_no_hedge_while_the_server_sheds_load() -> None:
    # Every item's first send answers 503 (retried); item 12's retry is slow.
    def fail(text: str, n: int) -> object:
        return status(503) if n == 0 else None

    handler = Tail(lambda text, n: 100.0 if (text == "item 12" and n == 1) else 1.0, fail)
    retry = pt.RetryPolicy(attempts=3, initial_delay=0.1, jitter=0)
    async with make_client(handler, limits=pt.Limits(concurrency=4), retry=retry) as client:
        results = await client.chat_batch(
            [msgs(i) for i in range(20)], hedge=pt.Hedge(min_samples=5, quiet=1000.0)
        )
    assert all(r.ok for r in results)
    assert results.statistics.hedges == 0


async def test_a_hedge_waits_for_a_free_slot() -> None:
    # Concurrency 1: while the straggler runs, no slot is ever free.
    handler = Tail(straggler("item 8"))
    async with make_client(handler, limits=pt.Limits(concurrency=1)) as client:
        results = await client.chat_batch([msgs(i) for i in range(10)], hedge=HEDGE)
    assert results.statistics.hedges == 0
    assert all(r.ok for r in results)


async def test_a_failed_original_awaits_the_running_hedge() -> None:
    # item 12: its first send fails after 5 s (400, not retried); the hedge answers.
    handler = Tail(
        lambda text, n: 5.0 if (text == "item 12" and n == 0) else 1.0,
        lambda text, n: status(400) if (text == "item 12" and n == 0) else None,
    )
    async with make_client(handler, limits=pt.Limits(concurrency=4)) as client:
        results = await client.chat_batch([msgs(i) for i in range(20)], hedge=HEDGE)
    assert results[12].ok
    assert results[12].hedged


def test_hedge_options_are_validated() -> None:
    for bad in ({"percentile": 100}, {"max_share": 2}, {"min_samples": 0}, {"floor": -1}):
        with pytest.raises(ValueError, match="Hedge"):
            pt.Hedge(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hedge must be"):
        pt.BatchOptions(hedge="yes")  # type: ignore[arg-type]
    assert pt.BatchOptions(hedge=True).hedge is True


class EmbedTail(Tail):
    """:class:`Tail` for ``/embeddings``: the text is the request's inputs, joined; each
    vector is ``[n, 0]``."""

    @staticmethod
    def text(body: dict[str, Any]) -> str:
        return "+".join([body["input"]] if isinstance(body["input"], str) else body["input"])

    @staticmethod
    def answer(body: dict[str, Any], text: str, n: int) -> httpx2.Response:
        data = [{"object": "embedding", "index": i, "embedding": [float(n), 0.0]}
                for i in range(len(text.split("+")))]  # fmt: skip
        return httpx2.Response(200, json={"object": "list", "data": data, "model": "m"})


async def test_an_embeddings_pack_is_hedged_and_its_items_say_so() -> None:
    # Packs of two inputs: the pack "t12+t13" first takes 100 s; its hedge answers.
    handler = EmbedTail(lambda text, n: 100.0 if (text == "t12+t13" and n == 0) else 1.0)
    texts = [f"t{i}" for i in range(40)]
    async with make_client(handler, limits=pt.Limits(concurrency=4)) as client:
        start = trio.current_time()
        results = await client.embed_batch(texts, pack_inputs=2, hedge=HEDGE)
        took = trio.current_time() - start
    assert [r.index for r in results] == list(range(40))
    assert all(r.ok for r in results)
    assert [i for i, r in enumerate(results) if r.hedged] == [12, 13]
    assert results[12].vector == [1.0, 0.0]  # the hedge's answer (its second send)
    assert handler.cancelled == ["t12+t13"]
    assert (results.statistics.hedges, results.statistics.hedges_won) == (1, 1)
    assert took < 50
    async with make_client(handler, limits=pt.Limits(concurrency=4)) as client:
        plain = await client.embed_batch(texts[:4], pack_inputs=2)  # hedge off by default
    assert not any(r.hedged for r in plain)


async def test_the_batch_ends_with_its_last_item_not_with_the_watchers_next_look() -> None:
    # The first five items take 20 s: the learnt delay is 20 s, so each later item (1 s)
    # would be looked at 20 s after its start (and the first five, unfinished at 19.5 s,
    # at 29 s); the batch still ends with its last item.
    handler = Tail(lambda text, n: 20.0 if text in {f"item {i}" for i in range(5)} else 1.0)
    policy = pt.Hedge(min_samples=5)  # the 95th percentile: 20 s, once learnt
    async with make_client(handler, limits=pt.Limits(concurrency=5)) as client:
        start = trio.current_time()
        results = await client.chat_batch([msgs(i) for i in range(25)], hedge=policy)
        took = trio.current_time() - start
    assert all(r.ok for r in results)
    assert results.statistics.hedges == 0
    assert took == pytest.approx(24.0, abs=0.01)  # 20 s, then four waves of 1 s


async def test_a_deadline_cancels_the_original_and_its_running_hedge() -> None:
    handler = Tail(lambda text, n: 100.0 if text == "item 12" else 1.0)
    async with make_client(handler, limits=pt.Limits(concurrency=4)) as client:
        start = trio.current_time()
        results = await client.chat_batch(
            [msgs(i) for i in range(20)], hedge=HEDGE, deadline=start + 20
        )
        took = trio.current_time() - start
    assert results[12].cancelled
    assert not results[12].hedged
    assert handler.sent.count("item 12") == 2  # the original and its hedge
    assert handler.cancelled == ["item 12", "item 12"]  # both, at the deadline
    assert took == pytest.approx(20.0, abs=0.01)
    assert sum(r.ok for r in results) == 19
