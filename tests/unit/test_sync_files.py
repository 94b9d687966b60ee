"""``SyncClient.files``: the documents' methods of ``Client.files``, blocking, on the
client's loop (``httpx2.MockTransport``; the loop's clock is real: these tests wait for
events, never for time)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx2
import pytest

import paradigm_trio as pt

from . import paradigm_fixtures as fx
from .test_sync_client import _no_thread_left, interrupt_when, sync_client

__all__ = ["_no_thread_left"]  # (the autouse fixture: no client's thread is left)


def documents(request: httpx2.Request) -> httpx2.Response:
    """A server of one document, id 1, processed."""
    if request.method == "POST":
        assert b'name="collection_type"\r\n\r\nprivate' in request.content
        assert b"The meeting decided" in request.content
        return httpx2.Response(201, json={**fx.FILE_UPLOADED, "status": "pending"})
    if request.method == "DELETE":
        return httpx2.Response(200, json=fx.FILE_DELETED)
    if request.url.path.endswith("/files"):
        return httpx2.Response(200, json={**fx.FILE_LIST_PAGE, "next": None})
    return httpx2.Response(200, json={**fx.FILE_UPLOADED, "status": "embedded"})


def test_upload_wait_list_get_delete(tmp_path: Path) -> None:
    path = tmp_path / "minutes.txt"
    path.write_text("The meeting decided to ship on Friday.")
    with sync_client(documents, timeouts=pt.Timeouts.none()) as client:
        uploaded = client.files.upload(path, collection_type="private")
        processed = client.files.wait(uploaded.id)
        listed = client.files.list()
        one = client.files.get(1)
        deleted = client.files.delete(1)
        assert client.statistics().succeeded == 5
    assert (uploaded.id, uploaded.status) == (1, "pending")
    assert processed.processed
    assert [(f.id, f.filename) for f in listed] == [(5, "a.pdf")]
    assert (one.id, one.filename, one.status) == (1, "document.pdf", "embedded")
    assert deleted is True


def test_the_methods_are_those_of_client_files() -> None:
    for name in ("upload", "get", "list", "delete", "wait"):
        method = getattr(pt.SyncFiles, name)
        assert method.__qualname__ == f"SyncFiles.{name}"
        assert f":meth:`Files.{name}`" in method.__doc__
        assert (getattr(pt.Files, name).__doc__ or "").splitlines()[0] in method.__doc__
    with sync_client(documents) as client:
        assert isinstance(client.files, pt.SyncFiles)
        assert "api_key='***'" in repr(client.files)


def test_errors_are_raised_in_the_callers_thread() -> None:
    def failing(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={**fx.FILE_UPLOADED, "status": "embedding_failed"})

    with sync_client(failing) as client:
        with pytest.raises(pt.FileProcessingError) as failed:
            client.files.wait(1)
        assert failed.value.status == "embedding_failed"
        with pytest.raises(pt.InvalidRequestError, match="document id"):
            client.files.get("a/b")
        with pytest.raises(FileNotFoundError):
            client.files.upload("/nonexistent/file.pdf")


def test_an_interrupt_while_waiting_for_a_document_cancels_the_wait() -> None:
    polls = threading.Event()
    seen: list[str] = []

    def pending(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.path)
        if len(seen) == 3:
            polls.set()
        return httpx2.Response(200, json={**fx.FILE_UPLOADED, "status": "pending"})

    with sync_client(pending) as client:
        interrupter = interrupt_when(polls)
        with pytest.raises(KeyboardInterrupt):
            client.files.wait(1, interval=0.001, max_interval=0.001)
        interrupter.join()
        count = len(seen)
        assert client.statistics().in_flight == 0
        assert client.files.get(1).status == "pending"  # the client stays usable
        assert len(seen) == count + 1  # (the wait polls no more)


def test_a_closed_client_refuses_its_files() -> None:
    client = sync_client(documents)
    files = client.files
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        files.list()
