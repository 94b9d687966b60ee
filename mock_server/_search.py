"""Retrieval over the mock's files: ``POST /query``, ``POST /filter/chunks``, and answers
that cite them: ``POST /chat/document-search`` (deprecated by Paradigm) and
``POST /api/v3/threads/turns`` (beta).

Only ``embedded`` files are searched (see :mod:`._corpus` for the chunks and scores).
A document-search answer cites at most :data:`CITED` chunks, those of best ``/query``
score above 0 among the files in scope; its text quotes them, so a test can tell which
chunks it used.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import trio

from ._corpus import Chunk, StoredFile, rank, words
from ._determinism import digest
from ._plain import (
    Answer,
    bad,
    int_list,
    load_object,
    model_field,
    optional_bool,
    optional_int,
    optional_str,
    required_str,
    text_tokens,
    type_name,
)
from ._schema_values import UnsupportedSchema, regex_value, schema_value

if TYPE_CHECKING:
    from ._state import MockState

__all__ = [
    "CITED",
    "DEFAULT_COLLECTION",
    "DocumentSearch",
    "FilterChunks",
    "Query",
    "Scope",
    "answer_text",
    "iso_now",
    "new_uuid",
    "parse_document_search",
    "parse_filter",
    "parse_query",
]

#: The collection ``/query`` searches when none is given: every file.
DEFAULT_COLLECTION: Final = "base_collection"
#: Chunks a document-search answer cites, at most.
CITED: Final = 3
_DEFAULT_N: Final = 5
_MAX_N: Final = 100
_MAX_QUERIES: Final = 100
_QUOTE_WORDS: Final = 25
_TOOLS: Final = ("DocumentSearch", "VisionDocumentSearch")
_DEFAULT_MODEL: Final = "alfred-4.2"
_GUIDED: Final = frozenset(
    {
        "guided_choice",
        "guided_regex",
        "guided_json",
        "guided_grammar",
        "guided_whitespace_pattern",
        "guided_decoding_backend",
    }
)
_UUID: Final = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _chunk_json(chunk: Chunk, stored: StoredFile) -> dict[str, Any]:
    return {
        "uuid": chunk.uuid,
        "text": chunk.text,
        "metadata": {"file_id": stored.id, "filename": stored.filename},
    }


@dataclass(frozen=True, slots=True)
class Query:
    """``POST /query``: the top ``n`` chunks of each query."""

    queries: tuple[str, ...]
    collection: str
    n: int
    prompt_tokens: int
    model: None = None

    @property
    def quota_tokens(self) -> int:
        return self.prompt_tokens

    def answer(self, state: MockState) -> Answer:
        files = [
            f
            for f in state.files.files()
            if self.collection in (DEFAULT_COLLECTION, str(f.upload.collection))
        ]
        by_id = {f.id: f for f in files}
        chunks = state.files.embedded_chunks(files, trio.current_time())
        results = []
        for query in self.queries:
            top = rank(words(query), chunks)[: self.n]
            found = [{**_chunk_json(c, by_id[c.file_id]), "score": s} for s, c in top]
            results.append({"query": query, "chunks": found})
        return Answer(results)


def parse_query(body: bytes, *, models: object = None) -> Query:
    """``query`` (a string or a list of strings), ``collection``, ``n``."""
    del models
    data = load_object(body)
    raw = data.get("query")
    if raw is None:
        raise bad("Missing required parameter: 'query'.", "query", "missing_required_parameter")
    queries = [raw] if isinstance(raw, str) else raw
    if not isinstance(queries, list) or not queries or len(queries) > _MAX_QUERIES:
        raise bad(
            f"Invalid 'query': expected a string or an array of 1 to {_MAX_QUERIES} strings, "
            f"but got {type_name(raw)}{f' of {len(raw)}' if isinstance(raw, list) else ''}.",
            "query",
        )
    for i, text in enumerate(queries):
        param = "query" if isinstance(raw, str) else f"query[{i}]"
        if not isinstance(text, str) or not text.strip():
            raise bad(f"Invalid '{param}': expected a non-empty string.", param)
    return Query(
        queries=tuple(queries),
        collection=optional_str(data, "collection") or DEFAULT_COLLECTION,
        n=optional_int(data, "n", minimum=1, maximum=_MAX_N) or _DEFAULT_N,
        prompt_tokens=sum(map(text_tokens, queries)),
    )


@dataclass(frozen=True, slots=True)
class FilterChunks:
    """``POST /filter/chunks``: the given chunks that pass (``filter_score`` > 0), best
    first, the first ``n`` of them."""

    query: str
    chunk_ids: tuple[str, ...]
    model: str | None
    n: int | None
    prompt_tokens: int

    @property
    def quota_tokens(self) -> int:
        return self.prompt_tokens

    def answer(self, state: MockState) -> Answer:
        now = trio.current_time()
        chunks = []
        for i, chunk_id in enumerate(self.chunk_ids):
            chunk = state.files.chunk(chunk_id, now)
            if chunk is None:
                raise bad(
                    f"Invalid 'chunk_ids[{i}]': no chunk {chunk_id} in an embedded file.",
                    f"chunk_ids[{i}]",
                    "chunk_not_found",
                )
            chunks.append(chunk)
        passed = [(s, c) for s, c in rank(words(self.query), chunks, filtering=True) if s > 0]
        if self.n is not None:
            passed = passed[: self.n]
        found = []
        for score, chunk in passed:
            stored = state.files.get(chunk.file_id)
            assert stored is not None
            found.append({**_chunk_json(chunk, stored), "filter_score": score})
        return Answer({"query": self.query, "chunks": found})


def parse_filter(body: bytes, *, models: tuple[str, ...] | None) -> FilterChunks:
    """``query``, ``chunk_ids`` (UUIDs, at least one), ``model`` (optional), ``n``."""
    data = load_object(body)
    query = required_str(data, "query")
    raw = data.get("chunk_ids")
    if raw is None:
        raise bad(
            "Missing required parameter: 'chunk_ids'.", "chunk_ids", "missing_required_parameter"
        )
    if not isinstance(raw, list) or not raw:
        raise bad("Invalid 'chunk_ids': expected a non-empty array of chunk UUIDs.", "chunk_ids")
    for i, chunk_id in enumerate(raw):
        if not isinstance(chunk_id, str) or not _UUID.match(chunk_id):
            raise bad(f"Invalid 'chunk_ids[{i}]': expected a UUID.", f"chunk_ids[{i}]")
    model = model_field(data, "model", models)
    return FilterChunks(
        query=query,
        chunk_ids=tuple(dict.fromkeys(raw)),
        model=model,
        n=optional_int(data, "n", minimum=1),
        prompt_tokens=text_tokens(query),
    )


@dataclass(frozen=True, slots=True)
class Scope:
    """The files a question is asked of: ``file_ids``, the workspaces' files, and the
    company's or the caller's private files (an upload without ``collection_type`` is
    private)."""

    file_ids: tuple[int, ...] = ()
    workspace_ids: tuple[int, ...] = ()
    company: bool = False
    private: bool = False

    @classmethod
    def of(cls, data: dict[str, Any]) -> Scope:
        return cls(
            file_ids=int_list(data, "file_ids") or (),
            workspace_ids=int_list(data, "workspace_ids") or (),
            company=bool(optional_bool(data, "company_scope")),
            private=bool(optional_bool(data, "private_scope")),
        )

    @property
    def empty(self) -> bool:
        """No file, workspace or scope named: nothing to search."""
        return not (self.file_ids or self.workspace_ids or self.company or self.private)

    def files(self, state: MockState) -> list[StoredFile]:
        """The files in scope; a 400 naming ``file_ids[i]`` for a file the mock lacks."""
        for i, file_id in enumerate(self.file_ids):
            if state.files.get(file_id) is None:
                raise bad(
                    f"Invalid 'file_ids[{i}]': no file with id {file_id}.",
                    f"file_ids[{i}]",
                    "file_not_found",
                )
        chosen = []
        for f in state.files.files():
            kind = f.upload.collection_type or "private"
            if (
                f.id in self.file_ids
                or (kind == "workspace" and f.upload.workspace_id in self.workspace_ids)
                or (self.company and kind == "company")
                or (self.private and kind == "private")
            ):
                chosen.append(f)
        return chosen

    def cited(self, state: MockState, query: str) -> list[tuple[float, Chunk, StoredFile]]:
        """The chunks an answer cites: the best ``/query`` scores above 0, at most CITED."""
        files = self.files(state)
        by_id = {f.id: f for f in files}
        chunks = state.files.embedded_chunks(files, trio.current_time())
        top = [(s, c) for s, c in rank(words(query), chunks) if s > 0][:CITED]
        return [(s, c, by_id[c.file_id]) for s, c in top]


def answer_text(cited: list[tuple[float, Chunk, StoredFile]], *, vision: bool = False) -> str:
    """The answer quoting each cited chunk (``vision``: read from the pages' images)."""
    if not cited:
        return "I could not find the answer in the documents in scope."
    quotes = []
    for _, chunk, stored in cited:
        quote = " ".join(chunk.text.split()[:_QUOTE_WORDS])
        seen = "the image of page" if vision else "page"
        quotes.append(f'According to {stored.filename} ({seen} {chunk.page}): "{quote}".')
    return " ".join(quotes)


def _guided(extra: dict[str, Any], rng: random.Random) -> str | None:
    """The answer that ``extra_body``'s guided decoding imposes, if any."""
    choices = extra.get("guided_choice")
    if choices is not None:
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, str) for c in choices)
        ):
            raise bad(
                "Invalid 'extra_body.guided_choice': expected a non-empty array of strings.",
                "extra_body.guided_choice",
            )
        return str(rng.choice(choices))
    try:
        if extra.get("guided_json") is not None:
            return json.dumps(schema_value(extra["guided_json"], rng), ensure_ascii=False)
        if extra.get("guided_regex") is not None:
            return regex_value(str(extra["guided_regex"]), rng)
    except (UnsupportedSchema, re.error) as exc:
        name = "guided_json" if extra.get("guided_json") is not None else "guided_regex"
        raise bad(f"Invalid 'extra_body.{name}': {exc}", f"extra_body.{name}") from None
    return None


