"""A request body given as an async iterator goes out piece by piece, as it is produced:
framed by its ``Content-Length``, or chunked without one; the connection is reused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
import trio

import paradigm_trio as pt

from .rawserver import OK, read_head, serving

pytestmark = pytest.mark.anyio

PIECES = [bytes([i]) * 100_000 for i in range(1, 6)]


async def _body(produced: list[int]) -> AsyncIterator[bytes]:
    for piece in PIECES:
        produced.append(len(piece))
        yield piece


async def _read_chunked(stream: trio.abc.Stream, buffer: bytes) -> bytes:
    body = b""
    while True:
        while b"\r\n" not in buffer:
            buffer += await stream.receive_some(65536)
        size_line, _, buffer = buffer.partition(b"\r\n")
        size = int(size_line, 16)
        while len(buffer) < size + 2:
            buffer += await stream.receive_some(65536)
        body += buffer[:size]
        buffer = buffer[size + 2 :]
        if size == 0:
            return body


async def test_streamed_bodies_with_a_length_and_chunked() -> None:
    received: list[tuple[bytes, bytes]] = []
    connections: list[int] = []

    async def handler(stream: trio.abc.Stream) -> None:
        connections.append(1)
        buffer = b""
        while (request := await read_head(stream, buffer)) is not None:
            head, buffer = request
            lowered = head.lower()
            if b"transfer-encoding: chunked" in lowered:
                body = await _read_chunked(stream, buffer)
                buffer = b""
            else:
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buffer) < length:
                    buffer += await stream.receive_some(65536)
                body, buffer = buffer[:length], buffer[length:]
            received.append((head, body))
            await stream.send_all(OK)

    whole = b"".join(PIECES)
    async with serving(handler) as port, pt.TrioTransport() as transport:
        async with httpx2.AsyncClient(transport=transport) as client:
            url = f"http://127.0.0.1:{port}/upload"
            produced: list[int] = []
            sized = await client.post(
                url, content=_body(produced), headers={"Content-Length": str(len(whole))}
            )
            chunked = await client.post(url, content=_body([]))
    assert sized.text == chunked.text == "ok"
    assert produced == [len(p) for p in PIECES]
    assert [body for _, body in received] == [whole, whole]
    assert b"transfer-encoding: chunked" in received[1][0].lower()
    assert len(connections) == 1  # the connection was reused after each streamed body
