"""Raw HTTP servers on 127.0.0.1 for the transport's tests: bytes in, bytes out, no framework.

``serving(handler)`` runs ``handler(stream)`` for every connection (over TLS with ``tls=``)
and yields the port; leaving the block stops the server and every connection.
``raw_server(handler)`` does the HTTP/1.1 framing of requests and calls ``handler`` with
each request's head, on a :class:`RawServer` that counts connections and requests.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import trio

ConnectionHandler = Callable[[trio.abc.Stream], Awaitable[None]]


async def read_head(stream: trio.abc.Stream, buffer: bytes = b"") -> tuple[bytes, bytes] | None:
    """Read until the end of a request head: ``(head, what came after it)``, or ``None``
    at EOF.  ``buffer`` holds what was read before."""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


@asynccontextmanager
async def serving(
    handler: ConnectionHandler, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    async def serve(stream: trio.abc.Stream) -> None:
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_side=True)
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError):
                await trio.aclose_forcefully(stream)
                return
        await handler(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


Handler = Callable[[trio.abc.Stream, bytes], Awaitable[bool]]
"""Answers one request (its raw head); returns whether to keep the connection open."""

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests = 0
        self.last_body = b""

    async def serve(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        buffer = b""
        try:
            while (request := await read_head(stream, buffer)) is not None:
                head, buffer = request
                length = content_length(head)
                while len(buffer) < length:
                    buffer += await stream.receive_some(65536)
                self.last_body, buffer = buffer[:length], buffer[length:]
                self.requests += 1
                if not await self.handler(stream, head):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def raw_server(
    handler: Handler, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[RawServer, int]]:
    server = RawServer(handler)
    async with serving(server.serve, tls=tls) as port:
        yield server, port


async def answer_ok(stream: trio.abc.Stream, head: bytes) -> bool:
    await stream.send_all(OK)
    return True
