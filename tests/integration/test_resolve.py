"""The transport's DNS cache against real servers on 127.0.0.1, reached by the name ``localhost``.

A counting host name resolver (``tests/fakenet.py``, installed with
``trio.socket.set_custom_hostname_resolver``) wraps the system's ``getaddrinfo``: it records
which names the transport looks up, and how often.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx2
import pytest
import trio
import trustme

import mock_server as ms
import paradigm_trio as pt

from ..fakenet import FakeResolver
from .forwardproxy import forward_proxy
from .rawserver import OK, raw_server

pytestmark = pytest.mark.anyio

KEY = "sk-resolve-test-key-0123456789"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def counting() -> FakeResolver:
    """The system's resolver, taking a while (requests pile up behind it), counted."""
    return FakeResolver(None, delay=0.05).install()


async def slow_ok(stream: trio.abc.Stream, head: bytes) -> bool:
    await trio.sleep(0.05)
    await stream.send_all(OK)
    return True


async def test_concurrent_requests_to_localhost_look_it_up_once(counting: FakeResolver) -> None:
    async with raw_server(slow_ok) as (server, port), pt.TrioTransport() as transport:
        url = f"http://localhost:{port}/x"

        async def get() -> None:
            response = await transport.handle_async_request(httpx2.Request("GET", url))
            assert await response.aread() == b"ok"
            await response.aclose()

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(get)
    assert server.connections == 20
    assert counting.lookups == [(b"localhost", port)]


async def test_https_to_localhost_checks_the_certificate_against_the_name(
    counting: FakeResolver,
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)  # the name only, no IP address
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with raw_server(slow_ok, tls=server_ctx) as (_, port):
        async with pt.TrioTransport(verify=client_ctx) as transport:
            async with httpx2.AsyncClient(transport=transport) as client:
                async with trio.open_nursery() as nursery:
                    for _ in range(5):
                        nursery.start_soon(client.get, f"https://localhost:{port}/")
    assert names == ["localhost"] * 5  # SNI: the name, not the address it resolved to
    assert counting.lookups == [(b"localhost", port)]


async def test_through_a_proxy_only_the_proxy_is_looked_up(
    counting: FakeResolver, tmp_path: Path
) -> None:
    tls = ms.throwaway_ca(tmp_path / "ca", ["paradigm.internal"])
    async with forward_proxy(tmp_path / "proxy") as proxy:
        proxy_url = proxy.url.replace("127.0.0.1", "localhost")
        async with ms.serve(ms.MockConfig(api_key=KEY), tls=tls) as server:
            base = server.url.replace("127.0.0.1", "paradigm.internal")
            async with pt.Client(
                api_key=KEY, base_url=base, verify=tls.ca, proxy=proxy_url
            ) as client:
                results = await client.chat_batch([HI] * 5)
    assert all(r.ok for r in results)
    # The origin's name is the proxy's to resolve (only it can): never looked up here.
    assert counting.lookups == [(b"localhost", proxy.port)]


async def test_a_refused_connection_to_a_name_says_refused_or_what_it_said_before() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with pt.TrioTransport() as transport:
        request = httpx2.Request("GET", f"http://localhost:{port}/")
        with pytest.raises(httpx2.ConnectError) as caught:
            await transport.handle_async_request(request)
    with pytest.raises(OSError, match="all attempts to connect") as trios:
        await trio.open_tcp_stream("localhost", port)
    addresses = await trio.socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)
    if len(addresses) == 1:  # one address: a plain connect, the socket's own error
        [alone] = trios.value.__cause__.exceptions  # type: ignore[union-attr]
        assert str(caught.value) == f"cannot connect to localhost:{port}: {alone}"
        assert "refused" in str(caught.value).lower()
    else:  # several (IPv4 and IPv6): raced as trio does, with its message
        assert str(caught.value) == f"cannot connect to localhost:{port}: {trios.value}"
    assert str(trios.value) == f"all attempts to connect to localhost:{port} failed"


async def test_a_name_that_does_not_resolve_says_what_it_said_before() -> None:
    async with pt.TrioTransport() as transport:
        request = httpx2.Request("GET", "http://no-such-host.invalid/")
        with pytest.raises(httpx2.ConnectError) as caught:
            await transport.handle_async_request(request)
    with pytest.raises(socket.gaierror) as trios:
        await trio.open_tcp_stream("no-such-host.invalid", 80)
    assert str(caught.value) == f"cannot connect to no-such-host.invalid:80: {trios.value}"
    assert isinstance(caught.value.__cause__, socket.gaierror)
