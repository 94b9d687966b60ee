"""Misuse gets a message that names the fix: asyncio instead of trio, httpx instead of httpx2."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import httpx2
import pytest
import trio

import paradigm_trio as pt

from .helpers import API_KEY, MESSAGES, completion_json


def _ok(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json=completion_json())


def _client(**kwargs: Any) -> pt.Client:
    return pt.Client(api_key=API_KEY, transport=httpx2.MockTransport(_ok), **kwargs)


def _under_asyncio(use: Callable[[pt.Client], Awaitable[object]]) -> RuntimeError:
    """Run ``use(client)`` under asyncio; the RuntimeError it raises."""

    async def main() -> None:
        await use(_client())

    with pytest.raises(RuntimeError) as info:
        asyncio.run(main())
    return info.value


async def _enter(client: pt.Client) -> None:
    async with client:
        pass  # pragma: no cover


async def _chat_stream(client: pt.Client) -> None:
    async with client.chat_stream(MESSAGES):
        pass  # pragma: no cover


async def _stream_batch(client: pt.Client) -> None:
    async with client.stream_batch([MESSAGES]):
        pass  # pragma: no cover


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda c: c.chat(MESSAGES), id="chat"),
        pytest.param(lambda c: c.send(pt.ChatRequest(messages=MESSAGES)), id="send"),
        pytest.param(lambda c: c.chat_batch([MESSAGES]), id="chat_batch"),
        pytest.param(lambda c: c.models(), id="models"),
        pytest.param(lambda c: c.aclose(), id="aclose"),
        pytest.param(_enter, id="async-with"),
        pytest.param(_chat_stream, id="chat_stream"),
        pytest.param(_stream_batch, id="stream_batch"),
    ],
)
def test_a_call_from_asyncio_says_to_run_under_trio(
    use: Callable[[pt.Client], Awaitable[object]],
) -> None:
    # Before: "Task got bad yield: <...CancelShieldedCheckpoint...>" or trio's
    # "must be called from async context".
    error = _under_asyncio(use)
    message = str(error)
    assert "called from asyncio" in message
    assert "trio.run(main) instead of asyncio.run(main)" in message
    assert "bad yield" not in message


def test_the_check_lets_trio_calls_through() -> None:
    async def main() -> str:
        async with _client() as client:
            return (await client.chat(MESSAGES)).text

    assert trio.run(main) == "Hello there"


@pytest.mark.parametrize(
    ("keyword", "make", "replacement"),
    [
        ("http_client", lambda: httpx.AsyncClient(), "httpx2.AsyncClient(...)"),
        ("transport", lambda: httpx.AsyncHTTPTransport(), "httpx2.AsyncHTTPTransport(...)"),
        ("transport", lambda: httpx.MockTransport(_ok), "httpx2.MockTransport(...)"),
    ],
)
def test_an_httpx_client_or_transport_is_refused_naming_httpx2(
    keyword: str, make: Callable[[], object], replacement: str
) -> None:
    # Before: accepted, then a TypeError or a bare AssertionError at the first request.
    with pytest.raises(pt.ConfigurationError) as info:
        pt.Client(api_key=API_KEY, **{keyword: make()})
    message = str(info.value)
    assert f"{keyword}= is an httpx." in message
    assert "from the httpx package" in message
    assert f"pass an {replacement} instead" in message


def test_a_subclass_of_an_httpx_class_is_refused_too() -> None:
    class MyClient(httpx.AsyncClient):
        pass

    with pytest.raises(pt.ConfigurationError, match="from the httpx package"):
        pt.Client(api_key=API_KEY, http_client=MyClient())


def test_sync_or_foreign_clients_and_transports_are_refused() -> None:
    with pytest.raises(pt.ConfigurationError, match=r"must be an httpx2\.AsyncClient, got httpx2"):
        pt.Client(api_key=API_KEY, http_client=httpx2.Client())  # type: ignore[arg-type]
    with pytest.raises(pt.ConfigurationError, match=r"must be an httpx2\.AsyncBaseTransport"):
        pt.Client(api_key=API_KEY, transport=httpx2.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(pt.ConfigurationError, match=r"got builtins\.object"):
        pt.Client(api_key=API_KEY, transport=object())  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_httpx2_clients_and_transports_are_accepted() -> None:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(_ok)) as http_client:
        async with pt.Client(api_key=API_KEY, http_client=http_client) as client:
            assert (await client.chat(MESSAGES)).text == "Hello there"
    async with _client() as client:
        assert (await client.chat(MESSAGES)).text == "Hello there"
