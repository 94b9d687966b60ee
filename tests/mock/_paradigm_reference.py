"""The response examples of ``shared/PARADIGM_API.md`` (LightOn's public docs), copied
from the reference, never from the mock's output; and a check that an answer has the
same shape (the same keys, and values of the same JSON types, recursively)."""

from __future__ import annotations

from typing import Any

# 5. POST /tokenize, the current reference [TOK] (all fields required).
TOKENIZE = {
    "total_tokens": 4,
    "request_model": "alfred-4",
    "model_used": "alfred-4",
    "tokenizer_type": "huggingface",
    "id": "8c0d3f5e-0000-4000-8000-000000000000",
    "model": "alfred-4",
}

# 9. POST /query: a JSON array, one item per query.
QUERY = [
    {
        "query": "…",
        "chunks": [
            {"uuid": "3c90c3cc-0d44-4b50-8888-8dd25736052a", "text": "…", "metadata": {},
             "score": 0.82}
        ],
    }
]  # fmt: skip

# 10. POST /filter/chunks.
FILTER_CHUNKS = {
    "query": "…",
    "chunks": [{"uuid": "…", "text": "…", "metadata": {}, "filter_score": 0.9}],
}

# 6. POST /chat/document-search (all top-level fields required).
DOCUMENT_SEARCH = {
    "chat_session_id": 123,
    "answer": "…",
    "user_instructions": "…",
    "chat_settings": {"company": "…", "instruction": "…"},
    "model": "alfred-4.2",
    "documents": [
        {
            "id": 7,
            "name": "contract.pdf",
            "document_extracts": [
                {
                    "id": 1,
                    "text": "…",
                    "metadata": {
                        "ID": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
                        "pages": "3",
                        "total_pages": "12",
                    },
                }
            ],
        }
    ],
}

# 11. GET /files (the flat form of the guide).
FILE_LIST = {
    "object": "list",
    "count": 1,
    "next": None,
    "previous": None,
    "data": [
        {"id": 5, "object": "file", "created_at": 1631533200, "filename": "a.pdf",
         "purpose": "documents", "status": "embedded"}
    ],
}  # fmt: skip

# 11. POST /files.
FILE_UPLOADED = {
    "id": 1,
    "object": "file",
    "bytes": 20032,
    "created_at": 1631533200,
    "filename": "document.pdf",
    "purpose": "documents",
    "status": "embedded",
}

# 11. GET /files/{id}: id, object, created_at, filename, purpose, status, signature
# (string or null), content only with include_content=true.
FILE_RETRIEVED = {
    "id": 1,
    "object": "file",
    "created_at": 1631533200,
    "filename": "document.pdf",
    "purpose": "documents",
    "status": "embedded",
    "signature": None,
}

# 11. DELETE /files/{id}: FileDeleted(id=1, deleted=True, object=None).
FILE_DELETED = {"id": 1, "deleted": True}

# 2. POST /completions: id, object "text_completion", created, model, choices (text at
# choices[0].text), usage.
COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1700000000,
    "model": "alfred-4.2",
    "choices": [{"index": 0, "text": "…", "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}

# 15. POST /api/v3/threads/turns: a turn with two messages (user query, agent answer).
TURN = {
    "id": "…",
    "object": "turn",
    "thread": "…",
    "status": "completed",
    "messages": [{"id": "…", "role": "user", "object": "message", "created_at": "…", "parts": []}],
    "created_at": "…",
    "error": None,
    "liked": None,
}
TURN_STATUSES = ("running", "completed", "failed", "cancelled", "cancelling")
PART_TYPES = ("reasoning", "tool_call", "text")

#: Keys whose objects the reference leaves open (any keys).
OPEN = frozenset({"metadata", "parts"})
_NULLABLE = frozenset({"next", "previous", "signature", "error", "liked", "logprobs"})


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "null")


def assert_shape(actual: Any, example: Any, where: str = "$") -> None:
    """``actual`` has ``example``'s keys and JSON types (lists: each item against the
    example's first item; ``null`` examples and :data:`OPEN` objects are not looked into)."""
    if example is None:
        return
    assert _kind(actual) == _kind(example), f"{where}: {actual!r} is not like {example!r}"
    if isinstance(example, dict):
        assert set(actual) == set(example), f"{where}: keys {sorted(actual)} != {sorted(example)}"
        for key, value in example.items():
            if key in OPEN:
                continue
            if actual[key] is None and key in _NULLABLE:
                continue
            assert_shape(actual[key], value, f"{where}.{key}")
    elif isinstance(example, list) and example:
        for i, item in enumerate(actual):
            assert_shape(item, example[0], f"{where}[{i}]")
