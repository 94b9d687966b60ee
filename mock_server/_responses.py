"""Building blocks of the mock's HTTP exchanges, shared by the API and the admin routes:
JSON bodies, OpenAI error envelopes, reading a request body, the request's connection."""

from __future__ import annotations

import http
import json
from typing import Any, Final

import trio
from quart import Response, request

from ._transport import CONNECTION_KEY, Connection

__all__ = [
    "JSON",
    "connection",
    "dumps",
    "error_response",
    "json_response",
    "linger",
    "read_body",
    "status_code_name",
]

#: Content type of every JSON answer.
JSON: Final = "application/json"
_DRAIN_LIMIT: Final = 16 << 20
_LINGER: Final = 2.0


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(value), status=status, headers=headers, content_type=JSON)


def error_response(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An OpenAI error envelope; ``type_`` defaults to the usual one for ``status``."""
    if type_ is None:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
    envelope = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json_response(envelope, status, headers)


def status_code_name(status: int) -> str:
    """The ``code`` of an error envelope for ``status``: ``service_unavailable``..."""
    try:
        return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


async def linger() -> None:
    """After aborting a connection, wait for Hypercorn to notice and cancel us."""
    await trio.sleep(_LINGER)


def connection() -> Connection:
    """The :class:`Connection` of the current request."""
    conn = request.scope.get(CONNECTION_KEY)
    if not isinstance(conn, Connection):
        raise RuntimeError("mock_server: ConnectionMiddleware is not installed")
    return conn


async def read_body(limit: int) -> tuple[bytes, bool]:
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
