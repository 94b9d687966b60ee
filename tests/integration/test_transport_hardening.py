"""Errors that mislead, against real servers on 127.0.0.1: early answers, TLS failures.

* A server may answer (413, 401, ...) before it has read a large request body, then close
  the connection or read on and discard.  The client must report that answer, once, and
  stop uploading: not three connection errors and the body sent four times.
* A certificate that does not verify is a configuration error, said so, and not retried.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import httpx2
import pytest
import trio
import trustme

import paradigm_trio as pt
from paradigm_trio._transport import _exchange, _transport

from .rawserver import answer_ok, raw_server, read_head, serving

pytestmark = pytest.mark.anyio

API_KEY = "sk-hardening-test-7f3a9c1e"
BODY_SIZE = 8 * 1024 * 1024
FAR_BELOW = BODY_SIZE // 8
TOO_LARGE = json.dumps({"error": {"message": "request body too large", "code": "too_large"}})
FAST_RETRY = pt.RetryPolicy(initial_delay=0.01, max_delay=0.01)


def early_answer(status: int = 413, *, close: bool = True) -> bytes:
    reason = {401: "Unauthorized", 413: "Payload Too Large"}[status]
    connection = "Connection: close\r\n" if close else ""
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{connection}"
        f"Content-Length: {len(TOO_LARGE)}\r\n\r\n{TOO_LARGE}"
    ).encode()


class UploadServer:
    """Answers every request as soon as its head is in; counts the body bytes it read.

    ``then`` says what it does after answering: ``"close"`` reads a little more and closes
    (the unread rest makes the kernel reset the connection), ``"read"`` reads and discards
    until the client closes, ``"nothing"`` neither reads nor answers (``answer=None``).
    """

    def __init__(self, then: str, answer: bytes | None = None) -> None:
        self.then = then
        self.answer = answer if answer is not None or then == "nothing" else early_answer()
        self.connections = 0
        self.received = 0

    async def serve(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        try:
            request = await read_head(stream)
            if request is None:
                return
            self.received += len(request[1])
            if self.answer is not None:
                await stream.send_all(self.answer)
            if self.then == "close":
                self.received += len(await stream.receive_some(65536))
            elif self.then == "read":
                while data := await stream.receive_some(65536):
                    self.received += len(data)
            else:
                await trio.sleep_forever()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)


def tls_pair(name: str = "127.0.0.1") -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``name``, and a client context trusting it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def chat_error(
    base_url: str, *, content: str = "x" * BODY_SIZE, **kwargs: Any
) -> pt.APIError:
    """The error of one chat sent to ``base_url`` (by default, with a large body)."""
    kwargs.setdefault("retry", FAST_RETRY)
    async with pt.Client(api_key=API_KEY, base_url=base_url, **kwargs) as c:
        with pytest.raises(pt.APIError) as info:
            await c.chat([{"role": "user", "content": content}])
    return info.value


# --------------------------------------------------------------------------- early answers


@pytest.mark.parametrize("then", ["close", "read"])
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_an_early_413_is_reported_once_and_stops_the_upload(then: str, scheme: str) -> None:
    # Before: "close" gave three retried connection errors (four uploads), "read" the 413
    # only after the whole body had been sent.
    server = UploadServer(then)
    server_tls, client_tls = tls_pair() if scheme == "https" else (None, None)
    transport = pt.TrioTransport(ssl_context=client_tls)
    async with serving(server.serve, tls=server_tls) as port:
        error = await chat_error(f"{scheme}://127.0.0.1:{port}/v1", transport=transport)
    assert isinstance(error, pt.APIStatusError)
    assert error.status_code == 413
    assert error.code == "too_large"
    assert "request body too large" in str(error)
    assert len(error.attempts) == 1
    assert server.connections == 1
    assert server.received < FAR_BELOW


async def test_an_early_401_is_reported_as_such() -> None:
    server = UploadServer("close", early_answer(401))
    async with serving(server.serve) as port:
        error = await chat_error(f"http://127.0.0.1:{port}/v1")
    assert isinstance(error, pt.AuthenticationError)
    assert len(error.attempts) == 1
    assert server.received < FAR_BELOW


async def test_an_answer_read_after_a_failed_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body written at once (not watched) whose write fails: the answer is looked for."""
    monkeypatch.setattr(_exchange, "INLINE_BODY", 2 * BODY_SIZE)  # (``exchange``'s,
    monkeypatch.setattr(_transport, "INLINE_BODY", 2 * BODY_SIZE)  # and the fast lane's)
    server = UploadServer("close")
    async with serving(server.serve) as port:
        error = await chat_error(f"http://127.0.0.1:{port}/v1")
    assert error.status_code == 413
    assert len(error.attempts) == 1
    assert server.connections == 1


