"""The files API: upload (multipart, streamed), list (pages of 20), get, delete, and the
processing status on the mock's clock; shapes against the reference's examples."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator

import httpx2
import pytest
import trio

import mock_server as ms
from mock_server._corpus import INDEXED_CHARS

from . import _paradigm_reference as ref
from ._helpers import assert_error_envelope
from ._paradigm import paradigm, upload

pytestmark = pytest.mark.anyio


async def test_upload_get_list_delete_have_the_reference_shapes() -> None:
    async with paradigm() as (server, client):
        up = await upload(client, "notes.txt", "Some words to index.", title="Notes")
        got = await client.get("/files/1")
        with_content = await client.get("/files/1", params={"include_content": "true"})
        listed = await client.get("/files")
        deleted = await client.delete("/files/1")
        gone = await client.get("/files/1")
        again = await client.delete("/files/1")
        v1 = await client.get(server.root_url + "/v1/files")
    assert up.status_code == 201
    ref.assert_shape(up.json(), ref.FILE_UPLOADED)
    assert up.json()["bytes"] == len(b"Some words to index.")
    assert up.json()["filename"] == "notes.txt"
    assert up.json()["status"] == "embedded"
    ref.assert_shape(got.json(), ref.FILE_RETRIEVED)
    assert "content" not in got.json()
    assert with_content.json()["content"] == "Some words to index."
    ref.assert_shape(listed.json(), ref.FILE_LIST)
    assert [f["id"] for f in listed.json()["data"]] == [1]
    assert deleted.status_code == 200
    ref.assert_shape(deleted.json(), ref.FILE_DELETED)
    assert deleted.json() == {"id": 1, "deleted": True}
    assert_error_envelope(gone, 404, "not_found")
    assert_error_envelope(again, 404, "not_found")
    assert v1.json()["count"] == 0
    records = server.requests()
    assert [r.status for r in records] == [201, 200, 200, 200, 200, 404, 404, 200]
    assert records[0].path == "/api/v2/files"


async def test_listing_pages_by_twenty_with_absolute_links() -> None:
    async with paradigm() as (server, client):
        for i in range(45):
            assert (await upload(client, f"f{i}.txt", f"file {i}")).status_code == 201
        first = (await client.get("/files", params={"private_scope": "true"})).json()
        second = (await client.get(first["next"])).json()
        third = (await client.get(second["next"])).json()
        beyond = await client.get("/files", params={"page": 4})
        bad_page = await client.get("/files", params={"page": "two"})
        zero = await client.get("/files", params={"page": 0})
    assert first["count"] == second["count"] == third["count"] == 45
    assert [len(p["data"]) for p in (first, second, third)] == [20, 20, 5]
    ids = [f["id"] for p in (first, second, third) for f in p["data"]]
    assert ids == list(range(1, 46))
    assert first["previous"] is None
    assert third["next"] is None
    root = server.root_url
    assert first["next"] == f"{root}/api/v2/files?private_scope=true&page=2"
    assert third["previous"] == f"{root}/api/v2/files?private_scope=true&page=2"
    assert second["previous"] == f"{root}/api/v2/files?private_scope=true&page=1"
    assert assert_error_envelope(beyond, 404, "invalid_page")["param"] == "page"
    assert assert_error_envelope(bad_page, 400, "invalid_type")["param"] == "page"
    assert assert_error_envelope(zero, 400)["param"] == "page"


async def test_scopes_filter_the_list() -> None:
    async with paradigm() as (_, client):
        await upload(client, "mine.txt", "a")
        await upload(client, "firm.txt", "b", collection_type="company")
        await upload(client, "team.txt", "c", collection_type="workspace", workspace_id=12)
        await upload(client, "other.txt", "d", collection_type="workspace", workspace_id=13)

        async def names(**params: str) -> list[str]:
            listed = (await client.get("/files", params=params)).json()
            return [f["filename"] for f in listed["data"]]

        assert await names() == ["mine.txt", "firm.txt", "team.txt", "other.txt"]
        assert await names(private_scope="true") == ["mine.txt"]
        assert await names(company_scope="true") == ["firm.txt"]
        assert await names(workspace_scope="12") == ["team.txt"]
        assert await names(company_scope="true", workspace_scope="13") == [
            "firm.txt",
            "other.txt",
        ]


async def test_status_is_pending_until_the_processing_time_has_passed() -> None:
    async with paradigm(file_processing_time=3600.0) as (server, client):
        up = await upload(client, "slow.txt", "a slow file about cats")
        got = await client.get("/files/1")
        found = await client.post("/query", json={"query": "cats"})
        server.configure(file_processing_time=0.0)
        still = await client.get("/files/1")  # its time was fixed when it arrived
        quick = await upload(client, "quick.txt", "a quick file about cats")
    assert up.json()["status"] == got.json()["status"] == still.json()["status"] == "pending"
    assert found.json() == [{"query": "cats", "chunks": []}]
    assert quick.json()["status"] == "embedded"
    assert [f["status"] for f in server.files()] == ["pending", "embedded"]


async def test_processing_happens_on_the_servers_clock() -> None:
    async with paradigm(file_processing_time=0.3) as (server, client):
        await upload(client, "a.txt", "text")
        assert (await client.get("/files/1")).json()["status"] == "pending"
        with trio.fail_after(10):
            while (await client.get("/files/1")).json()["status"] != "embedded":
                await trio.sleep(0.05)
    [record] = [r for r in server.requests() if r.path.endswith("/files")]
    assert record.finish is not None


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"collection_type": "team"}, "collection_type", "invalid_value"),
        ({"collection_type": "workspace"}, "workspace_id", "missing_required_parameter"),
        ({"workspace_id": "twelve"}, "workspace_id", "invalid_type"),
        ({"chunk_size": "0"}, "chunk_size", "invalid_value"),
        ({"chunk_size": "10", "chunk_overlap": "10"}, "chunk_overlap", "invalid_value"),
        ({"title": "t" * 256}, "title", "string_above_max_length"),
        ({"filename": "f" * 513}, "filename", "string_above_max_length"),
        ({"file_type": "x" * 31}, "file_type", "string_above_max_length"),
        ({"IS_VISUAL_INGESTION_ON": "maybe"}, "IS_VISUAL_INGESTION_ON", "invalid_value"),
        ({"external_metadata": "[1]"}, "external_metadata", "invalid_value"),
        ({"external_metadata": '{"a": NaN}'}, "external_metadata", "invalid_value"),
        ({"owner": "me"}, "owner", "invalid_type"),
    ],
)
async def test_bad_fields_are_named(fields: dict[str, str], param: str, code: str) -> None:
    async with paradigm() as (server, client):
        response = await upload(client, "a.txt", "text", **fields)
        assert server.files() == []
    error = assert_error_envelope(response, 400, code)
    assert error["param"] == param


async def test_the_file_part_is_required_and_a_json_body_is_refused() -> None:
    async with paradigm() as (_, client):
        no_file = await client.post("/files", data={"title": "x"}, files={"other": ("o", b"o")})
        as_json = await client.post("/files", json={"file": "x"})
        two = await client.post(
            "/files", files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))]
        )
    assert assert_error_envelope(no_file, 400, "missing_required_parameter")["param"] == "file"
    assert_error_envelope(as_json, 415, "unsupported_media_type")
    assert assert_error_envelope(two, 400)["param"] == "file"


async def test_a_file_over_the_limit_gets_413_and_is_not_stored() -> None:
    async with paradigm(max_file_bytes=1000) as (server, client):
        big = await upload(client, "big.txt", b"x" * 5000)
        small = await upload(client, "small.txt", b"x" * 100)
        assert len(server.files()) == 1
    assert_error_envelope(big, 413, "request_too_large")
    assert small.status_code == 201


async def test_filename_title_and_content_fields_are_kept() -> None:
    async with paradigm() as (server, client):
        await upload(
            client, "scan.pdf", b"%PDF-1.7 binary", filename="renamed.pdf",
            content="The extracted text.", title="Scan", chunk_size=2,
        )  # fmt: skip
        got = (await client.get("/files/1", params={"include_content": "1"})).json()
        [summary] = server.files()
    assert got["filename"] == "renamed.pdf"
    assert got["content"] == "The extracted text."
    assert summary["title"] == "Scan"
    assert summary["chunks"] == 2
    assert summary["sha256"] == hashlib.sha256(b"%PDF-1.7 binary").hexdigest()


async def _stream(size: int, piece: int = 1 << 20) -> AsyncIterator[bytes]:
    block = (b"lorem ipsum dolor sit amet " * (piece // 27 + 1))[:piece]
    for _ in range(size // piece):
        yield block


async def _upload_stream(client: httpx2.AsyncClient, size: int) -> tuple[httpx2.Response, int]:
    """Upload ``size`` bytes from a generator; the response and the peak of traced memory."""
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for block in _stream(size):
            yield block
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    tracemalloc.start()
    try:
        response = await client.post("/files", content=body(), headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return response, peak


async def test_a_large_upload_is_read_as_a_stream() -> None:
    small, large = 16 << 20, 96 << 20
    expected = hashlib.sha256()
    async for block in _stream(large):
        expected.update(block)
    async with paradigm(max_file_bytes=None) as (server, client):
        _, small_peak = await _upload_stream(client, small)
        response, large_peak = await _upload_stream(client, large)
        summaries = server.files()
        got = (await client.get("/files/2", params={"include_content": "true"})).json()
    assert response.status_code == 201, response.text
    assert response.json()["bytes"] == large
    assert summaries[1]["sha256"] == expected.hexdigest()
    assert len(got["content"]) == INDEXED_CHARS
    # Memory does not grow with the file: 80 MiB more of it costs (far) less than 8 MiB.
    assert large_peak < small_peak + (8 << 20), (small_peak, large_peak)


def test_processing_time_and_file_limit_are_validated() -> None:
    with pytest.raises(ValueError, match="file_processing_time"):
        ms.MockConfig(file_processing_time=-1)
    with pytest.raises(ValueError, match="max_file_bytes"):
        ms.MockConfig(max_file_bytes=0)
    config = ms.MockConfig.from_mapping({"file_processing_time": 2, "max_file_bytes": None})
    assert config.file_processing_time == 2.0
    assert config.max_file_bytes is None
    assert config.to_dict()["file_processing_time"] == 2.0


async def test_admin_route_lists_the_files() -> None:
    async with paradigm() as (server, client):
        await upload(client, "a.txt", "alpha beta")
        response = await client.get(server.root_url + "/_mock/files")
    [entry] = response.json()["data"]
    assert entry["filename"] == "a.txt"
    assert entry["sha256"] == hashlib.sha256(b"alpha beta").hexdigest()
    assert entry["status"] == "embedded"
    assert entry["bytes"] == 10


async def test_a_client_request_on_a_missing_route_is_an_envelope() -> None:
    async with paradigm() as (_, client):
        response = await client.get("/files/abc")
    assert_error_envelope(response, 404, "not_found")


async def test_an_empty_file_is_stored_with_no_chunks() -> None:
    async with paradigm() as (server, client):
        response = await upload(client, "empty.txt", b"")
        found = await client.post("/query", json={"query": "anything"})
        [summary] = server.files()
    assert response.status_code == 201
    assert response.json()["bytes"] == 0
    assert (summary["chunks"], summary["total_pages"]) == (0, 1)
    assert found.json() == [{"query": "anything", "chunks": []}]
