"""Shared helpers of the mock server tests (no fixtures with sockets here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import jsonschema  # type: ignore[import-untyped]
import trio
from openai.types.chat import ChatCompletion, ChatCompletionChunk

WELCOME = (
    "Say hello to the new user on Paradigm! Give a short one-sentence highly personalized "
    "welcome to: {name}"
)
COMPLETION_SCHEMA = ChatCompletion.model_json_schema()
CHUNK_SCHEMA = ChatCompletionChunk.model_json_schema()


def chat_body(
    content: str = "Hello there", *, model: str = "alfred-4.2", **extra: Any
) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def validate_completion(data: dict[str, Any]) -> ChatCompletion:
    """Validate against the openai package's own types (pydantic model and its JSON schema)."""
    jsonschema.validate(data, COMPLETION_SCHEMA)
    return ChatCompletion.model_validate(data)


def validate_chunk(data: dict[str, Any]) -> ChatCompletionChunk:
    jsonschema.validate(data, CHUNK_SCHEMA)
    return ChatCompletionChunk.model_validate(data)


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    """Split an SSE body into ``(event, data)`` pairs."""
    events: list[tuple[str | None, str]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        events.append((event, "\n".join(data)))
    return events


def stream_chunks(text: str) -> list[dict[str, Any]]:
    """The JSON chunks of a well-formed stream (everything before ``[DONE]``)."""
    return [json.loads(data) for _, data in parse_sse(text) if data != "[DONE]"]


def assert_error_envelope(
    response: httpx2.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error  # type: ignore[no-any-return]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)