def _extra_body(data: dict[str, Any]) -> dict[str, Any]:
    extra = data.get("extra_body")
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise bad("Invalid type for 'extra_body': expected an object.", "extra_body")
    for key in extra:
        if key not in _GUIDED:
            raise bad(
                f"Invalid 'extra_body.{key[:40]}': only {', '.join(sorted(_GUIDED))} are accepted.",
                f"extra_body.{key[:40]}",
            )
    return extra


@dataclass(frozen=True, slots=True)
class DocumentSearch:
    """``POST /chat/document-search``: an answer from the files in scope, with the
    documents and extracts it used."""

    query: str
    scope: Scope
    model: str
    tool: str
    chat_session_id: int | None
    instructions: str
    extra: dict[str, Any] = field(repr=False)
    prompt_tokens: int = 0
    quota_tokens: int = 0

    def answer(self, state: MockState) -> Answer:
        cited = self.scope.cited(state, self.query)
        rng = random.Random(digest(state.config.seed, "document-search", self.query))
        text = _guided(self.extra, rng) or answer_text(
            cited, vision=self.tool == "VisionDocumentSearch"
        )
        documents: dict[int, dict[str, Any]] = {}
        for _, chunk, stored in cited:
            doc = documents.setdefault(
                stored.id, {"id": stored.id, "name": stored.filename, "document_extracts": []}
            )
            metadata = {
                "ID": chunk.uuid,
                "pages": str(chunk.page),
                "total_pages": str(stored.total_pages),
            }
            doc["document_extracts"].append(
                {"id": chunk.number, "text": chunk.text, "metadata": metadata}
            )
        session = self.chat_session_id
        body = {
            "chat_session_id": state.new_chat_session() if session is None else session,
            "answer": text,
            "user_instructions": self.instructions,
            "chat_settings": {"company": "", "instruction": self.instructions},
            "model": self.model,
            "documents": list(documents.values()),
        }
        return Answer(body, completion_tokens=len(text.split()))


