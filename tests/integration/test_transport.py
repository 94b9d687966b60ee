"""TrioTransport against raw servers on 127.0.0.1: keep-alive, framing, failures, TLS."""

from __future__ import annotations

import ssl

import httpx2
import pytest
import trio
import trustme

import paradigm_trio as pt

from .rawserver import OK, answer_ok, raw_server

pytestmark = pytest.mark.anyio


async def test_keep_alive_reuses_one_connection() -> None:
    async with raw_server(answer_ok) as (server, port), pt.TrioTransport() as transport:
        async with httpx2.AsyncClient(transport=transport) as client:
            for _ in range(20):
                response = await client.post(f"http://127.0.0.1:{port}/x", content=b"{}")
                assert response.text == "ok"
    assert server.requests == 20
    assert server.connections == 1


async def test_concurrent_requests_open_one_connection_each_then_reuse() -> None:
    async def slow_ok(stream: trio.abc.Stream, head: bytes) -> bool:
        await trio.sleep(0.05)
        await stream.send_all(OK)
        return True

    async with raw_server(slow_ok) as (server, port), pt.TrioTransport() as transport:
        async with httpx2.AsyncClient(transport=transport) as client:
            for _ in range(3):
                async with trio.open_nursery() as nursery:
                    for _ in range(10):
                        nursery.start_soon(client.get, f"http://127.0.0.1:{port}/")
    assert server.requests == 30
    assert server.connections == 10


async def test_connection_close_and_close_delimited_and_chunked_bodies() -> None:
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nfgh",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
        ]
    )

    async def scripted(stream: trio.abc.Stream, head: bytes) -> bool:
        answer = next(answers)
        await stream.send_all(answer)
        return b"Connection: close" not in answer

    async with raw_server(scripted) as (server, port), pt.TrioTransport() as transport:
        async with httpx2.AsyncClient(transport=transport) as client:
            texts = [(await client.get(f"http://127.0.0.1:{port}/")).text for _ in range(3)]
    assert texts == ["abcde", "fgh", "until the end"]
    assert server.connections == 2  # reused after the chunked one, not after a close


async def test_failures_map_to_httpx2_errors() -> None:
    async def close_at_once(stream: trio.abc.Stream, head: bytes) -> bool:
        return False

    async def truncated(stream: trio.abc.Stream, head: bytes) -> bool:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
        return False

    async def silent(stream: trio.abc.Stream, head: bytes) -> bool:
        await trio.sleep_forever()
        return False  # pragma: no cover

    async with pt.TrioTransport() as transport, httpx2.AsyncClient(transport=transport) as c:
        async with raw_server(close_at_once) as (_, port):
            with pytest.raises(httpx2.RemoteProtocolError):
                await c.get(f"http://127.0.0.1:{port}/")
        async with raw_server(truncated) as (_, port):
            with pytest.raises(httpx2.RemoteProtocolError):
                await c.get(f"http://127.0.0.1:{port}/")
        async with raw_server(silent) as (_, port):
            with pytest.raises(httpx2.ReadTimeout):
                await c.get(f"http://127.0.0.1:{port}/", timeout=httpx2.Timeout(0.2))
        sock = trio.socket.socket()
        await sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
        sock.close()
        with pytest.raises(httpx2.ConnectError):
            await c.get(f"http://127.0.0.1:{closed_port}/")
        assert transport._pool.idle_count == 0


async def test_cancelled_request_closes_its_connection() -> None:
    async def slow(stream: trio.abc.Stream, head: bytes) -> bool:
        await trio.sleep(10)
        return False  # pragma: no cover

    async with raw_server(slow) as (server, port), pt.TrioTransport() as transport:
        async with httpx2.AsyncClient(transport=transport) as client:
            with trio.move_on_after(0.1):
                await client.get(f"http://127.0.0.1:{port}/")
            assert transport._pool.idle_count == 0
    assert server.connections == 1


async def test_idle_connections_expire_and_server_closes_are_noticed() -> None:
    async with raw_server(answer_ok) as (server, port):
        async with pt.TrioTransport(keepalive_expiry=0.1) as transport:
            async with httpx2.AsyncClient(transport=transport) as client:
                await client.get(f"http://127.0.0.1:{port}/")
                await trio.sleep(0.2)  # expired: a new connection
                await client.get(f"http://127.0.0.1:{port}/")
        assert server.connections == 2

    async def answer_then_close(stream: trio.abc.Stream, head: bytes) -> bool:
        await stream.send_all(OK)
        return False  # the server closes the kept-alive connection

    async with raw_server(answer_then_close) as (server, port), pt.TrioTransport() as transport:
        async with httpx2.AsyncClient(transport=transport) as client:
            await client.get(f"http://127.0.0.1:{port}/")
            await trio.sleep(0.05)  # the FIN arrives; reuse would fail
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
    assert server.connections == 2


async def test_https_with_a_trusted_certificate() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with raw_server(answer_ok, tls=server_ctx) as (server, port):
        async with pt.TrioTransport(ssl_context=client_ctx) as transport:
            async with httpx2.AsyncClient(transport=transport) as client:
                for _ in range(3):
                    assert (await client.get(f"https://127.0.0.1:{port}/")).text == "ok"
        assert server.connections == 1
        # without the CA: a ConnectError, not a hang or a crash
        async with pt.TrioTransport() as transport:
            async with httpx2.AsyncClient(transport=transport) as client:
                with pytest.raises(httpx2.ConnectError):
                    await client.get(f"https://127.0.0.1:{port}/")


async def test_cancelled_before_sending_keeps_the_pooled_connection() -> None:
    """Regression: a cancellation between taking a pooled connection and using it leaked it."""
    async with raw_server(answer_ok) as (server, port), pt.TrioTransport() as transport:
        url = f"http://127.0.0.1:{port}/"
        response = await transport.handle_async_request(httpx2.Request("GET", url))
        await response.aread()
        await response.aclose()
        assert transport._pool.idle_count == 1
        with trio.CancelScope() as scope:
            scope.cancel()
            await transport.handle_async_request(httpx2.Request("GET", url))
        assert transport._pool.idle_count == 1  # still pooled, not taken and dropped
        response = await transport.handle_async_request(httpx2.Request("GET", url))
        await response.aread()
        await response.aclose()
    assert server.connections == 1
