"""The mock's documents: files uploaded to it, cut into chunks, and searched by a lexical
score.  Everything here is deterministic and synchronous (no I/O, no clock of its own).

* **Text**: the ``content`` form field of the upload when given, else the file's bytes
  decoded as UTF-8 (invalid bytes replaced), at most :data:`INDEXED_CHARS` characters.
  A form feed (``\\f``) starts a new page.
* **Chunks**: runs of ``chunk_size`` words (default :data:`DEFAULT_CHUNK_WORDS`), each
  starting ``chunk_size - chunk_overlap`` words after the previous one.  A chunk's
  ``uuid`` is ``sha256(seed, "chunk", file id, index)`` read as a version-4 UUID; its
  page is the page of its first word.
* **Words** of a text: its lower-cased ``\\w+`` runs, as a set.
* **Scores**, both rounded to 4 decimals: ``/query``'s ``score`` is
  ``|Q & C| / |Q|`` (the share of the query's words found in the chunk);
  ``/filter/chunks``'s ``filter_score`` is ``|Q & C| / sqrt(|Q| * |C|)``.  Ties are
  broken by file id, then chunk index.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ._determinism import digest

__all__ = [
    "DEFAULT_CHUNK_WORDS",
    "INDEXED_CHARS",
    "Chunk",
    "FileStore",
    "NewFile",
    "StoredFile",
    "filter_score",
    "query_score",
    "rank",
    "words",
]

#: Words per chunk when an upload gives no ``chunk_size``.
DEFAULT_CHUNK_WORDS: Final = 100
#: Characters of a file's text the mock keeps and indexes (the rest is counted, not kept).
INDEXED_CHARS: Final = 1 << 20
_WORD: Final = re.compile(r"\w+")


def words(text: str) -> frozenset[str]:
    """The lower-cased ``\\w+`` runs of ``text``."""
    return frozenset(match.lower() for match in _WORD.findall(text))


def query_score(query: frozenset[str], chunk: frozenset[str]) -> float:
    """``|Q & C| / |Q|``, rounded to 4 decimals (0 for a query without words)."""
    if not query:
        return 0.0
    return round(len(query & chunk) / len(query), 4)


def filter_score(query: frozenset[str], chunk: frozenset[str]) -> float:
    """``|Q & C| / sqrt(|Q| * |C|)``, rounded to 4 decimals."""
    if not query or not chunk:
        return 0.0
    return round(len(query & chunk) / math.sqrt(len(query) * len(chunk)), 4)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a stored file: ``number`` is its integer id (an extract's ``id``)."""

    uuid: str
    number: int
    file_id: int
    index: int
    page: int
    text: str
    words: frozenset[str] = field(repr=False)


@dataclass(frozen=True, slots=True)
class NewFile:
    """An upload the mock accepted: what it keeps of it."""

    filename: str
    title: str | None
    size: int
    sha256: str
    text: str
    collection: int | None
    collection_type: str | None
    workspace_id: int | None
    chunk_size: int
    chunk_overlap: int


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file held by the mock.  ``ready_at`` is the server's ``trio.current_time()`` from
    which its status is ``embedded`` (``pending`` before)."""

    id: int
    created_at: int
    ready_at: float
    upload: NewFile
    total_pages: int
    chunks: tuple[Chunk, ...]

    @property
    def filename(self) -> str:
        return self.upload.filename

    def status(self, now: float) -> str:
        """``pending``, then ``embedded`` from ``ready_at`` on."""
        return "embedded" if now >= self.ready_at else "pending"

    def summary(self, now: float) -> dict[str, Any]:
        """What the admin route ``/_mock/files`` shows of the file (its text aside)."""
        upload = self.upload
        return {
            "id": self.id,
            "filename": upload.filename,
            "title": upload.title,
            "bytes": upload.size,
            "sha256": upload.sha256,
            "status": self.status(now),
            "collection": upload.collection,
            "collection_type": upload.collection_type,
            "workspace_id": upload.workspace_id,
            "chunks": len(self.chunks),
            "total_pages": self.total_pages,
        }


def _pages(text: str) -> list[list[str]]:
    return [page.split() for page in text.split("\f")]


def _make_chunks(seed: int, file_id: int, first_number: int, upload: NewFile) -> list[Chunk]:
    located = [(n, word) for n, page in enumerate(_pages(upload.text), 1) for word in page]
    step = upload.chunk_size - upload.chunk_overlap
    chunks: list[Chunk] = []
    for index, start in enumerate(range(0, len(located), step)):
        piece = located[start : start + upload.chunk_size]
        text = " ".join(word for _, word in piece)
        raw = digest(seed, "chunk", file_id, index)[:16]
        chunks.append(
            Chunk(
                uuid=str(uuid.UUID(bytes=raw, version=4)),
                number=first_number + index,
                file_id=file_id,
                index=index,
                page=piece[0][0],
                text=text,
                words=words(text),
            )
        )
        if start + upload.chunk_size >= len(located):
            break
    return chunks


class FileStore:
    """The files of one mock, by id (ids count from 1 and are never reused)."""

    def __init__(self) -> None:
        self._files: dict[int, StoredFile] = {}
        self._chunks: dict[str, Chunk] = {}
        self._next_id = 1
        self._next_chunk = 1

    def add(self, upload: NewFile, *, seed: int, created_at: int, ready_at: float) -> StoredFile:
        """Store ``upload`` under a new id and cut it into chunks."""
        file_id = self._next_id
        self._next_id += 1
        chunks = _make_chunks(seed, file_id, self._next_chunk, upload)
        self._next_chunk += len(chunks)
        stored = StoredFile(
            id=file_id,
            created_at=created_at,
            ready_at=ready_at,
            upload=upload,
            total_pages=len(_pages(upload.text)),
            chunks=tuple(chunks),
        )
        self._files[file_id] = stored
        self._chunks.update((chunk.uuid, chunk) for chunk in chunks)
        return stored

    def get(self, file_id: int) -> StoredFile | None:
        return self._files.get(file_id)

    def delete(self, file_id: int) -> bool:
        """Remove a file and its chunks; ``False`` if there was none."""
        stored = self._files.pop(file_id, None)
        if stored is None:
            return False
        for chunk in stored.chunks:
            del self._chunks[chunk.uuid]
        return True

    def files(self) -> list[StoredFile]:
        """Every file, by id."""
        return list(self._files.values())

    def chunk(self, chunk_uuid: str, now: float) -> Chunk | None:
        """The chunk of an embedded file with this UUID, or ``None``."""
        chunk = self._chunks.get(chunk_uuid)
        if chunk is None or self._files[chunk.file_id].status(now) != "embedded":
            return None
        return chunk

    def embedded_chunks(self, files: Iterable[StoredFile], now: float) -> list[Chunk]:
        """The chunks of those of ``files`` that are embedded, by file id and index."""
        return [c for f in files if f.status(now) == "embedded" for c in f.chunks]


def rank(
    query: frozenset[str],
    chunks: Iterable[Chunk],
    *,
    filtering: bool = False,
) -> list[tuple[float, Chunk]]:
    """``chunks`` with their score (``filter_score`` when ``filtering``), best first."""
    scorer = filter_score if filtering else query_score
    scored = [(scorer(query, chunk.words), chunk) for chunk in chunks]
    scored.sort(key=lambda pair: (-pair[0], pair[1].file_id, pair[1].index))
    return scored