async def test_the_connection_of_an_unfinished_upload_is_not_reused() -> None:
    server = UploadServer("read", early_answer(413, close=False))
    async with serving(server.serve) as port, pt.TrioTransport() as transport:
        async with httpx2.AsyncClient(transport=transport) as client:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(2):
                response = await client.post(url, content=b"y" * BODY_SIZE)
                assert response.status_code == 413
                assert response.json()["error"]["code"] == "too_large"
            assert transport._pool.idle_count == 0
    assert server.connections == 2  # the server still waits for the first body
    assert server.received < 2 * FAR_BELOW


async def test_a_large_body_read_whole_is_answered_and_its_connection_reused() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, written in pieces
    async with raw_server(answer_ok) as (server, port), pt.TrioTransport() as transport:
        async with httpx2.AsyncClient(transport=transport) as client:
            for _ in range(3):
                response = await client.post(f"http://127.0.0.1:{port}/", content=body)
                assert response.text == "ok"
                assert server.last_body == body
    assert server.requests == 3
    assert server.connections == 1


async def test_a_server_that_neither_reads_nor_answers_is_a_write_timeout() -> None:
    server = UploadServer("nothing")
    async with serving(server.serve) as port, pt.TrioTransport() as transport:
        async with httpx2.AsyncClient(transport=transport) as client:
            with trio.fail_after(10), pytest.raises(httpx2.WriteTimeout):
                await client.post(
                    f"http://127.0.0.1:{port}/",
                    content=b"z" * BODY_SIZE,
                    timeout=httpx2.Timeout(5, write=0.3),
                )


async def test_a_server_that_closes_without_answering_is_a_connection_error() -> None:
    async def close_after_a_little(stream: trio.abc.Stream) -> None:
        await stream.receive_some(65536)
        await trio.aclose_forcefully(stream)

    async with serving(close_after_a_little) as port:
        error = await chat_error(f"http://127.0.0.1:{port}/v1", retry=pt.RetryPolicy.no_retries())
    assert type(error) is pt.APIConnectionError
    assert error.status_code is None


async def test_cancelling_an_upload_raises_cancelled_not_a_group() -> None:
    server = UploadServer("nothing")
    raised: list[BaseException] = []
    async with serving(server.serve) as port, pt.TrioTransport() as transport:
        request = httpx2.Request("POST", f"http://127.0.0.1:{port}/", content=b"c" * BODY_SIZE)
        with trio.move_on_after(0.3) as scope:
            try:
                await transport.handle_async_request(request)
            except BaseException as exc:
                raised.append(exc)
                raise
        assert transport._pool.idle_count == 0
    assert scope.cancelled_caught
    assert [type(exc) for exc in raised] == [trio.Cancelled]


# --------------------------------------------------------------------------- TLS


