"""``client.files``: upload, list, get, delete, and wait until a document is processed.

Every call is a request on the client's engine (``Sender.fetch``, the one send path):
retries, timeouts, limits, events, statistics and telemetry are those of every request.
An upload is a
multipart body streamed from disk (:class:`_FileBody`, read in pieces on a worker thread
at each attempt, so that a resend starts again from the file's first byte and a large
file is never held in memory); it is sent with the upload's ``Idempotency-Key`` (stable
for a ``custom_id``).  :meth:`Files.wait` polls :meth:`Files.get` with a growing delay on
trio's clock, bounded by its ``timeout``.

An upload and a delete are not idempotent (``Plan.idempotent`` false): sent twice, the
document could be stored twice, or the second delete answered 404.  The engine resends
them only after a failure that proves the request never reached the server (the
connection could not be opened) or an answer that says it was not processed (408, 425,
429, 503, or ``x-should-retry: true``); ``list``, ``get`` and ``wait`` are resent like
any request.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from .._config import RetryPolicy, Timeouts
from .._endpoints._files import FileInfo, FileUpload, parse_deleted, parse_page
from .._errors import FileProcessingError, InvalidRequestError

if TYPE_CHECKING:
    from .._endpoints._endpoint import Sender
    from .._engine._attempts import Plan
    from .._http._http import HTTP

__all__ = ["Files"]

PIECE = 1024 * 1024
"""Bytes read from disk at a time for an upload (one piece in memory per upload)."""


class _FileBody:
    """A :class:`FileUpload`'s multipart body, produced anew for each attempt."""

    def __init__(self, upload: FileUpload) -> None:
        self._upload = upload
        self._head = upload.head()
        self._tail = upload.tail()

    @property
    def content_type(self) -> str:
        return self._upload.multipart_type

    @property
    def length(self) -> int:
        return len(self._head) + self._upload.size + len(self._tail)

    def open(self) -> AsyncIterator[bytes]:
        return _Reader(self._upload.path, self._upload.size, self._head, self._tail)


class _Reader:
    """The body's bytes: the head, the file in pieces (each read on a worker thread, the
    file opened and closed for it: nothing left open if the send stops half-way), the
    tail."""

    def __init__(self, path: str, size: int, head: bytes, tail: bytes) -> None:
        self._path = path
        self._size = size
        self._offset = 0
        self._parts: list[bytes] = [head]
        self._tail: bytes | None = tail

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._parts:
            await trio.lowlevel.checkpoint()
            return self._parts.pop()
        if self._offset < self._size:
            piece = await trio.to_thread.run_sync(self._read)
            self._offset += len(piece)
            return piece
        if self._tail is not None:
            tail, self._tail = self._tail, None
            await trio.lowlevel.checkpoint()
            return tail
        raise StopAsyncIteration

    def _read(self) -> bytes:
        with open(self._path, "rb") as f:
            f.seek(self._offset)
            piece = f.read(min(PIECE, self._size - self._offset))
        if not piece:
            raise InvalidRequestError(
                f"{self._path} became shorter while it was uploaded ({self._offset} of "
                f"{self._size} bytes read); upload it again once it is no longer written"
            )
        return piece


