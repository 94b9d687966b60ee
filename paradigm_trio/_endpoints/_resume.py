"""Resuming a live stream after a break: what was delivered, and the next attempt's chunks
trimmed to what follows it.  No I/O.

When a :class:`~paradigm_trio.ChatStream` breaks after handing chunks out, :class:`Resume`
records what it had received (its assembler: every chunk handed out, or queued to be),
and the next attempt's :class:`~._chunks.StreamReader` passes each chunk through
:meth:`Resume.trim` before anything else sees it:

* ``"replay"`` (the same request sent again): the new answer must reproduce, per choice,
  the content, the refusal, the tool calls (names and arguments; ids are not compared:
  servers draw them) and the count of log probabilities already delivered; what it
  reproduces is dropped, what follows is kept (a chunk that straddles the end is cut
  there).  A difference raises :class:`Diverged`: two answers are never spliced.
* ``"continue"`` (:func:`continuation`: the delivered text sent as a final assistant
  message that the server continues, vLLM's ``continue_final_message``): every chunk is
  new; only the role and empty chunks are dropped, and the usage is combined (the
  delivered chunks count as completion tokens, one each).

Either way the kept chunks carry the first attempt's ``id`` and ``created``, so the caller
reads one stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from .._errors import APIError
from ._assembly import CompletionAssembler, _Choice
from ._models import ChatRequest

__all__ = ["DIVERGED", "Diverged", "Restart", "Resume", "continuation"]

Restart = Literal["replay", "continue"]
"""How :meth:`Client.chat_stream <paradigm_trio.Client.chat_stream>` resumes a stream."""

RESTARTS: Final = ("replay", "continue", None)

DIVERGED: Final = "stream_diverged"
"""The cause of an attempt whose replayed answer differs from what was delivered."""


class Diverged(Exception):
    """The answer sent again differs from what the stream had delivered."""


@dataclass(slots=True)
class _Sent:
    """One choice as delivered, and how far the replay has reproduced it."""

    texts: dict[str, str]  # "content", "refusal"
    calls: dict[int, tuple[str, str, bool]]  # index -> (name, arguments, id delivered)
    logprobs: dict[str, int]  # "content", "refusal" -> entries delivered
    finished: str | None
    at: dict[str, int] = field(default_factory=dict)  # texts and logprobs reproduced
    call_at: dict[int, int] = field(default_factory=dict)  # arguments reproduced
    named: set[int] = field(default_factory=set)  # calls whose name was reproduced

    @classmethod
    def of(cls, choice: _Choice) -> _Sent:
        calls = choice.tools.snapshot()
        counts = {part: len(v) for part, v in (choice.logprobs or {}).items()}
        texts = {"content": "".join(choice.content), "refusal": "".join(choice.refusal)}
        return cls(texts, calls, counts, choice.finish_reason)

    @property
    def covered(self) -> bool:
        return (
            all(self.at.get(k, 0) >= len(v) for k, v in self.texts.items())
            and all(self.call_at.get(k, 0) >= len(c[1]) for k, c in self.calls.items())
            and self.named >= self.calls.keys()
            and all(self.at.get("lp:" + k, 0) >= n for k, n in self.logprobs.items())
        )

    def trim(self, index: int, raw: dict[str, Any]) -> dict[str, Any] | None:
        """``raw`` (one choice of a chunk) less what was delivered (``None``: nothing
        left); :class:`Diverged` when it differs from it."""
        delta = raw.get("delta") or {}
        if not isinstance(delta, Mapping):
            raise ValueError("'delta' must be an object")
        kept: dict[str, Any] = {}
        for key, value in delta.items():
            if value is None:
                continue  # (``"content": null`` beside a role: nothing)
            if key in self.texts and isinstance(value, str):
                rest = self._text(index, key, value)
                if rest:
                    kept[key] = rest
            elif key == "tool_calls" and isinstance(value, list):
                calls = [c for c in map(self._call, value) if c is not None]
                if calls:
                    kept[key] = calls
            elif key != "role" and self.covered:
                kept[key] = value
        out: dict[str, Any] = {k: v for k, v in raw.items() if k not in ("delta", "logprobs")}
        out["delta"] = kept
        logprobs = self._logprobs(raw.get("logprobs"))
        if logprobs is not None:
            out["logprobs"] = logprobs
        if kept and self.finished is not None:
            raise Diverged(f"choice {index} goes on past the end it was delivered with")
        finish = raw.get("finish_reason")
        if finish is not None:
            if not self.covered:
                raise Diverged(f"choice {index} ended ({finish}) before {self._where()}")
            if self.finished is not None:
                out["finish_reason"] = None  # (delivered already)
        if not kept and logprobs is None and out.get("finish_reason") is None:
            return None
        return out

    def _text(self, index: int, key: str, value: str) -> str:
        sent, at = self.texts[key], self.at.get(key, 0)
        n = max(0, min(len(value), len(sent) - at))
        if value[:n] != sent[at : at + n]:
            where = at + next(i for i in range(n) if value[i] != sent[at + i])
            raise Diverged(
                f"choice {index}'s {key} differs at character {where} of the {len(sent)} delivered"
            )
        self.at[key] = at + len(value)
        return value[n:]

    def _call(self, delta: object) -> object | None:
        if not isinstance(delta, Mapping) or delta.get("index") not in self.calls:
            return delta  # a call not delivered yet: new (the assembler checks it)
        k = delta["index"]
        name, arguments, has_id = self.calls[k]
        function = delta.get("function")
        function = function if isinstance(function, Mapping) else {}
        if function.get("name") is not None:
            if function["name"] != name:
                raise Diverged(f"tool call {k} calls {function['name']!r}, not {name!r}")
            self.named.add(k)
        out: dict[str, Any] = {"index": k}
        if not has_id and delta.get("id") is not None:
            out["id"] = delta["id"]
        fragment = function.get("arguments")
        if isinstance(fragment, str):
            at = self.call_at.get(k, 0)
            n = max(0, min(len(fragment), len(arguments) - at))
            if fragment[:n] != arguments[at : at + n]:
                raise Diverged(f"tool call {k}'s arguments differ after character {at}")
            self.call_at[k] = at + len(fragment)
            if fragment[n:]:
                out["function"] = {"arguments": fragment[n:]}
        return out if len(out) > 1 else None

    def _logprobs(self, raw: object) -> dict[str, Any] | None:
        if not isinstance(raw, Mapping):
            return None
        out: dict[str, Any] = {}
        for part, entries in raw.items():
            if not isinstance(entries, list) or part not in ("content", "refusal"):
                continue
            key = "lp:" + part
            at, sent = self.at.get(key, 0), self.logprobs.get(part, 0)
            self.at[key] = at + len(entries)
            rest = entries[max(0, sent - at) :]
            if rest:
                out[part] = rest
        return out or None

    def _where(self) -> str:
        parts = [f"{self.at.get(k, 0)} of {len(v)} {k} characters" for k, v in self.texts.items()]
        return "it reproduced what was delivered (" + ", ".join(parts) + ")"


class Resume:
    """What a broken stream had delivered, and the trimming of the next attempt's chunks.

    Attributes:
        strategy: ``"replay"`` or ``"continue"`` (what the next attempt does; a
            continuation that :func:`continuation` cannot make is a replay).
        reader: the broken attempt's reader, whose assembler, counters and queue the
            next reader takes over.
        error: the error that broke the stream: what the caller gets if it is not resumed.
        tokens: the chunks of content delivered for choice 0 (a server streams at least a
            token a chunk): what a continuation's ``max_tokens`` is reduced by.
    """

    def __init__(self, strategy: Restart, reader: Any, error: APIError) -> None:
        assembler: CompletionAssembler = reader.assembler
        self.reader = reader
        self.error = error
        self.assembler = assembler
        first = assembler.choices.get(0)
        self.tokens = len(first.content) if first is not None else 0
        self.text = assembler.text(0)
        self.strategy: Restart = (
            "continue" if strategy == "continue" and _continuable(assembler) else "replay"
        )
        self._sent = {i: _Sent.of(c) for i, c in assembler.choices.items()}
        self._left = set(self._sent)  # the choices whose delivered part is still ahead
        self._head = {"id": assembler.id, "created": assembler.created}
        self._usage_sent = assembler.usage is not None
        self.successor: Any = None
        """The reader that took this over (set by it), if any."""

    def trim(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """A chunk's JSON less what was delivered (``None``: nothing is left of it).

        Raises:
            Diverged: a replay differs from what was delivered.
            ValueError: the chunk is malformed.
        """
        if self.strategy == "continue":
            out = self._continued(payload)
        elif not self._left:  # (only the usage chunk may have been delivered already)
            out = None if self._usage_sent and not payload.get("choices") else payload
        else:
            out = self._replayed(payload)
        if out is None:
            return None
        if any(out.get(k) != v for k, v in self._head.items() if v):
            out = {**out, **{k: v for k, v in self._head.items() if v}}
        return out

    def _replayed(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        choices = payload.get("choices") or []
        if not isinstance(choices, list):
            return payload  # (the assembler says what is wrong)
        kept = []
        for raw in choices:
            index = raw.get("index", 0) if isinstance(raw, dict) else None
            sent = self._sent.get(index) if isinstance(index, int) else None
            if sent is None or index not in self._left:
                kept.append(raw)
                continue
            trimmed = sent.trim(index, raw)
            if sent.covered and (sent.finished is None or raw.get("finish_reason") is not None):
                self._left.discard(index)  # (from here on, its chunks are new)
            if trimmed is not None:
                kept.append(trimmed)
        if not kept and (choices or self._usage_sent):
            return None  # (all of it delivered, the usage chunk included)
        return {**payload, "choices": kept}

    def _continued(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        choices = payload.get("choices") or []
        out = dict(payload)
        if isinstance(choices, list):
            kept = []
            for raw in choices:
                delta = raw.get("delta") if isinstance(raw, dict) else None
                if isinstance(delta, dict) and ("role" in delta or delta.get("content") == ""):
                    delta = {k: v for k, v in delta.items() if k != "role" and v not in ("", None)}
                    raw = {**raw, "delta": delta}
                    if not delta and raw.get("finish_reason") is None and not raw.get("logprobs"):
                        continue
                kept.append(raw)
            if not kept and choices and payload.get("usage") is None:
                return None
            out["choices"] = kept
        usage = payload.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            out["usage"] = {
                **usage,
                "completion_tokens": usage["completion_tokens"] + self.tokens,
                "total_tokens": int(usage.get("total_tokens") or 0) + self.tokens,
            }
        return out

    def finish(self) -> None:
        """The next attempt's stream ended: it must have reproduced what was delivered.

        Raises:
            Diverged: a replay ended short of it.
        """
        if self.strategy == "continue":
            return
        for index in sorted(self._left):
            sent = self._sent[index]
            if not sent.covered:
                raise Diverged(f"the answer sent again ended before {sent._where()}")


def _continuable(assembler: CompletionAssembler) -> bool:
    """Whether a continuation can take over: one choice, with text, no tool call or
    refusal, not finished."""
    choice = assembler.choices.get(0)
    return (
        len(assembler.choices) == 1
        and choice is not None
        and bool(choice.content)
        and not choice.tools
        and not choice.refusal
        and choice.finish_reason is None
    )


def continuation(request: ChatRequest, resume: Resume) -> ChatRequest:
    """``request`` as the attempt that continues ``resume``'s text sends it: that text as a
    final assistant message, ``continue_final_message`` on, ``add_generation_prompt`` off,
    and ``max_tokens`` less the chunks delivered."""
    messages = (*request.messages, {"role": "assistant", "content": resume.text})
    extra = {
        **request.extra,
        "continue_final_message": True,
        "add_generation_prompt": False,
    }
    max_tokens = request.max_tokens
    if max_tokens is not None:
        max_tokens = max(1, max_tokens - resume.tokens)
    return replace(request, messages=messages, extra=extra, max_tokens=max_tokens)
