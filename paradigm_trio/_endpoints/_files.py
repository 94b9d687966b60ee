"""Paradigm's documents (``/files``, ``PARADIGM_API.md`` section 11): what an upload
sends, and the answers read, with no I/O.

* :class:`FileUpload`: one ``POST /files`` (multipart): the file's path and size, the form
  fields the API takes (``collection_type``, ``workspace_id``, ``collection``, ``title``,
  ``filename``, ...), and the multipart framing around the file's bytes (the bytes
  themselves are read from disk as they are sent: ``_files_api``).
* :class:`FileInfo`: a document as ``GET /files/{id}`` or the upload answer gives it;
  :func:`parse_page`, a page of ``GET /files`` (``{"data", "next", ...}``, page size 20).

``status`` is a free string in v2 (``pending``, ``embedded`` seen); the v3 list is the
best known: ``embedded`` and ``parsed`` end well, ``parsing_failed``,
``embedding_failed`` and ``fail`` end badly, anything else is still under way.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import APIResponseValidationError, InvalidRequestError
from ._json_endpoint import obj, opt_int, opt_str
from ._models import check_custom_id

__all__ = [
    "FAILED_STATUSES",
    "FileInfo",
    "FileUpload",
    "PROCESSED_STATUSES",
    "parse_deleted",
    "parse_page",
]

PROCESSED_STATUSES = frozenset({"embedded", "parsed"})
"""A document's statuses once it is processed and searchable."""

FAILED_STATUSES = frozenset({"parsing_failed", "embedding_failed", "fail", "failed"})
"""A document's statuses once its processing failed for good."""

_COLLECTION_TYPES = ("private", "company", "workspace")


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A document on the server.

    Attributes:
        id: its id (what :meth:`Files.get`, :meth:`Files.delete` and ``file_ids`` take).
        filename: its file name, as the server keeps it.
        status: where its processing is (``"pending"``, ``"embedded"``, ...).
        size: its size in bytes (the answer's ``bytes``), when the server says.
        created_at: when it was added (Unix seconds in v2; as sent otherwise), if given.
        raw: the document's JSON (``title``, ``purpose``, ``signature``, ``content``...).
        request_id: the response's ``x-request-id``, if any.
    """

    id: int | str
    filename: str | None
    status: str | None
    size: int | None = None
    created_at: Any = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    request_id: str | None = None

    @property
    def processed(self) -> bool:
        """Whether it is processed (searchable)."""
        return self.status in PROCESSED_STATUSES

    @property
    def failed(self) -> bool:
        """Whether its processing failed for good."""
        return self.status in FAILED_STATUSES

    @classmethod
    def from_json(cls, data: object, request_id: str | None = None) -> FileInfo:
        """A document; its ``id`` is required, the rest tolerated missing."""
        doc = obj(data, "the document", request_id)
        ident = doc.get("id")
        if isinstance(ident, bool) or not isinstance(ident, int | str) or ident == "":
            raise APIResponseValidationError(
                "the document has no 'id'", body=data, request_id=request_id
            )
        return cls(
            ident, opt_str(doc, "filename"), opt_str(doc, "status"), opt_int(doc, "bytes"),
            doc.get("created_at", doc.get("uploaded_at")), doc, request_id,
        )  # fmt: skip


def parse_page(data: object, request_id: str | None) -> tuple[list[FileInfo], bool]:
    """A page of ``GET /files``: its documents, and whether there is a next page."""
    page = obj(data, "the /files response", request_id)
    items = page.get("data")
    if isinstance(items, list) and len(items) == 1 and isinstance(items[0], list):
        items = items[0]  # the reference's example nests the list once
    if not isinstance(items, list):
        raise APIResponseValidationError(
            "the /files response has no 'data' list", body=data, request_id=request_id
        )
    return [FileInfo.from_json(d, request_id) for d in items], bool(page.get("next"))


def parse_deleted(data: object, request_id: str | None) -> bool:
    """``DELETE /files/{id}``: ``{"id", "deleted"}``, or nothing (a ``204``)."""
    if data is None:
        return True
    answer = obj(data, "the delete response", request_id)
    return answer.get("deleted", True) is not False


def _quoted(value: str) -> str:
    """A form-data parameter value, quoted as browsers and ``httpx`` quote it."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@dataclass(frozen=True, kw_only=True, slots=True)
class FileUpload:
    """One ``POST /files``: a file from disk and the form fields sent with it.

    Attributes:
        path: the file to upload (read as it is sent, never whole into memory).
        size: its size in bytes (read from disk when the upload is made with
            :meth:`of`).
        fields: the form fields (``collection_type``, ``workspace_id``,
            ``collection``, ``title``, ``filename``, ``chunk_size``...), as the API
            takes them; ``None`` values are not sent.
        content_type: the file part's type (default ``application/octet-stream``).
        custom_id: a stable id for this logical upload (its ``Idempotency-Key``); the
            CLI uses ``sha256:<content hash>``.
    """

    path: str
    size: int
    fields: Mapping[str, Any] = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    custom_id: str | None = None
    boundary: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    def __post_init__(self) -> None:
        check_custom_id(self.custom_id)
        kind = self.fields.get("collection_type")
        if kind is not None and kind not in _COLLECTION_TYPES:
            raise InvalidRequestError(
                f"collection_type must be one of {', '.join(_COLLECTION_TYPES)}, got {kind!r}"
            )
        if kind == "workspace" and self.fields.get("workspace_id") is None:
            raise InvalidRequestError("collection_type='workspace' needs a workspace_id")
        for name, value in self.fields.items():
            if not isinstance(name, str) or not name:
                raise InvalidRequestError(f"a form field name must be a string, got {name!r}")
            if value is not None and not isinstance(value, str | int | float | bool):
                raise InvalidRequestError(
                    f"form field {name}: a string, number or boolean, got {type(value).__name__}"
                )

    @classmethod
    def of(cls, path: str | os.PathLike[str], **fields: Any) -> FileUpload:
        """An upload of ``path`` (its size read now; ``OSError`` if it cannot be)."""
        text = os.fspath(path)
        size = os.stat(text).st_size
        known = {k: fields.pop(k) for k in ("content_type", "custom_id") if k in fields}
        form = dict(fields.pop("fields", {}))
        form.update(fields)
        return cls(path=text, size=size, fields=form, **known)

    @property
    def model(self) -> None:
        """``None``: an upload names no model."""
        return None

    @property
    def endpoint(self) -> str:
        """``/files``."""
        return "/files"

    @property
    def filename(self) -> str:
        """The name sent with the file part (``fields["filename"]``, else the path's)."""
        given = self.fields.get("filename")
        return str(given) if given else os.path.basename(self.path)

    def estimated_tokens(self) -> int:
        """0: an upload generates no tokens."""
        return 0

    def head(self) -> bytes:
        """The multipart body before the file's bytes: the fields, then the file part's
        head."""
        parts = []
        for name, value in self.fields.items():
            if value is None:
                continue
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            parts.append(
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"'
                f"\r\n\r\n{text}\r\n"
            )
        parts.append(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{_quoted(self.filename)}"\r\nContent-Type: {self.content_type}\r\n\r\n'
        )
        return "".join(parts).encode("utf-8")

    def tail(self) -> bytes:
        """The multipart body after the file's bytes."""
        return f"\r\n--{self.boundary}--\r\n".encode("ascii")

    @property
    def multipart_type(self) -> str:
        """The request's ``Content-Type``."""
        return f"multipart/form-data; boundary={self.boundary}"
