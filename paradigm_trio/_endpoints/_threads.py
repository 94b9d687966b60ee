"""``POST /api/v3/threads/turns`` (beta in Paradigm since December 2025): a new agent
thread and its first turn (``PARADIGM_API.md`` section 15).  The v3 API replaces
``/chat/document-search``.

Answered synchronously here (``background`` is a field like any other: a ``running``
turn comes back as it is; polling ``/api/v3/threads/{id}/turns`` is not done).  The turn:
``{"id", "object": "turn", "thread", "status", "messages": [{"role", "parts": [...]}],
"created_at", "error"}``; a part's ``type`` is ``reasoning``, ``tool_call`` or ``text``
(the final answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._errors import APIResponseValidationError, InvalidRequestError
from ._completion import Usage
from ._encode import encode_json
from ._json_endpoint import check_text, given_fields, int_list, obj, opt_str
from ._models import check_custom_id, checked_extra

__all__ = ["Turn", "TurnRequest"]

_FIELDS = (
    "agent_id", "ml_model", "name", "workspace_ids", "file_ids", "company_scope",
    "private_scope", "is_ephemeral", "max_steps", "system_prompt_suffix", "force_tool",
    "response_format", "immediate_final_answer", "background",
)  # fmt: skip
_MODELLED = frozenset({"query", *_FIELDS})


@dataclass(frozen=True, slots=True)
class Turn:
    """A thread's turn.

    Attributes:
        id: the turn's id.
        thread: the thread's id (continue it with ``/api/v3/threads/{id}/turns``).
        status: ``running``, ``completed``, ``failed``, ``cancelled``, ``cancelling``.
        messages: the messages (the user's query, the agent's answer), as JSON.
        error: ``{"code", "message"}`` when it failed, else ``None``.
        raw: the turn's JSON.
        request_id: the response's ``x-request-id``, if any.
    """

    id: str | None
    thread: str | None
    status: str | None
    messages: tuple[Mapping[str, Any], ...]
    error: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    request_id: str | None = None

    @property
    def text(self) -> str:
        """The agent's final answer (the ``text`` parts of the last message, joined)."""
        for message in reversed(self.messages):
            parts = message.get("parts")
            if isinstance(parts, list):
                texts = [
                    str(p.get("text", "")) for p in parts
                    if isinstance(p, dict) and p.get("type") == "text"
                ]  # fmt: skip
                if texts:
                    return "".join(texts)
        return ""

    @property
    def parts(self) -> tuple[Mapping[str, Any], ...]:
        """Every part of every message, in order (``reasoning``, ``tool_call``, ``text``)."""
        return tuple(
            p for m in self.messages for p in (m.get("parts") or ()) if isinstance(p, dict)
        )

    @classmethod
    def from_json(cls, data: object, request_id: str | None = None) -> Turn:
        """Parse a turn; ``messages`` must be a list of objects."""
        body = obj(data, "the /threads/turns response", request_id)
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise APIResponseValidationError(
                "the /threads/turns response has no 'messages' list", body=data,
                request_id=request_id,
            )  # fmt: skip
        error = body.get("error")
        return cls(
            opt_str(body, "id"), opt_str(body, "thread"), opt_str(body, "status"),
            tuple(messages), error if isinstance(error, dict) else None, body, request_id,
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnRequest:
    """One ``POST /api/v3/threads/turns`` (beta): a thread and its first turn.

    Attributes:
        query: the user's message.
        agent_id: the agent (the company's default when ``None``).
        ml_model: the model's technical name.
        name: the thread's name.
        workspace_ids, file_ids, company_scope, private_scope: the documents in scope.
        max_steps: the agent's steps at most, from 1 to 20 (8 by default on the server).
        is_ephemeral, system_prompt_suffix, force_tool, response_format,
        immediate_final_answer, background: as the reference has them.
        extra: more body fields, passed through.
        custom_id: a stable id for this logical request.
        idempotent: ``False``, for the class: sent twice, a turn makes two threads (and
            runs the agent twice), so it is resent only when it cannot have reached the
            server, or the server said it did not process it (408, 425, 429, 503,
            ``x-should-retry: true``).
    """

    idempotent: ClassVar[bool] = False

    query: str
    agent_id: int | None = None
    ml_model: str | None = None
    name: str | None = None
    workspace_ids: tuple[int, ...] | None = None
    file_ids: tuple[int, ...] | None = None
    company_scope: bool | None = None
    private_scope: bool | None = None
    is_ephemeral: bool | None = None
    max_steps: int | None = None
    system_prompt_suffix: str | None = None
    force_tool: str | None = None
    response_format: Mapping[str, Any] | None = None
    immediate_final_answer: bool | None = None
    background: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    custom_id: str | None = None

    endpoint = "/api/v3/threads/turns"

    def __post_init__(self) -> None:
        check_text("query", self.query)
        object.__setattr__(self, "workspace_ids", int_list("workspace_ids", self.workspace_ids))
        object.__setattr__(self, "file_ids", int_list("file_ids", self.file_ids))
        steps = self.max_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or not 1 <= steps <= 20):  # fmt: skip
            raise InvalidRequestError(f"max_steps must be an integer from 1 to 20, got {steps!r}")
        check_custom_id(self.custom_id)
        object.__setattr__(self, "extra", checked_extra(self.extra, _MODELLED))
        encode_json(self.to_body(""))

    @property
    def model(self) -> str | None:
        """``ml_model``."""
        return self.ml_model

    def to_body(self, default_model: str) -> dict[str, Any]:
        """The JSON body: the fields given (the agent's settings stand for the others)."""
        body: dict[str, Any] = {"query": self.query, **given_fields(self, _FIELDS)}
        body.update(self.extra)
        return body

    def estimated_tokens(self) -> int:
        """About four characters a token of the query."""
        return len(self.query) // 4 + 1

    def parse(self, data: object, request_id: str | None) -> Turn:
        """The answer as a :class:`Turn`."""
        return Turn.from_json(data, request_id)

    def usage(self, value: Any) -> Usage | None:
        """``None``: the reference documents no usage for turns."""
        return None
