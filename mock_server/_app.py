"""The QuartTrio application: API routes, fault injection and admin routes."""

from __future__ import annotations

import hmac
import http
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ._answers import (
    completion_body,
    make_replies,
    parse_chat,
    stream_events,
    wants_tool_calls,
)
from ._config import DEFAULT_MODELS, MockConfig
from ._content import ChatRequest, Reply, RequestError, check_text
from ._determinism import body_key, digest, unit
from ._embeddings import EmbeddingRequest, embeddings_body, parse_embedding_request
from ._faults import STREAM_FAULT_KINDS, Fault
from ._guard import Denial, admin_denial, body_denial
from ._state import MockState, _Entry, retry_after_headers
from ._transport import CONNECTION_KEY, Connection, ConnectionMiddleware

__all__ = ["STATE_KEY", "create_app", "get_state"]

#: Key of the :class:`MockState` in ``app.extensions``.
STATE_KEY: Final = "mock_server"

_API_PREFIXES: Final = ("/api/v2", "/v1")
_SERVER_ERRORS: Final = (500, 502, 503, 504)
_RETRYABLE_BY_DEFAULT: Final = frozenset({502, 503})
_DRAIN_LIMIT: Final = 16 << 20
_LINGER: Final = 2.0
_MODELS_CREATED: Final = 1_700_000_000
_JSON: Final = "application/json"
_SSE_DONE: Final = b"data: [DONE]\n\n"
_ADMIN_PREFIX: Final = "/_mock/"
_STREAM_ERROR: Final = {
    "error": {
        "message": "The server had an error while streaming the response "
        "(injected by mock_server).",
        "type": "server_error",
        "param": None,
        "code": "stream_error",
    }
}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(_dumps(value), status=status, headers=headers, content_type=_JSON)