@asynccontextmanager
async def tls_server(name: str = "127.0.0.1") -> AsyncIterator[tuple[int, ssl.SSLContext, Any]]:
    """A TLS server with a certificate for ``name``: its port, a context trusting its CA,
    and a counter of TCP connections (``counts["tcp"]``)."""
    server_tls, client_tls = tls_pair(name)
    counts = {"tcp": 0}

    async def serve(stream: trio.abc.Stream) -> None:
        counts["tcp"] += 1
        tls = trio.SSLStream(stream, server_tls, server_side=True)
        with suppress(trio.BrokenResourceError, ssl.SSLError):
            await tls.do_handshake()
        await trio.aclose_forcefully(tls)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1], client_tls, counts
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("own_client", [False, True], ids=["TrioTransport", "httpx2.AsyncClient"])
async def test_an_untrusted_certificate_is_a_configuration_error_not_retried(
    own_client: bool,
) -> None:
    # Before: "cannot connect to 127.0.0.1:PORT: " (no reason), retried four times.
    async with tls_server() as (port, _, counts), httpx2.AsyncClient(trust_env=False) as http:
        kwargs = {"http_client": http} if own_client else {}
        error = await chat_error(f"https://127.0.0.1:{port}/v1", content="Hi", **kwargs)
    assert isinstance(error, pt.CertificateVerificationError)
    assert isinstance(error, pt.APIConnectionError)
    message = str(error)
    assert f"the TLS certificate of 127.0.0.1:{port} does not verify: " in message
    assert error.host == f"127.0.0.1:{port}"
    assert error.reason
    assert error.reason in message
    assert "configuration problem, not retried" in message
    assert 'Client(verify="ca-bundle.pem")' in message
    assert [attempt.cause for attempt in error.attempts] == ["tls"]
    assert counts["tcp"] == 1
    assert isinstance(error.__cause__, httpx2.ConnectError)


async def test_a_certificate_for_another_name_says_so() -> None:
    async with tls_server("localhost") as (port, client_tls, counts):
        transport = pt.TrioTransport(ssl_context=client_tls)
        error = await chat_error(f"https://127.0.0.1:{port}/v1", content="Hi", transport=transport)
    assert isinstance(error, pt.CertificateVerificationError)
    assert "mismatch" in error.reason
    assert "not valid for '127.0.0.1'" in str(error)
    assert "a host name the certificate was issued for" in str(error)
    assert len(error.attempts) == 1
    assert counts["tcp"] == 1


async def test_the_transport_gives_the_tls_reason() -> None:
    async with tls_server() as (port, _, _counts), pt.TrioTransport() as transport:
        request = httpx2.Request("GET", f"https://127.0.0.1:{port}/")
        with pytest.raises(httpx2.ConnectError) as info:
            await transport.handle_async_request(request)
    assert str(info.value).startswith(f"cannot connect to 127.0.0.1:{port}: [SSL: ")
    assert "certificate verify failed" in str(info.value)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_a_trusted_certificate_still_works() -> None:
    async def ok(stream: trio.abc.Stream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server_tls, client_tls = tls_pair()
    async with serving(ok, tls=server_tls) as port:
        async with pt.TrioTransport(ssl_context=client_tls) as transport:
            async with httpx2.AsyncClient(transport=transport) as client:
                assert (await client.get(f"https://127.0.0.1:{port}/")).text == "ok"


# --------------------------------------------------------------------------- connecting


@pytest.mark.parametrize(("family", "host"), [("v4", "127.0.0.1"), ("v6", "::1")])
async def test_a_refused_connection_to_an_address_says_refused(family: str, host: str) -> None:
    # Before: "cannot connect to 127.0.0.1:PORT: all attempts to connect to ... failed",
    # the reason only in the exception's cause.
    kind = trio.socket.AF_INET if family == "v4" else trio.socket.AF_INET6
    with trio.socket.socket(kind) as probe:  # a port nobody listens on
        await probe.bind((host, 0))
        port = probe.getsockname()[1]
    url = f"http://{host}:{port}/v1" if family == "v4" else f"http://[{host}]:{port}/v1"
    error = await chat_error(url, content="Hi")
    assert isinstance(error, pt.APIConnectionError)
    assert f"cannot connect to {_transport.authority(host, port)}: " in str(error)
    assert "refused" in str(error).lower()
    assert [attempt.cause for attempt in error.attempts] == ["connection"] * len(error.attempts)
