"""What a fault drawn (or scripted) does to an answer: whether it applies to the request,
the status it answers with, the headers of an injected error, a broken JSON body.

Streamed answers break in :mod:`._streaming`; the connection-level faults (``hang``,
``reset``, ``close``) are acted out by the API routes.
"""

from __future__ import annotations

import http
from collections.abc import AsyncIterator
from typing import Final

from quart import Response

from ._answers import wants_tool_calls
from ._config import MockConfig
from ._content import ChatRequest
from ._faults import STREAM_FAULT_KINDS, TOOL_FAULT_KINDS, Fault
from ._responses import JSON, error_response, linger, status_code_name
from ._state import retry_after_headers
from ._transport import Connection

__all__ = ["applies", "fault_status_response", "payload_response", "status_of"]

_SERVER_ERRORS: Final = (500, 502, 503, 504)
_RETRYABLE_BY_DEFAULT: Final = frozenset({502, 503})


def status_of(kind: str, draw: int) -> int | None:
    """The HTTP status of an outcome: ``None`` for no response; ``draw`` picks a 5xx."""
    if kind == "server_error":
        return _SERVER_ERRORS[draw % len(_SERVER_ERRORS)]
    if kind == "rate_limit":
        return 429
    if kind.isdigit():
        return int(kind)
    return None if kind in ("hang", "reset", "close") else 200


def applies(kind: str, parsed: object) -> bool:
    """Whether a fault drawn applies to this request (else it is served normally)."""
    chat = parsed if isinstance(parsed, ChatRequest) else None
    if kind in STREAM_FAULT_KINDS:
        return getattr(parsed, "stream", False) is True
    if kind == "invalid_output":
        return chat is not None and chat.options.structured
    if kind in TOOL_FAULT_KINDS:
        return chat is not None and wants_tool_calls(chat)
    return True


def payload_response(
    conn: Connection, kind: str, payload: bytes, headers: dict[str, str], *, status: int = 200
) -> Response:
    """A JSON answer, unless the fault drawn breaks it (malformed, truncated)."""
    if kind == "malformed":
        return Response(
            payload[: len(payload) // 2], status=status, headers=headers, content_type=JSON
        )
    if kind == "truncated":
        return _truncated(conn, payload, headers, status)
    return Response(payload, status=status, headers=headers, content_type=JSON)


def _truncated(conn: Connection, payload: bytes, headers: dict[str, str], status: int) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield payload[: len(payload) // 2]
        conn.close()
        await linger()

    response = Response(body(), status=status, headers=headers, content_type=JSON)
    response.headers["Content-Length"] = str(len(payload))
    return response


def fault_status_response(
    config: MockConfig, status: int, fault: Fault | None, headers: dict[str, str]
) -> Response:
    """The error answer of an injected status (a 429, a 5xx or a scripted 4xx)."""
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
        return error_response(
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
    return error_response(
        status,
        f"{phrase} (status {status}, injected by mock_server).",
        code=status_code_name(status),
        headers=headers,
    )
