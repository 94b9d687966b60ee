"""Host names that cannot be looked up (an empty label, a label over 63 characters,
characters a host name cannot have): refused with the reason when the client, the proxy
rules or the transport are built, and at connect time (a URL built later) an
``APIConnectionError``, never retried.  Before, trio's look-up raised a bare
``UnicodeError`` from deep inside the transport.  No sockets: every name here is refused
before any look-up."""

from __future__ import annotations

import re

import httpx2
import pytest

import paradigm_trio as pt
from paradigm_trio._transport._proxies import ProxyRules

from .helpers import API_KEY, MESSAGES

LONG = "a" * 64  # one character more than a DNS label may have
EMPTY = "empty label"
TOO_LONG = "64 characters long, more than the 63"

BAD_HOSTS = [
    pytest.param("a..b", EMPTY, id="two-dots"),
    pytest.param(".example", EMPTY, id="leading-dot"),
    pytest.param("api.example..", EMPTY, id="two-trailing-dots"),
    pytest.param(f"{LONG}.example", TOO_LONG, id="long-first-label"),
    pytest.param(f"api.{LONG}", TOO_LONG, id="long-last-label"),
    # Non-ASCII: httpx2 refused them already, without saying why.
    pytest.param("bücher..example", EMPTY, id="idn-two-dots"),
    pytest.param("ü" * 70 + ".example", "once encoded", id="idn-long-label"),
    pytest.param("☃.example", "a host name cannot have (Codepoint U+2603", id="idn-char"),
]


@pytest.mark.parametrize(("host", "why"), BAD_HOSTS)
def test_a_base_url_whose_host_cannot_be_looked_up_is_refused(host: str, why: str) -> None:
    url = f"https://{host}/api/v2"
    with pytest.raises(pt.ConfigurationError) as info:
        pt.Client(api_key=API_KEY, base_url=url)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert f"the host {host!r} is not a valid host name: " in message, message
    assert why in message, message
    assert API_KEY not in message


def test_the_message_says_what_is_wrong_in_full() -> None:
    with pytest.raises(pt.ConfigurationError) as info:
        pt.Client(api_key=API_KEY, base_url="https://user:s3cret@a..b/api/v2")
    assert str(info.value) == (
        "base URL 'https://user:***@a..b/api/v2': the host 'a..b' is not a valid host "
        "name: it has an empty label (two dots in a row, or a dot at the start) (set it "
        "with base_url=... or PARADIGM_BASE_URL)"
    )


def test_a_bad_host_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARADIGM_BASE_URL", f"http://{LONG}.internal:8000/api/v2")
    with pytest.raises(pt.ConfigurationError, match="PARADIGM_BASE_URL") as info:
        pt.Client(api_key=API_KEY)
    assert TOO_LONG in str(info.value)


@pytest.mark.parametrize(
    "host",
    [
        "bücher.example",  # an IDN: encoded as xn--bcher-kva.example
        "BÜCHER.example",
        "faß.de",
        "api.example.",  # an absolute name: one trailing dot
        "a" * 63 + ".example",  # the longest label
        "a_b.internal",  # not a DNS name, but /etc/hosts may know it: the resolver's call
        "127.0.0.1",
        "[::1]",
    ],
)
def test_a_host_that_can_be_looked_up_is_accepted(host: str) -> None:
    client = pt.Client(api_key=API_KEY, base_url=f"https://{host}/api/v2")
    assert client.base_url.startswith("https://")
    ProxyRules(f"http://{host}:3128")


@pytest.mark.parametrize(("host", "why"), BAD_HOSTS)
def test_a_proxy_whose_host_cannot_be_looked_up_is_refused(host: str, why: str) -> None:
    proxy = f"http://alice:s3cret@{host}:3128"
    with pytest.raises(pt.ConfigurationError) as info:
        ProxyRules(proxy)
    message = str(info.value)
    assert message.startswith(f"proxy=: the proxy's host {host!r} is not a valid host name: ")
    assert why in message, message
    assert "s3cret" not in message
    assert "alice" not in message
    with pytest.raises(pt.ConfigurationError, match=re.escape(why)) as info:
        pt.Client(api_key=API_KEY, proxy=proxy)
    assert "s3cret" not in str(info.value)
    with pytest.raises(pt.ConfigurationError, match=re.escape(why)):
        pt.TrioTransport(proxy=proxy)
    with pytest.raises(pt.ConfigurationError, match=r"^HTTPS_PROXY: the proxy's host"):
        ProxyRules(environ={"https": f"{host}:3128"})  # no scheme: http://


def test_a_proxy_variable_with_a_bad_host_is_refused_when_the_client_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy..corp.example:3128")
    with pytest.raises(pt.ConfigurationError, match="HTTPS_PROXY: the proxy's host"):
        pt.Client(api_key=API_KEY)
    pt.Client(api_key=API_KEY, trust_env=False)  # the variable is not read


def test_no_proxy_entries_are_never_looked_up_so_never_refused() -> None:
    rules = ProxyRules(environ={"https": "http://proxy:3128", "no": "a..b, .x..y"})
    assert rules.route_for("https", "api.example", 443) is not None


# --------------------------------------------------------------------- at connect time


class Elsewhere(httpx2.AsyncBaseTransport):
    """Sends every request to ``host`` instead, through a :class:`TrioTransport`: a URL
    built after the client (as a redirect would be)."""

    def __init__(self, host: str, **options: object) -> None:
        self.inner = pt.TrioTransport(trust_env=False, **options)  # type: ignore[arg-type]
        self.host = host

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(host=self.host)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("proxy", [None, "http://127.0.0.1:9"])
async def test_the_transport_refuses_a_bad_host_before_connecting(proxy: str | None) -> None:
    transport = pt.TrioTransport(trust_env=False, proxy=proxy)
    async with httpx2.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx2.ConnectError) as info:
            await http.get(f"https://{LONG}.example/v2")
    assert str(info.value) == (
        f"cannot connect to {LONG}.example:443: the host '{LONG}.example' is not a valid "
        f"host name: its label '{'a' * 16}...' is 64 characters long, more than the 63 a "
        "label may have"
    )


@pytest.mark.anyio
async def test_a_bad_host_at_connect_time_is_an_api_connection_error_never_retried() -> None:
    client = pt.Client(
        api_key=API_KEY,
        base_url="https://api.example/v2",
        transport=Elsewhere("a..b"),
        retry=pt.RetryPolicy(attempts=4),
    )
    async with client:
        with pytest.raises(pt.APIConnectionError) as info:
            await client.chat(MESSAGES)
    error = info.value
    assert type(error) is pt.APIConnectionError
    assert error.message == (
        "cannot connect to a..b:443: the host 'a..b' is not a valid host name: it has an "
        "empty label (two dots in a row, or a dot at the start). This is a configuration "
        "problem, not retried"
    )
    assert [(a.number, a.cause) for a in error.attempts] == [(1, "host")]
    assert not isinstance(error.__cause__, UnicodeError)
    assert API_KEY not in str(error)
