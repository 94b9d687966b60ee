"""The transport's side of proxies, byte for byte, against scripted proxies on 127.0.0.1.

What a real proxy rarely does on demand: a 403 or a 504 to ``CONNECT``, silence, data
before the tunnel's TLS; and what goes on the wire: the ``CONNECT`` head, the
absolute-form request, credentials to the proxy only.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx2
import pytest
import trio

import mock_server as ms
import paradigm_trio as pt

from .forwardproxy import forward_proxy
from .rawserver import OK, raw_server, read_head, serving

pytestmark = pytest.mark.anyio

KEY = "sk-proxy-edges-key-0123456789"
HI = [{"role": "user", "content": "Hi"}]
FAST = pt.RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.01)


def answering(answer: bytes, heads: list[bytes]) -> object:
    """A scripted proxy: records each request head, answers ``answer``, closes."""

    async def handler(stream: trio.abc.Stream) -> None:
        request = await read_head(stream)
        if request is not None:
            heads.append(request[0])
            await stream.send_all(answer)
        await trio.aclose_forcefully(stream)

    return handler


async def chat_error(base_url: str, proxy: str, **kwargs: object) -> pt.APIError:
    async with pt.Client(api_key=KEY, base_url=base_url, proxy=proxy, **kwargs) as client:  # type: ignore[arg-type]
        with pytest.raises(pt.APIError) as info:
            await client.chat(HI)
    return info.value


async def test_the_connect_head_carries_the_target_and_the_credentials() -> None:
    heads: list[bytes] = []
    answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    async with serving(answering(answer, heads)) as port:  # type: ignore[arg-type]
        proxy = f"http://bob:pa%3Ass@127.0.0.1:{port}"
        error = await chat_error("https://[::1]:8443/api/v2", proxy, retry=FAST)
    assert heads[0].split(b"\r\n")[0] == b"CONNECT [::1]:8443 HTTP/1.1"
    assert b"\r\nHost: [::1]:8443" in heads[0]
    assert b"\r\nProxy-Authorization: Basic Ym9iOnBhOnNz" in heads[0]  # bob:pa:ss
    assert b"Authorization: Bearer" not in heads[0]  # the API key stays in the tunnel
    assert isinstance(error, pt.ProxyError)
    assert error.proxy_status == 403
    assert "the proxy's policy forbids this destination" in str(error)
    assert len(heads) == 1  # not retried


async def test_a_504_to_connect_is_a_connection_error_retried() -> None:
    heads: list[bytes] = []
    answer = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n"
    async with serving(answering(answer, heads)) as port:  # type: ignore[arg-type]
        error = await chat_error(
            "https://paradigm.internal/api/v2", f"http://127.0.0.1:{port}", retry=FAST
        )
    assert type(error) is pt.APIConnectionError
    assert "could not open a tunnel to paradigm.internal:443: 504 Gateway Timeout" in str(error)
    assert [a.cause for a in error.attempts] == ["connection", "connection"]
    assert len(heads) == 2


async def test_a_silent_proxy_is_a_connect_timeout_naming_it() -> None:
    async def silent(stream: trio.abc.Stream) -> None:
        await trio.sleep_forever()

    async with serving(silent) as port:
        error = await chat_error(
            "https://paradigm.internal/api/v2", f"http://127.0.0.1:{port}",
            retry=pt.RetryPolicy(attempts=1), timeouts=pt.Timeouts(connect=0.3),
        )  # fmt: skip
    assert isinstance(error, pt.APITimeoutError)
    assert error.which == "connect"
    assert (
        f"connecting to paradigm.internal:443 through the proxy http://127.0.0.1:{port} "
        "timed out" in repr(error.__cause__)
    )


async def test_data_before_the_tunnels_tls_is_refused() -> None:
    heads: list[bytes] = []
    answer = b"HTTP/1.1 200 Connection established\r\n\r\nsurprise"
    async with serving(answering(answer, heads)) as port:  # type: ignore[arg-type]
        error = await chat_error(
            "https://paradigm.internal/api/v2", f"http://127.0.0.1:{port}",
            retry=pt.RetryPolicy(attempts=1),
        )  # fmt: skip
    assert "sent data before the tunnel's TLS" in str(error)


async def test_an_http_request_goes_to_the_proxy_in_absolute_form() -> None:
    heads: list[bytes] = []

    async def record(stream: trio.abc.Stream, head: bytes) -> bool:
        heads.append(head)
        await stream.send_all(OK)
        return True

    async with (
        raw_server(record) as (server, port),
        pt.TrioTransport(proxy=f"http://carol:pw@127.0.0.1:{port}") as transport,
    ):
        async with httpx2.AsyncClient(transport=transport) as client:
            for _ in range(3):
                response = await client.get("http://paradigm.internal:8080/api/v2/models?x=1")
                assert response.text == "ok"
    assert heads[0].split(b"\r\n")[0] == (
        b"GET http://paradigm.internal:8080/api/v2/models?x=1 HTTP/1.1"
    )
    assert b"\r\nProxy-Authorization: Basic Y2Fyb2w6cHc=" in heads[0]
    assert server.connections == 1  # kept alive to the proxy


async def test_the_origin_never_sees_the_proxys_credentials(tmp_path: Path) -> None:
    tls = ms.throwaway_ca(tmp_path / "ca", ["paradigm.internal"])
    heads: list[bytes] = []

    async def record(stream: trio.abc.Stream, head: bytes) -> bool:
        heads.append(head)
        await stream.send_all(OK)
        return True

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tls.certfile, tls.keyfile)
    async with (
        raw_server(record, tls=server_tls) as (_, origin_port),
        forward_proxy(tmp_path / "proxy", basic_auth="dave:s3cret") as proxy,
    ):
        url = proxy.url.replace("://", "://dave:s3cret@")
        async with pt.TrioTransport(proxy=url, verify=tls.ca) as transport:
            async with httpx2.AsyncClient(transport=transport) as client:
                response = await client.get(f"https://paradigm.internal:{origin_port}/api/v2/x")
    assert response.text == "ok"
    assert b"proxy-authorization" not in heads[0].lower()
    assert heads[0].startswith(b"GET /api/v2/x HTTP/1.1")


async def test_httpx2s_own_proxy_407_is_a_proxy_error_too(tmp_path: Path) -> None:
    async with (
        forward_proxy(tmp_path / "proxy", basic_auth="erin:right") as proxy,
        ms.serve(ms.MockConfig(api_key=KEY)) as server,
    ):
        wrong = proxy.url.replace("://", "://erin:b4d-pw@")
        base = server.url.replace("127.0.0.1", "paradigm.internal").replace("http:", "https:")
        async with httpx2.AsyncClient(proxy=wrong) as http:
            async with pt.Client(api_key=KEY, base_url=base, http_client=http) as client:
                with pytest.raises(pt.ProxyError) as info:
                    await client.chat(HI)
    assert info.value.proxy_status == 407
    assert len(info.value.attempts) == 1
    assert "b4d-pw" not in str(info.value)


async def test_an_international_host_name_is_sent_to_the_proxy_in_ascii() -> None:
    heads: list[bytes] = []
    answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    async with serving(answering(answer, heads)) as port:  # type: ignore[arg-type]
        error = await chat_error("https://bücher.example/api/v2", f"http://127.0.0.1:{port}")
    assert isinstance(error, pt.ProxyError)
    assert heads[0].split(b"\r\n")[0] == b"CONNECT xn--bcher-kva.example:443 HTTP/1.1"
