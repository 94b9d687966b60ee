"""The chat completions endpoint (``POST /chat/completions``), plain or streamed (a
:class:`~._endpoint.StreamingEndpoint`: its streamed responses read by ``_chunks``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import httpx2

from .._attempt_failure import AttemptFailure
from .._errors import ToolCallError
from ._chunks import StreamReader
from ._completion import ChatCompletion, Usage, checked_output, completion_parser
from ._models import ChatRequest
from ._resume import Resume, continuation
from ._structured import OutputSchema, ToolCallRules

if TYPE_CHECKING:
    from .._http._http import HTTP
    from .._redact import Redactor

__all__ = ["ChatEndpoint"]


class ChatEndpoint:
    """Chat completions, as a :class:`~._endpoint.StreamingEndpoint` (an
    :class:`~._endpoint.Endpoint` whose answers can also be streamed)."""

    __slots__ = ("model", "redactor")

    operation: Final = "chat"
    path: Final = "/chat/completions"
    idempotent: Final = True  # (no state on the server: resent after any retryable failure)
    token_types: Final = ("input", "output")

    def __init__(self, model: str, redactor: Redactor | None = None) -> None:
        self.model = model
        self.redactor = redactor
        """Scrubs the API key from the errors built of an answer (its tool calls, its
        structured output)."""

    def encode(self, request: ChatRequest) -> bytes:
        return request.encoded(self.model)

    def encode_stream(self, request: ChatRequest, include_usage: bool = True) -> bytes:
        """The body with ``"stream": true`` and, unless ``include_usage`` is false,
        ``stream_options.include_usage`` (the request's other stream options kept)."""
        body = request.to_body(self.model)
        body["stream"] = True
        if include_usage:
            options = body.get("stream_options")
            body["stream_options"] = {
                **(options if isinstance(options, Mapping) else {}),
                "include_usage": True,
            }
        return request.encode_body(body)

    @staticmethod
    def stream_reader(
        http: HTTP, response: httpx2.Response, resume: Resume | None = None
    ) -> StreamReader:
        return StreamReader(http, response, resume)

    def stream_parser(self, request: ChatRequest) -> Callable[[StreamReader], ChatCompletion]:
        """The assembled completion, checked against ``output=`` and the tools offered."""
        return functools.partial(_streamed, request.output, self.tool_rules(request), self.redactor)

    @staticmethod
    def deterministic(request: ChatRequest) -> bool:
        """Greedy (``temperature=0``) or seeded: equal requests get equal answers."""
        return request.temperature == 0 or request.seed is not None

    def tool_rules(self, request: ChatRequest) -> ToolCallRules | None:
        """The checks of ``request``'s tool calls (``None``: none offered, or not checked)."""
        return ToolCallRules.of(request.tools, request.validate_tool_calls, self.redactor)

    def parser(self, request: ChatRequest) -> Callable[[object, str | None], ChatCompletion]:
        return completion_parser(request.output, self.tool_rules(request), self.redactor)

    def follow_up(
        self, request: ChatRequest, stream: bool = False
    ) -> Callable[[AttemptFailure], ChatRequest | None] | None:
        """A request with tools checked: the re-ask after an invalid call tells the model
        what was wrong with it (see :meth:`ToolCallRules.request_for`).  A live stream
        resumed by ``"continue"``: the delivered text to continue (``_resume``)."""
        if not stream and not (request.tools and request.validate_tool_calls):
            return None  # (no rules: ``ToolCallRules.of`` says so, without building them)
        return functools.partial(_follow_up, self.tool_rules(request), request)

    @staticmethod
    def usage(answer: ChatCompletion) -> Usage | None:
        return answer.usage

    @staticmethod
    def request_attributes(request: ChatRequest) -> Iterator[tuple[str, Any]]:
        for name, value in (
            ("temperature", request.temperature),
            ("max_tokens", request.max_tokens),
            ("top_p", request.top_p),
            ("seed", request.seed),
            ("presence_penalty", request.presence_penalty),
            ("frequency_penalty", request.frequency_penalty),
        ):
            if value is not None:
                yield f"gen_ai.request.{name}", value
        if request.stop is not None:
            stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop)
            yield "gen_ai.request.stop_sequences", stop

    @staticmethod
    def answer_attributes(answer: Any) -> Iterator[tuple[str, Any]]:
        if not isinstance(answer, ChatCompletion):
            return
        if answer.id:
            yield "gen_ai.response.id", answer.id
        if answer.model:
            yield "gen_ai.response.model", answer.model
        reasons = tuple(c.finish_reason for c in answer.choices if c.finish_reason is not None)
        if reasons:
            yield "gen_ai.response.finish_reasons", reasons

    @staticmethod
    def content_attributes(request: ChatRequest, answer: Any) -> Iterator[tuple[str, str]]:
        """The messages, in the conventions' JSON form (opt-in only: they are user data)."""
        sent = [_message(m.get("role"), m.get("content")) for m in request.messages]
        yield "gen_ai.input.messages", json.dumps(sent, ensure_ascii=False)
        if isinstance(answer, ChatCompletion):
            received = [
                {**_message(c.message.role, c.message.content), "finish_reason": c.finish_reason}
                for c in answer.choices
            ]
            yield "gen_ai.output.messages", json.dumps(received, ensure_ascii=False)


def _follow_up(
    rules: ToolCallRules | None, request: ChatRequest, failure: AttemptFailure
) -> ChatRequest | None:
    error, resume = failure.error, failure.resume
    if rules is not None and isinstance(error, ToolCallError):
        return rules.request_for(request, error)
    if isinstance(resume, Resume):
        return continuation(request, resume) if resume.strategy == "continue" else request
    return None


def _streamed(
    output: OutputSchema | None,
    rules: ToolCallRules | None,
    redactor: Redactor | None,
    reader: StreamReader,
) -> ChatCompletion:
    return checked_output(reader.completion(), output, rules, redactor)


def _message(role: object, content: object) -> dict[str, Any]:
    if isinstance(content, str):
        parts: list[Any] = [{"type": "text", "content": content}]
    elif content is None:
        parts = []
    else:  # already structured (e.g. a list of parts): kept as it is
        parts = content if isinstance(content, list) else [content]
    return {"role": role, "parts": parts}