def parse_document_search(
    body: bytes, *, models: tuple[str, ...] | None, default_max_tokens: int
) -> DocumentSearch:
    """The fields of ``/chat/document-search`` (see ``docs/mock-server.md``)."""
    data = load_object(body)
    query = required_str(data, "query")
    model = model_field(data, "model", models) or _DEFAULT_MODEL
    tool = optional_str(data, "tool") or "DocumentSearch"
    if tool not in _TOOLS:
        raise bad(
            f"Invalid 'tool': expected one of {', '.join(_TOOLS)}, got {tool[:40]!r}.", "tool"
        )
    for name in ("private", "rewrite_query"):
        optional_bool(data, name)
    tokens = text_tokens(query)
    return DocumentSearch(
        query=query,
        scope=Scope.of(data),
        model=model,
        tool=tool,
        chat_session_id=optional_int(data, "chat_session_id", minimum=1),
        instructions=optional_str(data, "generation_instructions") or "",
        extra=_extra_body(data),
        prompt_tokens=tokens,
        quota_tokens=tokens + default_max_tokens,
    )


def new_uuid(seed: int, *parts: object) -> str:
    """A version-4 UUID made of ``sha256(seed, parts)``."""
    return str(uuid.UUID(bytes=digest(seed, "uuid", *parts)[:16], version=4))


def iso_now() -> str:
    """The wall-clock time as v3 writes it: ``2025-03-01T10:30:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
