"""``POST /tokenize`` and the legacy ``POST /completions``: the mock's tokenizer and text
completions (streamed as Server-Sent Events with ``stream: true``).

The mock's tokenizer (the same counts as the chat route's ``usage.prompt_tokens``):

* a ``prompt``: ``ceil(len(prompt) / 4)`` tokens (characters, not bytes);
* ``messages``: ``3 + sum(4 + ceil(len(text) / 4))`` over the messages (``text``: the
  content, or the text of its text parts), exactly a chat request's prompt tokens.

``/tokenize`` answers with the shape of Paradigm's current reference (``total_tokens``,
``request_model``, ``model_used``, ``tokenizer_type``, ``id``, ``model``).  Paradigm says
the endpoint serves LLMs only: a model whose name holds ``e5`` or ``embed`` gets a 400.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ._content import ChatRequest, Reply, check_messages, count_prompt_tokens, make_reply
from ._determinism import digest
from ._plain import (
    Answer,
    EventStream,
    bad,
    load_object,
    model_field,
    optional_bool,
    optional_int,
    optional_str,
    text_tokens,
    type_name,
)

if TYPE_CHECKING:
    from ._state import MockState

__all__ = [
    "TOKENIZER_TYPE",
    "CompletionRequest",
    "TokenizeRequest",
    "parse_completion",
    "parse_tokenize",
    "tokenize_count",
]

#: The ``tokenizer_type`` of the mock's ``/tokenize`` answers.
TOKENIZER_TYPE: Final = "mock-chars-4"
_EMBEDDING_MARKERS: Final = ("e5", "embed")
_MAX_N: Final = 16


def _model(data: dict[str, Any], models: tuple[str, ...] | None) -> str:
    model = model_field(data, "model", models, required=True)
    assert model is not None
    return model


def tokenize_count(*, prompt: str | None = None, messages: list[Any] | None = None) -> int:
    """The mock tokenizer's count of a prompt or of messages (see the module docstring)."""
    if messages is not None:
        return count_prompt_tokens(messages)
    return text_tokens(prompt or "")


@dataclass(frozen=True, slots=True)
class TokenizeRequest:
    """``POST /tokenize``: the count is made when parsed (it needs no state)."""

    model: str
    prompt_tokens: int
    canonical: str = field(repr=False)
    quota_tokens: int = 0

    def answer(self, state: MockState) -> Answer:
        raw = digest(state.config.seed, "tokenize", self.canonical)[:16]
        return Answer(
            {
                "total_tokens": self.prompt_tokens,
                "request_model": self.model,
                "model_used": self.model,
                "tokenizer_type": TOKENIZER_TYPE,
                "id": str(uuid.UUID(bytes=raw, version=4)),
                "model": self.model,
            }
        )


