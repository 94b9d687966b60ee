"""A :class:`~paradigm_trio.Client`'s configuration checked, and what it sends with.

Every check names the fix, and no message shows the API key or a URL's password.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx2
import trio

from .._config import Limits
from .._engine._attempts import Engine
from .._engine._cache import CacheStore, ResponseCache
from .._engine._ledger import Ledger
from .._engine._ratelimit import AdaptiveController, RateLimiter, Rates
from .._errors import ConfigurationError
from .._http._http import HTTP
from .._quota._shared import SharedRateLimiter
from .._redact import Redactor, check_api_key, mask_bad_url, mask_credentials
from .._transport import TrioTransport, host_problem, url_host
from .._version import __version__

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "cache_of",
    "check_base_url",
    "check_http",
    "check_key",
    "check_models",
    "engine_of",
    "http_of",
    "transport_of",
]

API_KEY_ENV = "PARADIGM_API_KEY"
BASE_URL_ENV = "PARADIGM_BASE_URL"
_USER_AGENT = f"paradigm-trio/{__version__}"


def check_base_url(url: str) -> str:
    """The base URL, normalised; messages about it never show its password."""
    try:
        parsed = httpx2.URL(url)
    except Exception as exc:
        shown, host = mask_bad_url(url), url_host(url)
        problem = host_problem(host) if host else None
        if host and problem:  # a non-ASCII host that httpx2 refused without saying why
            raise ConfigurationError(_bad_host(shown, host, problem)) from None
        raise ConfigurationError(
            f"base URL {shown!r} is not a valid URL: {_url_problem(shown, exc)}"
        ) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        shown = mask_credentials(str(parsed)) if parsed.host else mask_bad_url(url)
        raise ConfigurationError(
            f"base URL {shown!r} must be an absolute http:// or https:// URL "
            f"(set it with base_url=... or {BASE_URL_ENV})"
        )
    problem = host_problem(parsed.host)
    if problem is not None:
        raise ConfigurationError(_bad_host(mask_credentials(str(parsed)), parsed.host, problem))
    return str(parsed).rstrip("/")


def _bad_host(shown: str, host: str, problem: str) -> str:
    """The message for a base URL whose host cannot be looked up (``problem``: why)."""
    return (
        f"base URL {shown!r}: the host {host!r} is not a valid host name: {problem} "
        f"(set it with base_url=... or {BASE_URL_ENV})"
    )


def _url_problem(shown: str, exc: Exception) -> str:
    """Why a URL does not parse, said without quoting its credentials (``shown``: masked)."""
    if "@" not in shown:
        return str(exc)  # no credentials in it
    try:
        httpx2.URL(shown)
    except Exception as masked:
        return str(masked)  # the same problem, outside the credentials
    return "check its user:password@ part"


def check_key(key: object) -> str:
    """The key given, else ``$PARADIGM_API_KEY``, checked (see ``_redact.check_api_key``)."""
    source = "api_key="
    if key is None:
        key, source = os.environ.get(API_KEY_ENV), f"${API_KEY_ENV}"
    if key is None or key == "":
        raise ConfigurationError(
            f"no API key: pass api_key=... to Client() or set the {API_KEY_ENV} "
            "environment variable"
        )
    return check_api_key(key, source=source)


def _check_network(network: Mapping[str, object], *, own: bool) -> None:
    """Refuse network options that would be ignored (the client's transport is not ours)."""
    defaults = {"proxy": None, "verify": True, "cert": None, "trust_env": True}
    given = [name for name, value in network.items() if value is not defaults[name]]
    if given and not own:
        names = ", ".join(f"{name}=" for name in given)
        raise ConfigurationError(
            f"{names} configure the client's own transport: with transport= or "
            "http_client=, set them there (TrioTransport(proxy=..., verify=...) or "
            "httpx2.AsyncClient(proxy=..., verify=...))"
        )


def check_http(http_client: object, transport: object) -> None:
    """Refuse an ``http_client``/``transport`` that cannot work, naming the fix."""
    if http_client is not None and transport is not None:
        raise ConfigurationError("pass http_client or transport, not both")
    for name, value, kind in (
        ("http_client", http_client, "AsyncClient"),
        ("transport", transport, "AsyncHTTPTransport"),
    ):
        if value is None:
            continue
        got = f"{type(value).__module__}.{type(value).__qualname__}"
        if any(cls.__module__.partition(".")[0] == "httpx" for cls in type(value).__mro__):
            kind = type(value).__name__ if hasattr(httpx2, type(value).__name__) else kind
            raise ConfigurationError(
                f"{name}= is an {got} from the httpx package; paradigm-trio uses httpx2, "
                f"the maintained continuation of httpx with the same API: pass an "
                f"httpx2.{kind}(...) instead (import httpx2)"
            )
        if name == "http_client" and not isinstance(value, httpx2.AsyncClient):
            raise ConfigurationError(f"http_client= must be an httpx2.AsyncClient, got {got}")
        if name == "transport" and not callable(getattr(value, "handle_async_request", None)):
            raise ConfigurationError(
                "transport= must be an httpx2.AsyncBaseTransport (such as "
                f"httpx2.MockTransport or paradigm_trio.TrioTransport), got {got}"
            )


def transport_of(
    http_client: httpx2.AsyncClient | None,
    transport: httpx2.AsyncBaseTransport | None,
    network: dict[str, Any],
    concurrency: int,
) -> httpx2.AsyncBaseTransport | None:
    """The transport to call directly (the client's own, or the one given), or ``None``
    when the user's ``http_client`` sends.  No ``httpx2.AsyncClient`` is built around a
    transport we call directly: its settings would apply to nothing."""
    _check_network(network, own=http_client is None and transport is None)
    if http_client is not None:
        return None
    if transport is None:
        return TrioTransport(max_keepalive=concurrency, **network)
    return transport


def engine_of(limits: Limits, ledger: Ledger) -> Engine:
    """The engine of a client with these ``limits``: its slots, its rates (its own
    buckets, or a shared quota's, opened in ``async with``), the adaptive controller."""
    limiter = trio.CapacityLimiter(limits.concurrency)
    rates: Rates
    if limits.shared is None:
        rates = RateLimiter(limits.requests_per_minute, limits.tokens_per_minute)
    else:
        rates = SharedRateLimiter(
            limits.shared, limits.requests_per_minute, limits.tokens_per_minute, emit=ledger.emit
        )
    adaptive = AdaptiveController(
        limiter, maximum=limits.concurrency, rates=rates, enabled=limits.adaptive
    )
    return Engine(limiter=limiter, rates=rates, adaptive=adaptive, ledger=ledger)


def check_models(model: object, embedding_model: object, pack_embeddings: object) -> None:
    """The client's default models (non-empty strings) and ``pack_embeddings`` (a bool)."""
    for name, value in (("model", model), ("embedding_model", embedding_model)):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    if not isinstance(pack_embeddings, bool):
        raise ConfigurationError(f"pack_embeddings must be True or False, got {pack_embeddings!r}")


def http_of(
    base_url: str,
    key: str,
    headers: Mapping[str, str] | None,
    http_client: httpx2.AsyncClient | None,
    direct: httpx2.AsyncBaseTransport | None,
) -> HTTP:
    """The client's HTTP layer: the key in ``Authorization`` (and the ``Redactor`` that
    removes it from everything the server sends back), JSON both ways, the User-Agent,
    then the caller's ``headers``."""
    return HTTP(
        base_url=base_url,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
            **(headers or {}),
        },
        http_client=http_client,
        direct=direct,
        redactor=Redactor(key),
    )


def cache_of(cache: object, base_url: str) -> CacheStore | None:
    """The client's cache (``cache=``), for the answers of the base URL's host."""
    if cache is None:
        return None
    if not isinstance(cache, ResponseCache):
        raise ConfigurationError(f"cache must be a ResponseCache or None, got {cache!r}")
    return CacheStore(cache, (urlsplit(base_url).hostname or "").lower())
