"""The files API (v2): ``POST /files`` (multipart, read as a stream), ``GET /files`` (pages
of 20), ``GET /files/{id}`` and ``DELETE /files/{id}``.

An upload is never held whole in memory: the body is read chunk by chunk from Quart's
``request.body`` (never ``request.files``, which spools the file) through werkzeug's
I/O-free multipart decoder; the mock keeps the file's size, its SHA-256, its form
fields and its first :data:`~._corpus.INDEXED_CHARS` characters of text.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio
from quart import request
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from ._api import Received
from ._checks import strict_json
from ._content import RequestError
from ._corpus import DEFAULT_CHUNK_WORDS, INDEXED_CHARS, NewFile, StoredFile
from ._determinism import body_key
from ._plain import Answer, bad

if TYPE_CHECKING:
    from ._config import MockConfig
    from ._state import MockState

__all__ = [
    "PAGE_SIZE",
    "DeleteFile",
    "GetFile",
    "ListFiles",
    "Upload",
    "UploadFile",
    "parse_delete",
    "parse_get",
    "parse_list",
    "parse_upload",
    "read_upload",
]

#: Files per page of ``GET /files`` (fixed, as Paradigm documents).
PAGE_SIZE: Final = 20
_DRAIN_LIMIT: Final = 16 << 20
_FIELD_LIMIT: Final = 64 << 10
_MAX_PARTS: Final = 64
_COLLECTION_TYPES: Final = ("private", "company", "workspace")
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
_FILE_PART: Final = "\x00file"  # the part being read is the file (not a form field)


@dataclass(slots=True)
class Upload:
    """A multipart body as the mock read it (or why it could not)."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0
    sha256: str = ""
    head: bytes = b""
    problem: RequestError | None = None


class _Reader:
    """Feeds body chunks to the decoder; keeps fields, the file's hash, size and head."""

    def __init__(self, boundary: bytes) -> None:
        self.decoder = MultipartDecoder(boundary, max_parts=_MAX_PARTS)
        self.upload = Upload()
        self.file_hash = hashlib.sha256()
        self.head = bytearray()
        self.part: str | None = None  # "file", a field's name, or None (ignored part)
        self.value = bytearray()

    def feed(self, data: bytes | None) -> None:
        self.decoder.receive_data(data)
        event = self.decoder.next_event()
        while not isinstance(event, NeedData | Epilogue):
            if isinstance(event, File):
                self._file(event)
            elif isinstance(event, Field):
                self.part, self.value = event.name, bytearray()
            elif isinstance(event, Data):
                self._data(event)
            event = self.decoder.next_event()

    def _file(self, event: File) -> None:
        if event.name != "file":
            self.part = None
            return
        if self.upload.filename is not None:
            raise bad("Only one 'file' part is accepted.", "file")
        self.upload.filename = event.filename
        self.part = _FILE_PART

    def _data(self, event: Data) -> None:
        if self.part == _FILE_PART:
            self.upload.size += len(event.data)
            self.file_hash.update(event.data)
            room = INDEXED_CHARS * 4 - len(self.head)
            if room > 0:
                self.head += event.data[:room]
        elif self.part is not None:
            self.value += event.data
            if len(self.value) > _FIELD_LIMIT:
                raise bad(f"Form field '{self.part}' is longer than 64 KiB.", self.part)
            if not event.more_data:
                try:
                    self.upload.fields[self.part] = self.value.decode()
                except UnicodeDecodeError:
                    raise bad(f"Form field '{self.part}' is not UTF-8.", self.part) from None

    def finish(self) -> Upload:
        self.upload.sha256 = self.file_hash.hexdigest()
        self.upload.head = bytes(self.head)
        return self.upload


async def read_upload(config: MockConfig) -> Received:
    """Read a ``multipart/form-data`` body as a stream (see the module's docstring)."""
    limit = config.max_file_bytes
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    boundary = options.get("boundary", "")
    reader = _Reader(boundary.encode()) if mimetype == "multipart/form-data" else None
    problem: RequestError | None = None
    if reader is None or not boundary:
        problem = RequestError(
            "Files are uploaded as multipart/form-data (with a boundary), "
            f"not {mimetype or 'an empty body'}.",
            code="unsupported_media_type",
            status=415,
        )
    raw_hash = hashlib.sha256()
    declared = request.content_length
    too_large = limit is not None and declared is not None and declared > limit
    seen = 0
    async for chunk in request.body:
        seen += len(chunk)
        raw_hash.update(chunk)
        if limit is not None and seen > limit:
            too_large = True
        if too_large:
            if seen > (limit or 0) + _DRAIN_LIMIT:
                break
            continue
        if reader is not None and problem is None:
            problem = _feed(reader, chunk)
    if reader is not None and problem is None and not too_large:
        problem = _feed(reader, None)
    upload = reader.finish() if reader is not None else Upload()
    upload.problem = problem
    key = "body-" + raw_hash.hexdigest()[:32] if seen else body_key(b"")
    return Received(upload, too_large, key, limit)


