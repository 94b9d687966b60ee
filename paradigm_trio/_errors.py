"""The exceptions paradigm-trio raises.

One root, with the names the OpenAI SDK uses so that users recognise them::

    ParadigmError                      anything this library raises on purpose
    ├── ConfigurationError             bad arguments or environment (also a ValueError)
    ├── InvalidRequestError            a request that cannot be sent (also a ValueError)
    ├── APIError                       a request to the API did not produce a completion
    │   ├── APIStatusError             the server answered with a non-2xx status
    │   │   ├── BadRequestError            400
    │   │   ├── AuthenticationError        401
    │   │   ├── PermissionDeniedError      403
    │   │   ├── NotFoundError              404
    │   │   ├── ConflictError              409
    │   │   ├── UnprocessableEntityError   422
    │   │   ├── RateLimitError             429
    │   │   └── InternalServerError        5xx
    │   ├── APIConnectionError         no usable response: connect/read/protocol errors
    │   │   ├── APITimeoutError            a timeout fired (``.which`` says which one)
    │   │   ├── IncompleteStreamError      a stream broke or ended before it was complete
    │   │   ├── ServerUnreachableError     a batch's circuit breaker gave up on the server
    │   │   ├── CertificateVerificationError  the server's TLS certificate does not verify
    │   │   └── ProxyError                 the proxy refused to carry the request (407, 403)
    │   ├── APIResponseValidationError a 2xx whose body is not what the API promises
    │   │   ├── StructuredOutputError      an answer that does not match ``output=``
    │   │   └── ToolCallError              a tool call that does not match the ``tools`` offered
    │   └── RequestCancelled           stopped by a deadline
    ├── BatchError                     a batch with ``on_error="raise"`` hit a failure
    │   └── SystematicFailureError         a batch's first answers were all one
    │                                      configuration failure (a wrong key, URL...):
    │                                      in ``_diagnosis``, with :func:`diagnose`
    └── QuotaUnavailableError          a shared quota's Redis did not answer (``quota_state``)

Every :class:`APIError` carries keyword-only context: the HTTP ``status_code`` (when there
was a response), the server's ``request_id`` (``x-request-id``), the parsed ``body``, and
``attempts``, the full history of attempts (one :class:`~paradigm_trio.Attempt` each) that
led to it.  Low-level ``httpx2`` exceptions are translated exactly once, at the transport
boundary, and chained with ``raise ... from exc``.

The API key never appears in an exception's message, body, headers, request id, repr or
traceback: everything that came from the server or the network is scrubbed of it, in
every form a server can echo it in (``_redact``), before the exception is built, and so
are the messages of the exceptions chained to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._events import Attempt

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "CertificateVerificationError",
    "ConfigurationError",
    "ConflictError",
    "FileProcessingError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "NotFoundError",
    "ParadigmError",
    "PermissionDeniedError",
    "ProxyError",
    "QuotaUnavailableError",
    "RateLimitError",
    "RequestCancelled",
    "ServerUnreachableError",
    "StructuredOutputError",
    "ToolCallError",
    "UnprocessableEntityError",
]

TimeoutKind = Literal[
    "connect", "read", "write", "pool", "attempt", "total", "first_token", "stream"
]


class ParadigmError(Exception):
    """Root of every exception raised on purpose by paradigm-trio."""


class ConfigurationError(ParadigmError, ValueError):
    """Invalid configuration: a missing API key, a bad base URL, conflicting arguments.

    A base URL or proxy URL whose host cannot be looked up is one: an empty label
    (``https://a..b/api/v2``), a label over 63 characters, or characters a host name
    cannot have.  The message names the host and says which; it never shows the API key
    or a password of the URL.
    """


class InvalidRequestError(ParadigmError, ValueError):
    """A request that cannot be sent as it is; nothing of it was sent.

    Raised when a :class:`~paradigm_trio.ChatRequest` is built (a bad field, invalid Unicode
    such as a lone surrogate, a value JSON cannot hold: ``NaN``, infinities, an object of
    another type, a circular reference) and again before sending, should the request have
    been changed since.  In a batch it is the item's result, and the other items run.

    Attributes:
        where: the part of the request at fault, e.g. ``"messages[0].content"``,
            ``"custom_id"``, ``"extra.tools[0].name"`` (the message starts with it), or
            ``None`` when the message names it.
        code: ``"invalid_request"``, the code the command line writes for it.
    """

    code = "invalid_request"

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


class APIError(ParadigmError):
    """A request to the API failed.

    Attributes:
        message: what went wrong, in words.
        status_code: the HTTP status of the last response, or ``None`` if there was none.
        request_id: the server's ``x-request-id`` for the last response, if any.
        body: the parsed error body of the last response (JSON), or its text, or ``None``.
        attempts: every attempt made for this logical request, oldest first.
        custom_id: the ``custom_id`` of the :class:`~paradigm_trio.ChatRequest`, if any.
    """

    status_code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        body: object = None,
        attempts: tuple[Attempt, ...] = (),
        custom_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.request_id = request_id
        self.body = body
        self.attempts = attempts
        self.custom_id = custom_id

    def __str__(self) -> str:
        text = self.message
        if self.request_id:
            text += f" (request id {self.request_id})"
        if len(self.attempts) > 1:
            text += f" after {len(self.attempts)} attempts"
        return text

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        if self.status_code is not None:
            parts.append(f"status_code={self.status_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id!r}")
        if self.attempts:
            parts.append(f"attempts={len(self.attempts)}")
        return f"{type(self).__name__}({', '.join(parts)})"


class APIStatusError(APIError):
    """The server answered with a status that is not 2xx.

    Attributes:
        code: the envelope's ``error.code`` (e.g. ``"rate_limit_exceeded"``), if any.
        type: the envelope's ``error.type``, if any.
        param: the envelope's ``error.param``, if any.
        headers: the response headers (``Authorization`` is a request header and never
            here; a header that echoes the key shows ``***`` instead).
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        body: object = None,
        attempts: tuple[Attempt, ...] = (),
        custom_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            request_id=request_id,
            body=body,
            attempts=attempts,
            custom_id=custom_id,
        )
        self.headers: Mapping[str, str] = dict(headers or {})
        self.code = code
        self.type = type
        self.param = param


