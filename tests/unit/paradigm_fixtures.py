"""Answers of Paradigm's endpoints, written from ``shared/PARADIGM_API.md`` (LightOn's
public docs as that reference quotes them), not from the mock server's output."""

from __future__ import annotations

from typing import Any

# Section 5: the three contradictory shapes of POST /tokenize.
TOKENIZE_CURRENT: dict[str, Any] = {
    "total_tokens": 12,
    "request_model": "alfred-4.2",
    "model_used": "alfred-4.2",
    "tokenizer_type": "huggingface",
    "id": "tok-1",
    "model": "alfred-4.2",
}
TOKENIZE_OLDER: dict[str, Any] = {
    "total_tokens": 3,
    "model": "alfred-4",
    "tokens": [1182, 241, 1296],
    "prompt_tokens": 3,
    "object": "tokenization",
}
TOKENIZE_GUIDE: dict[str, Any] = {
    "id": "8c0d",
    "tokens": [{"This": 1182}, {"Ġa": 241}, {"Ġtest": 1296}, {"Ġstring": 2064}],
    "text": "This a test string",
    "n_tokens": 4,
    "model": "alfred-4",
}

# Section 9: POST /query answers a JSON array, one item per query.
QUERY: list[dict[str, Any]] = [
    {
        "query": "What is the notice period?",
        "chunks": [
            {
                "uuid": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
                "text": "The notice period is three months.",
                "metadata": {},
                "score": 0.82,
            }
        ],
    }
]

# Section 10: POST /filter/chunks.
FILTER: dict[str, Any] = {
    "query": "What is the notice period?",
    "chunks": [
        {
            "uuid": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
            "text": "The notice period is three months.",
            "metadata": {},
            "filter_score": 0.9,
        }
    ],
}

# Section 6: POST /chat/document-search.
DOCUMENT_SEARCH: dict[str, Any] = {
    "chat_session_id": 123,
    "answer": "Three months.",
    "user_instructions": "",
    "chat_settings": {"company": "ACME", "instruction": ""},
    "model": "alfred-4.2",
    "documents": [
        {
            "id": 7,
            "name": "contract.pdf",
            "document_extracts": [
                {
                    "id": 1,
                    "text": "The notice period is three months.",
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

# Section 11: files (v2).
FILE_LIST_PAGE = {
    "object": "list",
    "count": 1,
    "next": None,
    "previous": None,
    "data": [
        {
            "id": 5,
            "object": "file",
            "created_at": 1631533200,
            "filename": "a.pdf",
            "purpose": "documents",
            "status": "embedded",
        }
    ],
}
FILE_UPLOADED = {
    "id": 1,
    "object": "file",
    "bytes": 20032,
    "created_at": 1631533200,
    "filename": "document.pdf",
    "purpose": "documents",
    "status": "embedded",
}
FILE_DELETED = {"id": 1, "deleted": True}

# Section 2: POST /completions (legacy); the text at choices[0].text.
TEXT_COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1700000000,
    "model": "alfred-4.2",
    "choices": [{"text": " three months.", "index": 0, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
}

# Section 15: POST /api/v3/threads/turns (beta): a turn of two messages.
TURN = {
    "id": "turn-1",
    "object": "turn",
    "thread": "thread-1",
    "status": "completed",
    "messages": [
        {"id": "m1", "role": "user", "object": "message", "created_at": "2026-01-01T00:00:00Z",
         "parts": [{"type": "text", "text": "What is the notice period?"}]},
        {"id": "m2", "role": "assistant", "object": "message", "created_at": "2026-01-01T00:00:01Z",
         "parts": [
             {"type": "reasoning", "reasoning": "Search the contracts."},
             {"type": "tool_call", "tool_call": {
                 "id": "t1", "tool": {"name": "document_search", "type": "builtin"},
                 "tool_args": {}, "steps": [],
                 "result": {"text": "...", "chunk_sources": [], "web_sources": [],
                            "file_artifacts": []}}},
             {"type": "text", "text": "Three months."},
         ]},
    ],
    "created_at": "2026-01-01T00:00:00Z",
    "error": None,
    "liked": None,
}  # fmt: skip
