"""``POST /api/v3/threads/turns`` (beta in Paradigm): a new thread and its first turn,
answered at once (``status: "completed"``).

The answer comes from the same retrieval as ``/chat/document-search``: when the request
names files, workspaces or a scope, the agent's message holds a ``tool_call`` part (tool
``document_search``, its result's ``chunk_sources`` the chunks cited) before the final
``text`` part.  ``background: true`` is refused: the polling of
``/api/v3/threads/{id}/turns`` that it needs is not served by the mock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ._plain import (
    Answer,
    bad,
    load_object,
    model_field,
    optional_bool,
    optional_int,
    optional_str,
    required_str,
    text_tokens,
)
from ._search import Scope, answer_text, iso_now, new_uuid

if TYPE_CHECKING:
    from ._state import MockState

__all__ = ["ThreadTurn", "parse_thread_turn"]

_INT_FIELDS: Final = ("agent_id", "chat_setting_id", "suggested_query_id")
_STR_FIELDS: Final = {"name": 255, "ml_model": None, "force_tool": None, "force_mcp_server": None}


@dataclass(frozen=True, slots=True)
class ThreadTurn:
    """A thread's first turn: the user's query and the agent's answer."""

    query: str
    scope: Scope
    immediate: bool
    model: str | None
    prompt_tokens: int
    quota_tokens: int

    def _message(self, seed: int, n: int, role: str, parts: list[Any]) -> dict[str, Any]:
        return {
            "id": new_uuid(seed, "message", n, role),
            "role": role,
            "object": "message",
            "created_at": iso_now(),
            "parts": parts,
        }

    def answer(self, state: MockState) -> Answer:
        seed = state.config.seed
        n = state.new_chat_session()
        searched = not self.scope.empty
        cited = self.scope.cited(state, self.query) if searched else []
        text = answer_text(cited)
        parts: list[dict[str, Any]] = []
        if searched and not self.immediate:
            sources = [
                {"uuid": c.uuid, "text": c.text, "file_id": f.id, "filename": f.filename,
                 "score": score}
                for score, c, f in cited
            ]  # fmt: skip
            result = {
                "text": "\n\n".join(c.text for _, c, _ in cited),
                "chunk_sources": sources,
                "web_sources": [],
                "file_artifacts": [],
            }
            call = {
                "id": new_uuid(seed, "tool_call", n),
                "tool": {"name": "document_search", "type": "native"},
                "tool_args": {"query": self.query},
                "steps": [],
                "result": result,
            }
            parts.append({"type": "tool_call", "tool_call": call})
        parts.append({"type": "text", "text": text})
        body = {
            "id": new_uuid(seed, "turn", n),
            "object": "turn",
            "thread": new_uuid(seed, "thread", n),
            "status": "completed",
            "messages": [
                self._message(seed, n, "user", [{"type": "text", "text": self.query}]),
                self._message(seed, n, "assistant", parts),
            ],
            "created_at": iso_now(),
            "error": None,
            "liked": None,
        }
        return Answer(body, completion_tokens=len(text.split()))


def parse_thread_turn(
    body: bytes, *, models: tuple[str, ...] | None, default_max_tokens: int
) -> ThreadTurn:
    """The documented fields, type-checked; ``query`` required; ``background`` refused."""
    data = load_object(body)
    query = required_str(data, "query")
    for name in _INT_FIELDS:
        optional_int(data, name, minimum=1)
    for name, limit in _STR_FIELDS.items():
        optional_str(data, name, max_length=limit)
    optional_str(data, "system_prompt_suffix", max_length=5000)
    optional_int(data, "max_steps", minimum=1, maximum=20)
    optional_bool(data, "is_ephemeral")
    if data.get("response_format") is not None and not isinstance(data["response_format"], dict):
        raise bad("Invalid type for 'response_format': expected an object.", "response_format")
    if optional_bool(data, "background"):
        raise bad(
            "This mock answers turns at once: 'background': true needs the polling of "
            "/api/v3/threads/{id}/turns, which it does not serve.",
            "background",
            "unsupported_by_mock",
        )
    model = model_field(data, "ml_model", models)
    tokens = text_tokens(query)
    return ThreadTurn(
        query=query,
        scope=Scope.of(data),
        immediate=bool(optional_bool(data, "immediate_final_answer")),
        model=model,
        prompt_tokens=tokens,
        quota_tokens=tokens + default_max_tokens,
    )
