"""Log probabilities of an answer's tokens (``logprobs=True``, ``top_logprobs=N``).

``choices[i].logprobs`` of a completion: ``{"content": [token, ...], "refusal": ...}``,
each token ``{"token", "logprob", "bytes", "top_logprobs": [...]}``.  A stream sends them
a few tokens a chunk; joined in order they are the same list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._numbers import finite

__all__ = ["ChoiceLogprobs", "TokenLogprob", "TopLogprob", "parse_logprobs"]


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One of the most likely tokens at a position.

    Attributes:
        token: the token's text.
        logprob: its log probability (0 for certainty, negative otherwise).
        bytes: its UTF-8 bytes, when the server sent them (a token may be part of a
            character).
    """

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A token of the answer, its log probability and the most likely alternatives.

    Attributes:
        token, logprob, bytes: as in :class:`TopLogprob`.
        top_logprobs: the ``top_logprobs`` most likely tokens at this position.
    """

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top_logprobs: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ChoiceLogprobs:
    """The log probabilities of one choice.

    Attributes:
        content: one entry per token of the content, or ``None``.
        refusal: one entry per token of a refusal, or ``None``.
        raw: the JSON.
    """

    content: tuple[TokenLogprob, ...] | None
    refusal: tuple[TokenLogprob, ...] | None = None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


def _bytes(value: object) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(b, int) for b in value):
        raise TypeError("'bytes' must be a list of integers")
    return tuple(value)


def _token(raw: object, top: bool) -> Any:
    if not isinstance(raw, dict):
        raise TypeError("a logprobs entry must be an object")
    token, logprob = raw["token"], raw["logprob"]
    if not isinstance(token, str) or isinstance(logprob, bool):
        raise TypeError("a logprobs entry needs a string 'token' and a number 'logprob'")
    if top:
        return TopLogprob(token, finite(logprob, "logprob"), _bytes(raw.get("bytes")))
    tops = raw.get("top_logprobs") or []
    if not isinstance(tops, list):
        raise TypeError("'top_logprobs' must be a list")
    return TokenLogprob(
        token,
        finite(logprob, "logprob"),
        _bytes(raw.get("bytes")),
        tuple(_token(t, True) for t in tops),
    )


def _tokens(value: object) -> tuple[TokenLogprob, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise TypeError("logprobs 'content' and 'refusal' must be lists")
    return tuple(_token(t, False) for t in value)


def parse_logprobs(raw: object) -> ChoiceLogprobs | None:
    """A choice's ``logprobs`` (``None`` when absent); ``TypeError``/``KeyError`` when
    malformed."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError("'logprobs' must be an object")
    return ChoiceLogprobs(_tokens(raw.get("content")), _tokens(raw.get("refusal")), raw)
