"""The default transport through a real forward proxy (``proxy.py``, a process on 127.0.0.1).

The servers are named ``paradigm.internal``, a name only the proxy resolves (see
``proxyplugin.py``): a request that reaches them went through the proxy, and the proxy's
log says how (``CONNECT`` tunnels, forwarded ``GET``/``POST``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

import mock_server as ms
import paradigm_trio as pt

from .forwardproxy import ForwardProxy, forward_proxy

pytestmark = pytest.mark.anyio

KEY = "sk-proxy-test-key-0123456789"
HI = [{"role": "user", "content": "Hi"}]
NAME = "paradigm.internal"
ONE_ATTEMPT = pt.RetryPolicy(attempts=1)


@pytest.fixture
def tls(tmp_path: Path) -> ms.TLSFiles:
    return ms.throwaway_ca(tmp_path / "ca", [NAME, "127.0.0.1", "localhost"])


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[ForwardProxy]:
    async with forward_proxy(tmp_path / "proxy") as running:
        yield running


def internal(server: ms.MockServer) -> str:
    """The server's base URL under the name only the proxy resolves."""
    return server.url.replace("127.0.0.1", NAME)


async def test_an_https_server_reachable_only_through_the_proxy(
    proxy: ForwardProxy, tls: ms.TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ms.serve(ms.MockConfig(api_key=KEY), tls=tls) as server:
        base = internal(server)
        port = base.split(":")[2].split("/")[0]
        # Direct, the name does not resolve.
        direct = pt.Client(api_key=KEY, base_url=base, verify=tls.ca, retry=ONE_ATTEMPT)
        with pytest.raises(pt.APIConnectionError, match=f"cannot connect to {NAME}:{port}"):
            async with direct:
                await direct.chat(HI)
        assert proxy.upstream() == []
        # Through HTTPS_PROXY (the environment, as httpx2 reads it).
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        async with pt.Client(api_key=KEY, base_url=base, verify=tls.ca) as client:
            assert "Hi" in (await client.chat(HI)).text
            assert [m.id for m in await client.models()]
    assert proxy.upstream() == [f"CONNECT {NAME}:{port}"]  # one tunnel, reused


@pytest.mark.parametrize("root", ["/api/v2", "/v1"])
async def test_an_http_server_through_the_proxy_in_absolute_form(
    proxy: ForwardProxy, root: str
) -> None:
    async with ms.serve(ms.MockConfig(api_key=KEY)) as server:
        authority = f"{NAME}:{server.root_url.rsplit(':', 1)[1]}"
        base = f"http://{authority}{root}"
        async with pt.Client(api_key=KEY, base_url=base, proxy=proxy.url) as client:
            for _ in range(3):
                assert "Hi" in (await client.chat(HI)).text
        assert server.stats().total == 3
    assert proxy.upstream()[0] == f"POST {authority}{root}/chat/completions"


async def test_no_proxy_bypasses_it(
    proxy: ForwardProxy, tls: ms.TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    async with ms.serve(ms.MockConfig(api_key=KEY), tls=tls) as server:
        async with pt.Client(api_key=KEY, base_url=server.url, verify=tls.ca) as client:
            await client.chat(HI)
        assert server.stats().total == 1
    assert proxy.upstream() == []


async def test_credentials_are_sent_to_the_proxy_and_shown_nowhere(tmp_path: Path) -> None:
    async with (
        forward_proxy(tmp_path / "proxy", basic_auth="alice:s3cr3t-pw") as proxy,
        ms.serve(ms.MockConfig(api_key=KEY)) as server,
    ):
        url = proxy.url.replace("://", "://alice:s3cr3t-pw@")
        async with pt.Client(api_key=KEY, base_url=internal(server), proxy=url) as client:
            await client.chat(HI)
            assert "s3cr3t" not in repr(client) + repr(pt.TrioTransport(proxy=url))
        # The origin never sees the proxy's credentials.
        assert server.stats().total == 1


@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_a_407_is_a_proxy_error_not_retried(
    scheme: str, tmp_path: Path, tls: ms.TLSFiles
) -> None:
    async with (
        forward_proxy(tmp_path / "proxy", basic_auth="alice:right") as proxy,
        ms.serve(ms.MockConfig(api_key=KEY), tls=tls if scheme == "https" else None) as server,
    ):
        url = proxy.url.replace("://", "://alice:wrong-pw@")
        async with pt.Client(
            api_key=KEY, base_url=internal(server), proxy=url, verify=tls.ca
        ) as client:
            with pytest.raises(pt.ProxyError) as info:
                await client.chat(HI)
        assert server.stats().total == 0
    error = info.value
    assert error.proxy_status == 407
    assert error.proxy == proxy.url
    assert [a.cause for a in error.attempts] == ["proxy"]
    message = str(error)
    assert f"the proxy {proxy.url} refused the" in message
    assert "407 Proxy Authentication Required" in message
    assert "not retried" in message
    assert "http://user:password@proxy:3128" in message
    assert "wrong-pw" not in message + repr(error)
    assert proxy.upstream() == []


async def test_a_proxy_that_cannot_reach_the_server_is_a_connection_error_retried(
    proxy: ForwardProxy,
) -> None:
    with trio.socket.socket() as probe:  # a port with nothing behind it
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"https://{NAME}:{port}/api/v2"
    retry = pt.RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.01)
    async with pt.Client(api_key=KEY, base_url=base, proxy=proxy.url, retry=retry) as client:
        with pytest.raises(pt.APIConnectionError) as info:
            await client.chat(HI)
    assert not isinstance(info.value, pt.ProxyError)
    assert [a.cause for a in info.value.attempts] == ["connection", "connection"]
    assert f"the proxy {proxy.url} could not open a tunnel to {NAME}:{port}: 502" in str(info.value)


async def read_until_dropped(client: pt.Client, proxy: ForwardProxy) -> int:
    """Stream an answer, killing the proxy after two chunks; the chunks read (no restart:
    the break itself is under test)."""
    chunks = 0
    async with client.chat_stream(HI, restart=None) as stream:
        async for _ in stream:
            chunks += 1
            if chunks == 2:
                proxy.kill()
    return chunks


async def test_a_proxy_that_drops_the_tunnel_mid_stream(
    proxy: ForwardProxy, tls: ms.TLSFiles
) -> None:
    config = ms.MockConfig(api_key=KEY, token_delay=0.05)
    async with ms.serve(config, tls=tls) as server:
        client = pt.Client(api_key=KEY, base_url=internal(server), proxy=proxy.url, verify=tls.ca)
        async with client:
            with pytest.raises(pt.IncompleteStreamError) as info:
                await read_until_dropped(client, proxy)
    assert info.value.chunks >= 2
    assert len(info.value.attempts) == 1  # (restart=None) a stream under way is not resent


async def test_a_batch_through_the_proxy_reuses_its_tunnels(
    proxy: ForwardProxy, tls: ms.TLSFiles
) -> None:
    concurrency = 16
    async with ms.serve(ms.MockConfig(api_key=KEY), tls=tls) as server:
        client = pt.Client(
            api_key=KEY,
            base_url=internal(server),
            proxy=proxy.url,
            verify=tls.ca,
            limits=pt.Limits(concurrency=concurrency),
        )
        prompts = [[{"role": "user", "content": f"Hi {i}"}] for i in range(1000)]
        async with client:
            results = await client.chat_batch(prompts)
        assert server.stats().total == 1000
    assert all(r.ok for r in results)
    tunnels = proxy.upstream()
    assert 1 <= len(tunnels) <= concurrency, tunnels
    assert set(tunnels) == {f"CONNECT {internal(server).split('/')[2]}"}


async def test_an_https_proxy_tls_inside_tls(tmp_path: Path, tls: ms.TLSFiles) -> None:
    async with (
        forward_proxy(tmp_path / "proxy", certfile=tls.certfile, keyfile=tls.keyfile) as proxy,
        ms.serve(ms.MockConfig(api_key=KEY), tls=tls) as server,
    ):
        assert proxy.url.startswith("https://")
        async with pt.Client(
            api_key=KEY, base_url=internal(server), proxy=proxy.url, verify=tls.ca
        ) as client:
            assert "Hi" in (await client.chat(HI)).text
        # The proxy's certificate is verified too: an untrusted one is refused.
        async with pt.Client(api_key=KEY, base_url=internal(server), proxy=proxy.url) as client:
            with pytest.raises(pt.CertificateVerificationError) as info:
                await client.chat(HI)
    assert "(the proxy)" in str(info.value)
    assert info.value.host == f"127.0.0.1:{proxy.port}"
    assert len(proxy.upstream()) == 1