class BadRequestError(APIStatusError):
    """400: the request was malformed. Never retried."""

    status_code = 400


class AuthenticationError(APIStatusError):
    """401: missing or wrong API key. Never retried."""

    status_code = 401


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this. Never retried."""

    status_code = 403


class NotFoundError(APIStatusError):
    """404: no such endpoint or model. Never retried."""

    status_code = 404


class ConflictError(APIStatusError):
    """409: a conflicting request is in progress. Retried."""

    status_code = 409


class UnprocessableEntityError(APIStatusError):
    """422: well-formed but unprocessable. Never retried."""

    status_code = 422


class RateLimitError(APIStatusError):
    """429: a rate limit or quota was hit. Retried, honouring ``Retry-After``."""

    status_code = 429


class InternalServerError(APIStatusError):
    """5xx: the server failed. Retried."""


class APIConnectionError(APIError):
    """No usable response: the connection failed, was reset or closed, or broke the protocol.

    A host name that cannot be looked up (an empty label, a label over 63 characters), met
    after the client was built (by a transport of your own that sends elsewhere), is one
    too, never retried: the message names the host and says why.  A ``base_url`` or proxy
    with such a host is refused when the client is built (:class:`ConfigurationError`).
    """


class APITimeoutError(APIConnectionError):
    """A timeout fired.

    Attributes:
        which: which timeout: ``"connect"``, ``"read"`` (no bytes for that long),
            ``"write"``, ``"pool"``, ``"attempt"`` (:attr:`Timeouts.attempt`), ``"total"``
            (:attr:`Timeouts.total`, the whole request with its retries),
            ``"first_token"`` or ``"stream"`` (streaming inactivity).
    """

    def __init__(self, message: str, *, which: TimeoutKind, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.which: TimeoutKind = which


class ServerUnreachableError(APIConnectionError):
    """A batch's circuit breaker opened: the server failed to answer many times in a row.

    Requests of that batch not yet finished fail with this error without being sent.
    """


class IncompleteStreamError(APIConnectionError):
    """A stream ended or broke before it was complete: what arrived is not a whole answer.

    Attributes:
        chunks: chunks received before it broke.
        characters: characters of content received.
        text: the content received (a partial answer).
    """

    def __init__(
        self, message: str, *, chunks: int = 0, characters: int = 0, text: str = "", **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.chunks = chunks
        self.characters = characters
        self.text = text


class RequestCancelled(APIError):
    """The request was stopped by a deadline before it finished.

    (The requests that a fail-fast batch, ``on_error="raise"``, cancels get no result: the
    batch raises :class:`BatchError` instead.)

    Attributes:
        reason: ``"deadline"``: a ``deadline=`` (of :meth:`Client.send` or of a batch)
            passed before it finished.
        sent: whether any attempt of it was sent.
    """

    def __init__(self, message: str, *, reason: str, sent: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason
        self.sent = sent


class BatchError(ParadigmError):
    """A batch run with ``on_error="raise"`` stopped at its first failure.

    Attributes:
        error: the first failure (also this exception's ``__cause__``).
        results: the results finished before the batch stopped, in input order
            (from :meth:`Client.chat_batch`; empty from ``stream_batch``, whose results
            were already handed to you).
    """

    def __init__(self, error: BaseException, results: tuple[Any, ...] = ()) -> None:
        super().__init__(f"batch stopped at the first failure: {error}")
        self.error = error
        self.results = results


class FileProcessingError(ParadigmError):
    """A document's processing failed (``status`` ``parsing_failed``,
    ``embedding_failed``, ``fail``), or :meth:`Files.wait` gave up waiting for it.

    Attributes:
        file_id: the document's id.
        status: its last status seen (``None`` if none was).
        timed_out: whether the wait's ``timeout`` passed (the processing may still end).
        file: the last :class:`FileInfo` read, if any.
    """

    def __init__(
        self, message: str, *, file_id: object, status: str | None, timed_out: bool,
        file: Any = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.file_id = file_id
        self.status = status
        self.timed_out = timed_out
        self.file = file


class QuotaUnavailableError(ParadigmError):
    """A shared quota's Redis did not answer within ``RedisQuota.timeout``, or answered
    with an error (raised by :func:`~paradigm_trio.quota_state`; requests themselves wait
    or fall back, as ``RedisQuota.on_unavailable`` says, and never raise it)."""


class APIResponseValidationError(APIError):
    """A 2xx response whose body is not a valid answer (bad JSON, missing fields).

    Attributes:
        raw: the response text as received (possibly truncated to 64 KiB).
    """

    def __init__(self, message: str, *, raw: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw = raw


class StructuredOutputError(APIResponseValidationError):
    """An answer that does not parse, or does not validate, against the ``output=`` schema.

    Retried only when ``RetryPolicy.invalid_output_retries`` allows (cause
    ``"invalid_output"``).

    Attributes:
        raw: the answer's text (the message content), as the model wrote it.
        errors: what is wrong, one ``"$.path: message"`` per problem (``"$: not JSON:
            ..."`` when it does not parse).
        completion: the :class:`~paradigm_trio.ChatCompletion` whose answer this is
            (``parsed`` unset), when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        raw: str = "",
        errors: tuple[str, ...] = (),
        completion: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, raw=raw, **kwargs)
        self.errors = errors
        self.completion = completion


