"""Helpers of the tests of Paradigm's own routes: a mock and a client on it, uploads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2

import mock_server as ms

DOCS = {
    "cats.txt": "The cat sat on the mat. Cats like warm mats and quiet rooms.",
    "dogs.txt": "Dogs bark at the postman.\fOn page two the dog sleeps by the door.",
    "birds.txt": "Birds sing at dawn. A robin is a small bird with a red breast.",
}


@asynccontextmanager
async def paradigm(
    config: ms.MockConfig | None = None, **changes: Any
) -> AsyncIterator[tuple[ms.MockServer, httpx2.AsyncClient]]:
    """A mock (files embedded at once unless told otherwise) and a client on its URL."""
    config = (config or ms.MockConfig(file_processing_time=0.0)).replace(**changes)
    async with ms.serve(config) as server, httpx2.AsyncClient(base_url=server.url) as client:
        yield server, client


async def upload(
    client: httpx2.AsyncClient,
    name: str,
    body: bytes | str,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx2.Response:
    data = body.encode() if isinstance(body, str) else body
    form = {key: str(value) for key, value in fields.items()}
    return await client.post("/files", files={"file": (name, data)}, data=form, headers=headers)


async def upload_docs(client: httpx2.AsyncClient, **fields: Any) -> dict[str, int]:
    """Upload :data:`DOCS`; their ids by name."""
    ids = {}
    for name, text in DOCS.items():
        response = await upload(client, name, text, **fields)
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    return ids
