"""One failed attempt, classified for the retry decision: :class:`AttemptFailure`.

The attempt functions (``_http``, ``_endpoints``) raise it with the error a request fails
with if this is its last attempt and what happened (cause, status, ``Retry-After``,
``x-should-retry``, whether the request may have reached the server); the attempt engine
(``_engine``) catches it, and alone decides whether to retry (``_engine._retry``).  It
never leaves the library.  The exceptions users see are in ``_errors``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._errors import APIError

__all__ = ["AttemptFailure"]


class AttemptFailure(Exception):
    """Internal: one attempt failed, classified (not judged) for the retry decision.

    Raised by an attempt function (``_http``, ``_chunks``, ``_streaming``...) and caught by
    the attempt engine (``_attempts``), which records it and alone asks the
    :class:`~paradigm_trio.RetryPolicy` whether to retry (``_engine._retry.allows``).
    Never escapes the library: the engine raises :attr:`error` instead.

    Attributes:
        error: the :class:`APIError` the request fails with if this is its last attempt.
        cause: ``"429"``, ``"503"``, ``"connection"``, ``"timeout"``, ``"invalid_response"``,
            ``"invalid_output"``, ``"invalid_tool_call"``, ``"stream_error"``,
            ``"stream_diverged"``, ``"tls"``, ``"proxy"``, ``"host"``: the key of
            ``retries_by_cause``.
        status: the HTTP status that failed the attempt (a non-2xx answer, or an error
            event that names one), else ``None``.
        should_retry: the server's ``x-should-retry`` header, if it sent one.
        retry_after: the wait the server asked for, in seconds, if any.
        rate_limit: for a 429, the response's ``x-ratelimit-*`` and ``retry-after*`` headers
            (the adaptive controller reads them); ``None`` otherwise.
        quota: for a 429, whether its body says a quota is spent (not one replica's noise).
        resume: for a live stream that broke after handing chunks out, what it had
            delivered (set by the stream; the endpoint's ``follow_up`` may build the next
            attempt's request from it), else ``None``.
        final: no attempt can follow, whatever the policy (the request's own deadline
            passed while the attempt ran, or a resumed stream's answer differs from the
            one delivered).
        reached: whether the request may have reached the server.  ``False`` only when
            the failure proves that no byte of it was sent: the connection could not be
            opened (connect, DNS, TLS, a proxy's ``CONNECT`` or refusal, a wait for a
            pooled connection); ``True`` for a failure once the request started being
            written, and for any answer (a status says the server got it).  The engine
            resends a request that is not idempotent only when this is ``False``, or
            when the server's answer says nothing was processed (``_engine._retry``).
    """

    def __init__(
        self,
        error: APIError,
        cause: str,
        *,
        status: int | None = None,
        should_retry: bool | None = None,
        retry_after: float | None = None,
        rate_limit: Mapping[str, str] | None = None,
        quota: bool = False,
        final: bool = False,
        reached: bool = True,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.cause = cause
        self.status = status
        self.should_retry = should_retry
        self.retry_after = retry_after
        self.rate_limit = rate_limit
        self.quota = quota
        self.final = final
        self.reached = reached
        self.resume: object = None
