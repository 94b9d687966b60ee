"""Which proxy a request goes through: httpx2's rules, environment variables included.

:class:`ProxyRules` is built once per transport from ``proxy=`` and ``trust_env``:

* ``proxy="http://user:pass@proxy:3128"`` (or an ``httpx2.Proxy``) sends every request
  through that proxy; the environment is not read (as httpx2).
* Otherwise, with ``trust_env`` (the default), the environment as ``urllib`` and httpx2
  read it (``urllib.request.getproxies()``: lower case wins over upper case):
  ``HTTP_PROXY`` for ``http`` URLs, ``HTTPS_PROXY`` for ``https`` ones, ``ALL_PROXY`` for
  both when the specific one is unset; a value without a scheme is ``http://``.
  ``NO_PROXY`` is a comma-separated list of destinations reached directly:

  ============================ ===================================================
  ``*``                        everything (no proxy at all)
  ``example.com``              ``example.com`` and its subdomains (not ``myexample.com``)
  ``.example.com``,            the subdomains of ``example.com`` only
  ``*.example.com``
  ``example.com:8443``         that host (and subdomains) on that port only
  ``localhost``, ``10.1.2.3``, that host or address
  ``::1``, ``[::1]:8080``
  ``10.0.0.0/8``, ``fd00::/8`` the addresses of that network
  ``https://example.com``      that scheme and host only
  ============================ ===================================================

  Entries that cannot be parsed are ignored (like curl, Go and httpx2).  The most
  specific rule wins: a rule with a port before one without, a host before a network,
  a smaller network before a larger one, a longer host before a shorter one.  One
  difference with httpx2: a port in a rule also matches the scheme's default port
  written out or not (``NO_PROXY=example.com:443`` covers ``https://example.com``).
* ``trust_env=False`` and no ``proxy=``: no proxy.

Proxy credentials (``http://user:pass@proxy:3128``) become a ``Proxy-Authorization:
Basic`` header; they never appear in a repr, a message or a log line.  A proxy URL whose
host cannot be looked up (``_hostname``) is refused when the rules are built, with the
host and why.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import httpx2

from .._errors import ConfigurationError
from ._hostname import host_problem, url_host

__all__ = ["ProxyRoute", "ProxyRules", "ProxyTypes"]

ProxyTypes: TypeAlias = str | httpx2.URL | httpx2.Proxy
"""What ``proxy=`` takes: a URL (``http://user:pass@proxy:3128``) or an ``httpx2.Proxy``."""

DEFAULT_PORTS = {"http": 80, "https": 443}

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, eq=False)
class ProxyRoute:
    """A proxy to go through: its URL (without credentials) and what to send it.

    Attributes:
        url: the proxy's URL, ``http://`` or ``https://`` (TLS to the proxy).
        host, port: where to connect.
        headers: sent to the proxy only: on ``CONNECT``, and on requests forwarded to
            ``http`` URLs (``Proxy-Authorization`` from the URL's credentials first).
        ssl_context: for an ``https://`` proxy, the context given with the
            ``httpx2.Proxy``, or ``None`` for the transport's.
        source: where it came from: ``"proxy="``, ``"HTTPS_PROXY"``, ...
    """

    url: httpx2.URL
    headers: tuple[tuple[bytes, bytes], ...] = ()
    ssl_context: ssl.SSLContext | None = None
    source: str = "proxy="
    authenticated: bool = field(default=False)

    @property
    def host(self) -> str:
        return self.url.host

    @property
    def port(self) -> int:
        return self.url.port or DEFAULT_PORTS[self.url.scheme]

    @property
    def tls(self) -> bool:
        return self.url.scheme == "https"

    def __str__(self) -> str:
        return str(self.url)

    def __repr__(self) -> str:
        auth = ", auth='***'" if self.authenticated else ""
        return f"ProxyRoute({str(self.url)!r}{auth}, source={self.source!r})"


