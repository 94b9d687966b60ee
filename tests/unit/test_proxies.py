"""Proxy rules: the environment, NO_PROXY, explicit proxies, credentials kept secret.

The routing must be httpx2's, so that nothing surprises a user who moves from httpx2: a
property test compares every decision with httpx2's own (its private ``_utils``, read
here only as the reference).
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

import paradigm_trio as pt
from paradigm_trio._transport._proxies import ProxyRules


def route(rules: ProxyRules, url: str) -> str | None:
    u = httpx2.URL(url)
    found = rules.route_for(u.scheme, u.host, u.port or {"http": 80, "https": 443}[u.scheme])
    return None if found is None else str(found.url)


ENV = {"http": "http://p-http:3128", "https": "http://p-https:3128"}


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("example.com", "https://example.com/", True),
        ("example.com", "https://www.example.com/", True),
        ("example.com", "https://myexample.com/", False),
        (".example.com", "https://example.com/", False),
        (".example.com", "https://www.example.com/", True),
        ("*.example.com", "https://example.com/", False),
        ("*.example.com", "https://a.b.example.com/", True),
        ("example.com:8443", "https://example.com:8443/", True),
        ("example.com:8443", "https://example.com/", False),
        ("example.com:443", "https://example.com/", True),  # the default port written out
        ("localhost", "http://localhost:8000/", True),
        ("localhost", "http://notlocalhost/", False),
        ("10.0.0.0/8", "http://10.20.30.40/", True),
        ("10.0.0.0/8", "http://11.0.0.1/", False),
        ("10.1.2.3", "http://10.1.2.3:9000/", True),
        ("::1", "http://[::1]:8000/", True),
        ("fd00::/8", "https://[fd12::1]/", True),
        ("[::1]:8080", "http://[::1]:8080/", True),
        ("[::1]:8080", "http://[::1]:8081/", False),
        ("https://example.com", "https://example.com/", True),
        ("https://example.com", "http://example.com/", False),
        ("*", "https://anything.example/", True),
        ("other.org, example.com", "https://example.com/", True),
        ("  example.com  ,", "https://example.com/", True),
        ("EXAMPLE.COM", "https://example.com/", True),
        ("10.0.0.0/99, example.com", "https://example.com/", True),  # bad entries ignored
        ("", "https://example.com/", False),
    ],
)
def test_no_proxy_entries(no_proxy: str, url: str, direct: bool) -> None:
    rules = ProxyRules(environ={**ENV, "no": no_proxy})
    expected = None if direct else ENV[httpx2.URL(url).scheme]
    assert route(rules, url) == expected


def test_https_proxy_for_https_all_proxy_for_the_rest() -> None:
    rules = ProxyRules(environ={"https": "p-https:3128", "all": "http://p-all:8080"})
    assert route(rules, "https://api.example/") == "http://p-https:3128"  # scheme added
    assert route(rules, "http://api.example/") == "http://p-all:8080"


def test_the_environment_in_either_case(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("no_proxy", "internal.example")
    rules = ProxyRules()
    assert route(rules, "https://api.example/") == "http://upper:1"
    assert route(rules, "https://llm.internal.example/") is None
    assert route(ProxyRules(trust_env=False), "https://api.example/") is None
    # An explicit proxy wins over the environment, NO_PROXY included.
    explicit = ProxyRules("http://mine:3128")
    assert route(explicit, "https://llm.internal.example/") == "http://mine:3128"


def test_credentials_become_a_header_and_are_never_shown() -> None:
    rules = ProxyRules("http://alice:s3cr%40t@proxy.example:3128")
    found = rules.route_for("https", "api.example", 443)
    assert found is not None
    assert str(found.url) == "http://proxy.example:3128"
    assert found.headers[0] == (b"Proxy-Authorization", b"Basic YWxpY2U6czNjckB0")  # alice:s3cr@t
    for text in (repr(found), str(found), repr(rules), rules.explain("https://api.example/")):
        assert "s3cr" not in text
        assert "alice" not in text
    assert "auth='***'" in repr(found)


def test_an_httpx2_proxy_keeps_its_headers() -> None:
    proxy = httpx2.Proxy("https://proxy.example", auth=("u", "p"), headers={"X-Team": "nlp"})
    found = ProxyRules(proxy).route_for("http", "api.example", 80)
    assert found is not None
    assert found.tls
    assert found.port == 443
    assert [name for name, _ in found.headers] == [b"Proxy-Authorization", b"X-Team"]


@pytest.mark.parametrize(
    ("proxy", "words"),
    [
        ("socks5://user:secret@proxy:1080", "SOCKS proxies are not supported"),
        ("ftp://user:secret@proxy:21", "must be an http:// or https:// URL"),
        ("http://", "must be an http:// or https:// URL"),
    ],
)
def test_a_proxy_that_cannot_work_is_refused_without_showing_it(proxy: str, words: str) -> None:
    with pytest.raises(pt.ConfigurationError, match=words) as info:
        ProxyRules(proxy)
    assert "secret" not in str(info.value)
    with pytest.raises(pt.ConfigurationError, match="ALL_PROXY"):
        ProxyRules(environ={"all": proxy})


def test_explain_says_which_rule_applied() -> None:
    rules = ProxyRules(environ={"https": "http://alice:pw@p:1", "no": ".corp.example"})
    assert rules.explain("https://api.example/v2") == (
        "through the proxy http://p:1 (from HTTPS_PROXY)"
    )
    assert rules.explain("https://llm.corp.example/") == "direct (NO_PROXY entry '.corp.example')"
    assert rules.explain("http://api.example/") == "direct (no proxy configured for it)"


# --------------------------------------------------------------------------- same as httpx2

HOSTS = [
    "example.com", "www.example.com", "myexample.com", "a.b.example.com", "localhost",
    "10.1.2.3", "10.200.0.1", "192.168.1.1", "::1", "fd12::1", "paradigm.internal",
]  # fmt: skip
ENTRIES = [
    "example.com", ".example.com", "*.example.com", "example.com:8080", "localhost",
    "10.0.0.0/8", "10.1.2.3", "::1", "[::1]:8080", "https://example.com",
    "http://www.example.com:8080", "*", "", "fd00::/8", "192.168.0.0/16", "bad/entry",
    "10.0.0.0/33", "paradigm.internal", ".internal", "LOCALHOST", "10.1.2.3:8080",
    "all://myexample.com", "https://", "[fd12::1]",
]  # fmt: skip


def httpx2_route(environ: dict[str, str], url: str, monkeypatch: Any) -> str | None:
    from httpx2 import _utils

    monkeypatch.setattr(_utils, "getproxies", lambda: environ)
    mounts = _utils.get_environment_proxies()
    patterns = sorted((_utils.URLPattern(key), value) for key, value in mounts.items())
    u = httpx2.URL(url)
    return next((value for pattern, value in patterns if pattern.matches(u)), None)


@given(
    proxies=st.dictionaries(
        st.sampled_from(["http", "https", "all"]),
        st.sampled_from(["http://p1:3128", "http://p2:8080", "https://p3"]),
    ),
    entries=st.lists(st.sampled_from(ENTRIES), max_size=4),
    scheme=st.sampled_from(["http", "https"]),
    host=st.sampled_from(HOSTS),
    port=st.sampled_from([None, 8080, 8443]),
)
def test_every_decision_is_httpx2s(
    proxies: dict[str, str], entries: list[str], scheme: str, host: str, port: int | None
) -> None:
    environ = {**proxies, "no": ",".join(entries)}
    authority = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{authority}{f':{port}' if port else ''}/api/v2"
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = httpx2_route(environ, url, monkeypatch)
    assert route(ProxyRules(environ=environ), url) == expected
