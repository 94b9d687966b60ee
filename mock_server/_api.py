"""The API routes (``/chat/completions``, ``/embeddings``, ``/models``) under each prefix:
auth, quotas, the fault each request draws (or is scripted), then the answer.

:meth:`ApiRoutes.handle` is that path for any request; the Paradigm routes
(:mod:`._paradigm_routes`) hand it their parsers (:class:`~._plain.PlainRequest`)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import trio
from quart import Response, request
from quart_trio import QuartTrio

from ._answers import completion_body, make_replies, parse_chat
from ._config import DEFAULT_MODELS, MockConfig
from ._content import ChatRequest, RequestError
from ._determinism import body_key, digest, unit
from ._embeddings import EmbeddingRequest, embeddings_body, parse_embedding_request
from ._faults import Fault
from ._injection import applies, fault_status_response, payload_response, status_of
from ._plain import PlainRequest
from ._responses import connection, dumps, error_response, json_response, linger, read_body
from ._state import MockState, _Entry, retry_after_headers
from ._streaming import Where, plain_stream_response, stream_response
from ._transport import Connection

__all__ = ["API_PREFIXES", "ApiRoutes", "Parse", "ReadBody", "Received", "add_api_routes"]

#: The prefixes every API route is served under.
API_PREFIXES: Final = ("/api/v2", "/v1")
_MODELS_CREATED: Final = 1_700_000_000
_BODILESS: Final = frozenset({"GET", "DELETE", "HEAD"})

_Parsed = ChatRequest | EmbeddingRequest | PlainRequest
#: A parser: the body read (bytes, or what a :data:`ReadBody` made of it) -> a request.
Parse = Callable[..., _Parsed]


@dataclass(frozen=True, slots=True)
class Received:
    """A request body as read: what the parser gets, whether it passed ``limit`` bytes,
    and the request key when the request has no ``Idempotency-Key``."""

    payload: object
    too_large: bool
    key: str
    limit: int | None


#: How a route reads its body (default: whole, up to ``max_body_bytes``).
ReadBody = Callable[[MockConfig], Awaitable[Received]]


async def _read_json_body(config: MockConfig) -> Received:
    body, too_large = await read_body(config.max_body_bytes)
    if request.method in _BODILESS and not body:
        key = body_key(f"{request.method} {request.full_path}".encode())
    else:
        key = body_key(body)
    return Received(body, too_large, key, config.max_body_bytes)


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _MODELS_CREATED, "owned_by": "lighton"}


def _charge(parsed: _Parsed, config: MockConfig) -> int:
    """Tokens a request takes from the ``tpm`` quota: its prompt, plus for a chat its
    ``max_tokens`` (or ``default_max_tokens``); a plain request's ``quota_tokens``."""
    if isinstance(parsed, EmbeddingRequest):
        return parsed.prompt_tokens
    if not isinstance(parsed, ChatRequest):
        return parsed.quota_tokens
    limit = parsed.max_tokens if parsed.max_tokens is not None else config.default_max_tokens
    return parsed.prompt_tokens + limit


def _quota_on(config: MockConfig) -> bool:
    return config.rpm is not None or config.tpm is not None


def auth_error(config: MockConfig) -> Response | None:
    if config.api_key is None:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header or scheme.lower() != "bearer" or not token.strip():
        return error_response(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="invalid_api_key",
        )
    if not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
        return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
    return None


