"""The response cache (``Client(cache=pt.ResponseCache(...))``): batches answered from it,
what is stored and what is not, expiry, the key never written, several processes at once.
On ``httpx2.MockTransport`` and the autojump clock (the SQLite calls run on threads)."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import paradigm_trio as pt
from paradigm_trio._engine import _cache

from .helpers import API_KEY, make_client, status
from .test_batch import Echo, msgs
from .test_embeddings import Embedder, vector_of

pytestmark = pytest.mark.anyio


def greedy(*numbers: int) -> list[pt.ChatRequest]:
    return [
        pt.ChatRequest(messages=msgs(n), temperature=0, custom_id=f"id-{i}")
        for i, n in enumerate(numbers)
    ]


async def test_a_rerun_is_answered_from_the_cache_and_marked_so(tmp_path: Path) -> None:
    handler = Echo()
    cache = pt.ResponseCache(tmp_path / "answers.sqlite")
    async with make_client(handler, cache=cache) as client:
        first = await client.chat_batch(greedy(1, 2, 3))
    assert handler.calls == 3
    assert not any(r.cached for r in first)
    async with make_client(handler, cache=cache) as client:  # another client, the same file
        again = await client.chat_batch(greedy(1, 2, 3, 4))
    assert handler.calls == 4  # only the new one was sent
    assert [r.cached for r in again] == [True, True, True, False]
    assert [(r.attempts, r.elapsed) for r in again[:3]] == [(0, 0.0)] * 3
    for before, after in zip(first, again, strict=False):
        assert after.completion is not None
        assert before.completion is not None
        assert after.completion.text == before.completion.text
        assert after.completion.request_id == before.completion.request_id
        assert after.completion.usage == before.completion.usage
    assert (again.statistics.cached, again.statistics.succeeded) == (3, 4)


async def test_sampled_requests_and_failures_are_not_stored(tmp_path: Path) -> None:
    handler = Echo(fail=lambda text, n: status(400) if text == "item 9" else None)
    sampled = [pt.ChatRequest(messages=msgs(1), temperature=0.7)]
    async with make_client(handler, cache=pt.ResponseCache(tmp_path / "c.sqlite")) as client:
        for _ in range(2):
            await client.chat_batch(sampled)
            failed = await client.chat_batch(greedy(9))
            assert isinstance(failed[0].error, pt.BadRequestError)
    assert handler.calls == 4


async def test_duplicates_of_a_cached_request_share_its_answer(tmp_path: Path) -> None:
    handler = Echo()
    cache = pt.ResponseCache(tmp_path / "c.sqlite")
    async with make_client(handler, cache=cache) as client:
        await client.chat_batch(greedy(1))
        results = await client.chat_batch(greedy(1, 1, 1))
    assert handler.calls == 1
    assert [(r.cached, r.deduplicated) for r in results] == [
        (True, False), (True, True), (True, True)
    ]  # fmt: skip
    assert (results.statistics.cached, results.statistics.deduplicated) == (1, 2)


async def test_embeddings_are_cached_per_item(tmp_path: Path) -> None:
    handler = Embedder()
    cache = pt.ResponseCache(tmp_path / "c.sqlite")
    async with make_client(handler, cache=cache) as client:
        await client.embed_batch(["a", "b"], pack_inputs=2)
        results = await client.embed_batch(["a", "b", "c"], pack_inputs=3)
    assert [body["input"] for body in handler.bodies] == [["a", "b"], ["c"]]
    assert [r.cached for r in results] == [True, True, False]
    assert [list(r.vector or []) for r in results] == [vector_of(t) for t in "abc"]


async def test_answers_expire_after_the_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = Echo()
    now = [1_000_000.0]
    monkeypatch.setattr(_cache, "_now", lambda: now[0])
    cache = pt.ResponseCache(tmp_path / "c.sqlite", ttl=60)
    async with make_client(handler, cache=cache) as client:
        await client.chat_batch(greedy(1))
        now[0] += 59
        assert (await client.chat_batch(greedy(1)))[0].cached
        now[0] += 2
        assert not (await client.chat_batch(greedy(1)))[0].cached
    assert handler.calls == 2


async def test_another_host_does_not_share_the_answers(tmp_path: Path) -> None:
    handler = Echo()
    cache = pt.ResponseCache(tmp_path / "c.sqlite", ttl=None)
    async with make_client(handler, cache=cache) as client:
        await client.chat_batch(greedy(1))
    other = "https://other.example.test/api/v2"
    async with make_client(handler, cache=cache, base_url=other) as client:
        assert not (await client.chat_batch(greedy(1)))[0].cached
    assert handler.calls == 2


async def test_the_api_key_is_nowhere_in_the_files(tmp_path: Path) -> None:
    handler = Echo()
    async with make_client(handler, cache=pt.ResponseCache(tmp_path / "c.sqlite")) as client:
        await client.chat_batch(greedy(1, 2))
        await client.embed_batch(["a"])
        written = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        assert b"item 1" in written  # the answers are there (the WAL included)...
    for path in tmp_path.iterdir():
        assert API_KEY.encode() not in path.read_bytes()  # ...the key is not


async def test_bad_configuration_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ResponseCache\.ttl"):
        pt.ResponseCache(tmp_path / "c", ttl=-1)
    with pytest.raises(ValueError, match=r"ResponseCache\.path"):
        pt.ResponseCache("")
    with pytest.raises(pt.ConfigurationError, match="cache must be a ResponseCache"):
        make_client(Echo(), cache=str(tmp_path / "c"))
    client = make_client(Echo(), cache=pt.ResponseCache(tmp_path / "no" / "such" / "c"))
    with pytest.raises(pt.ConfigurationError, match="cannot be opened"):
        await client.__aenter__()
    await client.aclose()


def test_two_processes_write_and_read_one_file_at_once(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, trio
        from paradigm_trio._engine._cache import CacheStore
        import paradigm_trio as pt

        async def main(path, name):
            store = CacheStore(pt.ResponseCache(path), "host")
            await store.open()
            for i in range(200):
                key = store.key(f"{name}-{i}".encode())
                await store.put([(key, {"n": i, "by": name}, None)])
                assert (await store.get([key]))[key] == ({"n": i, "by": name}, None)
            await store.aclose()

        trio.run(main, sys.argv[1], sys.argv[2])
        """
    )
    path = str(tmp_path / "shared.sqlite")
    workers = [
        subprocess.Popen([sys.executable, "-c", script, path, name], stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
    # closing(): a Connection's own `with` commits but does not close it
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM answers").fetchone() == (400,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_chat_reads_and_fills_the_cache_and_marks_what_it_read(tmp_path: Path) -> None:
    handler = Echo()
    cache = pt.ResponseCache(tmp_path / "c.sqlite")
    async with make_client(handler, cache=cache) as client:
        first = await client.chat(msgs(1), temperature=0)
        again = await client.chat(msgs(1), temperature=0)
        seeded = [await client.chat(msgs(2), seed=3) for _ in range(2)]
        sampled = [await client.chat(msgs(3), temperature=0.7) for _ in range(2)]
        batch = await client.chat_batch(greedy(1))  # a batch reads what chat() stored
    assert handler.calls == 1 + 1 + 2
    assert (first.cached, again.cached) == (False, True)
    assert again.text == first.text
    assert again == first  # (``cached`` is not compared)
    assert [c.cached for c in seeded] == [False, True]
    assert not any(c.cached for c in sampled)
    assert batch[0].cached
    async with make_client(handler) as client:  # no cache: always sent, never marked
        plain = await client.chat(msgs(1), temperature=0)
    assert handler.calls == 5
    assert not plain.cached


async def test_chat_with_an_unreadable_entry_sends_again_and_stores_anew(
    tmp_path: Path,
) -> None:
    handler = Echo()
    cache = pt.ResponseCache(tmp_path / "c.sqlite")
    async with make_client(handler, cache=cache) as client:
        await client.chat(msgs(1), temperature=0)
    with contextlib.closing(sqlite3.connect(tmp_path / "c.sqlite")) as db, db:
        db.execute("""UPDATE answers SET answer = '{"raw": {"not": "a completion"}}'""")
    async with make_client(handler, cache=cache) as client:
        resent = await client.chat(msgs(1), temperature=0)
        read = await client.chat(msgs(1), temperature=0)
    assert handler.calls == 2
    assert (resent.cached, read.cached) == (False, True)
