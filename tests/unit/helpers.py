"""Shared helpers for the unit tests: completion bodies and a scripted ``MockTransport`` handler.

A :class:`Script` answers the client's requests from a list of *steps*, one per request, and
records every request with the virtual time (``trio.current_time()``) it arrived at.  A step
is one of:

* an ``httpx2.Response`` (used once);
* a subclass of ``httpx2.RequestError`` (raised, built with the request);
* a callable ``(request) -> Response`` or ``async (request) -> Response`` (may sleep, raise).

When the steps run out, ``default`` (a step, usually a callable) answers every further request.
"""

from __future__ import annotations

import inspect
import itertools
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2
import trio

import paradigm_trio as pt
from paradigm_trio._transport._pool import Connection

API_KEY = "sk-unit-SECRET-7f3a9c1e5b"
BASE_URL = "http://test/api/v2"
MESSAGES = [{"role": "user", "content": "Hi"}]

Step = (
    httpx2.Response
    | type[httpx2.RequestError]
    | Callable[[httpx2.Request], httpx2.Response | Awaitable[httpx2.Response]]
)


def completion_json(
    text: str = "Hello there",
    *,
    id: str = "chatcmpl-123",
    model: str = "alfred-4.2",
    prompt_tokens: int = 5,
    completion_tokens: int = 7,
    finish_reason: str | None = "stop",
    created: int = 1_700_000_000,
) -> dict[str, Any]:
    """An OpenAI-style chat completion body."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def ok(headers: Mapping[str, str] | None = None, **kwargs: Any) -> httpx2.Response:
    """A 200 with a completion body (keywords go to :func:`completion_json`)."""
    return httpx2.Response(200, json=completion_json(**kwargs), headers=headers)


def status(
    code: int,
    body: object = None,
    *,
    headers: Mapping[str, str] | None = None,
    text: str | None = None,
) -> httpx2.Response:
    """A response with ``code``: JSON ``body`` (an error envelope by default) or raw ``text``."""
    if text is not None:
        return httpx2.Response(code, text=text, headers=headers)
    if body is None:
        body = {"error": {"message": f"status {code}", "type": "server_error", "code": None}}
    return httpx2.Response(code, json=body, headers=headers)


def after(seconds: float, step: Step) -> Callable[[httpx2.Request], Awaitable[httpx2.Response]]:
    """A step that takes ``seconds`` of (virtual) time before answering like ``step``."""

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(seconds)
        return await _run_step(step, request)

    return handler


def hang(request: httpx2.Request) -> Awaitable[httpx2.Response]:
    """A step that never answers."""

    async def forever() -> httpx2.Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    return forever()


async def _run_step(step: Step, request: httpx2.Request) -> httpx2.Response:
    if isinstance(step, httpx2.Response):
        return step
    if isinstance(step, type) and issubclass(step, httpx2.RequestError):
        raise step(f"simulated {step.__name__}", request=request)
    result = step(request)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, httpx2.Response)
    return result


class Script:
    """A scripted ``MockTransport`` handler that records what it received, and when."""

    def __init__(self, *steps: Step, default: Step | None = None) -> None:
        self.steps = list(steps)
        self.default = default
        self.requests: list[httpx2.Request] = []
        self.times: list[float] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        index = len(self.requests)
        self.requests.append(request)
        self.times.append(trio.current_time())
        if index < len(self.steps):
            step = self.steps[index]
        elif self.default is not None:
            step = self.default
        else:
            raise AssertionError(f"unexpected request #{index + 1}: {request.method} {request.url}")
        return await _run_step(step, request)

    @property
    def calls(self) -> int:
        return len(self.requests)

    def gaps(self) -> list[float]:
        """Virtual seconds between consecutive requests."""
        return [b - a for a, b in itertools.pairwise(self.times)]

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]

    def header(self, name: str) -> list[str | None]:
        return [r.headers.get(name) for r in self.requests]


def make_client(handler: Any, **kwargs: Any) -> pt.Client:
    """A client on ``handler`` through ``httpx2.MockTransport`` (keywords go to ``Client``)."""
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("base_url", BASE_URL)
    return pt.Client(transport=httpx2.MockTransport(handler), **kwargs)


def fixed(**kwargs: Any) -> pt.RetryPolicy:
    """A retry policy without jitter (exact waits); keywords override its fields."""
    kwargs.setdefault("jitter", 0)
    return pt.RetryPolicy(**kwargs)


class Events(list[pt.Event]):
    """An ``on_event`` callback that keeps every event."""

    def __call__(self, event: pt.Event) -> None:
        self.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self if isinstance(e, kind)]

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self]


class InterruptedHandOver:
    """Stands for a ``_loop.Loop``'s trio token until its first call: it makes the call
    (a job is queued on the loop), then ``before()``, then puts the real token back and
    raises ``KeyboardInterrupt``: Ctrl-C landing while a job is handed to the loop, once
    queued (on a busy machine, the loop can run the job meanwhile)."""

    def __init__(self, loop: Any, before: Callable[[], object] = lambda: None) -> None:
        self.loop = loop
        self.real = loop._token
        self.before = before
        loop._token = self

    def run_sync_soon(self, fn: Callable[..., object], *args: object) -> None:
        self.real.run_sync_soon(fn, *args)
        self.before()
        self.loop._token = self.real
        raise KeyboardInterrupt


class Status:
    """The fast lane's ``Answering`` of a test (``TrioTransport.fetch``): the status; a
    failure raised as it is."""

    def head(self, arg: object, status: int, headers: object) -> None:
        pass

    def answer(self, status: int, headers: object, body: bytes, head: object) -> int:
        return status

    def failed(self, exc: BaseException) -> BaseException:
        return exc


ORIGIN = ("http", "api.example", 80)
"""The origin of the connections :func:`pair` makes."""


def pair(ends: list[socket.socket]) -> tuple[Connection, socket.socket]:
    """A plain pooled connection (``Connection.raw``) on a socket pair, and the server's end
    of it; both are added to ``ends`` (the ``ends`` fixture closes them)."""
    client, server = socket.socketpair()
    client.setblocking(False)
    server.setblocking(False)
    conn = Connection(trio.SocketStream(trio.socket.from_stdlib_socket(client)), ORIGIN)
    assert conn.raw is not None
    ends += [conn.raw, server]
    return conn, server


def arrived(server: socket.socket) -> bytes:
    """What the client has written to ``server``'s end so far (left in the socket)."""
    try:
        return server.recv(1 << 20, socket.MSG_PEEK)
    except BlockingIOError:
        return b""
