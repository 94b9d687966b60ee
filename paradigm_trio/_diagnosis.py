"""Configuration failures: what they mean and their fix (:class:`Diagnosis`,
:func:`diagnose`), and the batch error raised when a batch's first answers are all one
(:class:`SystematicFailureError`).

A configuration failure is one that every request to the same server with the same
settings would get (a wrong key, base URL or model, a certificate that does not verify, a
proxy's refusal): sending more requests cannot fix it.  The batches stop on them
(``_engine._budget``), ``doctor`` and the command line print their fix.  The exception
tree itself is in ``_errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import (
    AuthenticationError,
    BatchError,
    CertificateVerificationError,
    NotFoundError,
    ParadigmError,
    PermissionDeniedError,
    ProxyError,
)

__all__ = ["Diagnosis", "SystematicFailureError", "diagnose"]


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What a configuration failure means, and its fix (see :func:`diagnose`).

    Attributes:
        cause: ``"authentication"`` (401), ``"permission"`` (403), ``"not_found"`` (404),
            ``"tls"`` (a certificate that does not verify) or ``"proxy"`` (a proxy's 407 or
            403).
        status: the HTTP status (the proxy's, for ``"proxy"``); ``None`` for ``"tls"``.
        meaning: what it means, in a few words.
        fix: what to change, in a sentence.
        cli_fix: the same fix in the words of the ``paradigm-trio`` command line (its
            options: ``--base-url``, ``--model``); ``fix`` when they are the same.
    """

    cause: str
    status: int | None
    meaning: str
    fix: str
    cli_fix: str = ""

    def __post_init__(self) -> None:
        if not self.cli_fix:
            object.__setattr__(self, "cli_fix", self.fix)


_DIAGNOSES = {
    401: ("authentication", "authentication failed: the server refused the API key",
          "check the key (PARADIGM_API_KEY): it is missing, mistyped or revoked",
          "check PARADIGM_API_KEY: the key is missing, mistyped or revoked"),
    403: ("permission", "permission denied: the key may not use this endpoint or model",
          "use a key with access to it, or another model",
          "use a key with access to this endpoint and model, or another --model"),
    404: ("not_found", "not found: no such endpoint or model at this URL",
          "check the base URL (PARADIGM_BASE_URL, e.g. https://paradigm.lighton.ai/api/v2) "
          "and the model name",
          "check --base-url (or PARADIGM_BASE_URL; the API root ends in /api/v2) and --model"),
}  # fmt: skip


def diagnose(error: BaseException | int | None) -> Diagnosis | None:
    """The :class:`Diagnosis` of ``error`` if it is a configuration failure, else ``None``.

    Configuration failures are those that every request to the same server with the same
    settings would get: :class:`AuthenticationError` (401), :class:`PermissionDeniedError`
    (403), :class:`NotFoundError` (404: a wrong path in the base URL, an unknown model),
    :class:`CertificateVerificationError` and :class:`ProxyError`.  A 400 or a 422 (the
    item's own fault), a 429 or a 5xx (the server's state) are not.

    ``error`` may also be the HTTP status of an answer (read from a record, say): 401,
    403 and 404 are diagnosed as the server's (not a proxy's).
    """
    if isinstance(error, int) and not isinstance(error, bool):
        status = error
    elif isinstance(error, AuthenticationError | PermissionDeniedError | NotFoundError):
        status = error.status_code
    else:
        status = None
    if status in _DIAGNOSES:
        cause, meaning, fix, cli_fix = _DIAGNOSES[status]
        return Diagnosis(cause, status, meaning, fix, cli_fix)
    if isinstance(error, CertificateVerificationError):
        return Diagnosis(
            "tls", None, f"TLS certificate refused ({error.reason})",
            "trust the server's CA (verify= or a CA bundle) or check the host of the base URL",
        )  # fmt: skip
    if isinstance(error, ProxyError):
        return Diagnosis(
            "proxy", error.proxy_status, f"refused by the proxy {error.proxy}",
            "check the proxy's URL and credentials (http://user:password@proxy:3128), or "
            "whether it lets you reach this server",
        )  # fmt: skip
    return None


class SystematicFailureError(BatchError):
    """A batch stopped early: its first answers were all the same configuration failure.

    A wrong API key (401), a key without the right (403), a wrong base URL or model (404),
    a certificate that does not verify or a proxy that refuses: every request of the batch
    would fail the same way, so the batch stops after ``BatchOptions.systematic_failures``
    such answers in a row, at its start, instead of sending the whole input.  Requests in
    flight are interrupted; inputs not yet sent get no result (a rerun after the fix sends
    them).  See :func:`diagnose` for which failures count.

    Attributes:
        error: the first of those failures (also this exception's ``__cause__``).
        diagnosis: what it means and the fix (a :class:`Diagnosis`).
        cause, status: ``diagnosis.cause`` and ``diagnosis.status``.
        failures: the answers, all the same failure, that stopped the batch.
        sent: the requests the batch had started when it stopped.
        results: the results finished and not handed out: the failures that stopped the
            batch (and those answered in the same instant, once each), plus (from
            :meth:`Client.chat_batch`) those handed out before, in input order.
    """

    def __init__(
        self,
        error: BaseException,
        diagnosis: Diagnosis,
        *,
        failures: int,
        sent: int,
        results: tuple[Any, ...] = (),
    ) -> None:
        status = f"{diagnosis.status} " if diagnosis.status is not None else ""
        ParadigmError.__init__(
            self,
            f"batch stopped: its first {failures} answers were all {status}"
            f"{diagnosis.meaning} ({sent} request(s) sent); {diagnosis.fix}",
        )
        self.error = error
        self.results = results
        self.diagnosis = diagnosis
        self.cause = diagnosis.cause
        self.status = diagnosis.status
        self.failures = failures
        self.sent = sent
