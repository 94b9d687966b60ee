"""``POST /tokenize``: a prompt's or a conversation's token count, by the model's own
tokenizer (LLMs only; the reference says it cannot be used on embedding models).

The reference shows three contradictory answers (``PARADIGM_API.md`` section 5), and
:meth:`TokenCount.from_json` reads all three:

* current: ``{"total_tokens", "request_model", "model_used", "tokenizer_type", "id", "model"}``;
* older: ``{"total_tokens", "model", "tokens": [int], "prompt_tokens", "object": "tokenization"}``;
* the guide's: ``{"id", "tokens": [{"This": 1182}, ...], "text", "n_tokens", "model"}``.

The count is ``total_tokens``, else ``n_tokens``, else ``prompt_tokens``, else the length
of ``tokens``; an answer with none of them is invalid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .._errors import APIResponseValidationError, InvalidRequestError
from ._completion import Usage
from ._encode import encode_json
from ._json_endpoint import check_text, obj, opt_str
from ._models import ChatRequest, check_custom_id, check_model, checked_extra

__all__ = ["TokenCount", "TokenizeRequest"]

_MODELLED = frozenset({"model", "prompt", "messages"})
_COUNT_KEYS = ("total_tokens", "n_tokens", "prompt_tokens")


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenizeRequest:
    """One ``POST /tokenize`` request: a ``prompt`` or ``messages`` (exactly one).

    Attributes:
        prompt: the text to count.
        messages: a conversation (``{"role", "content"}`` dicts), counted as the model's
            chat template lays it out.
        model: the LLM whose tokenizer counts (default: the client's ``model``).
        extra: more body fields, passed through.
        custom_id: a stable id for this logical request.
    """

    prompt: str | None = None
    messages: Sequence[Mapping[str, Any]] | None = None
    model: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    custom_id: str | None = None

    endpoint = "/tokenize"

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise InvalidRequestError("give exactly one of prompt and messages")
        if self.prompt is not None:
            check_text("prompt", self.prompt)
        if self.messages is not None:
            messages = self.messages
            if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
                raise InvalidRequestError(
                    f"messages must be a list of messages, got {type(messages).__name__}"
                )
            # Validated as a chat request's are (roles, content).
            checked = ChatRequest(messages=messages).messages
            object.__setattr__(self, "messages", checked)
        check_model(self.model)
        check_custom_id(self.custom_id)
        object.__setattr__(self, "extra", checked_extra(self.extra, _MODELLED))
        encode_json(self.to_body("m"))  # refuses what JSON cannot hold, now

    @classmethod
    def of(cls, value: object, **fields: Any) -> TokenizeRequest:
        """A request from a prompt (a string), messages (a list of dicts), a
        :class:`ChatRequest` (its messages and model) or a request already made."""
        given = _given(fields)
        if isinstance(value, TokenizeRequest):
            return replace(value, **given) if given else value
        if isinstance(value, ChatRequest):
            own = _given({"model": value.model, "custom_id": value.custom_id})
            return cls(messages=value.messages, **{**own, **given})
        if isinstance(value, str):
            return cls(prompt=value, **given)
        return cls(messages=value, **given)  # type: ignore[arg-type]

    def to_body(self, default_model: str) -> dict[str, Any]:
        """The JSON body sent to ``/tokenize``."""
        body: dict[str, Any] = {"model": self.model or default_model}
        if self.prompt is not None:
            body["prompt"] = self.prompt
        else:
            body["messages"] = [dict(m) for m in self.messages or ()]
        body.update(self.extra)
        return body

    def estimated_tokens(self) -> int:
        """0: counting tokens generates none (the request counts toward requests/min only)."""
        return 0

    @staticmethod
    def deterministic() -> bool:
        """Always: a tokenizer counts the same text the same way (equal requests may
        share one answer: a batch's dedupe, the response cache)."""
        return True

    def parse(self, data: object, request_id: str | None) -> TokenCount:
        """The answer as a :class:`TokenCount`."""
        return TokenCount.from_json(data, request_id)

    def usage(self, value: Any) -> Usage | None:
        """``None``: a count costs no model tokens."""
        return None


def _given(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True, slots=True)
class TokenCount:
    """The answer of ``/tokenize``.

    Attributes:
        count: the number of tokens.
        model: the model named in the answer (``model_used`` when given), if any.
        tokens: the tokens when the answer lists them (ids, or ``{piece: id}`` objects),
            else ``None``.
        id: the answer's id, if any.
        raw: the answer's JSON (every field, those not modelled included).
        request_id: the ``x-request-id`` of the response, if any.
    """

    count: int
    model: str | None = None
    tokens: tuple[Any, ...] | None = None
    id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    request_id: str | None = None

    @classmethod
    def from_json(cls, data: object, request_id: str | None = None) -> TokenCount:
        """Parse any of the three documented shapes; :class:`APIResponseValidationError`
        when the answer holds no count."""
        answer = obj(data, "the /tokenize response", request_id)
        tokens = answer.get("tokens")
        listed = tuple(tokens) if isinstance(tokens, list) else None
        count = next(
            (
                answer[k]
                for k in _COUNT_KEYS
                if isinstance(answer.get(k), int) and not isinstance(answer[k], bool)
            ),
            len(listed) if listed is not None else None,
        )
        if count is None or count < 0:
            raise APIResponseValidationError(
                "the /tokenize response has no token count (total_tokens, n_tokens, "
                "prompt_tokens or tokens)",
                body=data,
                request_id=request_id,
            )
        model = opt_str(answer, "model_used") or opt_str(answer, "model")
        return cls(count, model, listed, opt_str(answer, "id"), answer, request_id)