def parse_tokenize(body: bytes, *, models: tuple[str, ...] | None) -> TokenizeRequest:
    """``model`` and exactly one of ``prompt`` (string) and ``messages`` (array)."""
    data = load_object(body)
    model = _model(data, models)
    if any(marker in model.lower() for marker in _EMBEDDING_MARKERS):
        raise bad(
            f"The model `{model[:100]}` is an embedding model: /tokenize counts the tokens "
            "of LLMs only.",
            "model",
            "invalid_model",
        )
    prompt = optional_str(data, "prompt")
    has_messages = data.get("messages") is not None
    if prompt is None and not has_messages:
        raise bad(
            "Missing required parameter: give 'prompt' (a string) or 'messages' (an array).",
            "prompt",
            "missing_required_parameter",
        )
    if prompt is not None and has_messages:
        raise bad(
            "Give 'prompt' or 'messages', not both (which one Paradigm counts is not documented).",
            "messages",
        )
    if has_messages:
        messages = check_messages(data)
        count = tokenize_count(messages=messages)
        canonical = json.dumps([model, messages], sort_keys=True, ensure_ascii=False)
    else:
        count = tokenize_count(prompt=prompt)
        canonical = json.dumps([model, prompt], ensure_ascii=False)
    return TokenizeRequest(model=model, prompt_tokens=count, canonical=canonical)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """Legacy ``POST /completions``: ``n`` text completions of ``prompt``."""

    model: str
    prompt: str
    max_tokens: int | None
    n: int
    echo: bool
    stream: bool
    prompt_tokens: int
    quota_tokens: int

    def _chunk(self, head: dict[str, Any], index: int, text: str, finish: str | None) -> bytes:
        choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        chunk = {**head, "choices": [choice]}
        return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

    def _stream(self, head: dict[str, Any], replies: list[Reply]) -> EventStream:
        """A chunk per piece (choices in turn; ``echo`` puts the prompt before the
        first), a finish chunk per choice, then ``[DONE]``."""
        events = []
        for position in range(max(len(reply.pieces) for reply in replies)):
            for index, reply in enumerate(replies):
                if position < len(reply.pieces):
                    lead = self.prompt if self.echo and position == 0 else ""
                    events.append(self._chunk(head, index, lead + reply.pieces[position], None))
        for index, reply in enumerate(replies):
            events.append(self._chunk(head, index, "", reply.finish_reason))
        events.append(b"data: [DONE]\n\n")
        pieces = tuple(len(reply.pieces) for reply in replies)
        return EventStream(tuple(events), pieces, head["id"])

    def answer(self, state: MockState) -> Answer:
        config = state.config
        chat = ChatRequest(
            model=self.model,
            messages=[{"role": "user", "content": self.prompt}],
            stream=False,
            include_usage=False,
            max_tokens=self.max_tokens,
            prompt_tokens=self.prompt_tokens,
        )
        replies = [make_reply(config.seed, chat, config.reply_tokens, i) for i in range(self.n)]
        completion = sum(len(reply.pieces) for reply in replies)
        canonical = json.dumps([self.model, self.prompt, self.n, self.max_tokens])
        head = {
            "id": "cmpl-" + digest(config.seed, "completion", canonical).hex()[:29],
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model,
        }
        if self.stream:
            return Answer(None, completion_tokens=completion, stream=self._stream(head, replies))
        body = {
            **head,
            "choices": [
                {
                    "index": index,
                    "text": (self.prompt if self.echo else "") + reply.content,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
                for index, reply in enumerate(replies)
            ],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion,
            },
        }
        return Answer(body, completion_tokens=completion)


def _check_numbers(data: dict[str, Any]) -> None:
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad(
                f"Invalid type for '{name}': expected a number, but got {type_name(value)}.",
                name,
                "invalid_type",
            )
    temperature = data.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise bad(f"Invalid 'temperature': expected 0 to 2, got {temperature}.", "temperature")
    optional_int(data, "logprobs", minimum=0, maximum=5)
    optional_int(data, "best_of", minimum=1, maximum=_MAX_N)
    optional_str(data, "user")
    optional_str(data, "suffix")
    if data.get("logit_bias") is not None and not isinstance(data["logit_bias"], dict):
        raise bad("Invalid type for 'logit_bias': expected an object.", "logit_bias")


def _check_stop(data: dict[str, Any]) -> None:
    stop = data.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad("Invalid 'stop': expected a string or an array of strings.", "stop")
    if len(stop) > 4:
        raise bad(f"Invalid 'stop': at most 4 sequences, got {len(stop)}.", "stop")


def parse_completion(
    body: bytes, *, models: tuple[str, ...] | None, default_max_tokens: int
) -> CompletionRequest:
    """A legacy completion request (streamed with ``stream: true``)."""
    data = load_object(body)
    model = _model(data, models)
    prompt = optional_str(data, "prompt") or ""
    stream = bool(optional_bool(data, "stream"))
    max_tokens = optional_int(data, "max_tokens", minimum=1)
    n = optional_int(data, "n", minimum=1, maximum=_MAX_N) or 1
    _check_numbers(data)
    _check_stop(data)
    echo = bool(optional_bool(data, "echo"))
    prompt_tokens = text_tokens(prompt)
    limit = max_tokens if max_tokens is not None else default_max_tokens
    return CompletionRequest(
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        n=n,
        echo=echo,
        stream=stream,
        prompt_tokens=prompt_tokens,
        quota_tokens=prompt_tokens + limit,
    )