def make_route(proxy: ProxyTypes, source: str) -> ProxyRoute:
    """The route of a proxy URL or ``httpx2.Proxy``, credentials turned into a header.

    Raises:
        ConfigurationError: not an ``http://`` or ``https://`` proxy URL, or one whose
            host cannot be looked up (:func:`~paradigm_trio._hostname.host_problem`).
    """
    try:
        spec = proxy if isinstance(proxy, httpx2.Proxy) else httpx2.Proxy(url=proxy)
    except (ValueError, httpx2.InvalidURL, TypeError):
        host = url_host(proxy)
        problem = host_problem(host) if host else None
        if host and problem:  # a non-ASCII host that httpx2 refused without saying why
            raise ConfigurationError(_bad_host(source, host, problem)) from None
        scheme = str(proxy).partition("://")[0] if "://" in str(proxy) else ""
        raise ConfigurationError(_bad_proxy(scheme, source)) from None
    if spec.url.scheme not in DEFAULT_PORTS or not spec.url.host:
        raise ConfigurationError(_bad_proxy(spec.url.scheme, source))
    problem = host_problem(spec.url.host)
    if problem:
        raise ConfigurationError(_bad_host(source, spec.url.host, problem))
    headers = list(spec.headers.raw)
    if spec.raw_auth is not None:
        token = base64.b64encode(b":".join(spec.raw_auth))
        headers.insert(0, (b"Proxy-Authorization", b"Basic " + token))
    return ProxyRoute(
        url=spec.url,
        headers=tuple(headers),
        ssl_context=spec.ssl_context,
        source=source,
        authenticated=spec.raw_auth is not None,
    )


def _bad_host(source: str, host: str, problem: str) -> str:
    """The message for a proxy whose host cannot be looked up (``problem``: why); the
    host is shown, never the URL (it may hold a password)."""
    return f"{source}: the proxy's host {host!r} is not a valid host name: {problem}"


def _bad_proxy(scheme: str, source: str) -> str:
    if scheme.startswith("socks"):
        return (
            f"{source}: SOCKS proxies are not supported by the default transport; use an "
            "http:// or https:// proxy, or pass http_client=httpx2.AsyncClient(proxy=...) "
            "with httpx2's socks extra"
        )
    return (
        f"{source}: a proxy must be an http:// or https:// URL, such as "
        "http://proxy.example:3128 (the URL is not shown: it may hold a password)"
    )


@dataclass(frozen=True)
class _Rule:
    """One routing rule: which URLs it matches, and the proxy they take (``None``: direct)."""

    scheme: str  # "" for any
    host: str  # "" for any; else the exact host, or the domain of a wildcard
    wildcard: str  # "", "sub" (subdomains only) or "domain" (domain and subdomains)
    network: Network | None
    port: int | None
    route: ProxyRoute | None
    text: str  # the rule as written, for doctor

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if self.scheme and self.scheme != scheme:
            return False
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        if not self.host:
            return True
        if self.wildcard == "":
            return host == self.host
        if host.endswith("." + self.host):
            return True
        return self.wildcard == "domain" and host == self.host

    def key(self) -> tuple[object, ...]:
        """What the rule matches (two rules with one key match the same URLs)."""
        return (self.scheme, self.host, self.wildcard, self.network, self.port)

    def priority(self) -> tuple[int, int, int, int, int]:
        kind = 1 if self.network is not None else 0 if self.host else 2
        size = self.network.num_addresses if self.network is not None else 0
        length = 0 if self.network is not None else -len(self._pattern_host())
        return (0 if self.port is not None else 1, kind, size, length, -len(self.scheme))

    def _pattern_host(self) -> str:
        return {"": "", "sub": "*.", "domain": "*"}[self.wildcard] + self.host


def _host_rule(text: str, scheme: str, host: str, wildcard: str) -> _Rule | None:
    """A direct rule for ``host[:port]`` (an address in brackets included), ``None`` if it
    cannot be parsed.  ``wildcard``: ``""`` (exact), ``"sub"`` or ``"domain"``."""
    try:
        url = httpx2.URL(f"all://{host}")  # "all": no default port, so ":443" stays
    except (httpx2.InvalidURL, ValueError):
        return None
    if url.path not in ("", "/") or url.query or url.userinfo or not url.host:
        return None
    return _Rule(scheme, url.host, wildcard, None, url.port, None, text)


