"""The failures of an HTTP exchange, built from what came from the server or the network.

:class:`Failures` (which :class:`~paradigm_trio._http.HTTP` inherits) holds the builders:

* :meth:`Failures.transport_failure` maps ``httpx2`` exceptions to failures, once.
* :meth:`Failures.status_failure` (a non-2xx response) and
  :meth:`Failures.error_event_failure` (an error reported inside an event stream) build
  status errors with one builder.
* :meth:`Failures.invalid` and :meth:`Failures.invalid_data`: a 2xx whose content is not
  what the API promises.

Every body, header, request id and exception chain goes through the client's ``Redactor``
before an error is built.  Failures are :class:`~paradigm_trio._attempt_failure.AttemptFailure`: the
error to raise if this is the last attempt and its classification (cause, status,
``Retry-After``, ``x-should-retry``, whether the request may have reached the server:
:func:`may_have_reached`): whether to retry is the engine's decision alone.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx2

from .._attempt_failure import AttemptFailure
from .._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    CertificateVerificationError,
    ProxyError,
    TimeoutKind,
    status_error_class,
)
from .._json import parse_json
from .._redact import Redactor
from .._transport import InvalidHostName, ProxyRefused, TLSConnectError

__all__ = [
    "Failures",
    "RAW_LIMIT",
    "may_have_reached",
    "parse_retry_after",
    "parse_should_retry",
]

RAW_LIMIT = 64 * 1024
"""How much of a response body an error keeps (``.raw``, ``.body``), in characters."""


# --------------------------------------------------------------------------- headers


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait in seconds the server asks for, or ``None`` if it asks for none.

    ``retry-after-ms`` (milliseconds, possibly fractional) wins over ``Retry-After``, which
    is either a number of seconds or an HTTP date (compared with the wall clock ``now``,
    ``time.time()`` by default: an HTTP date is wall-clock time by nature).  Negative waits
    become 0; unparseable values are ignored.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms)
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return max(0.0, value / 1000.0)
    ra = headers.get("retry-after")
    if ra is None:
        return None
    ra = ra.strip()
    try:
        value = float(ra)
    except ValueError:
        pass
    else:
        return max(0.0, value) if math.isfinite(value) else None
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def parse_should_retry(headers: Mapping[str, str]) -> bool | None:
    """``x-should-retry: true|false`` as a bool, ``None`` when absent or unrecognised."""
    value = headers.get("x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _ratelimit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k.lower(): v
        for k, v in headers.items()
        if k.lower().startswith("x-ratelimit-") or k.lower() in ("retry-after", "retry-after-ms")
    }


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "set-cookie"}


# --------------------------------------------------------------------------- failures


_TIMEOUT_KINDS: tuple[tuple[type[httpx2.TimeoutException], TimeoutKind], ...] = (
    (httpx2.ConnectTimeout, "connect"),
    (httpx2.ReadTimeout, "read"),
    (httpx2.WriteTimeout, "write"),
    (httpx2.PoolTimeout, "pool"),
)


_NEVER_SENT: tuple[type[httpx2.HTTPError], ...] = (
    httpx2.ConnectError,  # TCP, DNS, TLS (TLSConnectError), a host name (InvalidHostName)
    httpx2.ConnectTimeout,
    httpx2.PoolTimeout,  # waiting for a connection of the pool
    httpx2.ProxyError,  # a proxy's refusal (ProxyRefused) or a failed CONNECT
    httpx2.UnsupportedProtocol,  # a URL no connection can be opened for
)


def may_have_reached(exc: httpx2.HTTPError) -> bool:
    """Whether the request of a failed exchange may have reached the server.

    ``False`` only when no byte of it can have been sent: the failure came while the
    connection was being opened (connect, DNS look-up, TLS handshake, a proxy's
    ``CONNECT`` or its refusal) or while waiting for one (a pool timeout).  Once the
    request started being written (a write, read or protocol failure, a read timeout),
    the server may have received it, whole or in part: ``True``.
    """
    return not isinstance(exc, _NEVER_SENT)


class Failures:
    """Builds failures from what came from the server or the network (an ``HTTP`` is one).

    All of it goes through ``self.redactor`` first (bodies raw and parsed, headers, the
    request id, exception messages and their chains), so the key is in no error, record or
    event.

    Args:
        base_url: the API root (named in a certificate error).
        redactor: removes the API key (and URL passwords) from what came from the server
            or the network, before any error, record or event is built from it.
    """

    def __init__(self, *, base_url: str, redactor: Redactor) -> None:
        self.base_url = base_url
        self.redactor = redactor
        self.redact = redactor.text

    def request_id(self, response: httpx2.Response) -> str | None:
        """The response's ``x-request-id`` (redacted: it is shown in errors and records)."""
        return self.redactor.optional(response.headers.get("x-request-id"))

    def chain(self, error: APIError, exc: BaseException) -> None:
        """Chain ``exc`` as the cause of ``error``, its messages redacted; if one cannot be
        cleaned, leave the chain out (a traceback shows every message of it)."""
        error.__cause__ = exc if self.redactor.scrub_chain(exc) else None

    def transport_failure(self, exc: httpx2.HTTPError) -> AttemptFailure:
        """The failure of an ``httpx2`` exception raised before a response was read.

        A certificate that does not verify is a configuration problem: cause ``"tls"``,
        never retried; so is a host name that cannot be looked up: cause ``"host"``.
        Whether the request may have reached the server: :func:`may_have_reached`.
        """
        error: APIError
        certificate = _unverified_certificate(exc)
        refused = _proxy_refusal(exc)
        if certificate is not None:
            error, cause = self._certificate_error(certificate, exc), "tls"
        elif refused is not None:
            error, cause = refused, "proxy"
        elif isinstance(exc, InvalidHostName):
            said = self.redact(str(exc))
            error = APIConnectionError(f"{said}. This is a configuration problem, not retried")
            cause = "host"
        elif isinstance(exc, httpx2.TimeoutException):
            which: TimeoutKind = next(
                (kind for cls, kind in _TIMEOUT_KINDS if isinstance(exc, cls)), "read"
            )
            error = APITimeoutError(f"{which} timeout ({type(exc).__name__})", which=which)
            cause = "timeout"
        elif isinstance(exc, httpx2.TransportError):
            detail = self.redact(str(exc)) or type(exc).__name__
            error = APIConnectionError(f"connection error: {type(exc).__name__}: {detail}")
            cause = "connection"
        else:  # e.g. a content decoding error
            error = APIResponseValidationError(
                f"could not read the response: {self.redact(str(exc))}"
            )
            cause = "invalid_response"
        self.chain(error, exc)
        return AttemptFailure(error, cause, reached=may_have_reached(exc))

    def _certificate_error(
        self, exc: ssl.SSLCertVerificationError, raised: httpx2.HTTPError
    ) -> APIError:
        """The error for a certificate that does not verify: the server's, or the proxy's
        (our transport says whose, in a ``TLSConnectError``)."""
        url = httpx2.URL(self.base_url)
        host = f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
        whose = ""
        if isinstance(raised, TLSConnectError):
            host, whose = raised.peer, " (the proxy)" if raised.proxy else ""
        reason = str(exc.verify_message or exc.reason or exc).rstrip(".")
        if exc.verify_code in _NAME_MISMATCH:
            fix = f"use a {'proxy URL' if whose else 'base URL'} with a host name the "
            fix += "certificate was issued for"
        else:
            fix = (
                "if the certificate comes from a private or corporate CA, trust that CA: "
                'Client(verify="ca-bundle.pem"), or $SSL_CERT_FILE, or --ca-bundle on the '
                "command line (or the system's trust store: verify=system_trust_store())"
            )
        return CertificateVerificationError(
            f"the TLS certificate of {host}{whose} does not verify: {reason}. This is a "
            f"configuration problem, not retried; {fix}",
            host=host,
            reason=reason,
        )

    def invalid(
        self, message: str, *, status: int | None, request_id: str | None
    ) -> AttemptFailure:
        """A 2xx whose content is not what the API promises."""
        error = APIResponseValidationError(
            self.redact(message), status_code=status, request_id=request_id
        )
        return AttemptFailure(error, "invalid_response")

    def invalid_data(
        self,
        parse: Callable[[object, str | None], object],
        data: object,
        request_id: str | None,
        err: APIResponseValidationError,
    ) -> APIResponseValidationError:
        """``err``, the failure of ``parse(data)``, built again from the redacted data.

        Parsing the redacted data again gives a message, body and cause that never held the
        key, not even cut in half by a message's length limit.
        """
        try:
            parse(self.redactor.value(data), request_id)
        except APIResponseValidationError as clean:
            return clean
        # Only the key made it invalid: keep the error, redacted.
        err.message = self.redactor.text(err.message)
        err.args = (err.message,)
        err.body = self.redactor.value(err.body)
        err.__cause__ = None
        return err

    def status_failure(self, response: httpx2.Response) -> AttemptFailure:
        """The failure of a non-2xx response (whose body has been read)."""
        status = response.status_code
        headers = response.headers
        text = self.redactor.clip(response.text, RAW_LIMIT)
        body: object = text
        with contextlib.suppress(ValueError, RecursionError):
            # Parsed from what the server sent (redacting first could break an escape), then
            # redacted string by string.
            body = self.redactor.value(parse_json(response.text[:RAW_LIMIT]))
        message, fields = _envelope(body)
        if message is None:
            reason = self.redactor.text(response.reason_phrase)
            message = text.strip()[:500] or reason or "no body"
        error = _status_error(
            status, f"Error code: {status} - {message}", body, fields,
            self.redactor.headers(headers), self.request_id(response),
        )  # fmt: skip
        limits = self.redactor.headers(_ratelimit_headers(headers)) if status == 429 else None
        return AttemptFailure(
            error,
            str(status),
            status=status,
            should_retry=parse_should_retry(headers),
            retry_after=parse_retry_after(headers),
            rate_limit=limits,
            quota=status == 429 and _says_quota(message, fields),
        )

    def error_event_failure(
        self,
        payload: object,
        *,
        response: httpx2.Response,
        suffix: str,
    ) -> AttemptFailure:
        """An error the server reported inside an event stream (``event: error`` or
        ``{"error": ...}``); ``suffix`` says how far the stream had got."""
        payload = self.redactor.value(payload)
        message, fields = _envelope(payload)
        if message is None:
            message = json.dumps(payload)[:500] if not isinstance(payload, str) else payload
        text = message or "no message"
        status = next(
            (s for s in map(_as_status, (fields.get("status_code"), fields.get("status"))) if s),
            None,
        ) or _as_status(fields.get("code"))
        request_id = self.request_id(response)
        if status is None:
            error = APIError(
                f"the server reported an error in the stream: {text}{suffix}",
                status_code=response.status_code,
                request_id=request_id,
                body=payload,
            )
            return AttemptFailure(error, "stream_error")
        status_error = _status_error(
            status, f"Error code: {status} - {text}{suffix}", payload, fields,
            self.redactor.headers(response.headers), request_id,
        )  # fmt: skip
        return AttemptFailure(status_error, str(status), status=status)