class ApiRoutes:
    """The chat, embeddings and model routes, and the path every API request takes."""

    def __init__(self, state: MockState) -> None:
        self.state = state

    async def models(self) -> Response:
        config = self.state.config
        denied = auth_error(config)
        if denied is not None:
            return denied
        names = config.models if config.models is not None else DEFAULT_MODELS
        return json_response({"object": "list", "data": [_model(name) for name in names]})

    async def model(self, model: str) -> Response:
        """``GET /models/{id}``: one of the listed models, or 404 ``model_not_found``."""
        config = self.state.config
        denied = auth_error(config)
        if denied is not None:
            return denied
        names = config.models if config.models is not None else DEFAULT_MODELS
        if model not in names:
            return error_response(
                404,
                f"The model '{model[:100]}' does not exist",
                code="model_not_found",
                param="model",
            )
        return json_response(_model(model))

    async def chat(self) -> Response:
        return await self.handle(parse_chat)

    async def embeddings(self) -> Response:
        strings_only = self.state.config.embeddings_strings_only

        def parse(body: bytes, *, models: tuple[str, ...] | None) -> EmbeddingRequest:
            return parse_embedding_request(body, models=models, strings_only=strings_only)

        return await self.handle(parse)

    async def handle(self, parse: Parse, read: ReadBody = _read_json_body) -> Response:
        """An API request: its body read, checks, quotas, faults, then the answer.

        The request key is the ``Idempotency-Key`` header, else a hash of the body (of
        the method and the path with its query for a request without a body).
        """
        state = self.state
        config = state.config
        conn = connection()
        received = await read(config)
        key = request.headers.get("Idempotency-Key") or received.key
        entry = state.begin(key=key, path=request.path, request_id=conn.request_id)
        conn.entry = entry
        others_in_flight = state.in_flight - 1
        parsed = self._parse(config, entry, parse, received)
        if isinstance(parsed, Response):
            return parsed
        entry.model = parsed.model
        entry.stream = getattr(parsed, "stream", False) is True
        entry.prompt_tokens = parsed.prompt_tokens
        return await self._draw(conn, config, parsed, others_in_flight)

    def _parse(
        self,
        config: MockConfig,
        entry: _Entry,
        parse: Parse,
        received: Received,
    ) -> _Parsed | Response:
        """The request parsed, or the answer refusing it (too large, no key, invalid)."""

        def reject(status: int, response: Response) -> Response:
            self.state.decide(entry, str(status), status)
            if _quota_on(config):
                response.headers.update(self.state.quota_headers())
            return response

        if received.too_large:
            return reject(
                413,
                error_response(
                    413,
                    f"Request body too large: the limit is {received.limit} bytes.",
                    code="request_too_large",
                ),
            )
        denied = auth_error(config)
        if denied is not None:
            return reject(401, denied)
        try:
            return parse(received.payload, models=config.models)
        except RequestError as exc:
            return reject(
                exc.status,
                error_response(exc.status, exc.message, code=exc.code, param=exc.param),
            )

    async def _draw(
        self, conn: Connection, config: MockConfig, parsed: _Parsed, others_in_flight: int
    ) -> Response:
        """The outcome of an accepted request: its script, else the quota's verdict and
        a fault drawn; then its delay and its answer."""
        state = self.state
        entry = conn.entry
        assert entry is not None
        key = entry.key
        headers: dict[str, str] = {}
        fault = state.pop_script(key)
        if fault is not None:
            kind = fault.kind
            if _quota_on(config):
                headers = state.quota_headers()
        else:
            if _quota_on(config):
                decision = state.admit(_charge(parsed, config))
                headers = decision.headers
                if not decision.admitted:
                    return self._quota_rejection(
                        entry, decision.limited_by, decision.retry_after, headers
                    )
            kind = config.faults.pick(unit(config.seed, key, entry.attempt, "fault")) or "ok"
        straggles = kind == "straggler"
        if straggles or not applies(kind, parsed):
            kind = "ok"

        if fault is not None and fault.latency is not None:
            delay = fault.latency
        else:
            delay = config.latency.sample(unit(config.seed, key, entry.attempt, "latency"))
            delay += config.load_latency * others_in_flight
        if fault is None:
            draw = unit(config.seed, key, entry.attempt, "straggler")
            straggles = config.stragglers.multiplier(draw) > 1.0
        if straggles:
            entry.straggler = True
            delay *= config.stragglers.factor
        return await self._respond(conn, config, parsed, kind, fault, delay, headers)

    def _quota_rejection(
        self,
        entry: _Entry,
        limited_by: str | None,
        retry_after: float | None,
        headers: dict[str, str],
    ) -> Response:
        self.state.decide(entry, "quota", 429)
        config = self.state.config
        limit = config.rpm if limited_by == "requests" else config.tpm
        if retry_after is None:
            headers = {**headers, "x-should-retry": "false"}
            message = (
                f"Request too large: it needs more {limited_by} than the per-minute limit "
                f"of {limit}."
            )
        else:
            headers = {**headers, **retry_after_headers(retry_after)}
            message = (
                f"Rate limit reached for {limited_by} per min (limit {limit}). "
                f"Please try again in {retry_after:.3f}s."
            )
        return error_response(
            429, message, type_=limited_by, code="rate_limit_exceeded", headers=headers
        )

    async def _respond(
        self,
        conn: Connection,
        config: MockConfig,
        parsed: _Parsed,
        kind: str,
        fault: Fault | None,
        delay: float,
        headers: dict[str, str],
    ) -> Response:
        """Record the outcome, wait ``delay``, then act it out."""
        entry = conn.entry
        assert entry is not None
        status = status_of(kind, digest(config.seed, entry.key, entry.attempt, "status")[0])
        outcome = kind if status is None or status == 200 else str(status)
        self.state.decide(entry, outcome, status)

        if delay > 0:
            await trio.sleep(delay)

        if status is not None and status != 200:
            return fault_status_response(config, status, fault, headers)
        if kind == "hang":
            await trio.sleep_forever()
        if kind in ("reset", "close"):
            conn.reset() if kind == "reset" else conn.close()
            await linger()
            return Response(b"", status=500)
        if isinstance(parsed, EmbeddingRequest):
            entry.completion_tokens = 0
            payload = dumps(embeddings_body(config.seed, parsed))
            return payload_response(conn, kind, payload, headers)
        if isinstance(parsed, ChatRequest):
            return self._chat_answer(conn, config, parsed, kind, fault, headers)
        try:
            answer = parsed.answer(self.state)
        except RequestError as exc:  # the state says no (a file gone meanwhile)
            self.state.decide(entry, str(exc.status), exc.status)
            return error_response(exc.status, exc.message, code=exc.code, param=exc.param)
        if answer.stream is not None:
            where = Where.of(config, fault, kind)
            return plain_stream_response(conn, config, answer.stream, kind, headers, where)
        entry.completion_tokens = answer.completion_tokens
        if entry.status == 200:
            entry.status = answer.status
        if answer.status == 204:
            return Response(b"", status=204, headers=headers)
        return payload_response(conn, kind, dumps(answer.body), headers, status=answer.status)

    def _chat_answer(
        self,
        conn: Connection,
        config: MockConfig,
        chat: ChatRequest,
        kind: str,
        fault: Fault | None,
        headers: dict[str, str],
    ) -> Response:
        """The answer to a chat request, streamed or not, broken as ``kind`` says."""
        entry = conn.entry
        assert entry is not None
        seed, key, attempt = config.seed, entry.key, entry.attempt
        try:
            replies = make_replies(seed, chat, config.reply_tokens, kind)
        except RequestError as exc:  # a schema outside the subset the mock answers
            self.state.decide(entry, str(exc.status), exc.status)
            return error_response(exc.status, exc.message, code=exc.code, param=exc.param)
        completion_id = "chatcmpl-" + digest(seed, "id", key, attempt).hex()[:29]
        created = int(time.time())
        if chat.stream:
            ids = (completion_id, created)
            where = Where.of(config, fault, kind)
            return stream_response(conn, config, chat, replies, kind, ids, headers, where)
        entry.completion_tokens = sum(reply.completion_tokens for reply in replies)
        payload = dumps(
            completion_body(
                completion_id=completion_id,
                created=created,
                request=chat,
                replies=replies,
                seed=seed,
                kind=kind,
            )
        )
        return payload_response(conn, kind, payload, headers)


def add_api_routes(app: QuartTrio, state: MockState) -> ApiRoutes:
    """Serve the API of ``state`` under ``/api/v2`` and ``/v1``; return its routes."""
    routes = ApiRoutes(state)
    for prefix in API_PREFIXES:
        name = prefix.strip("/").replace("/", "_")
        app.add_url_rule(
            f"{prefix}/chat/completions", f"chat_{name}", routes.chat, methods=["POST"]
        )
        app.add_url_rule(f"{prefix}/models", f"models_{name}", routes.models, methods=["GET"])
        app.add_url_rule(
            f"{prefix}/models/<path:model>", f"model_{name}", routes.model, methods=["GET"]
        )
        app.add_url_rule(
            f"{prefix}/embeddings", f"embeddings_{name}", routes.embeddings, methods=["POST"]
        )
    return routes
