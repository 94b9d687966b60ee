"""A minimal out-of-process HTTP/1.1 server for the benchmarks (asyncio, no framework).

It answers every request (any method, any path) with the same chat-completion JSON,
after sleeping ``--latency`` seconds (a timer, not a task: thousands of connections cost
almost nothing).  Keep-alive, ``Content-Length`` bodies, no chunked uploads, no
pipelining beyond one request at a time per connection: exactly what the clients under
test send.  It exists so that the *client* is what a benchmark measures: on this machine
it answers tens of thousands of requests per second on one core, where the QuartTrio mock
answers about 1,300.

    python -m benchmarks._rawserver [--port 0] [--latency 0.1] [--certfile PEM --keyfile PEM]

prints ``raw server listening on http://127.0.0.1:PORT/api/v2`` (``https://`` with a
certificate) once bound and serves until SIGTERM or SIGINT.  Only binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import ssl

COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "alfred-4.2",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Welcome to Paradigm, Alice! We are glad to have you on board.",
            },
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 31, "completion_tokens": 13, "total_tokens": 44},
}
BODY = json.dumps(COMPLETION, separators=(",", ":")).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: application/json\r\n"
    b"x-request-id: req-bench\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)


class _Http(asyncio.Protocol):
    """One connection: parse a request head and body, answer after the latency."""

    __slots__ = ("buffer", "latency", "loop", "transport")

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else None].strip())
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            if self.latency > 0:
                self.loop.call_later(self.latency, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)


async def serve(port: int, latency: float, tls: ssl.SSLContext | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Http(latency), "127.0.0.1", port, backlog=4096, reuse_address=True, ssl=tls
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()[1]
    scheme = "http" if tls is None else "https"
    print(f"raw server listening on {scheme}://127.0.0.1:{bound}/api/v2", flush=True)
    async with server:
        await stop.wait()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the key of --certfile (PEM)")
    args = parser.parse_args()
    tls = None
    if args.certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.certfile, args.keyfile)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args.port, args.latency, tls))


if __name__ == "__main__":
    main()