def _feed(reader: _Reader, data: bytes | None) -> RequestError | None:
    try:
        reader.feed(data)
    except RequestError as exc:
        return exc
    except ValueError as exc:
        return bad(f"The multipart body is malformed: {exc}", None, "invalid_multipart")
    return None


def _form_int(fields: Mapping[str, str], name: str, minimum: int = 0) -> int | None:
    raw = fields.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise bad(
            f"Invalid type for '{name}': expected an integer, got {raw[:40]!r}.",
            name,
            "invalid_type",
        ) from None
    if value < minimum:
        raise bad(f"Invalid '{name}': expected a value >= {minimum}, got {value}.", name)
    return value


def _form_bool(fields: Mapping[str, str], name: str) -> bool | None:
    raw = fields.get(name)
    if raw is None or raw == "" or raw.lower() == "null":
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise bad(f"Invalid type for '{name}': expected a boolean, got {raw[:40]!r}.", name)


def _form_str(fields: Mapping[str, str], name: str, max_length: int) -> str | None:
    raw = fields.get(name)
    if raw is not None and len(raw) > max_length:
        raise bad(
            f"Invalid '{name}': at most {max_length} characters, got {len(raw)}.",
            name,
            "string_above_max_length",
        )
    return raw or None


def _check_form(fields: Mapping[str, str]) -> None:
    """The documented fields the mock does not act on: their types only."""
    for name in ("owner", "company", "OCR_TIMEOUT"):
        _form_int(fields, name)
    for name in ("OCR_COMPLETE_DOC_TABLE_EXTRACTION", "IS_VISUAL_INGESTION_ON"):
        _form_bool(fields, name)
    _form_str(fields, "file_type", 30)
    raw = fields.get("external_metadata")
    if raw:
        try:
            metadata = strict_json(raw)
        except (ValueError, RecursionError):
            metadata = None
        if not isinstance(metadata, dict):
            raise bad("Invalid 'external_metadata': expected a JSON object.", "external_metadata")


class _NoModel:
    """A files request: no model, no tokens (only the ``rpm`` quota counts it)."""

    model: ClassVar[None] = None
    prompt_tokens: ClassVar[int] = 0
    quota_tokens: ClassVar[int] = 0


@dataclass(frozen=True, slots=True)
class UploadFile(_NoModel):
    """``POST /files``: an accepted upload, stored when answered."""

    upload: NewFile

    def answer(self, state: MockState) -> Answer:
        config = state.config
        now = trio.current_time()
        stored = state.files.add(
            self.upload,
            seed=config.seed,
            created_at=int(time.time()),
            ready_at=now + config.file_processing_time,
        )
        body = {
            "id": stored.id,
            "object": "file",
            "bytes": stored.upload.size,
            "created_at": stored.created_at,
            "filename": stored.filename,
            "purpose": "documents",
            "status": stored.status(now),
        }
        return Answer(body, status=201)


def parse_upload(upload: Upload, *, models: object = None) -> UploadFile:
    """Check an upload's parts and fields (``file`` required, the documented types)."""
    del models
    if upload.problem is not None:
        raise upload.problem
    fields = upload.fields
    if upload.filename is None:
        raise bad("Missing required parameter: 'file'.", "file", "missing_required_parameter")
    filename = _form_str(fields, "filename", 512) or upload.filename
    if not filename:
        raise bad("The file part has no filename: give one, or a 'filename' field.", "filename")
    title = _form_str(fields, "title", 255)
    collection_type = fields.get("collection_type") or None
    if collection_type is not None and collection_type not in _COLLECTION_TYPES:
        raise bad(
            f"Invalid 'collection_type': expected one of {', '.join(_COLLECTION_TYPES)}, "
            f"got {collection_type[:40]!r}.",
            "collection_type",
        )
    workspace_id = _form_int(fields, "workspace_id", 1)
    if collection_type == "workspace" and workspace_id is None:
        raise bad(
            "Missing required parameter: 'workspace_id' (collection_type is 'workspace').",
            "workspace_id",
            "missing_required_parameter",
        )
    chunk_size = _form_int(fields, "chunk_size", 1) or DEFAULT_CHUNK_WORDS
    overlap = _chunk_overlap(fields, chunk_size)
    _check_form(fields)
    content = fields.get("content")
    text = content if content else upload.head.decode("utf-8", "replace")
    return UploadFile(
        NewFile(
            filename=filename,
            title=title,
            size=upload.size,
            sha256=upload.sha256,
            text=text[:INDEXED_CHARS],
            collection=_form_int(fields, "collection"),
            collection_type=collection_type,
            workspace_id=workspace_id,
            chunk_size=chunk_size,
            chunk_overlap=overlap,
        )
    )


