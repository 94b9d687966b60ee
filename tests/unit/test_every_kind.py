"""Every request kind obeys one ``RetryPolicy`` and one ``Timeouts`` identically.

chat, chat_stream, embed, embed_batch, chat_batch and streamed batch items all run on the
one send path and the one engine, so a custom policy (``retry_statuses={418}``: 418 is
retried, 429 is not) and ``Timeouts(attempt=...)`` give every kind the same attempts,
retries and outcome.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt

from .helpers import MESSAGES, fixed, make_client, ok
from .test_streaming import answer, sse

pytestmark = pytest.mark.anyio

POLICY = fixed(retry_statuses=frozenset({418}), attempts=3)
TIMEOUTS = pt.Timeouts(attempt=2.0)


class Server:
    """Answers every kind; its first request gets ``first`` (a status, or ``"hang"``)."""

    def __init__(self, first: int | str) -> None:
        self.first = first
        self.calls = 0

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        if self.calls == 1:
            if self.first == "hang":
                await trio.sleep_forever()
            return httpx2.Response(int(self.first), json={"error": {"message": "no"}})
        body = json.loads(request.content)
        if request.url.path.endswith("/embeddings"):
            data = [{"index": i, "embedding": [0.5, 0.25]} for i in range(len(body["input"]))]
            usage = {"prompt_tokens": 3, "total_tokens": 3}
            return httpx2.Response(200, json={"data": data, "model": "e5", "usage": usage})
        if body.get("stream"):
            return sse(*answer("hi"))[0]
        return ok()


async def _stream(client: pt.Client) -> object:
    async with client.chat_stream(MESSAGES, retry=POLICY, timeouts=TIMEOUTS) as stream:
        async for _ in stream:
            pass
    return stream.completion


def _batch_error(results: list[Any]) -> object:
    (result,) = results
    if result.error is not None:
        raise result.error
    return result


KINDS: dict[str, Callable[[pt.Client], Awaitable[object]]] = {
    "chat": lambda c: c.chat(MESSAGES, retry=POLICY, timeouts=TIMEOUTS),
    "chat_stream": _stream,
    "embed": lambda c: c.embed("hello", retry=POLICY, timeouts=TIMEOUTS),
    "embed_batch": lambda c: _then(
        c.embed_batch(["hello"], retry=POLICY, timeouts=TIMEOUTS), _batch_error
    ),
    "chat_batch": lambda c: _then(
        c.chat_batch([MESSAGES], retry=POLICY, timeouts=TIMEOUTS), _batch_error
    ),
    "chat_batch_stream": lambda c: _then(
        c.chat_batch([MESSAGES], retry=POLICY, timeouts=TIMEOUTS, stream=True), _batch_error
    ),
}


async def _then(results: Awaitable[Any], check: Callable[[Any], object]) -> object:
    return check(await results)


async def _run(kind: str, first: int | str) -> tuple[str, pt.ClientStatistics, int]:
    server = Server(first)
    async with make_client(server) as client:
        try:
            await KINDS[kind](client)
        except pt.APIError as exc:
            outcome = type(exc).__name__
        else:
            outcome = "ok"
        return outcome, client.statistics(), server.calls


@pytest.mark.parametrize("kind", KINDS)
async def test_a_status_the_policy_names_is_retried_by_every_kind(kind: str) -> None:
    outcome, stats, calls = await _run(kind, 418)
    assert (outcome, calls, stats.attempts, stats.succeeded) == ("ok", 2, 2, 1)
    assert dict(stats.retries_by_cause) == {"418": 1}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_status_the_policy_leaves_out_is_not_retried_by_any_kind(kind: str) -> None:
    outcome, stats, calls = await _run(kind, 429)
    assert (outcome, calls, stats.attempts, stats.failed) == ("RateLimitError", 1, 1, 1)
    assert dict(stats.retries_by_cause) == {}


@pytest.mark.parametrize("kind", KINDS)
async def test_timeouts_attempt_ends_a_hanging_attempt_of_every_kind(kind: str) -> None:
    start = trio.current_time()
    outcome, stats, calls = await _run(kind, "hang")
    assert (outcome, calls, stats.attempts, stats.succeeded) == ("ok", 2, 2, 1)
    assert dict(stats.retries_by_cause) == {"timeout": 1}
    # the hanging attempt ended at Timeouts.attempt, then one backoff, then the answer
    assert 2.0 <= trio.current_time() - start < 2.0 + POLICY.max_delay + 1
