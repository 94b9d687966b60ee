"""Identical requests of a batch sent once (``BatchOptions.dedupe``), on
``httpx2.MockTransport`` and the autojump clock: which requests are shared, one result per
item, failures and deadlines shared, the statistics, embeddings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._engine import _dedupe

from .helpers import make_client, status
from .test_batch import Echo, msgs
from .test_embeddings import Embedder, vector_of

pytestmark = pytest.mark.anyio


def requests(texts: list[str], **fields: object) -> list[pt.ChatRequest]:
    return [
        pt.ChatRequest(messages=msgs(int(t)), custom_id=f"id-{i}", **fields)  # type: ignore[arg-type]
        for i, t in enumerate(texts)
    ]


async def test_identical_deterministic_requests_are_sent_once_each_item_its_own_result() -> None:
    handler = Echo(latency=lambda text: 1.0)
    items = requests(["1", "2", "1", "3", "1", "2"], temperature=0)
    async with make_client(handler) as client:
        results = await client.chat_batch(items)
    assert sorted(handler.texts) == ["item 1", "item 2", "item 3"]
    assert [r.index for r in results] == list(range(6))
    assert [r.custom_id for r in results] == [f"id-{i}" for i in range(6)]
    assert [r.request for r in results] == items
    assert [r.completion.text if r.completion else None for r in results] == [
        "item 1", "item 2", "item 1", "item 3", "item 1", "item 2"
    ]  # fmt: skip
    assert [r.deduplicated for r in results] == [False, False, True, False, True, True]
    assert [r.attempts for r in results] == [1, 1, 0, 1, 0, 0]
    assert results[2].completion is results[0].completion  # the answer, shared
    stats = results.statistics
    assert (stats.succeeded, stats.deduplicated) == (6, 3)
    assert stats.completion_tokens == 6 * len("item 1")  # each result's usage counts


async def test_a_seed_makes_a_request_deterministic_and_sampled_ones_are_sent_each_time() -> None:
    handler = Echo()
    async with make_client(handler) as client:
        seeded = await client.chat_batch(requests(["1", "1"], seed=3))
        assert handler.calls == 1
        sampled = await client.chat_batch(requests(["1", "1"], temperature=0.7))
        assert handler.calls == 3
        unset = await client.chat_batch([msgs(1), msgs(1)])  # the server's default: sampled
        assert handler.calls == 5
        opted_in = await client.chat_batch(requests(["1", "1"], temperature=0.7), dedupe="all")
        assert handler.calls == 6
        off = await client.chat_batch(requests(["1", "1"], temperature=0), dedupe="off")
        assert handler.calls == 8
    assert [r.deduplicated for r in seeded] == [False, True]
    assert not any(r.deduplicated for r in [*sampled, *unset, *off])
    assert [r.deduplicated for r in opted_in] == [False, True]


async def test_batch_keywords_fill_the_fields_before_requests_are_compared() -> None:
    handler = Echo()
    async with make_client(handler) as client:
        results = await client.chat_batch([msgs(1), msgs(1), msgs(2)], temperature=0)
        other_model = await client.chat_batch(
            [pt.ChatRequest(messages=msgs(1), temperature=0, model=m) for m in ("a", "b")]
        )
    assert handler.calls == 4
    assert [r.deduplicated for r in results] == [False, True, False]
    assert not any(r.deduplicated for r in other_model)


async def test_a_duplicate_read_after_its_leader_finished_gets_the_answer_at_once() -> None:
    handler = Echo(latency=lambda text: 1.0)

    async def slow_input() -> object:
        yield msgs(1)
        await trio.sleep(5)
        yield msgs(1)

    async with make_client(handler) as client:
        results = await client.chat_batch(slow_input(), temperature=0)  # type: ignore[arg-type]
    assert handler.calls == 1
    assert [(r.deduplicated, r.elapsed) for r in results] == [(False, 1.0), (True, 0.0)]


async def test_a_failed_leader_is_shared_with_its_waiting_duplicates_and_not_remembered() -> None:
    handler = Echo(latency=lambda text: 1.0, fail=lambda text, n: status(400))

    async def later() -> object:
        for _ in range(3):
            yield msgs(1)
        await trio.sleep(5)
        yield msgs(1)

    async with make_client(handler) as client:
        results = await client.chat_batch(later(), temperature=0)  # type: ignore[arg-type]
    assert handler.calls == 2  # the first, then the one read after it failed
    assert all(isinstance(r.error, pt.BadRequestError) for r in results)
    assert [r.deduplicated for r in results] == [False, True, True, False]
    assert results[1].error is results[0].error
    assert (results.statistics.failed, results.statistics.deduplicated) == (4, 2)


async def test_on_error_raise_stops_at_a_shared_failure_too() -> None:
    handler = Echo(fail=lambda text, n: status(400) if text == "item 1" else None)
    async with make_client(handler) as client:
        with pytest.raises(pt.BatchError):
            await client.chat_batch([msgs(1), msgs(1), msgs(2)], temperature=0, on_error="raise")


async def test_at_the_deadline_waiting_duplicates_are_cancelled_with_their_leader() -> None:
    handler = Echo(latency=lambda text: 10.0)
    async with make_client(handler) as client:
        deadline = trio.current_time() + 2.0
        results = await client.chat_batch(
            [msgs(1), msgs(1), msgs(1)], temperature=0, deadline=deadline
        )
    assert handler.calls == 1
    assert all(isinstance(r.error, pt.RequestCancelled) for r in results)
    assert [r.index for r in results] == [0, 1, 2]
    assert results.statistics.cancelled == 3


async def test_a_duplicate_of_a_leader_still_unsent_at_the_deadline_is_reported_too() -> None:
    # Concurrency 1: the leader of "item 2" is read (and carried) while "item 1" is sent.
    handler = Echo(latency=lambda text: 10.0)
    async with make_client(handler, limits=pt.Limits(concurrency=1)) as client:
        deadline = trio.current_time() + 2.0
        results = await client.chat_batch(
            [msgs(1), msgs(2), msgs(2)], temperature=0, deadline=deadline
        )
    assert [r.index for r in results] == [0, 1, 2]
    assert all(isinstance(r.error, pt.RequestCancelled) for r in results)


async def test_embeddings_are_deduplicated_by_default_packs_included() -> None:
    handler = Embedder()
    texts = ["a", "b", "a", "c", "a", "b"]
    async with make_client(handler) as client:
        results = await client.embed_batch(texts, pack_inputs=2)
        off = await client.embed_batch(texts, pack_inputs=6, dedupe="off")
    sent = sorted(text for body in handler.bodies[:-1] for text in body["input"])
    assert sent == ["a", "b", "c"]
    assert [list(r.vector or []) for r in results] == [vector_of(t) for t in texts]
    assert [r.deduplicated for r in results] == [False, False, True, False, True, True]
    assert results.statistics.deduplicated == 3
    assert handler.bodies[-1]["input"] == texts
    assert not any(r.deduplicated for r in off)


def test_the_dedupe_option_is_validated_and_the_window_is_bounded() -> None:
    with pytest.raises(ValueError, match="dedupe must be one of"):
        pt.BatchOptions(dedupe="yes")  # type: ignore[arg-type]
    book = _dedupe.Dedupe("auto")
    identity = _dedupe.Identity(b"k", deterministic=False)
    assert book.key(identity) is None
    assert _dedupe.Dedupe("all").key(identity) == b"k"

    class Done:
        ok = True

    for i in range(_dedupe.DEDUPE_WINDOW + 1):
        key = str(i).encode()
        assert not book.follow(key, i, None, 0.0)
        assert book.finished(i, Done()) == []
    assert len(book.done) == _dedupe.DEDUPE_WINDOW
    assert book.answered(b"0") is None  # the oldest, forgotten
    assert book.answered(b"1") is not None


async def test_duplicates_of_results_held_by_the_systematic_rule_get_theirs_on_release() -> None:
    # The first answers fail (held while the batch may be failing systematically), then
    # successes release them: the duplicates that waited for a held leader get theirs.
    handler = Echo(
        latency=lambda text: 1.0 if text in ("item 0", "item 1") else 2.0,
        fail=lambda text, n: status(401) if text in ("item 0", "item 1") else None,
    )
    items = [msgs(0), msgs(1), msgs(0), msgs(1), *[msgs(i) for i in range(2, 8)]]
    async with make_client(handler, limits=pt.Limits(concurrency=8)) as client:
        results = await client.chat_batch(items, temperature=0, systematic_failures=3)
    assert [r.index for r in results] == list(range(10))
    assert [r.deduplicated for r in results[:4]] == [False, False, True, True]
    assert all(isinstance(r.error, pt.AuthenticationError) for r in results[:4])
    assert all(r.ok for r in results[4:])
    assert handler.calls == 8


async def test_duplicates_beyond_the_waiting_cap_are_sent_on_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three may wait for the leader: the fourth copy read meanwhile is sent (an item like
    # any other, its own slot); the copies read after the answer get it at once.
    monkeypatch.setattr(_dedupe, "DEDUPE_WAITING", 3)
    handler = Echo(latency=lambda text: 1.0)

    async def copies() -> object:
        for _ in range(5):  # the leader, three waiting, one beyond the cap
            yield msgs(1)
        await trio.sleep(2)
        for _ in range(5):
            yield msgs(1)

    async with make_client(handler, limits=pt.Limits(concurrency=4)) as client:
        results = await client.chat_batch(copies(), temperature=0)  # type: ignore[arg-type]
    assert handler.calls == 2
    assert [r.deduplicated for r in results] == [False, True, True, True, False, *[True] * 5]
    assert [r.attempts for r in results] == [1, 0, 0, 0, 1, *[0] * 5]
    assert all(r.completion and r.completion.text == "item 1" for r in results)
    assert results.statistics.deduplicated == 8


def test_the_waiting_cap_counts_every_leader_s_duplicates_and_frees_on_an_answer() -> None:
    book = _dedupe.Dedupe("auto", most=2)

    class Done:
        ok = False  # a failure: shared with those waiting, not remembered

    assert not book.follow(b"a", 0, None, 0.0)  # leader of a
    assert not book.follow(b"b", 1, None, 0.0)  # leader of b
    assert book.follow(b"a", 2, None, 0.0)
    assert book.follow(b"b", 3, None, 0.0)
    assert not book.follow(b"a", 4, None, 0.0)  # two held in all: sent on its own
    assert book.finished(4, Done()) == []  # (no leader of anything)
    assert [i for i, _, _ in book.finished(0, Done())] == [2]
    assert book.held == 1
    assert book.follow(b"b", 5, None, 0.0)  # room again
    assert [i for i, _, _ in book.finished(1, Done())] == [3, 5]
    assert book.held == 0


async def test_a_long_run_of_duplicates_lets_other_tasks_run() -> None:
    # Duplicates of a request under way need no sending, so reading them waits for
    # nothing: the reader still lets other tasks run every so often (here a ticker's).
    ticks = 0
    seen: list[int] = []

    async def ticker() -> None:  # (bounded: the virtual clock jumps once all wait)
        nonlocal ticks
        for _ in range(1_000):
            ticks += 1
            await trio.sleep(0)

    def items() -> Iterator[pt.ChatRequest]:
        yield from requests(["1"], temperature=0)
        for number in range(1, 501):
            if number % 100 == 0:
                seen.append(ticks)
            yield pt.ChatRequest(messages=msgs(1), custom_id=f"dup-{number}", temperature=0)

    handler = Echo(latency=lambda text: 1.0)
    async with make_client(handler) as client, trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.sleep(0)
        results = await client.chat_batch(items())
    assert handler.calls == 1
    assert sum(r.deduplicated for r in results) == 500
    assert seen[-1] > seen[0]  # the ticker ran while the duplicates were read