def _chunk_overlap(fields: Mapping[str, str], chunk_size: int) -> int:
    raw = fields.get("chunk_overlap")
    if not raw:
        return 0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < chunk_size:
        raise bad(
            f"Invalid 'chunk_overlap': expected a number from 0 to below chunk_size "
            f"({chunk_size}), got {raw[:40]!r}.",
            "chunk_overlap",
        )
    return int(value)


def _file_json(stored: StoredFile, now: float) -> dict[str, Any]:
    return {
        "id": stored.id,
        "object": "file",
        "created_at": stored.created_at,
        "filename": stored.filename,
        "purpose": "documents",
        "status": stored.status(now),
    }


def _not_found(file_id: int) -> RequestError:
    return RequestError(f"No file with id {file_id}.", code="not_found", status=404)


def _query_bool(args: Mapping[str, str], name: str) -> bool | None:
    return _form_bool(args, name)


@dataclass(frozen=True, slots=True)
class ListFiles(_NoModel):
    """``GET /files``: one page of the files in scope."""

    page: int
    company_scope: bool | None
    private_scope: bool | None
    workspace_scope: int | None
    url: str

    def _in_scope(self, stored: StoredFile) -> bool:
        if not (self.company_scope or self.private_scope or self.workspace_scope is not None):
            return True
        kind = stored.upload.collection_type or "private"
        return bool(
            (self.company_scope and kind == "company")
            or (self.private_scope and kind == "private")
            or (kind == "workspace" and stored.upload.workspace_id == self.workspace_scope)
        )

    def _link(self, page: int) -> str:
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "page"]
        query.append(("page", str(page)))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def answer(self, state: MockState) -> Answer:
        now = trio.current_time()
        files = [f for f in state.files.files() if self._in_scope(f)]
        pages = max(1, -(-len(files) // PAGE_SIZE))
        if self.page > pages:
            raise RequestError("Invalid page.", param="page", code="invalid_page", status=404)
        start = (self.page - 1) * PAGE_SIZE
        return Answer(
            {
                "object": "list",
                "count": len(files),
                "next": self._link(self.page + 1) if self.page < pages else None,
                "previous": self._link(self.page - 1) if self.page > 1 else None,
                "data": [_file_json(f, now) for f in files[start : start + PAGE_SIZE]],
            }
        )


def parse_list(args: Mapping[str, str], url: str) -> ListFiles:
    """``GET /files``'s query: ``page`` (from 1), the scopes."""
    return ListFiles(
        page=_form_int(args, "page", 1) or 1,
        company_scope=_query_bool(args, "company_scope"),
        private_scope=_query_bool(args, "private_scope"),
        workspace_scope=_form_int(args, "workspace_scope"),
        url=url,
    )


@dataclass(frozen=True, slots=True)
class GetFile(_NoModel):
    """``GET /files/{id}``, with its text when ``include_content``."""

    file_id: int
    include_content: bool

    def answer(self, state: MockState) -> Answer:
        stored = state.files.get(self.file_id)
        if stored is None:
            raise _not_found(self.file_id)
        body = _file_json(stored, trio.current_time())
        body["signature"] = None
        if self.include_content:
            body["content"] = stored.upload.text
        return Answer(body)


def parse_get(args: Mapping[str, str], file_id: int) -> GetFile:
    return GetFile(file_id, bool(_query_bool(args, "include_content")))


@dataclass(frozen=True, slots=True)
class DeleteFile(_NoModel):
    """``DELETE /files/{id}``: ``{"id": ID, "deleted": true}``, or 404."""

    file_id: int

    def answer(self, state: MockState) -> Answer:
        if not state.files.delete(self.file_id):
            raise _not_found(self.file_id)
        return Answer({"id": self.file_id, "deleted": True})


def parse_delete(file_id: int) -> DeleteFile:
    return DeleteFile(file_id)
