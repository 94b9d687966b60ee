"""``POST /chat/document-search``: an answer from a company's documents, with the
documents and extracts it used (``PARADIGM_API.md`` section 6).

**Deprecated by Paradigm** in favour of the v3 threads API ("this endpoint is deprecated
and will be removed in a future version. Please use /v3/threads/turns"); supported here
because it is what users run today.  ``tool="VisionDocumentSearch"`` is the same endpoint
with vision retrieval.

Answer: ``{"chat_session_id", "answer", "user_instructions", "chat_settings", "model",
"documents": [{"id", "name", "document_extracts": [{"id", "text", "metadata"}]}]}``.  The
reference marks every top-level field required; this client insists only on ``answer``
and keeps the rest when present (a missing ``documents`` reads as none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import APIResponseValidationError, InvalidRequestError
from ._completion import Usage
from ._encode import encode_json
from ._json_endpoint import check_text, given_fields, int_list, obj, opt_int, opt_str
from ._models import check_custom_id, check_model, checked_extra

__all__ = ["DocumentAnswer", "DocumentSearchRequest", "Extract", "SourceDocument"]

_TOOLS = ("DocumentSearch", "VisionDocumentSearch")
_GUIDED = frozenset(
    {"guided_choice", "guided_regex", "guided_json", "guided_grammar",
     "guided_whitespace_pattern", "guided_decoding_backend"}
)  # fmt: skip
_FIELDS = (
    "workspace_ids", "file_ids", "chat_session_id", "model", "company_scope",
    "private_scope", "private", "tool", "generation_instructions", "extra_body",
    "rewrite_query",
)  # fmt: skip
_MODELLED = frozenset({"query", *_FIELDS})


@dataclass(frozen=True, slots=True)
class Extract:
    """A passage of a document that an answer used.

    Attributes:
        id: the extract's id, if given.
        text: its text.
        metadata: its metadata (``ID``: the chunk's UUID; ``pages`` and ``total_pages``
            are strings in the reference).
        raw: its JSON.
    """

    id: int | None
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """A document an answer cites.

    Attributes:
        id: the file's id.
        name: its name.
        extracts: the passages used.
        raw: its JSON.
    """

    id: int | None
    name: str | None
    extracts: tuple[Extract, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class DocumentAnswer:
    """The answer of ``/chat/document-search``.

    Attributes:
        answer: the generated answer.
        documents: the documents it cites, with their extracts.
        chat_session_id: the chat session (pass it back for a follow-up).
        model: the model that answered.
        raw: the answer's JSON (``user_instructions``, ``chat_settings``... included).
        request_id: the response's ``x-request-id``, if any.
    """

    answer: str
    documents: tuple[SourceDocument, ...]
    chat_session_id: int | None = None
    model: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    request_id: str | None = None

    @property
    def extracts(self) -> tuple[Extract, ...]:
        """Every extract of every document, in order."""
        return tuple(e for d in self.documents for e in d.extracts)

    @classmethod
    def from_json(cls, data: object, request_id: str | None = None) -> DocumentAnswer:
        """Parse the answer; ``answer`` must be a string."""
        body = obj(data, "the /chat/document-search response", request_id)
        answer = body.get("answer")
        if not isinstance(answer, str):
            raise APIResponseValidationError(
                "the /chat/document-search response has no 'answer' string",
                body=data,
                request_id=request_id,
            )
        documents = body.get("documents")
        if documents is not None and not isinstance(documents, list):
            raise APIResponseValidationError(
                "the /chat/document-search response's 'documents' is not a list",
                body=data,
                request_id=request_id,
            )
        docs = tuple(_document(d, request_id, data) for d in documents or ())
        return cls(
            answer, docs, opt_int(body, "chat_session_id"), opt_str(body, "model"), body, request_id
        )


def _document(data: object, request_id: str | None, whole: object) -> SourceDocument:
    doc = obj(data, "a document", request_id, whole)
    extracts = doc.get("document_extracts")
    items = extracts if isinstance(extracts, list) else []
    parsed = []
    for e in items:
        ext = obj(e, "a document extract", request_id, whole)
        metadata = ext.get("metadata")
        parsed.append(
            Extract(
                opt_int(ext, "id"),
                opt_str(ext, "text") or "",
                metadata if isinstance(metadata, dict) else {},
                ext,
            )
        )
    return SourceDocument(opt_int(doc, "id"), opt_str(doc, "name"), tuple(parsed), doc)


@dataclass(frozen=True, kw_only=True, slots=True)
class DocumentSearchRequest:
    """One ``POST /chat/document-search`` request (deprecated by Paradigm: see the module).

    Attributes:
        query: the question.
        workspace_ids, file_ids: add these workspaces' documents, these documents, to
            the scope.
        company_scope, private_scope: add the company's, the user's private documents.
        chat_session_id: follow up in an existing session.
        model: the LLM (the user's chat-settings default when ``None``; never the
            client's ``model``).
        private: a private chat interaction.
        tool: ``"DocumentSearch"`` (server default) or ``"VisionDocumentSearch"``.
        generation_instructions: appended to the generation prompt.
        extra_body: guided decoding (``guided_choice``, ``guided_regex``,
            ``guided_json``, ...: the only keys the reference admits).
        rewrite_query: let the server rewrite the query (server default ``True``).
        extra: more body fields, passed through.
        custom_id: a stable id for this logical request.
    """

    query: str
    workspace_ids: tuple[int, ...] | None = None
    file_ids: tuple[int, ...] | None = None
    company_scope: bool | None = None
    private_scope: bool | None = None
    chat_session_id: int | None = None
    model: str | None = None
    private: bool | None = None
    tool: str | None = None
    generation_instructions: str | None = None
    extra_body: Mapping[str, Any] | None = None
    rewrite_query: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    custom_id: str | None = None

    endpoint = "/chat/document-search"

    def __post_init__(self) -> None:
        check_text("query", self.query)
        object.__setattr__(self, "workspace_ids", int_list("workspace_ids", self.workspace_ids))
        object.__setattr__(self, "file_ids", int_list("file_ids", self.file_ids))
        for name in ("company_scope", "private_scope", "private", "rewrite_query"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InvalidRequestError(f"{name} must be True or False, got {value!r}")
        session = self.chat_session_id
        if session is not None and (isinstance(session, bool) or not isinstance(session, int)):
            raise InvalidRequestError(f"chat_session_id must be an integer, got {session!r}")
        if self.tool is not None and self.tool not in _TOOLS:
            raise InvalidRequestError(f"tool must be one of {', '.join(_TOOLS)}, got {self.tool!r}")
        if self.generation_instructions is not None and not isinstance(
            self.generation_instructions, str
        ):
            raise InvalidRequestError("generation_instructions must be a string")
        if self.extra_body is not None:
            if not isinstance(self.extra_body, Mapping):
                raise InvalidRequestError("extra_body must be a dict of guided_* fields")
            unknown = sorted(set(self.extra_body) - _GUIDED)
            if unknown:
                raise InvalidRequestError(
                    f"extra_body admits only guided decoding fields ({', '.join(sorted(_GUIDED))}),"
                    f" not {', '.join(unknown)}"
                )
        check_model(self.model)
        check_custom_id(self.custom_id)
        object.__setattr__(self, "extra", checked_extra(self.extra, _MODELLED))
        encode_json(self.to_body(""))

    def to_body(self, default_model: str) -> dict[str, Any]:
        """The JSON body: the fields given, nothing else (the server's defaults stand)."""
        body: dict[str, Any] = {"query": self.query, **given_fields(self, _FIELDS)}
        if self.extra_body is not None:
            body["extra_body"] = dict(self.extra_body)
        body.update(self.extra)
        return body

    def estimated_tokens(self) -> int:
        """About four characters a token of the query, plus the answer's (unknown: 0)."""
        return len(self.query) // 4 + 1

    def parse(self, data: object, request_id: str | None) -> DocumentAnswer:
        """The answer as a :class:`DocumentAnswer`."""
        return DocumentAnswer.from_json(data, request_id)

    def usage(self, value: Any) -> Usage | None:
        """``None``: the reference documents no usage for document search."""
        return None
