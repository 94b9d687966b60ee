"""The options of a chat request beyond its conversation, as the mock reads them.

A module of its own so that :mod:`._content` (the parsed request, which carries them) and
:mod:`._answers` (which parses and uses them) do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Options"]


@dataclass(frozen=True, slots=True)
class Options:
    """The options of a chat request beyond the conversation."""

    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: object = None
    parallel_tool_calls: bool = True
    schema: dict[str, Any] | None = None
    json_object: bool = False
    choices: tuple[str, ...] | None = None
    regex: str | None = None
    continued: str | None = None
    """With ``continue_final_message``: the final assistant message's text."""

    @property
    def structured(self) -> bool:
        """Whether the request asks for structured content."""
        return (
            self.schema is not None
            or self.json_object
            or self.choices is not None
            or self.regex is not None
        )