def _error_response(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if type_ is None:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
    envelope = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return _json_response(envelope, status, headers)


def _denial_response(denial: Denial) -> Response:
    return _error_response(
        denial.status, denial.message, code=denial.code, headers=dict(denial.headers)
    )


def _status_code_name(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def _sse(value: Any) -> bytes:
    return b"data: " + _dumps(value) + b"\n\n"


async def _linger() -> None:
    """After aborting a connection, wait for Hypercorn to notice and cancel us."""
    await trio.sleep(_LINGER)


def _status_of(kind: str, draw: int) -> int | None:
    """The HTTP status of an outcome: ``None`` for no response; ``draw`` picks a 5xx."""
    if kind == "server_error":
        return _SERVER_ERRORS[draw % len(_SERVER_ERRORS)]
    if kind == "rate_limit":
        return 429
    if kind.isdigit():
        return int(kind)
    return None if kind in ("hang", "reset", "close") else 200


def _inject_stream_fault(
    kind: str,
    events: list[bytes],
    replies: list[Reply],
    stall_after: int | None,
    completion_id: str,
) -> tuple[list[bytes], int, str]:
    """``(events to send, completion tokens among them, ending)`` of a stream drawing
    ``kind``.

    The ending is ``"end"`` (a clean end of the response), ``"close"`` (the connection
    is closed after the events) or ``"stall"`` (nothing more is sent, ever).  For ``n`` > 1
    the cut falls after the role chunks and half the content chunks of the choices.
    """
    choices = len(replies)
    tokens = sum(reply.completion_tokens for reply in replies)
    # events[:cut] = the role chunks + half the pieces (of one choice when n = 1)
    half = sum(len(reply.pieces) for reply in replies) // 2 if choices > 1 else None
    cut = choices + (len(replies[0].pieces) // 2 if half is None else half)
    if kind in ("stream_cut", "truncated"):
        return events[:cut], cut - choices, "close"
    if kind == "stream_error":
        return [*events[:cut], b"event: error\n" + _sse(_STREAM_ERROR)], cut - choices, "end"
    if kind == "stream_no_done":
        return events[:-1], tokens, "end"
    if kind == "stream_stall":
        sent = min(cut if stall_after is None else stall_after, len(events) - 1)
        return events[:sent], max(0, min(sent - choices, tokens)), "stall"
    if kind == "malformed":
        broken = b'data: {"id": "' + completion_id.encode() + b'", "choices": [\n\n'
        return [*events[:cut], broken, *events[cut:]], tokens, "end"
    return events, tokens, "end"


def _applies(kind: str, parsed: ChatRequest | EmbeddingRequest) -> bool:
    """Whether a fault drawn applies to this request (else it is served normally)."""
    chat = parsed if isinstance(parsed, ChatRequest) else None
    if kind in STREAM_FAULT_KINDS:
        return chat is not None and chat.stream
    if kind == "invalid_output":
        return chat is not None and chat.options.structured
    if kind == "tool_call_malformed":
        return chat is not None and wants_tool_calls(chat)
    return True


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _MODELS_CREATED, "owned_by": "lighton"}


def _charge(parsed: ChatRequest | EmbeddingRequest, config: MockConfig) -> int:
    """Tokens a request takes from the ``tpm`` quota: its prompt, plus for a chat its
    ``max_tokens`` (or ``default_max_tokens``)."""
    if isinstance(parsed, EmbeddingRequest):
        return parsed.prompt_tokens
    limit = parsed.max_tokens if parsed.max_tokens is not None else config.default_max_tokens
    return parsed.prompt_tokens + limit


def get_state(app: QuartTrio) -> MockState:
    """The :class:`MockState` of an app made by :func:`create_app`."""
    state = app.extensions.get(STATE_KEY)
    if not isinstance(state, MockState):
        raise LookupError("this app was not made by mock_server.create_app()")
    return state


def _connection() -> Connection:
    conn = request.scope.get(CONNECTION_KEY)
    if not isinstance(conn, Connection):
        raise RuntimeError("mock_server: ConnectionMiddleware is not installed")
    return conn


async def _read_body(limit: int) -> tuple[bytes, bool]:
    """The body (at most ``limit`` bytes kept) and whether it was larger than ``limit``.

    An oversized body is still read (and discarded) up to 16 MiB so that the 413
    reaches a client that is still sending.
    """
    declared = request.content_length
    body = bytearray()
    too_large = declared is not None and declared > limit
    seen = 0
    async for chunk in request.body:
        seen += len(chunk)
        if not too_large:
            body += chunk
            if len(body) > limit:
                too_large = True
        if seen > _DRAIN_LIMIT:
            break
    return bytes(body), too_large


class _Handlers:
    def __init__(self, state: MockState) -> None:
        self.state = state

    # -- auth ---------------------------------------------------------------------------

    def _auth_error(self, config: MockConfig) -> Response | None:
        if config.api_key is None:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            return _error_response(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        if not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            return _error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        return None

    # -- API routes -------------------------------------------------------------------------

    async def models(self) -> Response:
        config = self.state.config
        denied = self._auth_error(config)
        if denied is not None:
            return denied
        names = config.models if config.models is not None else DEFAULT_MODELS
        return _json_response({"object": "list", "data": [_model(name) for name in names]})

    async def model(self, model: str) -> Response:
        """``GET /models/{id}``: one of the listed models, or 404 ``model_not_found``."""
        config = self.state.config
        denied = self._auth_error(config)
        if denied is not None:
            return denied
        names = config.models if config.models is not None else DEFAULT_MODELS
        if model not in names:
            return _error_response(
                404,
                f"The model '{model[:100]}' does not exist",
                code="model_not_found",
                param="model",
            )
        return _json_response(_model(model))

    async def chat(self) -> Response:
        return await self._api(parse_chat)

    async def embeddings(self) -> Response:
        return await self._api(parse_embedding_request)

    async def _api(self, parse: Callable[..., ChatRequest | EmbeddingRequest]) -> Response:
        """An API request (chat or embeddings): checks, quotas, faults, then the answer."""
        state = self.state
        config = state.config
        conn = _connection()
        body, too_large = await _read_body(config.max_body_bytes)
        key = request.headers.get("Idempotency-Key") or body_key(body)
        entry = state.begin(key=key, path=request.path, request_id=conn.request_id)
        conn.entry = entry
        others_in_flight = state.in_flight - 1
        quota_on = config.rpm is not None or config.tpm is not None

        def reject(status: int, response: Response) -> Response:
            state.decide(entry, str(status), status)
            if quota_on:
                response.headers.update(state.quota_headers())
            return response

        if too_large:
            return reject(
                413,
                _error_response(
                    413,
                    f"Request body too large: the limit is {config.max_body_bytes} bytes.",
                    code="request_too_large",
                ),
            )
        denied = self._auth_error(config)
        if denied is not None:
            return reject(401, denied)
        try:
            parsed = parse(body, models=config.models)
        except RequestError as exc:
            return reject(
                exc.status,
                _error_response(exc.status, exc.message, code=exc.code, param=exc.param),
            )
        stream = isinstance(parsed, ChatRequest) and parsed.stream
        entry.model = parsed.model
        entry.stream = stream
        entry.prompt_tokens = parsed.prompt_tokens

        headers: dict[str, str] = {}
        fault = state.pop_script(key)
        if fault is not None:
            kind = fault.kind
            if quota_on:
                headers = state.quota_headers()
        else:
            if quota_on:
                decision = state.admit(_charge(parsed, config))
                headers = decision.headers
                if not decision.admitted:
                    return self._quota_rejection(
                        entry, decision.limited_by, decision.retry_after, headers
                    )
            kind = config.faults.pick(unit(config.seed, key, entry.attempt, "fault")) or "ok"
        if not _applies(kind, parsed):
            kind = "ok"

        if fault is not None and fault.latency is not None:
            delay = fault.latency
        else:
            delay = config.latency.sample(unit(config.seed, key, entry.attempt, "latency"))
            delay += config.load_latency * others_in_flight
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
        return _error_response(
            429, message, type_=limited_by, code="rate_limit_exceeded", headers=headers
        )

    async def _respond(
        self,
        conn: Connection,
        config: MockConfig,
        parsed: ChatRequest | EmbeddingRequest,
        kind: str,
        fault: Fault | None,
        delay: float,
        headers: dict[str, str],
    ) -> Response:
        state = self.state
        entry = conn.entry
        assert entry is not None
        seed, key, attempt = config.seed, entry.key, entry.attempt
        status = _status_of(kind, digest(seed, key, attempt, "status")[0])
        outcome = kind if status is None or status == 200 else str(status)
        state.decide(entry, outcome, status)

        if delay > 0:
            await trio.sleep(delay)

        if status is not None and status != 200:
            return self._fault_status(config, status, fault, headers)
        if kind == "hang":
            await trio.sleep_forever()
        if kind in ("reset", "close"):
            conn.reset() if kind == "reset" else conn.close()
            await _linger()
            return Response(b"", status=500)

        if isinstance(parsed, EmbeddingRequest):
            entry.completion_tokens = 0
            return self._payload(conn, kind, _dumps(embeddings_body(seed, parsed)), headers)
        try:
            replies = make_replies(seed, parsed, config.reply_tokens, kind)
        except RequestError as exc:  # a schema outside the subset the mock answers
            state.decide(entry, str(exc.status), exc.status)
            return _error_response(exc.status, exc.message, code=exc.code, param=exc.param)
        completion_id = "chatcmpl-" + digest(seed, "id", key, attempt).hex()[:29]
        created = int(time.time())
        if parsed.stream:
            stall_after = config.stall_after
            if fault is not None and fault.stall_after is not None:
                stall_after = fault.stall_after
            ids = (completion_id, created)
            return self._stream(conn, config, parsed, replies, kind, ids, headers, stall_after)
        entry.completion_tokens = sum(reply.completion_tokens for reply in replies)
        payload = _dumps(
            completion_body(
                completion_id=completion_id,
                created=created,
                request=parsed,
                replies=replies,
                seed=seed,
                kind=kind,
            )
        )
        return self._payload(conn, kind, payload, headers)

    def _payload(
        self, conn: Connection, kind: str, payload: bytes, headers: dict[str, str]
    ) -> Response:
        """A JSON answer, unless the fault drawn breaks it (malformed, truncated)."""
        if kind == "malformed":
            return Response(payload[: len(payload) // 2], headers=headers, content_type=_JSON)
        if kind == "truncated":
            return self._truncated(conn, payload, headers)
        return Response(payload, headers=headers, content_type=_JSON)

    def _fault_status(
        self, config: MockConfig, status: int, fault: Fault | None, headers: dict[str, str]
    ) -> Response:
        headers = dict(headers)
        retry_after = fault.retry_after if fault is not None else None
        if status == 429 and retry_after is None:
            retry_after = config.retry_after
        if retry_after is not None:
            headers.update(retry_after_headers(retry_after))
        should_retry = fault.should_retry if fault is not None else None
        if (
            should_retry is None
            and status in _RETRYABLE_BY_DEFAULT
            and (fault is None or fault.kind == "server_error")
        ):
            should_retry = True
        if should_retry is not None:
            headers["x-should-retry"] = "true" if should_retry else "false"
        if status == 429:
            wait = "" if retry_after is None else f" Please try again in {retry_after:g}s."
            return _error_response(
                429,
                f"Rate limit reached for requests (injected by mock_server).{wait}",
                type_="requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return _error_response(
            status,
            f"{phrase} (status {status}, injected by mock_server).",
            code=_status_code_name(status),
            headers=headers,
        )

    def _truncated(self, conn: Connection, payload: bytes, headers: dict[str, str]) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield payload[: len(payload) // 2]
            conn.close()
            await _linger()

        response = Response(body(), headers=headers, content_type=_JSON)
        response.headers["Content-Length"] = str(len(payload))
        return response

    def _stream(
        self,
        conn: Connection,
        config: MockConfig,
        chat: ChatRequest,
        replies: list[Reply],
        kind: str,
        ids: tuple[str, int],
        headers: dict[str, str],
        stall_after: int | None,
    ) -> Response:
        entry = conn.entry
        assert entry is not None
        completion_id, _created = ids
        events = stream_events(chat, replies, ids, config.seed, kind)
        events, entry.completion_tokens, ending = _inject_stream_fault(
            kind, events, replies, stall_after, completion_id
        )
        ttft = config.ttft.sample(unit(config.seed, entry.key, entry.attempt, "ttft"))
        token_delay = config.token_delay

        async def body() -> AsyncIterator[bytes]:
            if ttft > 0:
                await trio.sleep(ttft)
            for index, event in enumerate(events):
                if index and token_delay > 0:
                    await trio.sleep(token_delay)
                yield event
            if ending == "close":
                conn.close()
                await _linger()
            elif ending == "stall":
                await trio.sleep_forever()

        response = Response(body(), headers=headers, content_type="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.timeout = None
        return response

    # -- admin routes -------------------------------------------------------------------------

    async def admin_guard(self) -> Response | None:
        """Before every request: refuse an admin request a browser or a stranger made."""
        if not request.path.startswith(_ADMIN_PREFIX):
            return None
        denial = admin_denial(
            {name.lower(): value for name, value in request.headers.items()},
            method=request.method,
            admin_token=self.state.config.admin_token,
        )
        return None if denial is None else _denial_response(denial)

    async def admin_stats(self) -> Response:
        return _json_response(self.state.stats().to_dict())

    async def admin_requests(self) -> Response:
        records = [record.to_dict() for record in self.state.requests()]
        return _json_response({"object": "list", "data": records})

    async def _admin_json(self) -> Any:
        body, too_large = await _read_body(self.state.config.max_body_bytes)
        if too_large:
            raise RequestError("Request body too large.", code="request_too_large", status=413)
        denial = body_denial(request.headers.get("Content-Type"), has_body=bool(body))
        if denial is not None:
            raise RequestError(denial.message, code=denial.code, status=denial.status)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise RequestError("The body is not valid JSON.", code="invalid_json") from None
        check_text(data)
        return data

    async def admin_config(self) -> Response:
        if request.method == "POST":
            try:
                changes = await self._admin_json()
                if not isinstance(changes, dict):
                    raise RequestError(
                        "Expected a JSON object of MockConfig fields.", code="invalid_body"
                    )
                self.state.configure(**changes)
            except RequestError as exc:
                return _error_response(exc.status, exc.message, code=exc.code)
            except (ValueError, TypeError) as exc:
                return _error_response(400, str(exc), code="invalid_config")
        return _json_response(self.state.config.to_dict())

    async def admin_reset(self) -> Response:
        self.state.reset()
        return _json_response({"reset": True})

    async def admin_script(self) -> Response:
        try:
            data = await self._admin_json()
            if not isinstance(data, dict) or not isinstance(data.get("outcomes"), list):
                raise RequestError(
                    'Expected {"key": "...", "outcomes": [...]}.', code="invalid_body"
                )
            self.state.script(data.get("key"), data["outcomes"])  # type: ignore[arg-type]
        except RequestError as exc:
            return _error_response(exc.status, exc.message, code=exc.code)
        except (ValueError, TypeError) as exc:
            return _error_response(400, str(exc), code="invalid_script")
        return _json_response({"key": data["key"], "queued": len(data["outcomes"])})

    async def metrics(self) -> Response:
        return Response(
            self.state.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8"
        )


def create_app(config: MockConfig | None = None) -> QuartTrio:
    """The mock as a ``QuartTrio`` app (serve it with Hypercorn's trio worker).

    Its :class:`MockState` is ``app.extensions["mock_server"]`` (or :func:`get_state`).
    """
    state = MockState(config)
    app = QuartTrio("mock_server")
    app.config.update(MAX_CONTENT_LENGTH=None, RESPONSE_TIMEOUT=None, BODY_TIMEOUT=60)
    app.extensions[STATE_KEY] = state
    handlers = _Handlers(state)
    for prefix in _API_PREFIXES:
        name = prefix.strip("/").replace("/", "_")
        app.add_url_rule(
            f"{prefix}/chat/completions", f"chat_{name}", handlers.chat, methods=["POST"]
        )
        app.add_url_rule(f"{prefix}/models", f"models_{name}", handlers.models, methods=["GET"])
        app.add_url_rule(
            f"{prefix}/models/<path:model>", f"model_{name}", handlers.model, methods=["GET"]
        )
        app.add_url_rule(
            f"{prefix}/embeddings", f"embeddings_{name}", handlers.embeddings, methods=["POST"]
        )
    app.add_url_rule("/_mock/stats", "admin_stats", handlers.admin_stats, methods=["GET"])
    app.add_url_rule("/_mock/requests", "admin_requests", handlers.admin_requests, methods=["GET"])
    app.add_url_rule(
        "/_mock/config", "admin_config", handlers.admin_config, methods=["GET", "POST"]
    )
    app.add_url_rule("/_mock/reset", "admin_reset", handlers.admin_reset, methods=["POST"])
    app.add_url_rule("/_mock/script", "admin_script", handlers.admin_script, methods=["POST"])
    app.add_url_rule("/metrics", "metrics", handlers.metrics, methods=["GET"])
    app.before_request(handlers.admin_guard)

    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:
            message = f"Invalid URL ({request.method} {request.path})."
        elif status == 405:
            message = f"Method {request.method} is not allowed for {request.path}."
        else:
            message = error.description or http.HTTPStatus(status).phrase
        response = _error_response(status, message, code=_status_code_name(status))
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    async def internal_error(error: Exception) -> Response:
        app.logger.exception("mock_server: unhandled error", exc_info=error)
        return _error_response(500, "The mock server had an internal error.", code="internal_error")

    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, internal_error)
    app.asgi_app = ConnectionMiddleware(app.asgi_app, state)  # type: ignore[method-assign]
    return app
