"""``client.files`` on ``httpx2.MockTransport``: the multipart upload streamed from disk
(again whole on a resend; memory flat for a large sparse file), every page of the list,
get, delete (JSON or 204), and ``wait``'s polling on trio's clock."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt

from . import paradigm_fixtures as fx
from .helpers import fixed, make_client

pytestmark = pytest.mark.anyio

# The file is read on worker threads, whose real time the autojumping clock skips
# ahead of: no timeouts for the uploads here (the integration tests have real ones).
NO_TIMEOUTS = pt.Timeouts.none()


def _multipart(request: httpx2.Request, body: bytes) -> dict[str, Any]:
    """The parts of a multipart body: ``{name: value}``, the file as ``(filename, bytes)``."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    parts: dict[str, Any] = {}
    for raw in body.split(b"--" + boundary)[1:-1]:
        head, _, value = raw[2:-2].partition(b"\r\n\r\n")
        disposition = head.split(b"\r\n")[0].decode()
        name = disposition.split('name="')[1].split('"')[0]
        if 'filename="' in disposition:
            parts[name] = (disposition.split('filename="')[1].split('"')[0], value)
        else:
            parts[name] = value.decode()
    assert body.endswith(b"--" + boundary + b"--\r\n")
    return parts


async def test_upload_is_multipart_with_the_fields_and_a_resend_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "contrat été.pdf"
    content = bytes(range(256)) * 10_000  # 2.5 MB: several pieces
    path.write_bytes(content)
    bodies: list[tuple[httpx2.Request, bytes]] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        bodies.append((request, body))
        if len(bodies) == 1:
            return httpx2.Response(503)
        return httpx2.Response(201, json={**fx.FILE_UPLOADED, "status": "pending"})

    async with make_client(handler, retry=fixed(attempts=2), timeouts=NO_TIMEOUTS) as client:
        info = await client.files.upload(
            path, collection_type="workspace", workspace_id=12, title="Contract", custom_id="h1"
        )
    assert (info.id, info.status, info.processed) == (1, "pending", False)
    assert len(bodies) == 2
    first, second = bodies
    assert first[1] == second[1]
    assert first[0].headers["idempotency-key"] == second[0].headers["idempotency-key"]
    request, body = second
    assert request.method == "POST"
    assert request.url.path == "/api/v2/files"
    assert int(request.headers["content-length"]) == len(body)
    parts = _multipart(request, body)
    assert parts["file"] == ("contrat été.pdf", content)
    assert parts["collection_type"] == "workspace"
    assert parts["workspace_id"] == "12"
    assert parts["title"] == "Contract"


def test_upload_fields_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("a")
    with pytest.raises(pt.InvalidRequestError, match="collection_type"):
        pt.FileUpload.of(path, collection_type="team")
    with pytest.raises(pt.InvalidRequestError, match="workspace_id"):
        pt.FileUpload.of(path, collection_type="workspace")
    with pytest.raises(FileNotFoundError):
        pt.FileUpload.of(tmp_path / "missing.txt")


class _Sink(httpx2.AsyncBaseTransport):
    """Reads a request's body piece by piece, keeping only its hash (``MockTransport``
    would read it whole first)."""

    def __init__(self) -> None:
        self.received = hashlib.sha256()
        self.size = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        async for piece in request.stream:  # type: ignore[union-attr]
            self.received.update(piece)
            self.size += len(piece)
        return httpx2.Response(201, json=fx.FILE_UPLOADED)


# On trio's real clock: the file is read in worker threads, and an autojumping clock spins
# the run while each read is under way (from seconds to minutes a run, as the threads won
# the interpreter's lock or not).  Nothing here waits on a timeout.
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_large_file_uploads_with_memory_flat(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    size = 256 * 1024 * 1024
    with path.open("wb") as f:
        f.truncate(size)  # sparse: costs no disk
    sink = _Sink()
    tracemalloc.start()
    try:
        async with pt.Client(
            api_key="sk-unit-SECRET-7f3a9c1e5b", base_url="http://test/api/v2",
            transport=sink, timeouts=NO_TIMEOUTS,
        ) as client:  # fmt: skip
            await client.files.upload(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size < sink.size < size + 1024
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte file"


async def test_list_reads_every_page_and_get_delete() -> None:
    pages: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.method == "DELETE":
            return (
                httpx2.Response(204)
                if request.url.path.endswith("/5")
                else httpx2.Response(200, json=fx.FILE_DELETED)
            )
        if request.url.path.endswith("/files"):
            page = int(request.url.params["page"])
            pages.append(str(request.url.query, "ascii") if isinstance(request.url.query, bytes)
                         else str(request.url.query))  # fmt: skip
            data = [{**fx.FILE_LIST_PAGE["data"][0], "id": page * 100 + i} for i in range(20)]
            nxt = f"http://test/api/v2/files?page={page + 1}" if page < 3 else None
            return httpx2.Response(200, json={**fx.FILE_LIST_PAGE, "data": data, "next": nxt})
        assert request.url.params.get("include_content") == "true"
        return httpx2.Response(200, json={**fx.FILE_UPLOADED, "id": 7, "content": "text"})

    async with make_client(handler) as client:
        files = await client.files.list(workspace_scope=12)
        one = await client.files.get(7, include_content=True)
        deleted = [await client.files.delete(5), await client.files.delete(1)]
    assert len(files) == 60
    assert len({f.id for f in files}) == 60
    assert all("workspace_scope=12" in q for q in pages)
    assert one.raw["content"] == "text"
    assert deleted == [True, True]


async def test_list_tolerates_the_nested_data_of_the_reference_example() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={**fx.FILE_LIST_PAGE, "data": [fx.FILE_LIST_PAGE["data"]]})

    async with make_client(handler) as client:
        [info] = await client.files.list()
    assert info.filename == "a.pdf"


async def test_wait_polls_with_a_growing_delay_until_processed() -> None:
    times: list[float] = []
    statuses = ["pending", "parsing", "embedding", "embedding", "embedded"]

    def handler(request: httpx2.Request) -> httpx2.Response:
        times.append(trio.current_time())
        return httpx2.Response(200, json={**fx.FILE_UPLOADED, "status": statuses[len(times) - 1]})

    async with make_client(handler) as client:
        start = trio.current_time()
        info = await client.files.wait(1, interval=1.0, max_interval=3.0)
    assert info.processed
    assert [round(t - start, 3) for t in times] == [0.0, 1.0, 3.0, 6.0, 9.0]


async def test_wait_failure_and_timeout() -> None:
    def failing(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={**fx.FILE_UPLOADED, "status": "embedding_failed"})

    def pending(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={**fx.FILE_UPLOADED, "status": "pending"})

    async with make_client(failing) as client:
        with pytest.raises(pt.FileProcessingError) as failed:
            await client.files.wait(1)
    assert (failed.value.timed_out, failed.value.status) == (False, "embedding_failed")
    async with make_client(pending) as client:
        start = trio.current_time()
        with pytest.raises(pt.FileProcessingError) as late:
            await client.files.wait(1, timeout=10)
        assert trio.current_time() - start == pytest.approx(10)
    assert (late.value.timed_out, late.value.status) == (True, "pending")


def test_file_answers_parse_from_the_reference() -> None:
    info = pt.FileInfo.from_json(fx.FILE_UPLOADED)
    assert (info.id, info.filename, info.size, info.status) == (
        1,
        "document.pdf",
        20032,
        "embedded",
    )
    with pytest.raises(pt.APIResponseValidationError):
        pt.FileInfo.from_json({"filename": "x"})
    assert json.loads(json.dumps(info.raw)) == fx.FILE_UPLOADED
