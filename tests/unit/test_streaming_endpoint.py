"""The streamed send path is generic: a toy :class:`StreamingEndpoint` (not chat) run by
``Sender.stream`` on the engine obeys the ``RetryPolicy`` and ``Timeouts.first_token``
as chat does, with nothing of its own but its module (here: this file's classes)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._attempt_failure import AttemptFailure
from paradigm_trio._endpoints._endpoint import StreamingEndpoint, close_response
from paradigm_trio._endpoints._pace import StallWatch
from paradigm_trio._endpoints._sse import SSEDecoder
from paradigm_trio._http._http import HTTP

from .helpers import Script, fixed, make_client, status
from .test_streaming import HANG, sse

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class TickRequest:
    n: int
    model: str | None = None
    custom_id: str | None = None

    def estimated_tokens(self) -> int:
        return 1


class TickReader:
    """A ``Reader`` of ``data: tick k`` events up to ``data: [DONE]``."""

    def __init__(self, http: HTTP, response: httpx2.Response) -> None:
        self.http = http
        self.response = response
        self.status = response.status_code
        self.chunks = 0
        self.stall: StallWatch | None = None
        self.no_done = False
        self.broken: str | None = None
        self.ticks: list[str] = []
        self.done = False
        self.decoder = SSEDecoder()
        self.parts: AsyncGenerator[bytes, None] = response.aiter_bytes()

    @property
    def bytes_received(self) -> int:
        return self.decoder.bytes_received

    def progress(self) -> str:
        return f"{self.chunks} tick(s)"

    def invalid(self, message: str) -> AttemptFailure:
        return self.http.invalid(message, status=self.status, request_id=None)

    async def next_chunk(self) -> None:
        seen = self.chunks
        while self.chunks == seen and not self.done:
            try:
                data = await self.parts.__anext__()
            except StopAsyncIteration:
                raise AttemptFailure(pt.APIConnectionError("cut"), "connection") from None
            for event in self.decoder.feed(data):
                if event.data == "[DONE]":
                    self.done = True
                else:
                    self.ticks.append(event.data)
                    self.chunks += 1

    async def read_to_end(self, read_timeout: float | None) -> None:
        while not self.done:
            await self.next_chunk()

    async def drain(self) -> None:
        await trio.lowlevel.checkpoint()

    async def close(self) -> None:
        await close_response(self.response, self.parts)


class TickEndpoint:
    """``POST /ticks``: ``n`` ticks, plain (JSON) or streamed (one event a tick)."""

    operation = "ticks"
    path = "/ticks"
    model = "ticker-1"
    token_types: tuple[str, ...] = ()
    idempotent: bool = True

    def encode(self, request: TickRequest) -> bytes:
        return json.dumps({"n": request.n}).encode()

    def encode_stream(self, request: TickRequest, include_usage: bool = True) -> bytes:
        return json.dumps({"n": request.n, "stream": True}).encode()

    def deterministic(self, request: TickRequest) -> bool:
        return True

    def parser(self, request: TickRequest) -> Callable[[object, str | None], tuple[str, ...]]:
        return lambda data, request_id: tuple(data["ticks"])  # type: ignore[index]

    def follow_up(self, request: TickRequest, stream: bool) -> None:
        return None

    def usage(self, answer: tuple[str, ...]) -> None:
        return None

    def request_attributes(self, request: TickRequest) -> Iterator[tuple[str, Any]]:
        return iter(())

    def answer_attributes(self, answer: Any) -> Iterator[tuple[str, Any]]:
        return iter(())

    def content_attributes(self, request: TickRequest, answer: Any) -> Iterator[tuple[str, str]]:
        return iter(())

    def stream_reader(
        self, http: HTTP, response: httpx2.Response, resume: Any = None
    ) -> TickReader:
        return TickReader(http, response)

    def stream_parser(self, request: TickRequest) -> Callable[[TickReader], tuple[str, ...]]:
        return lambda reader: tuple(reader.ticks)


def ticks(*pieces: object) -> httpx2.Response:
    return sse(*pieces)[0]


TICKS = (b"data: tick 1\n\n", b"data: tick 2\n\n", b"data: [DONE]\n\n")


async def _stream(client: pt.Client, request: TickRequest, **plan: Any) -> tuple[str, ...]:
    endpoint: StreamingEndpoint[TickRequest, tuple[str, ...], TickReader] = TickEndpoint()
    made = client._plan(endpoint, request, plan.get("retry"), plan.get("timeouts"), stream=True)
    return await client._sender.stream(endpoint, request, made)


async def test_another_streaming_endpoint_runs_on_the_one_send_path_with_retries() -> None:
    script = Script(status(418), ticks(*TICKS))
    retry = fixed(retry_statuses={418}, initial_delay=1.0)
    async with make_client(script) as client:
        answer = await _stream(client, TickRequest(2), retry=retry)
        stats = client.statistics()
    assert answer == ("tick 1", "tick 2")
    assert [r.url.path.rsplit("/", 1)[-1] for r in script.requests] == ["ticks", "ticks"]
    assert json.loads(script.requests[1].content) == {"n": 2, "stream": True}
    assert script.requests[1].headers["accept"] == "text/event-stream"
    # the same Idempotency-Key on every attempt, and the policy's wait between them
    assert len({r.headers["idempotency-key"] for r in script.requests}) == 1
    assert script.times[1] - script.times[0] == pytest.approx(1.0)
    assert (stats.attempts, stats.succeeded) == (2, 1)


async def test_another_streaming_endpoint_obeys_the_first_token_deadline() -> None:
    script = Script(ticks(HANG), ticks(*TICKS))
    timeouts = pt.Timeouts(first_token=3.0)
    async with make_client(script, retry=fixed(initial_delay=0.5)) as client:
        answer = await _stream(client, TickRequest(2), timeouts=timeouts)
        stats = client.statistics()
    assert answer == ("tick 1", "tick 2")
    assert script.times[1] - script.times[0] == pytest.approx(3.5)  # 3 s silent, then 0.5
    assert stats.retries_by_cause == {"timeout": 1}


async def test_another_streaming_endpoint_cut_before_its_end_is_sent_again() -> None:
    script = Script(ticks(b"data: tick 1\n\n"), ticks(*TICKS))
    async with make_client(script, retry=fixed(initial_delay=0.5)) as client:
        answer = await _stream(client, TickRequest(2))
    assert answer == ("tick 1", "tick 2")  # the whole answer of the second attempt
    assert len(script.requests) == 2
