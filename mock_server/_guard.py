"""Who may use the admin routes (``/_mock/*``): no browser, the admin token, JSON bodies.

The admin routes reconfigure the mock (auth off, 100 % faults, a 10 GB body
limit), so a web page the user happens to visit must not reach them:

* a browser marks its requests: ``Origin`` on every POST and on cross-origin
  reads, ``Sec-Fetch-Site`` on modern ones; such a request is refused (403);
* with :attr:`MockConfig.admin_token` set (always the case beyond loopback),
  the token is required (``Authorization: Bearer`` or ``X-Mock-Admin-Token``);
* without one, the ``Host`` must be an IP address or ``localhost``, which a DNS
  rebinding page (``Host: evil.example``) cannot forge;
* a body must be ``application/json`` (a form or ``text/plain`` POST, which a page
  can send without asking, gets 415).

Each check returns a :class:`Denial` or ``None``; the app turns a denial into an
OpenAI error envelope.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["ADMIN_TOKEN_HEADER", "Denial", "admin_denial", "body_denial"]

#: The header that may carry the admin token instead of ``Authorization: Bearer``.
ADMIN_TOKEN_HEADER: Final = "X-Mock-Admin-Token"

_CROSS_SITE: Final = frozenset({"cross-site", "same-site"})
_JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class Denial:
    """Why an admin request is refused: status, error code, message, extra headers."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def _token_of(headers: Mapping[str, str]) -> str | None:
    dedicated = headers.get(ADMIN_TOKEN_HEADER.lower())
    if dedicated:
        return dedicated.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _local_host(host_header: str) -> bool:
    """An IP literal, ``localhost`` or ``*.localhost`` (with or without a port)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")
    return True


def admin_denial(
    headers: Mapping[str, str], *, method: str, admin_token: str | None
) -> Denial | None:
    """The reason to refuse an admin request, or ``None``; ``headers`` has lower-case names."""
    if "origin" in headers or headers.get("sec-fetch-site", "").lower() in _CROSS_SITE:
        return Denial(
            403,
            "browser_request_refused",
            "The mock's admin routes refuse requests made by a browser (an Origin or "
            "cross-site Sec-Fetch-Site header), so that a web page cannot reconfigure it. "
            "Use a non-browser HTTP client.",
        )
    if admin_token is not None:
        given = _token_of(headers)
        if given is None or not hmac.compare_digest(given.encode(), admin_token.encode()):
            return Denial(
                401,
                "invalid_admin_token",
                "The mock's admin routes need its admin token: send 'Authorization: Bearer "
                f"TOKEN' or '{ADMIN_TOKEN_HEADER}: TOKEN' (the API key does not open them).",
                {"WWW-Authenticate": 'Bearer realm="mock_server admin"'},
            )
    elif "host" in headers and not _local_host(headers["host"]):
        return Denial(
            403,
            "host_not_allowed",
            "Without an admin token the mock's admin routes only answer requests addressed "
            "to an IP address or localhost (this refuses DNS rebinding). Set admin_token "
            "(--admin-token, $MOCK_ADMIN_TOKEN) to reach them under a host name.",
        )
    if method == "POST":
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        has_body = chunked or headers.get("content-length", "0").strip() not in ("", "0")
        return body_denial(headers.get("content-type"), has_body=has_body)
    return None


def body_denial(content_type: str | None, *, has_body: bool) -> Denial | None:
    """415 unless a body (or any declared ``Content-Type``) is ``application/json``."""
    if content_type is None and not has_body:
        return None
    if content_type is not None and content_type.partition(";")[0].strip().lower() == _JSON:
        return None
    return Denial(
        415,
        "unsupported_media_type",
        "The mock's admin routes only accept a body of type application/json "
        "(send 'Content-Type: application/json').",
    )
