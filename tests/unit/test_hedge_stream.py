"""Hedging a batch of streamed items (``stream=True``) on the time to first token, on
``httpx2.MockTransport`` and the autojump clock; and ``race`` itself with a fake send."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._engine._budget import BatchControl
from paradigm_trio._engine._hedge import Hedger, SendOne, race
from paradigm_trio._events import Attempt

from .helpers import Events, make_client, ok
from .test_batch import msgs
from .test_streaming import DONE, Body, chunk, sse

pytestmark = pytest.mark.anyio

HEDGE = pt.Hedge(min_samples=5, max_share=0.5, percentile=90)


class Streams:
    """Streams each answer: its first chunk after ``first(text, n)`` virtual seconds, the
    rest ``rest(text, n)`` seconds later (``n``: sends of that text so far); records when
    each send arrived, and the sends closed before their end."""

    def __init__(
        self,
        first: Callable[[str, int], float],
        rest: Callable[[str, int], float] = lambda text, n: 5.0,
    ) -> None:
        self.first = first
        self.rest = rest
        self.sent: list[tuple[str, float]] = []
        self.bodies: list[tuple[str, Body]] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        assert body["stream"] is True
        text = body["messages"][-1]["content"]
        n = sum(1 for sent, _ in self.sent if sent == text)
        self.sent.append((text, trio.current_time()))
        response, stream = sse(
            self.first(text, n),
            chunk("", role="assistant"),
            chunk(f"{text} #{n}"),
            self.rest(text, n),
            chunk(finish="stop"),
            chunk(usage=(1, 1)),
            DONE,
        )
        self.bodies.append((text, stream))
        return response

    def sends(self, text: str) -> list[float]:
        return [at for sent, at in self.sent if sent == text]

    def cut(self, text: str) -> int:
        """Sends of ``text`` closed before their end (the loser of a race)."""
        return sum(1 for sent, body in self.bodies if sent == text and not body.finished)


async def test_a_slow_first_token_is_hedged_after_a_delay_learnt_from_first_tokens() -> None:
    # Every item's first chunk comes after 0.5 s and its answer 5 s later; item 9's first
    # send is silent for 50 s.  Learnt from whole items, the delay would be ~5.5 s.
    handler = Streams(lambda text, n: 50.0 if (text == "item 9" and n == 0) else 0.5)
    async with make_client(handler, limits=pt.Limits(concurrency=20)) as client:
        start = trio.current_time()
        results = await client.chat_batch([msgs(i) for i in range(10)], stream=True, hedge=HEDGE)
        took = trio.current_time() - start
    slow = results[9]
    assert slow.ok
    assert slow.hedged
    assert slow.completion is not None
    assert slow.completion.text == "item 9 #1"
    original, hedge = handler.sends("item 9")
    assert hedge - original < 2.0  # after the first tokens' delay, not the answers'
    assert handler.cut("item 9") == 1  # the original, closed when the hedge won
    assert (results.statistics.hedges, results.statistics.hedges_won) == (1, 1)
    assert took < 10  # not the straggler's 50 s
    assert not any(r.hedged for r in results[:9])


async def test_an_original_that_streams_is_not_hedged_however_long_its_answer() -> None:
    # Item 9's first chunk is as quick as the others', but its answer takes 100 s more.
    handler = Streams(lambda text, n: 0.5, lambda text, n: 100.0 if text == "item 9" else 5.0)
    async with make_client(handler, limits=pt.Limits(concurrency=20)) as client:
        results = await client.chat_batch([msgs(i) for i in range(10)], stream=True, hedge=HEDGE)
    assert all(r.ok for r in results)
    assert not results[9].hedged
    assert results.statistics.hedges == 0
    assert len(handler.sends("item 9")) == 1


async def test_a_hedge_still_silent_is_cut_when_the_original_streams_first() -> None:
    # Item 9's first chunk comes after 3 s: hedged at ~0.5 s; the hedge would take 50 s
    # to its first chunk, so when the original streams, the hedge is behind: cut.
    def first(text: str, n: int) -> float:
        return {0: 3.0, 1: 50.0}[n] if text == "item 9" else 0.5

    handler = Streams(first)
    events = Events()
    async with make_client(handler, limits=pt.Limits(concurrency=20), on_event=events) as client:
        results = await client.chat_batch([msgs(i) for i in range(10)], stream=True, hedge=HEDGE)
        stats = client.statistics()
    slow = results[9]
    assert slow.ok
    assert not slow.hedged
    assert slow.completion is not None
    assert slow.completion.text == "item 9 #0"
    assert slow.attempts == 2  # the original's, and the hedge's (cut)
    original, hedge = (body for text, body in handler.bodies if text == "item 9")
    assert original.finished
    assert not hedge.finished
    assert hedge.closed[0] < 3.5  # cut at the original's first chunk, not at its end (8 s)
    assert (results.statistics.hedges, results.statistics.hedges_won) == (1, 0)
    assert stats.cancelled == 1  # the hedge
    assert len([e for e in events.of(pt.AttemptStarted) if e.hedge]) == 1


async def test_plain_items_of_the_same_latencies_are_hedged_on_their_whole_time() -> None:
    # The contrast: without stream=True, item 9's long answer makes it a straggler, and it
    # is hedged (its copy as slow: the original wins).
    async def handler(request: httpx2.Request) -> httpx2.Response:
        text = json.loads(request.content)["messages"][-1]["content"]
        await trio.sleep(100.5 if text == "item 9" else 5.5)
        return ok(text=text)

    async with make_client(handler, limits=pt.Limits(concurrency=20)) as client:
        results = await client.chat_batch([msgs(i) for i in range(10)], hedge=HEDGE)
    assert all(r.ok for r in results)
    assert results.statistics.hedges == 1


def _hedger(ttft: bool, min_samples: int = 1) -> Hedger:
    control = BatchControl(retry_budget=None, threshold=None)
    control.started = 100
    policy = pt.Hedge(min_samples=min_samples, floor=0.01, percentile=50, max_share=1.0)
    return Hedger(policy, control, lambda: True, ttft=ttft)


def _fake_send(
    first: float, whole: float, log: list[tuple[bool, float]], hedge_takes: float = 3.0
) -> SendOne[str, str]:
    """A ``SendOne`` whose request streams its first chunk after ``first`` seconds and
    answers after ``whole`` (a hedge: its first chunk after 1 s, its answer after
    ``hedge_takes``); ``log``: (hedge?, when sent)."""

    async def send(
        request: str,
        *,
        deadline: float,
        control: BatchControl,
        history: list[Attempt],
        hedge: bool = False,
        first_chunk: Callable[[float], None] | None = None,
    ) -> str:
        log.append((hedge, trio.current_time()))
        first_at, whole_at = (1.0, hedge_takes) if hedge else (first, whole)
        await trio.sleep(first_at)
        if first_chunk is not None:
            first_chunk(trio.current_time())
        await trio.sleep(whole_at - first_at)
        return f"{request} hedge={hedge}"

    return send


async def test_race_learns_the_time_to_first_token_and_stops_at_the_first_chunk() -> None:
    hedger = _hedger(ttft=True)
    log: list[tuple[bool, float]] = []
    send = _fake_send(first=2.0, whole=30.0, log=log)
    value, error, _, _, won = await race(send, "a", float("inf"), hedger)
    assert (value, error, won) == ("a hedge=False", None, False)
    assert hedger.latencies.count == 1  # the first chunk, at 2 s: not the answer, at 30 s
    assert hedger.delay is not None
    assert hedger.delay <= 2.5
    # The next item: hedged after ~2 s without a first chunk (its own arrives at 10 s,
    # after the hedge was sent); the hedge answers 3 s after it was sent, and wins.
    log.clear()
    send = _fake_send(first=10.0, whole=12.0, log=log)
    value, error, _, _, won = await race(send, "b", float("inf"), hedger)
    assert [hedge for hedge, _ in log] == [False, True]
    assert log[1][1] - log[0][1] <= 2.5
    assert (value, won) == ("b hedge=True", True)
    assert hedger.latencies.count == 2  # the hedge's first chunk (the original's came later)


async def test_race_without_ttft_learns_whole_answers() -> None:
    hedger = _hedger(ttft=False)
    log: list[tuple[bool, float]] = []
    send = _fake_send(first=2.0, whole=30.0, log=log)
    await race(send, "a", float("inf"), hedger)
    assert hedger.delay is not None
    assert hedger.delay >= 29


async def test_race_sends_no_hedge_once_the_original_streams() -> None:
    hedger = _hedger(ttft=True)
    hedger.learn(1.0)  # a delay of ~1 s
    log: list[tuple[bool, float]] = []
    # First chunk at 0.5 s (before the delay), then a long answer: never hedged.
    send = _fake_send(first=0.5, whole=60.0, log=log)
    _, _, attempts, _, won = await race(send, "a", float("inf"), hedger)
    assert attempts == 0  # (the fake send records none)
    assert [hedge for hedge, _ in log] == [False]
    assert hedger.sent == 0
    assert not won
