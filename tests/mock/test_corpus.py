"""The mock's corpus without a server: chunking, scores and ranking (properties)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from mock_server._corpus import FileStore, NewFile, filter_score, query_score, rank, words

TEXT = st.text(alphabet=st.sampled_from("ab cd\fé\n"), max_size=200)


def _file(text: str, size: int, overlap: int) -> NewFile:
    return NewFile(
        filename="f.txt",
        title=None,
        size=len(text),
        sha256="",
        text=text,
        collection=None,
        collection_type=None,
        workspace_id=None,
        chunk_size=size,
        chunk_overlap=overlap,
    )


@given(TEXT, st.integers(1, 8), st.data())
def test_chunks_cover_every_word_in_order(text: str, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    stored = FileStore().add(_file(text, size, overlap), seed=3, created_at=0, ready_at=0.0)
    step = size - overlap
    all_words = text.split()
    expected = []
    for start in range(0, len(all_words), step):
        expected.append(" ".join(all_words[start : start + size]))
        if start + size >= len(all_words):
            break
    assert [c.text for c in stored.chunks] == expected
    assert all(len(c.text.split()) <= size for c in stored.chunks)
    assert [c.index for c in stored.chunks] == list(range(len(stored.chunks)))
    assert len({c.uuid for c in stored.chunks}) == len(stored.chunks)
    assert stored.total_pages == text.count("\f") + 1
    assert all(1 <= c.page <= stored.total_pages for c in stored.chunks)


@given(st.text(max_size=60), st.text(max_size=60))
def test_scores_are_shares_of_common_words(query: str, chunk: str) -> None:
    q, c = words(query), words(chunk)
    score, filtered = query_score(q, c), filter_score(q, c)
    assert 0.0 <= score <= 1.0
    assert 0.0 <= filtered <= 1.0
    assert (score == 0.0) == (not q & c)
    if q and c:
        assert math.isclose(filtered, len(q & c) / math.sqrt(len(q) * len(c)), abs_tol=5e-5)
    if q and q <= c:
        assert score == 1.0


@given(st.lists(TEXT, min_size=1, max_size=4), st.text(max_size=20))
def test_rank_is_best_first_then_by_file_and_index(texts: list[str], query: str) -> None:
    store = FileStore()
    files = [store.add(_file(t, 3, 1), seed=0, created_at=0, ready_at=0.0) for t in texts]
    chunks = store.embedded_chunks(files, 0.0)
    ranked = rank(words(query), chunks)
    keys = [(-score, c.file_id, c.index) for score, c in ranked]
    assert keys == sorted(keys)
    assert sorted(c.uuid for _, c in ranked) == sorted(c.uuid for c in chunks)


def test_an_empty_file_has_no_chunks_and_one_page() -> None:
    stored = FileStore().add(_file("", 5, 0), seed=0, created_at=0, ready_at=0.0)
    assert stored.chunks == ()
    assert stored.total_pages == 1


def test_store_status_follows_the_clock_it_is_given() -> None:
    store = FileStore()
    stored = store.add(_file("one two three four five", 3, 1), seed=0, created_at=0, ready_at=10.0)
    assert [stored.status(now) for now in (0.0, 9.999, 10.0, 50.0)] == [
        "pending",
        "pending",
        "embedded",
        "embedded",
    ]
    assert store.embedded_chunks([stored], 9.0) == []
    assert [c.text for c in store.embedded_chunks([stored], 10.0)] == [
        "one two three",
        "three four five",
    ]
    assert store.chunk(stored.chunks[0].uuid, 9.0) is None
    assert store.chunk(stored.chunks[0].uuid, 10.0) == stored.chunks[0]
    assert store.delete(stored.id)
    assert not store.delete(stored.id)
    assert store.chunk(stored.chunks[0].uuid, 10.0) is None
