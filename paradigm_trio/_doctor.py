"""``check_connection``: each step of a first request, tried in turn, with what failed and why.

What ``paradigm-trio doctor`` prints.  The steps: the configuration (base URL, key, CA
and certificate files), the route (direct, or which proxy and why), which CAs are
trusted, the look-up of the host name the connection goes to (the server's, or the
proxy's: through a proxy, the server's name is the proxy's to look up), then opening a
connection as the client would (TCP to the server or the proxy, TLS to the proxy, the
``CONNECT`` tunnel, TLS to the server), then ``GET /models`` with the key.  The first
step that fails ends the check; its ``detail`` is the error the client would raise (for
the look-up, the resolver's), and ``fix`` what to do about it.  A host name that cannot
be looked up at all (an empty label, a label over 63 characters) is refused with the
client, so it fails the ``configuration`` step, before any look-up.

The look-up goes through the transport's DNS cache (``_resolve``), with trio's
``getaddrinfo`` as a connection does, within the ``connect`` timeout: the connections
that follow (the ``connect`` step's, the request's) use its answer, not a look-up of
their own.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import httpx2
import trio

from ._client._client import Client
from ._client._setup import API_KEY_ENV
from ._config import RetryPolicy, Timeouts
from ._errors import (
    APIError,
    AuthenticationError,
    CertificateVerificationError,
    ConfigurationError,
    NotFoundError,
    ProxyError,
)
from ._transport import (
    CertTypes,
    Origin,
    ProxyRoute,
    ProxyTypes,
    TrioTransport,
    VerifyTypes,
    describe_verify,
    is_address,
    origin_of,
)

__all__ = ["CHECK_TIMEOUTS", "CheckStep", "ConnectionCheck", "check_connection"]

CHECK_TIMEOUTS = Timeouts(connect=10.0, read=30.0, attempt=60.0)
"""The default timeouts of :func:`check_connection`: a diagnosis should not wait long."""


@dataclass(frozen=True)
class CheckStep:
    """One step of :func:`check_connection`.

    Attributes:
        name: ``"configuration"``, ``"route"``, ``"trust"``, ``"resolve"``,
            ``"connect"``, ``"proxy tls"``, ``"tunnel"``, ``"tls"`` or ``"models"``.
        ok: whether it passed.
        detail: what was found, or the error.
        fix: for a failed step, what to do about it (``None`` when the error says it).
    """

    name: str
    ok: bool
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class ConnectionCheck:
    """What :func:`check_connection` found: its steps, in order; the first failure is last."""

    steps: tuple[CheckStep, ...]

    @property
    def ok(self) -> bool:
        """Whether every step passed."""
        return all(step.ok for step in self.steps)

    def __str__(self) -> str:
        lines = []
        for step in self.steps:
            lines.append(f"{'ok' if step.ok else 'FAILED':<8}{step.name:<15}{step.detail}")
            if step.fix:
                lines.append(f"{'':<23}fix: {step.fix}")
        return "\n".join(lines)


async def check_connection(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    proxy: ProxyTypes | None = None,
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    trust_env: bool = True,
    timeouts: Timeouts | None = None,
) -> ConnectionCheck:
    """Try each step of a first request to the API and report on each.

    Takes the network arguments of :class:`Client` (and its defaults: the key from
    ``$PARADIGM_API_KEY``, the URL from ``$PARADIGM_BASE_URL``); ``timeouts`` bound the
    network steps (default: 10 s to connect, 30 s to read, 60 s for the request): the
    ``connect`` timeout bounds the host name's look-up, then the connection.  Never raises
    for a failed step: it is in the result.  Blocks for the look-up, the connection and the
    request; cancelling it closes what it opened.
    """
    steps: list[CheckStep] = []
    try:
        transport = TrioTransport(proxy=proxy, verify=verify, cert=cert, trust_env=trust_env)
        retry = RetryPolicy(attempts=1)
        timeouts = timeouts or CHECK_TIMEOUTS
        client = Client(
            api_key=api_key, base_url=base_url, transport=transport, retry=retry,
            timeouts=timeouts,
        )  # fmt: skip
    except ConfigurationError as exc:
        steps.append(CheckStep("configuration", False, str(exc)))
        return ConnectionCheck(tuple(steps))
    source = "given" if api_key is not None else f"from {API_KEY_ENV}"
    steps.append(CheckStep("configuration", True, f"{client.base_url}, API key set ({source})"))
    async with client:
        await _check_route(steps, client, transport, verify, trust_env, timeouts.connect)
        if steps[-1].ok:
            steps.append(await _check_models(client))
    return ConnectionCheck(tuple(steps))


async def _check_route(
    steps: list[CheckStep],
    client: Client,
    transport: TrioTransport,
    verify: VerifyTypes,
    trust_env: bool,
    connect_timeout: float | None,
) -> None:
    """The route, the trusted CAs, the host name's look-up, then a connection opened step
    by step (to the addresses the look-up found: the transport's DNS cache keeps them)."""
    url = httpx2.URL(client.base_url)
    origin = origin_of(url)
    route = transport._proxies.route_for(*origin)
    steps.append(CheckStep("route", True, transport.explain_route(url)))
    if url.scheme == "https" or (route is not None and route.tls):
        steps.append(CheckStep("trust", True, describe_verify(verify, trust_env=trust_env)))
    timeout = math.inf if connect_timeout is None else connect_timeout
    steps.append(await _check_resolve(transport, origin, route, timeout))
    if not steps[-1].ok:
        return
    expected = ["connect"]
    expected += ["proxy tls"] if route is not None and route.tls else []
    expected += ["tunnel"] if route is not None and url.scheme == "https" else []
    expected += ["tls"] if url.scheme == "https" else []
    done: list[str] = []

    def report(step: str, detail: str) -> None:
        done.append(step)
        steps.append(CheckStep(step, True, detail))

    try:
        conn = await transport._connect(origin, timeout, report)
    except httpx2.HTTPError as exc:
        failed = next((s for s in expected if s not in done), expected[-1])
        error = client._http.transport_failure(exc).error  # as it would be
        steps.append(CheckStep(failed, False, error.message, _connect_fix(failed, error, route)))
        return
    await conn.close()


async def _check_resolve(
    transport: TrioTransport, origin: Origin, route: ProxyRoute | None, connect_timeout: float
) -> CheckStep:
    """The look-up of the host the connection goes to (the proxy's, through a proxy), as
    a connection looks it up: trio's ``getaddrinfo``, through the transport's DNS cache."""
    host, port = (origin[1], origin[2]) if route is None else (route.host, route.port)
    named = host if route is None else f"{host} (the proxy)"
    if is_address(host):
        await trio.lowlevel.checkpoint()
        return CheckStep("resolve", True, f"{named}: an IP address, no look-up")
    start = trio.current_time()
    try:
        with trio.fail_after(connect_timeout):
            targets = await transport._resolver.addresses(host, port)
    except trio.TooSlowError:
        detail = f"looking up {named} timed out after {connect_timeout:g} s"
        return CheckStep("resolve", False, detail, _resolve_fix(route, slow=True))
    except (OSError, UnicodeError) as exc:  # socket.gaierror: an unknown name, no DNS
        # server answering; UnicodeError: a name that cannot be encoded, which the
        # configuration step refuses (``_hostname``): should trio's encoding differ
        return CheckStep("resolve", False, f"cannot resolve {named}: {exc}", _resolve_fix(route))
    took = trio.current_time() - start
    took_text = f"{took * 1000:.1f} ms" if took < 1 else f"{took:.2f} s"
    found = list(dict.fromkeys(str(target[4][0]) for target in targets))  # in the order tried
    more = f" and {len(found) - 4} more" if len(found) > 4 else ""
    return CheckStep(
        "resolve", True, f"{named}: {', '.join(found[:4])}{more} (looked up in {took_text})"
    )


def _resolve_fix(route: ProxyRoute | None, *, slow: bool = False) -> str:
    """What to do when the host name could not be looked up."""
    if slow:
        return (
            "no DNS server answered in time: check the machine's DNS settings (its name "
            "servers) and network, or allow more time: --timeout (timeouts=)"
        )
    if route is not None:
        return (
            f"check the spelling of the host in the proxy URL (from {route.source}), and "
            "the machine's DNS settings"
        )
    return (
        "check the spelling of the host in the base URL (--base-url, $PARADIGM_BASE_URL), "
        "and the machine's DNS settings; a host known only inside a company network may "
        "have to be reached through its proxy: set HTTPS_PROXY or pass --proxy"
    )


def _connect_fix(step: str, error: APIError, route: Any) -> str | None:
    """What to do when opening the connection failed at ``step``."""
    if isinstance(error, CertificateVerificationError | ProxyError):
        return None  # their message says it
    if step == "connect" and route is None:  # the name resolved: the step before
        return (
            "the host's address is known (resolve), but nothing accepted the connection "
            "there: check the port of the base URL, that the server is up and listening "
            "on that port, and that no firewall blocks it; if the server is reached "
            "through a proxy, set HTTPS_PROXY or pass --proxy"
        )
    if step == "connect":
        return (
            "the proxy's address is known (resolve), but nothing accepted the connection "
            "there: check the port of the proxy URL, that the proxy is up and listening "
            "on that port, and that no firewall blocks it"
        )
    if step == "tunnel":
        return (
            "the proxy cannot reach the server: check the base URL; if the server is on "
            "your internal network, add its host to NO_PROXY (or use --no-env-proxy)"
        )
    if step == "tls" and "client certificate" not in error.message:
        return "if the server requires a client certificate, pass --client-cert (cert=)"
    return None


async def _check_models(client: Client) -> CheckStep:
    """``GET /models`` with the key, as the client sends it."""
    try:
        models = await client.models()
    except AuthenticationError as exc:
        key = "the API key" + ("" if os.environ.get(API_KEY_ENV) is None else f" (${API_KEY_ENV})")
        return CheckStep("models", False, str(exc), f"check {key}: the server refused it")
    except NotFoundError as exc:
        return CheckStep(
            "models", False, str(exc),
            "the base URL must be the API root, such as https://paradigm.lighton.ai/api/v2",
        )  # fmt: skip
    except APIError as exc:
        return CheckStep("models", False, str(exc))
    await trio.lowlevel.checkpoint()
    names = ", ".join(m.id for m in models[:3]) + (", ..." if len(models) > 3 else "")
    return CheckStep("models", True, f"GET /models: 200, {len(models)} model(s) ({names})")