ToolCallReason = Literal["unknown_tool", "not_json", "invalid_arguments"]


class ToolCallError(APIResponseValidationError):
    """An answer that calls a tool wrongly: a tool that was not offered, arguments that
    are not JSON, or arguments that do not match the tool's ``parameters``.

    Checked when the request offers ``tools`` (and ``validate_tool_calls`` is not
    ``False``); re-asked, with the error stated to the model, only when
    ``RetryPolicy.invalid_output_retries`` allows (cause ``"invalid_tool_call"``).  What
    came from the model is scrubbed of the API key, like everything the server sent.

    Attributes:
        tool: the name of the tool the model called.
        reason: ``"unknown_tool"`` (not among the tools offered), ``"not_json"`` (the
            arguments are not JSON) or ``"invalid_arguments"`` (they do not match the
            tool's ``parameters``).
        call: the :class:`~paradigm_trio.ToolCall` as the model made it.
        raw: the call's JSON, as text.
        errors: what is wrong, one ``"$.path: message"`` per problem.
        completion: the :class:`~paradigm_trio.ChatCompletion` that made the call, when
            there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        tool: str,
        reason: ToolCallReason,
        call: Any = None,
        raw: str = "",
        errors: tuple[str, ...] = (),
        completion: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, raw=raw, **kwargs)
        self.tool = tool
        self.reason = reason
        self.call = call
        self.errors = errors
        self.completion = completion


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status: int) -> type[APIStatusError]:
    """The exception class for an HTTP status (``APIStatusError`` for the unnamed ones)."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    if 500 <= status < 600:
        return InternalServerError
    return APIStatusError


class CertificateVerificationError(APIConnectionError):
    """The server's TLS certificate did not verify: a configuration problem, never retried.

    The certificate is not signed by a CA the client trusts (a private or corporate CA, a
    self-signed certificate), has expired, or was not issued for the host of the base URL.
    The message says which, and how to trust a CA bundle.

    Attributes:
        host: ``host:port`` of the server.
        reason: the TLS library's reason (e.g. ``"self-signed certificate"``).
    """

    def __init__(self, message: str, *, host: str, reason: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.host = host
        self.reason = reason


class ProxyError(APIConnectionError):
    """The proxy refused to carry the request: a configuration problem, never retried.

    A ``407 Proxy Authentication Required`` means the proxy wants credentials that were not
    given or are wrong (put them in the proxy URL: ``http://user:password@proxy:3128``); a
    ``403`` means the proxy's policy forbids the destination.  A proxy that cannot reach the
    server (a ``502`` or ``504`` to the ``CONNECT``) is an :class:`APIConnectionError`
    instead, retried like any connection failure.

    Attributes:
        proxy: the proxy's URL, without its credentials.
        proxy_status: the status the proxy answered with, e.g. 407.
    """

    def __init__(self, message: str, *, proxy: str, proxy_status: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.proxy = proxy
        self.proxy_status = proxy_status
