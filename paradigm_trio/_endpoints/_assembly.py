"""A streamed answer put back together: chunks in, the ``chat.completion`` JSON out.

:class:`CompletionAssembler` takes each chunk's JSON and keeps, per choice (``index``),
its role, the pieces of its content and refusal, its tool calls (joined by
:class:`~paradigm_trio._tools.ToolCallAssembler`), its log probabilities and its
``finish_reason``; :meth:`CompletionAssembler.raw` is then the JSON a non-streamed
request would have got, which the one parser of completions reads.  So a streamed and a
non-streamed answer are the same objects, tool calls and ``n`` > 1 included.  No I/O here;
a malformed chunk raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._numbers import whole
from ._tools import ToolCallAssembler

__all__ = ["CompletionAssembler"]


@dataclass(slots=True)
class _Choice:
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tools: ToolCallAssembler = field(default_factory=ToolCallAssembler)
    logprobs: dict[str, list[Any]] | None = None
    finish_reason: str | None = None

    def raw(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role}
        calls = self.tools.calls() if self.tools else []
        message["content"] = "".join(self.content) if self.content or not calls else None
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if calls:
            message["tool_calls"] = calls
        raw: dict[str, Any] = {
            "index": index,
            "message": message,
            "finish_reason": self.finish_reason,
        }
        if self.logprobs is not None:
            raw["logprobs"] = self.logprobs
        return raw


def _text(value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{what} must be a string or null")
    return value


class CompletionAssembler:
    """The choices of one streamed answer, assembled as chunks arrive."""

    def __init__(self) -> None:
        self.choices: dict[int, _Choice] = {}
        self.id = ""
        self.model = ""
        self.created = 0
        self.usage: dict[str, Any] | None = None

    def text(self, index: int = 0) -> str:
        """The content of choice ``index`` so far."""
        choice = self.choices.get(index)
        return "".join(choice.content) if choice is not None else ""

    def add(self, payload: Mapping[str, Any]) -> None:
        """Take one chunk's JSON."""
        self.id = self.id or str(payload.get("id") or "")
        self.model = self.model or str(payload.get("model") or "")
        self.created = self.created or whole(payload.get("created") or 0, "created")
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        for raw in payload.get("choices") or ():
            if not isinstance(raw, dict):
                raise ValueError("a choice must be an object")
            index = raw.get("index", 0)
            if isinstance(index, bool) or not isinstance(index, int):
                raise ValueError(f"a choice's index must be an integer, got {index!r}")
            self._add_choice(self.choices.setdefault(index, _Choice()), raw)

    def _add_choice(self, choice: _Choice, raw: dict[str, Any]) -> None:
        delta = raw.get("delta") or {}
        if not isinstance(delta, dict):
            raise ValueError("'delta' must be an object")
        role = _text(delta.get("role"), "'delta.role'")
        if role:
            choice.role = role
        content = _text(delta.get("content"), "'delta.content'")
        if content:
            choice.content.append(content)
        refusal = _text(delta.get("refusal"), "'delta.refusal'")
        if refusal:
            choice.refusal.append(refusal)
        if delta.get("tool_calls") is not None:
            choice.tools.add(delta["tool_calls"])
        logprobs = raw.get("logprobs")
        if logprobs is not None:
            if not isinstance(logprobs, dict):
                raise ValueError("'logprobs' must be an object")
            kept = choice.logprobs = choice.logprobs or {}
            for part in ("content", "refusal"):
                tokens = logprobs.get(part)
                if isinstance(tokens, list):
                    kept.setdefault(part, []).extend(tokens)
        finish = raw.get("finish_reason")
        if finish is not None:
            choice.finish_reason = str(finish)

    def raw(self) -> dict[str, Any]:
        """The assembled ``chat.completion`` JSON.

        Raises:
            ValueError: a tool call never got its function name.
        """
        raw: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [self.choices[i].raw(i) for i in sorted(self.choices)] or [_Choice().raw(0)],
        }
        if self.usage is not None:
            raw["usage"] = self.usage
        return raw