_NAME_MISMATCH = frozenset({62, 64})
"""OpenSSL's verify codes for a certificate of another host name or IP address."""


def _unverified_certificate(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (its causes), if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


_PROXY_FIX = {
    407: "the proxy wants credentials that were not given or are wrong: put them in the "
    "proxy URL (http://user:password@proxy:3128, the password URL-encoded)",
    403: "the proxy's policy forbids this destination: ask its administrators, or reach "
    "the server without the proxy (NO_PROXY)",
}


def _proxy_refusal(exc: BaseException) -> ProxyError | None:
    """The :class:`ProxyError` of a proxy's 4xx (ours, or httpx2's ``ProxyError``)."""
    if isinstance(exc, ProxyRefused):
        proxy, status, said = exc.proxy, exc.status, str(exc)
    elif isinstance(exc, httpx2.ProxyError):  # httpx2's own transport: "407 Proxy Auth..."
        head = str(exc).split(" ", 1)[0]
        if not (head.isdigit() and 400 <= int(head) < 500):
            return None
        proxy, status, said = "the proxy", int(head), f"the proxy refused the request: {exc}"
    else:
        return None
    fix = _PROXY_FIX.get(status, "check the proxy settings (proxy=, HTTPS_PROXY, NO_PROXY)")
    return ProxyError(
        f"{said}. This is a configuration problem, not retried; {fix}",
        proxy=proxy,
        proxy_status=status,
    )


def _envelope(body: object) -> tuple[str | None, Mapping[str, Any]]:
    """The message of an error body and the object holding its fields.

    Understands the OpenAI envelope ``{"error": {"message", "code", "type", "param"}}``,
    ``{"error": "text"}``, FastAPI's ``{"detail": ...}``, a bare ``{"message": ...}``
    object, Paradigm's maintenance answer ``{"error": "service_maintenance", "mode",
    "reason", "started_at"}`` (its code ``service_maintenance``), and (in streams) the
    error object itself.
    """
    if not isinstance(body, dict):
        return (body if isinstance(body, str) and body else None), {}
    err = body.get("error")
    if err == _MAINTENANCE:
        return _maintenance_message(body), {"code": _MAINTENANCE}
    if isinstance(err, str):
        return err, {}
    if "detail" in body and not isinstance(err, dict):
        detail = body["detail"]
        return (detail if isinstance(detail, str) else json.dumps(detail)), {}
    fields: Mapping[str, Any] = err if isinstance(err, dict) else body
    message = fields.get("message")
    return (str(message) if message not in (None, "") else None), fields


_MAINTENANCE = "service_maintenance"


def _maintenance_message(body: Mapping[str, Any]) -> str:
    """``Paradigm is under maintenance (read_only) since 2026-...: database upgrade``."""
    mode, since, reason = (body.get(k) for k in ("mode", "started_at", "reason"))
    text = "Paradigm is under maintenance"
    text += f" ({mode})" if mode not in (None, "") else ""
    text += f" since {since}" if since not in (None, "") else ""
    return text + (f": {reason}" if reason not in (None, "") else "")


def _says_quota(message: str, fields: Mapping[str, Any]) -> bool:
    """Whether an error body says a quota is spent (``insufficient_quota``, "quota ...")."""
    words = (message, fields.get("code"), fields.get("type"))
    return any(isinstance(w, str) and "quota" in w.lower() for w in words)


def _status_error(
    status: int,
    message: str,
    body: object,
    fields: Mapping[str, Any],
    headers: Mapping[str, str],
    request_id: str | None,
) -> APIError:
    return status_error_class(status)(
        message,
        status_code=status,
        request_id=request_id,
        body=body,
        headers=_kept_headers(headers),
        code=_as_str(fields.get("code")),
        type=_as_str(fields.get("type")),
        param=_as_str(fields.get("param")),
    )


def _as_str(value: object) -> str | None:
    return None if value is None else str(value)


def _as_status(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and 400 <= value < 600:
        return value
    return None
