"""``POST /query``: the top chunks of a collection for one or several queries
(``PARADIGM_API.md`` section 9), and :class:`Chunk`, which ``/filter/chunks`` answers too.

Request: ``query`` (a string or a list of strings), ``collection`` (default
``"base_collection"`` on the server), ``n`` (top chunks per query; server default 5).
The answer is a JSON array with one item per query: ``{"query"?, "chunks": [{"uuid",
"text", "metadata", "score"}]}``; ``chunks`` is required, the rest tolerated missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import APIResponseValidationError, InvalidRequestError
from ._completion import Usage
from ._encode import encode_json
from ._json_endpoint import check_text, obj, opt_number, opt_str, req_list
from ._models import check_custom_id, checked_extra

__all__ = ["Chunk", "QueryRequest", "QueryResult", "check_n", "parse_chunks"]

_MODELLED = frozenset({"query", "collection", "n"})


def check_n(n: object) -> int | None:
    """``n`` (how many chunks), a positive int or ``None``."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InvalidRequestError(f"n must be a positive integer, got {n!r}")
    return n


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk of a document, as ``/query`` and ``/filter/chunks`` return it.

    Attributes:
        uuid: the chunk's id (what ``filter_chunks`` takes).
        text: its text ("" when the answer has none).
        score: its relevance: ``score`` from ``/query``, ``filter_score`` from
            ``/filter/chunks`` (``None`` when absent).
        metadata: its metadata, as the server sent it.
        raw: the chunk's JSON.
    """

    uuid: str | None
    text: str
    score: float | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: object, request_id: str | None, whole: object = None) -> Chunk:
        """One chunk; lenient on every field (the reference marks none required)."""
        item = obj(data, "a chunk", request_id, whole)
        score = opt_number(item, "score")
        if score is None:
            score = opt_number(item, "filter_score")
        metadata = item.get("metadata")
        return cls(
            opt_str(item, "uuid") or opt_str(item, "id"),
            opt_str(item, "text") or "",
            score,
            metadata if isinstance(metadata, dict) else {},
            item,
        )


def parse_chunks(
    item: Mapping[str, Any], request_id: str | None, whole: object
) -> tuple[Chunk, ...]:
    """``item["chunks"]`` (required) as :class:`Chunk` objects."""
    chunks = req_list(item, "chunks", "the answer", request_id)
    return tuple(Chunk.from_json(c, request_id, whole) for c in chunks)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The chunks found for one query.

    Attributes:
        query: the query (from the answer, else the one sent).
        chunks: the chunks, best first as the server ranked them.
        raw: the item's JSON.
        request_id: the response's ``x-request-id``, if any.
    """

    query: str
    chunks: tuple[Chunk, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    request_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class QueryRequest:
    """One ``POST /query`` request.

    Attributes:
        query: a question, or several (one :class:`QueryResult` each).
        collection: the collection to search (the server's default when ``None``).
        n: the chunks to return per query (the server's default, 5, when ``None``).
        extra: more body fields, passed through.
        custom_id: a stable id for this logical request.
    """

    query: str | Sequence[str]
    collection: str | None = None
    n: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    custom_id: str | None = None

    endpoint = "/query"

    def __post_init__(self) -> None:
        query: object = self.query
        if isinstance(query, str):
            check_text("query", query)
        elif isinstance(query, Sequence) and not isinstance(query, bytes):
            object.__setattr__(self, "query", tuple(check_text("query", q) for q in query))
            if not self.query:
                raise InvalidRequestError("query must be a string or a non-empty list of strings")
        else:
            raise InvalidRequestError(
                f"query must be a string or a list of strings, got {query!r:.200}"
            )
        if self.collection is not None:
            check_text("collection", self.collection)
        check_n(self.n)
        check_custom_id(self.custom_id)
        object.__setattr__(self, "extra", checked_extra(self.extra, _MODELLED))
        encode_json(self.to_body(""))

    @property
    def model(self) -> None:
        """``None``: ``/query`` takes no model (the server's retriever)."""
        return None

    @property
    def queries(self) -> tuple[str, ...]:
        """The queries, as a tuple."""
        return (self.query,) if isinstance(self.query, str) else tuple(self.query)

    def to_body(self, default_model: str) -> dict[str, Any]:
        """The JSON body sent to ``/query`` (no model: the server's retriever)."""
        body: dict[str, Any] = {
            "query": self.query if isinstance(self.query, str) else list(self.query)
        }
        if self.collection is not None:
            body["collection"] = self.collection
        if self.n is not None:
            body["n"] = self.n
        body.update(self.extra)
        return body

    def estimated_tokens(self) -> int:
        """0: retrieval generates no tokens."""
        return 0

    def parse(self, data: object, request_id: str | None) -> list[QueryResult]:
        """One :class:`QueryResult` per query sent.

        The reference answers a JSON array; a single object (one query) is tolerated.
        """
        items = [data] if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise APIResponseValidationError(
                "the /query response is not a JSON array", body=data, request_id=request_id
            )
        queries = self.queries
        if len(items) != len(queries):
            raise APIResponseValidationError(
                f"the /query response has {len(items)} item(s) for {len(queries)} queries",
                body=data,
                request_id=request_id,
            )
        results = []
        for item, sent in zip(items, queries, strict=True):
            found = obj(item, "a /query item", request_id, data)
            chunks = parse_chunks(found, request_id, data)
            results.append(QueryResult(opt_str(found, "query") or sent, chunks, found, request_id))
        return results

    def usage(self, value: Any) -> Usage | None:
        """``None``: retrieval reports no usage."""
        return None
