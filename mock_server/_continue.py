"""vLLM's ``continue_final_message`` and ``add_generation_prompt`` on the chat route.

``continue_final_message: true`` asks the model to continue the conversation's last
message, an assistant message, rather than answer after it (vLLM requires
``add_generation_prompt: false`` with it, as this mock does).  The mock's answers are a
function of the conversation, so the continuation is exact: the answer the mock gives
the conversation *without* its last message (the original request), less the text of
that last message when the answer starts with it.  A client that resumes a broken stream
by sending what it received as the final assistant message therefore gets exactly the
rest of the answer.  When the answer does not start with that text, the continuation is
the whole answer (deterministic, but not a continuation of anything).  As in vLLM, the
continuation's ``max_tokens`` bounds the tokens it adds (not the original answer's), so a
client that lowers it by the tokens it received gets the rest of an answer cut by
``max_tokens`` exactly where it would have been cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ._content import ChatRequest, Reply, RequestError, message_text

__all__ = ["continued_reply", "continued_text", "original_request"]


def _flag(data: Mapping[str, Any], name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(
            f"Invalid type for '{name}': expected a boolean.", param=name, code="invalid_type"
        )
    return value


def continued_text(data: Mapping[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """The text of the final assistant message to continue (``continue_final_message``),
    or ``None``; :class:`RequestError` (400) for flags vLLM refuses."""
    continuing = _flag(data, "continue_final_message", False)
    generation_prompt = _flag(data, "add_generation_prompt", True)
    if not continuing:
        return None
    if generation_prompt:
        raise RequestError(
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
            param="continue_final_message",
        )
    last = messages[-1]
    if last.get("role") != "assistant":
        raise RequestError(
            "'continue_final_message' needs the last message to be an assistant message.",
            param="messages",
        )
    return message_text(last.get("content"))


def original_request(chat: ChatRequest) -> ChatRequest:
    """The request whose answer a continuation continues: without its final message, and
    without a token limit (the continuation's ``max_tokens`` bounds what it adds)."""
    options = replace(chat.options, continued=None)
    return replace(chat, messages=chat.messages[:-1], options=options, max_tokens=None)


def continued_reply(reply: Reply, prefix: str, max_tokens: int | None = None) -> Reply:
    """What follows ``prefix`` in ``reply`` (its pieces, the first one cut where the prefix
    ends), at most ``max_tokens`` pieces of it (then ``finish_reason="length"``); the whole
    reply when it does not start with ``prefix``, or calls tools."""
    if reply.tool_calls or not reply.content.startswith(prefix):
        return reply
    pieces, position = [], 0
    for piece in reply.pieces:
        end = position + len(piece)
        if end > len(prefix):
            pieces.append(piece[max(0, len(prefix) - position) :])
        position = end
    finish_reason = reply.finish_reason
    if max_tokens is not None and max_tokens < len(pieces):
        pieces = pieces[:max_tokens]
        pieces[-1] = pieces[-1].rstrip()
        finish_reason = "length"
    return Reply(pieces=tuple(pieces), finish_reason=finish_reason)