class Files:
    """The documents of the API (``client.files``): one per :class:`Client`."""

    def __init__(self, plan: Callable[..., Plan], http: HTTP, sender: Sender) -> None:
        # The client's: its ``Plan`` of a request (and open check), its HTTP layer and
        # its one send path.
        self._plan, self._http, self._sender = plan, http, sender

    async def upload(
        self,
        path: str | os.PathLike[str] | FileUpload,
        *,
        collection_type: str | None = None,
        workspace_id: int | None = None,
        collection: int | None = None,
        title: str | None = None,
        filename: str | None = None,
        fields: Mapping[str, Any] | None = None,
        custom_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> FileInfo:
        """Upload a document (``POST /files``, multipart), streamed from disk.

        Args:
            path: the file, or a :class:`FileUpload`.
            collection_type: ``"private"``, ``"company"`` or ``"workspace"`` (the
                server's default when not given: the reference does not document it).
            workspace_id: the workspace, with ``collection_type="workspace"``.
            collection: a collection id.
            title, filename: the document's title and name (default: the file's name).
            fields: more form fields the API takes (``chunk_size``, ``OCR_STRATEGY``...).
            custom_id: a stable id for the upload; its ``Idempotency-Key`` derives from it
                (the CLI uses the content's hash).
            retry, timeouts: as for :meth:`Client.chat`.

        The file is read in pieces of 1 MiB as it is sent, again for each attempt: its
        size in memory does not matter.  Returns the document as the server answers
        (its ``status`` is often ``"pending"``: see :meth:`wait`).

        An upload is not idempotent: it is resent only when it cannot have reached the
        server (the connection could not be opened) or when the server said it did not
        process it (408, 425, 429, 503, ``x-should-retry: true``).  After a failure once
        it may have reached the server (a 500, a read timeout, a reset), the error is
        raised with a note saying so: check :meth:`list` before uploading again.

        Raises:
            OSError: the file cannot be read.
            InvalidRequestError: a bad field; the file became shorter while sent.
            APIError: as for :meth:`Client.chat`.
        """
        if isinstance(path, FileUpload):
            upload = path
        else:
            given = {
                "collection_type": collection_type, "workspace_id": workspace_id,
                "collection": collection, "title": title, "filename": filename,
            }  # fmt: skip
            form = {**(fields or {}), **{k: v for k, v in given.items() if v is not None}}
            upload = await trio.to_thread.run_sync(
                lambda: FileUpload.of(path, fields=form, custom_id=custom_id)
            )
        plan = self._plan(None, upload, retry, timeouts)
        plan.idempotent = False
        ex = self._http.prepare(
            "POST", "/files", body=None, key=plan.key, timeouts=plan.timeouts,
            upload=_FileBody(upload),
        )  # fmt: skip
        return await self._sender.fetch(ex, plan, FileInfo.from_json)

    async def get(self, file_id: int | str, *, include_content: bool = False) -> FileInfo:
        """A document (``GET /files/{id}``); ``include_content`` asks for its text too."""
        query = "?include_content=true" if include_content else ""
        info: FileInfo = await self._get(f"/files/{_id(file_id)}{query}", FileInfo.from_json)
        return info

    async def list(
        self,
        *,
        company_scope: bool | None = None,
        private_scope: bool | None = None,
        workspace_scope: int | None = None,
    ) -> list[FileInfo]:
        """Every document the key can see (``GET /files``, every page: the API's pages
        hold 20), in the server's order; the scopes filter as the API documents them."""
        params = []
        for name, value in (("company_scope", company_scope), ("private_scope", private_scope)):
            if value is not None:
                params.append(f"{name}={'true' if value else 'false'}")
        if workspace_scope is not None:
            params.append(f"workspace_scope={int(workspace_scope)}")
        found: list[FileInfo] = []
        page = 1
        while True:
            query = "&".join([*params, f"page={page}"])
            items, more = await self._get(f"/files?{query}", parse_page)
            found.extend(items)
            if not more or not items:
                return found
            page += 1

    async def delete(self, file_id: int | str) -> bool:
        """Delete a document (``DELETE /files/{id}``); whether the server says it did.

        Resent only when it cannot have reached the server, or the server said it did
        not process it (a delete that did and was resent would be answered 404).
        """
        plan = self._plan(None, None, None, None)
        plan.idempotent = False
        ex = self._http.prepare(
            "DELETE", f"/files/{_id(file_id)}", body=None, key=plan.key, timeouts=plan.timeouts
        )
        return await self._sender.fetch(ex, plan, parse_deleted)

    async def wait(
        self,
        file_id: int | str,
        *,
        timeout: float = 600.0,  # noqa: ASYNC109 (the error names the document and its status)
        interval: float = 1.0,
        max_interval: float = 30.0,
    ) -> FileInfo:
        """Wait until a document is processed (``status`` ``embedded`` or ``parsed``):
        :meth:`get` every ``interval`` seconds, the delay doubling up to
        ``max_interval``, for at most ``timeout`` seconds (trio's clock).

        Raises:
            FileProcessingError: its processing failed, or ``timeout`` passed
                (``timed_out=True``).
            APIError: a :meth:`get` failed (after its retries).
        """
        for name, value in (("timeout", timeout), ("interval", interval),
                            ("max_interval", max_interval)):  # fmt: skip
            if not isinstance(value, int | float) or not value > 0 or math.isnan(value):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        deadline = trio.current_time() + timeout
        delay = interval
        info: FileInfo | None = None
        while True:
            with trio.move_on_at(deadline):
                info = await self.get(file_id)
                if info.processed:
                    return info
                if info.failed:
                    raise FileProcessingError(
                        f"document {file_id}: its processing failed (status {info.status!r})",
                        file_id=file_id, status=info.status, timed_out=False, file=info,
                    )  # fmt: skip
                await trio.sleep(delay)
                delay = min(delay * 2, max_interval)
                continue
            status = info.status if info is not None else None
            raise FileProcessingError(
                f"document {file_id}: not processed after {timeout} s (last status {status!r})",
                file_id=file_id, status=status, timed_out=True, file=info,
            )  # fmt: skip

    async def _get(self, path: str, parse: Any) -> Any:
        plan = self._plan(None, None, None, None)
        ex = self._http.prepare("GET", path, body=None, key=plan.key, timeouts=plan.timeouts)
        return await self._sender.fetch(ex, plan, parse)


def _id(file_id: object) -> str:
    if isinstance(file_id, bool) or not isinstance(file_id, int | str) or file_id == "":
        raise InvalidRequestError(f"a document id is an int or a non-empty string, got {file_id!r}")
    text = str(file_id)
    if "/" in text or "?" in text or "#" in text:
        raise InvalidRequestError(f"a document id cannot hold / ? or #: {file_id!r}")
    return text
