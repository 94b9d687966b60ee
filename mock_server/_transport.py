"""Below the ASGI interface: per-request connection handle and the middleware that builds it.

ASGI gives an application no access to its TCP connection, but the faults
``reset``, ``close``, ``truncated`` and ``stream_cut`` need one.  With Hypercorn's
trio worker the ``send`` callable handed to the app is a bound method whose
owner chain (``HTTPStream.app_send`` -> ``H11Protocol.stream_send`` ->
``TCPServer.protocol_send``) leads to the ``trio.SocketStream`` of the
connection; :class:`Connection` walks that chain once per request.  Closing
the trio socket wakes Hypercorn's reader with ``ClosedResourceError``, so
Hypercorn then tears the connection down through its normal path (the app gets
``http.disconnect`` and is cancelled).

The middleware also stamps ``x-request-id`` on every response and tells the
handlers whether the client went away before the response was complete.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from ._state import MockState, _Entry

__all__ = ["CONNECTION_KEY", "Connection", "ConnectionMiddleware"]

#: Key of the :class:`Connection` in the ASGI scope (``request.scope`` in Quart).
CONNECTION_KEY: Final = "mock_server.connection"

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

_LINGER_ZERO: Final = struct.pack("ii", 1, 0)
_ID_PREFIX: Final = os.urandom(4).hex()
_ids = itertools.count(1)


def _find_socket_stream(send: object) -> trio.SocketStream | None:
    fn = send
    for _ in range(8):
        owner = getattr(fn, "__self__", None)
        if owner is None:
            return None
        stream = getattr(owner, "stream", None)
        if isinstance(stream, trio.SocketStream):
            return stream
        fn = getattr(owner, "send", None)
    return None


class Connection:
    """What a request handler may do to its HTTP connection, beyond ASGI."""

    __slots__ = (
        "_on_complete",
        "_send",
        "client_gone",
        "entry",
        "request_id",
        "response_complete",
    )

    def __init__(self, send: object, on_complete: Callable[[Connection], None]) -> None:
        self._send = send
        self._on_complete = on_complete
        self.request_id = f"req_{_ID_PREFIX}{next(_ids):010x}"
        #: The client disconnected (``http.disconnect``) before the response was complete.
        self.client_gone = False
        #: The server finished its side (last body byte handed over, or connection aborted).
        self.response_complete = False
        #: The request-log entry of this request, set by the chat handler.
        self.entry: _Entry | None = None

    def complete(self) -> None:
        """The server is done with this request (its entry gets its finish time now)."""
        if not self.response_complete:
            self.response_complete = True
            self._on_complete(self)

    def _socket(self) -> trio.socket.SocketType:
        stream = _find_socket_stream(self._send)
        if stream is None:
            raise RuntimeError(
                "mock_server: cannot reach the TCP socket of this connection (the "
                "reset/close/truncated/stream_cut faults need Hypercorn's trio worker)"
            )
        return stream.socket

    def close(self) -> None:
        """Close the connection now with a FIN (orderly shutdown, no response)."""
        self.complete()
        sock = self._socket()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def reset(self) -> None:
        """Abort the connection now with a TCP RST (``SO_LINGER`` on, 0 s; then close)."""
        self.complete()
        sock = self._socket()
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        sock.close()


class ConnectionMiddleware:
    """ASGI middleware: a :class:`Connection` per HTTP request, ``x-request-id``, bookkeeping."""

    def __init__(self, app: ASGIApp, state: MockState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        conn = Connection(send, self._complete)
        scope[CONNECTION_KEY] = conn
        request_id = conn.request_id.encode("ascii")

        async def receive_wrapper() -> Message:
            message: Message = await receive()
            if message.get("type") == "http.disconnect" and not conn.response_complete:
                conn.client_gone = True
            return message

        async def send_wrapper(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id))
                message["headers"] = headers
            elif kind == "http.response.body" and not message.get("more_body", False):
                conn.complete()
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            if conn.entry is not None:
                self.state.finish(conn.entry, disconnected=conn.client_gone)

    def _complete(self, conn: Connection) -> None:
        if conn.entry is not None:
            self.state.finish(conn.entry, disconnected=False)
