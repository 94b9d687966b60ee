"""A fake network for the transport's tests: a host name resolver and sockets.

trio lets a program replace its host name resolver and its socket factory
(``trio.socket.set_custom_hostname_resolver``, ``set_custom_socket_factory``).
:class:`FakeResolver` answers every name with given addresses, or asks the system's
resolver, and records the look-ups; :class:`Scenario` makes sockets whose ``connect`` to
each address takes a given time and succeeds or fails, on trio's clock.  A connected
socket answers every request written to it with :data:`ANSWER`, so a transport can run
whole exchanges on it (one whose result is ``"reset"`` connects, takes the request, then
is reset by the server instead of answering).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any

import trio

_BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "alfred-4.2",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
).encode()
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)
"""What the fake server answers to every request: a chat completion."""


def entry(ip: str, port: int) -> tuple[Any, ...]:
    """A ``getaddrinfo`` entry for ``ip``."""
    if ":" in ip:
        return (trio.socket.AF_INET6, trio.socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
    return (trio.socket.AF_INET, trio.socket.SOCK_STREAM, 6, "", (ip, port))


class FakeResolver(trio.abc.HostnameResolver):
    """Answers every name with ``ips`` (``None``: what the system's resolver says) after
    ``delay`` seconds, or raises ``error``; records the look-ups."""

    def __init__(
        self,
        ips: Sequence[str] | None = ("10.0.0.1",),
        delay: float = 1.0,
        error: Exception | None = None,
    ) -> None:
        self.ips = None if ips is None else list(ips)
        self.delay = delay
        self.error = error
        self.lookups: list[tuple[bytes | None, object]] = []

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        self.lookups.append((host, port))
        await trio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        if self.ips is None:
            return await trio.to_thread.run_sync(
                socket.getaddrinfo, host, port, family, type, proto, flags
            )
        return [entry(ip, int(port or 0)) for ip in self.ips]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        raise NotImplementedError

    def install(self) -> FakeResolver:
        trio.socket.set_custom_hostname_resolver(self)
        return self


class FakeSocket(trio.socket.SocketType):
    def __init__(self, scenario: Scenario, family: int, kind: int, proto: int) -> None:
        super().__init__()
        self.scenario = scenario
        self._family, self._type, self._proto = family, kind, proto
        self.closed = False
        self._answers = 0  # requests written and not answered yet
        self._reset = False  # reset by the server once a request is written

    @property
    def type(self) -> Any:
        return self._type

    @property
    def family(self) -> Any:
        return self._family

    @property
    def proto(self) -> int:
        return self._proto

    async def connect(self, address: Any) -> None:
        ip = address[0]
        self.scenario.sockets[ip] = self
        self.scenario.connected.append(self)
        self.scenario.tried.append((ip, round(trio.current_time() - self.scenario.start, 6)))
        delay, result = self.scenario.plan[ip]
        await trio.sleep(delay)
        if result == "error":
            raise OSError(f"connection to {ip} refused")
        self._reset = result == "reset"

    async def send(self, data: Any, flags: int = 0) -> int:
        await trio.lowlevel.checkpoint()
        self._answers += bytes(data).count(b"\r\n\r\n")
        return len(data)

    async def recv(self, size: int, flags: int = 0) -> bytes:
        while not self._answers:
            await trio.sleep(0.001)
        if self._reset:
            raise ConnectionResetError("connection reset by peer")
        self._answers -= 1
        return ANSWER

    def is_readable(self) -> bool:
        return False

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        return False

    def fileno(self) -> int:
        return -1 if self.closed else 1000

    def close(self) -> None:
        self.closed = True

    def setsockopt(self, *args: object, **kwargs: object) -> None:
        pass


class Scenario(trio.abc.SocketFactory):
    """Addresses, each with how long its connection takes and how it ends."""

    def __init__(self, plan: Sequence[tuple[str, float, str]], no_ipv6: bool = False) -> None:
        self.ips = [ip for ip, _, _ in plan]
        self.plan = {ip: (delay, result) for ip, delay, result in plan}
        self.no_ipv6 = no_ipv6
        self.sockets: dict[str, FakeSocket] = {}  # the last one to each address
        self.connected: list[FakeSocket] = []  # every one that connected or tried
        self.tried: list[tuple[str, float]] = []  # (address, when, from ``start``)
        self.start = 0.0

    def socket(self, family: Any = None, type: Any = None, proto: Any = None) -> Any:
        if self.no_ipv6 and family == trio.socket.AF_INET6:
            raise OSError("pretending not to support IPv6")
        return FakeSocket(self, family, type, proto)

    def install(self) -> Scenario:
        trio.socket.set_custom_socket_factory(self)
        self.start = trio.current_time()
        return self