def _address_rule(text: str) -> _Rule | None:
    """A direct rule for an IP address or network, ``None`` if ``text`` is neither."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if "/" not in text:  # one address: an exact host
        return _Rule("", str(network.network_address), "", None, None, None, text)
    return _Rule("", "", "", network, None, None, text)


def _scheme_rule(entry: str) -> _Rule | None:
    scheme, _, rest = entry.partition("://")
    scheme = "" if scheme.lower() == "all" else scheme.lower()
    if "/" in rest.rstrip("/"):
        rule = _address_rule(rest)
        return None if rule is None else dataclasses.replace(rule, scheme=scheme, text=entry)
    if rest in ("", "*") or rest.startswith("*:"):
        rule = _host_rule(entry, scheme, "any" + rest[1:], "")
        return None if rule is None else dataclasses.replace(rule, host="")
    if rest.startswith("*."):
        return _host_rule(entry, scheme, rest[2:], "sub")
    if rest.startswith("*"):
        return _host_rule(entry, scheme, rest[1:], "domain")
    return _host_rule(entry, scheme, rest, "")


def _no_proxy_rule(entry: str) -> _Rule | None:
    """The direct-connection rule of one ``NO_PROXY`` entry (``None``: ignored)."""
    if "://" in entry:  # scheme://host[:port], the host exact unless it has a "*"
        return _scheme_rule(entry)
    if entry.startswith("["):  # [v6]:port
        return _host_rule(entry, "", entry, "")
    address = _address_rule(entry)
    if address is not None or "/" in entry:
        return address
    if entry.lower() == "localhost":
        return _host_rule(entry, "", entry, "")
    if entry.startswith(("*.", ".")):
        return _host_rule(entry, "", entry.removeprefix("*").removeprefix("."), "sub")
    return _host_rule(entry, "", entry, "domain")


class ProxyRules:
    """The proxy (or none) for each origin; cached, so a lookup costs one dict access.

    Args:
        proxy: the proxy for every request, or ``None`` to read the environment.
        trust_env: whether to read ``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``.
        environ: the proxy settings as ``urllib.request.getproxies()`` returns them (by
            default, read from the environment now).

    Raises:
        ConfigurationError: a proxy URL that is not ``http://`` or ``https://``, or
            whose host cannot be looked up (an empty label as in ``proxy..example``, a
            label over 63 characters, characters a host name cannot have).
    """

    def __init__(
        self,
        proxy: ProxyTypes | None = None,
        *,
        trust_env: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        rules: dict[tuple[object, ...], _Rule] = {}
        if proxy is not None:
            route = make_route(proxy, "proxy=")
            rules[()] = _Rule("", "", "", None, None, route, "proxy=")
        elif trust_env:
            env = urllib.request.getproxies() if environ is None else environ
            rules = _environment_rules(env)
        self._rules = sorted(rules.values(), key=_Rule.priority)
        self._cache: dict[tuple[str, str, int], _Rule | None] = {}

    @property
    def configured(self) -> bool:
        """Whether any request may go through a proxy."""
        return any(rule.route is not None for rule in self._rules)

    def rule_for(self, scheme: str, host: str, port: int) -> _Rule | None:
        key = (scheme, host, port)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = next((r for r in self._rules if r.matches(scheme, host, port)), None)
        if len(self._cache) >= 1024:
            self._cache.clear()
        self._cache[key] = found
        return found

    def route_for(self, scheme: str, host: str, port: int) -> ProxyRoute | None:
        """The proxy for this origin, or ``None`` to connect directly."""
        rule = self.rule_for(scheme, host, port)
        return None if rule is None else rule.route

    def explain(self, url: str | httpx2.URL) -> str:
        """How a request to ``url`` goes, in words (for ``doctor``)."""
        url = httpx2.URL(url)
        port = url.port or DEFAULT_PORTS.get(url.scheme, 0)
        rule = self.rule_for(url.scheme, url.host, port)
        if rule is None:
            return "direct (no proxy configured for it)"
        if rule.route is None:
            return f"direct (NO_PROXY entry {rule.text!r})"
        return f"through the proxy {rule.route.url} (from {rule.route.source})"

    def __repr__(self) -> str:
        return f"ProxyRules({[r.text for r in self._rules]!r})"


_SCHEMES = {"http": "HTTP_PROXY", "https": "HTTPS_PROXY", "all": "ALL_PROXY"}


def _environment_rules(env: Mapping[str, str]) -> dict[tuple[object, ...], _Rule]:
    """The rules of ``getproxies()``'s answer, keyed by what they match: a ``NO_PROXY``
    entry for the same URLs as a proxy (``http://``) replaces it, as in httpx2."""
    rules: dict[tuple[object, ...], _Rule] = {}
    for scheme, name in _SCHEMES.items():
        value = env.get(scheme)
        if value:
            value = value if "://" in value else f"http://{value}"
            rule = _Rule("" if scheme == "all" else scheme, "", "", None, None, None, name)
            rules[rule.key()] = dataclasses.replace(rule, route=make_route(value, name))
    for entry in (e.strip() for e in env.get("no", "").split(",")):
        if entry == "*":
            return {}
        found = _no_proxy_rule(entry) if entry else None
        if found is not None:
            rules[found.key()] = found
    return rules
