"""The endpoints a batch file's line may name, and their requests built from a body.

A line's ``url`` names its endpoint with or without the ``/v1`` or ``/api/v2`` prefix:
``/chat/completions``, ``/embeddings``, ``/tokenize``, ``/query``, ``/filter/chunks``,
``/chat/document-search``.  The body's fields that the endpoint's request class models
become its keywords; the others go to ``extra``, passed through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import paradigm_trio as pt

__all__ = ["ENDPOINTS", "endpoint_of", "endpoint_request", "response_of"]

ENDPOINTS = (
    "/chat/completions", "/embeddings", "/tokenize", "/query", "/filter/chunks",
    "/chat/document-search",
)  # fmt: skip
_PREFIXES = ("/api/v2", "/v1")
_CLASSES: dict[str, Any] = {
    "/tokenize": pt.TokenizeRequest,
    "/query": pt.QueryRequest,
    "/filter/chunks": pt.FilterRequest,
    "/chat/document-search": pt.DocumentSearchRequest,
}
_NOT_BODY = frozenset({"extra", "custom_id"})


def endpoint_of(url: object) -> str:
    """The endpoint a line's ``url`` names (its prefix removed); ``ValueError`` if none."""
    if isinstance(url, str):
        path = url.rstrip("/")
        for prefix in _PREFIXES:
            if path.startswith(prefix + "/"):
                path = path[len(prefix) :]
                break
        if path in ENDPOINTS:
            return path
    raise ValueError(
        "url must name one of /v1/chat/completions, /v1/embeddings, /tokenize, /query, "
        f"/filter/chunks, /chat/document-search (the /v1 or /api/v2 prefix optional), got {url!r}"
    )


def endpoint_request(endpoint: str, body: Mapping[str, Any], custom_id: str) -> Any:
    """The request of a ``/tokenize``, ``/query``, ``/filter/chunks`` or
    ``/chat/document-search`` line."""
    cls = _CLASSES[endpoint]
    modelled = {f.name for f in dataclasses.fields(cls)} - _NOT_BODY
    fields = {k: v for k, v in body.items() if k in modelled}
    extra = {k: v for k, v in body.items() if k not in modelled}
    return cls(**fields, extra=extra, custom_id=custom_id)


def response_of(answer: Any) -> tuple[Any, str | None]:
    """``(the body as the server sent it, its request id)`` of an endpoint's answer
    (``/query``'s is a list: one item per query)."""
    if isinstance(answer, list):
        request_id = answer[0].request_id if answer else None
        return [dict(item.raw) for item in answer], request_id
    return dict(answer.raw), answer.request_id
