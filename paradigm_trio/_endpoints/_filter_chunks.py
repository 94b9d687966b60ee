"""``POST /filter/chunks``: rerank and filter chunks (by their UUIDs) against a query
(``PARADIGM_API.md`` section 10).

Request: ``query`` (required), ``chunk_ids`` (required, chunk UUIDs), ``model`` (the
reference contradicts itself: required in the schema, "the 'reranker' finetune" when
absent in the description; sent only when given), ``n`` (the first ``n`` chunks that pass).
Answer: ``{"query", "chunks": [{"uuid", "text", "metadata", "filter_score"}]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import InvalidRequestError
from ._completion import Usage
from ._encode import encode_json
from ._json_endpoint import check_text, obj, opt_str
from ._models import check_custom_id, check_model, checked_extra
from ._query import QueryResult, check_n, parse_chunks

__all__ = ["FilterRequest", "FilteredChunks"]

_MODELLED = frozenset({"query", "chunk_ids", "model", "n"})


@dataclass(frozen=True, slots=True)
class FilteredChunks(QueryResult):
    """The answer of ``/filter/chunks``: a :class:`QueryResult` whose chunks are those
    that passed, each with its ``filter_score`` as ``score``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FilterRequest:
    """One ``POST /filter/chunks`` request.

    Attributes:
        query: the question the chunks are judged against.
        chunk_ids: the UUIDs of the chunks (from :meth:`Client.query`).
        model: the reranker; the server's default when ``None``.
        n: keep the first ``n`` chunks that pass.
        extra: more body fields, passed through.
        custom_id: a stable id for this logical request.
    """

    query: str
    chunk_ids: Sequence[str]
    model: str | None = None
    n: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    custom_id: str | None = None

    endpoint = "/filter/chunks"

    def __post_init__(self) -> None:
        check_text("query", self.query)
        ids = self.chunk_ids
        if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
            raise InvalidRequestError(f"chunk_ids must be a list of chunk UUIDs, got {ids!r:.200}")
        object.__setattr__(self, "chunk_ids", tuple(check_text("chunk_ids[]", i) for i in ids))
        if not self.chunk_ids:
            raise InvalidRequestError("chunk_ids must hold at least one chunk UUID")
        check_model(self.model)
        check_n(self.n)
        check_custom_id(self.custom_id)
        object.__setattr__(self, "extra", checked_extra(self.extra, _MODELLED))
        encode_json(self.to_body(""))

    def to_body(self, default_model: str) -> dict[str, Any]:
        """The JSON body sent to ``/filter/chunks`` (``model`` only when given: the
        client's chat model is not a reranker)."""
        body: dict[str, Any] = {"query": self.query, "chunk_ids": list(self.chunk_ids)}
        if self.model is not None:
            body["model"] = self.model
        if self.n is not None:
            body["n"] = self.n
        body.update(self.extra)
        return body

    def estimated_tokens(self) -> int:
        """0: filtering generates no tokens."""
        return 0

    def parse(self, data: object, request_id: str | None) -> FilteredChunks:
        """The answer as :class:`FilteredChunks`."""
        answer = obj(data, "the /filter/chunks response", request_id)
        chunks = parse_chunks(answer, request_id, data)
        return FilteredChunks(opt_str(answer, "query") or self.query, chunks, answer, request_id)

    def usage(self, value: Any) -> Usage | None:
        """``None``: filtering reports no usage."""
        return None
