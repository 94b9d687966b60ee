"""``POST /completions``: the legacy text completion (``PARADIGM_API.md`` section 2).

Request: ``model`` (required; the client's when not given), ``prompt``, and the
OpenAI-style sampling fields.  Answer: ``{"id", "object": "text_completion", "created",
"model", "choices": [{"text", "index", "finish_reason"}], "usage"}``; the text is at
``choices[0].text``.  Not streamed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import APIResponseValidationError, InvalidRequestError
from ._completion import Usage
from ._encode import encode_json
from ._json_endpoint import given_fields, obj, opt_int, opt_str, req_list
from ._models import check_custom_id, check_model, checked_extra

__all__ = ["CompletionRequest", "TextCompletion"]

_FIELDS = ("max_tokens", "temperature", "top_p", "n", "stop", "seed")
_MODELLED = frozenset({"model", "prompt", "stream", *_FIELDS})


@dataclass(frozen=True, slots=True)
class TextCompletion:
    """The answer of ``/completions``.

    Attributes:
        texts: the text of each choice, in order.
        model: the model that answered, if given.
        usage: the tokens, when the server reports them.
        id: the answer's id, if any.
        raw: the answer's JSON.
        request_id: the response's ``x-request-id``, if any.
    """

    texts: tuple[str, ...]
    model: str | None = None
    usage: Usage | None = None
    id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    request_id: str | None = None

    @property
    def text(self) -> str:
        """The first choice's text."""
        return self.texts[0]

    @classmethod
    def from_json(cls, data: object, request_id: str | None = None) -> TextCompletion:
        """Parse the answer; at least one choice with a ``text`` string."""
        body = obj(data, "the /completions response", request_id)
        texts = []
        for choice in req_list(body, "choices", "the /completions response", request_id):
            text = choice.get("text") if isinstance(choice, dict) else None
            if not isinstance(text, str):
                raise APIResponseValidationError(
                    "a /completions choice has no 'text'", body=data, request_id=request_id
                )
            texts.append(text)
        if not texts:
            raise APIResponseValidationError(
                "the /completions response has no choice", body=data, request_id=request_id
            )
        usage = body.get("usage")
        parsed = None
        if isinstance(usage, dict):
            prompt, completion = (
                opt_int(usage, "prompt_tokens"),
                opt_int(usage, "completion_tokens"),
            )
            total = opt_int(usage, "total_tokens")
            if prompt is not None or total is not None:
                p, c = prompt or 0, completion or 0
                parsed = Usage(p, c, total if total is not None else p + c)
        return cls(
            tuple(texts), opt_str(body, "model"), parsed, opt_str(body, "id"), body, request_id
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class CompletionRequest:
    """One legacy ``POST /completions`` request.

    Attributes:
        prompt: the text to continue.
        model: the model (default: the client's ``model``).
        max_tokens, temperature, top_p, n, stop, seed: sampling, as OpenAI's.
        extra: more body fields, passed through (``echo``, ``logprobs``, ``suffix``...).
        custom_id: a stable id for this logical request.
    """

    prompt: str
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | Sequence[str] | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    custom_id: str | None = None

    endpoint = "/completions"

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise InvalidRequestError(f"prompt must be a string, got {self.prompt!r:.200}")
        for name in ("max_tokens", "n", "seed"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidRequestError(f"{name} must be an integer, got {value!r}")
        check_model(self.model)
        check_custom_id(self.custom_id)
        object.__setattr__(self, "extra", checked_extra(self.extra, _MODELLED))
        encode_json(self.to_body("m"))

    def to_body(self, default_model: str) -> dict[str, Any]:
        """The JSON body (the fields given; never streamed)."""
        body: dict[str, Any] = {
            "model": self.model or default_model,
            "prompt": self.prompt,
            **given_fields(self, _FIELDS),
        }
        body.update(self.extra)
        return body

    def estimated_tokens(self) -> int:
        """About four characters a token of the prompt, plus ``max_tokens``."""
        return len(self.prompt) // 4 + 1 + (self.max_tokens or 0)

    def deterministic(self) -> bool:
        """Greedy (``temperature=0``) or seeded: equal requests get equal answers."""
        return self.temperature == 0 or self.seed is not None

    def parse(self, data: object, request_id: str | None) -> TextCompletion:
        """The answer as a :class:`TextCompletion`."""
        return TextCompletion.from_json(data, request_id)

    def usage(self, value: Any) -> Usage | None:
        """The answer's usage."""
        return value.usage if isinstance(value, TextCompletion) else None
