"""The ``paradigm_trio`` logger: its messages, their ``extra`` fields, and their levels."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio import _log

from .helpers import API_KEY, MESSAGES, Script, after, fixed, make_client, ok, status
from .test_streaming import answer, sse

pytestmark = pytest.mark.anyio


def _events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(r, "event", "?") for r in caplog.records if r.name == "paradigm_trio"]


def _of(caplog: pytest.LogCaptureFixture, event: str) -> list[Any]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def _no_secret(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in repr(vars(record))


def test_the_library_logger_is_quiet_by_default() -> None:
    logger = logging.getLogger("paradigm_trio")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert logger.level == logging.NOTSET  # the application decides


async def test_debug_tells_each_attempt_with_extra_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="paradigm_trio")
    script = Script(status(503, headers={"x-request-id": "srv-1"}), ok())
    async with make_client(script, retry=fixed(initial_delay=0.5)) as client:
        await client.chat(MESSAGES, custom_id="c1")
    assert _events(caplog) == [
        "attempt_started", "attempt_failed", "retry_scheduled", "attempt_started",
        "request_succeeded",
    ]  # fmt: skip
    (failed,) = _of(caplog, "attempt_failed")
    assert (failed.custom_id, failed.attempt, failed.status, failed.cause) == ("c1", 1, 503, "503")
    assert failed.request_id == "srv-1"
    assert failed.will_retry is True
    assert failed.levelno == logging.DEBUG
    (retry,) = _of(caplog, "retry_scheduled")
    assert (retry.cause, retry.wait, retry.attempt) == ("503", pytest.approx(0.5), 1)
    assert retry.getMessage() == "request 'c1': retry after 503 in 0.5s"
    second = _of(caplog, "attempt_started")[1]
    assert (second.attempt, second.cause) == (2, "503")
    (done,) = _of(caplog, "request_succeeded")
    assert (done.attempts, done.tokens, done.elapsed) == (2, 12, pytest.approx(0.5))
    assert done.idempotency_key.startswith("pt-")
    _no_secret(caplog)


async def test_a_failure_is_a_warning_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")
    async with make_client(Script(status(400))) as client:
        with pytest.raises(pt.BadRequestError):
            await client.chat(MESSAGES, custom_id="bad")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.event == "request_failed"
    assert (record.custom_id, record.cause, record.attempts) == ("bad", "400", 1)
    assert record.getMessage().startswith("request 'bad' failed after 1 attempt(s)")


async def test_info_tells_a_batch_in_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")
    script = Script(status(503), default=after(1.0, ok()))
    requests = [[{"role": "user", "content": f"q{i}"}] for i in range(40)]
    async with make_client(script, limits=pt.Limits(concurrency=2)) as client:
        results = await client.chat_batch(requests, retry=fixed(initial_delay=0.1))
    assert all(r.ok for r in results)
    events = _events(caplog)
    # 40 requests of 1 s two at a time: 20 s, so a progress line at 10 s and one at 20 s.
    assert events == ["batch_started", "batch_progress", "batch_progress", "batch_finished"]
    progress = _of(caplog, "batch_progress")[0]
    assert progress.done == 19  # the first 10 s: 2 requests a second, one retried
    assert progress.retries_by_cause == {"503": 1}
    finished = _of(caplog, "batch_finished")[0]
    assert (finished.succeeded, finished.failed, finished.retries) == (40, 0, 1)
    assert "40 done (40 succeeded, 0 failed, 0 cancelled)" in finished.getMessage()


async def test_a_batch_s_messages_say_which_batch(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/embeddings"):
            body = json.loads(request.content)
            data = [{"object": "embedding", "index": i, "embedding": [0.5]}
                    for i in range(len(body["input"]))]  # fmt: skip
            return httpx2.Response(200, json={"object": "list", "data": data, "model": "m"})
        return ok()

    async with make_client(handler) as client, trio.open_nursery() as nursery:
        nursery.start_soon(client.chat_batch, [MESSAGES] * 3)
        nursery.start_soon(
            functools.partial(client.embed_batch, ["a", "b"], encoding_format="float")
        )
    messages = sorted(r.getMessage().split(":")[0] for r in caplog.records)
    assert messages == [
        "chat batch finished", "chat batch started (concurrency 64)",
        "embeddings batch finished", "embeddings batch started (concurrency 64)",
    ]  # fmt: skip
    assert {r.batch for r in caplog.records} == {"chat batch", "embeddings batch"}


async def test_a_cancelled_batch_says_interrupted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")
    async with make_client(Script(default=after(5.0, ok()))) as client:
        with trio.move_on_after(1.0):
            await client.chat_batch([MESSAGES] * 10)
    (finished,) = _of(caplog, "batch_finished")
    assert finished.getMessage().startswith("chat batch interrupted: 0 done")
    assert "Exception" not in finished.getMessage()


async def test_a_systematic_failure_is_logged_as_a_stop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")
    async with make_client(Script(default=status(401))) as client:
        with pytest.raises(pt.SystematicFailureError):
            await client.chat_batch([MESSAGES] * 50)
    (stopped,) = _of(caplog, "batch_stopped")
    assert (stopped.levelno, stopped.status, stopped.cause) == (
        logging.ERROR,
        401,
        "authentication",
    )
    (finished,) = _of(caplog, "batch_finished")
    assert finished.getMessage().startswith("chat batch stopped (SystematicFailureError)")
    _no_secret(caplog)


async def test_the_adaptive_controller_says_when_it_lowers_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")
    spent = status(429, headers={"x-ratelimit-remaining-requests": "0", "retry-after": "2"})
    async with make_client(Script(spent, ok()), limits=pt.Limits(concurrency=8)) as client:
        await client.chat(MESSAGES)
    (record,) = _of(caplog, "concurrency_lowered")
    assert (record.previous, record.concurrency, record.wait) == (8, 4, 2.0)
    assert record.levelno == logging.INFO


async def test_nothing_is_built_for_a_disabled_level(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="paradigm_trio")

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a DEBUG message was built at WARNING")

    for name in ("attempt_started", "request_finished", "batch_statistics"):
        monkeypatch.setattr(_log, name, boom)
    async with make_client(Script(default=ok())) as client:
        await client.chat(MESSAGES)
        await client.chat_batch([MESSAGES] * 3)
    assert caplog.records == []


async def test_a_dead_server_is_said_once_not_once_a_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")
    script = Script(default=httpx2.ConnectError)
    async with make_client(
        script, retry=pt.RetryPolicy.no_retries(), limits=pt.Limits(concurrency=1)
    ) as client:
        results = await client.chat_batch([MESSAGES] * 12, circuit_breaker=3, unreachable_after=5.5)
    sent = script.calls
    assert sent < 12
    events = _events(caplog)
    assert events.count("breaker_opened") == 1
    assert events.count("server_unreachable") == 1
    # The requests sent and failed are warnings; those the breaker gave up are not.
    assert events.count("request_failed") == sent
    (opened,) = _of(caplog, "breaker_opened")
    assert (opened.levelno, opened.failures) == (logging.WARNING, 3)
    (dead,) = _of(caplog, "server_unreachable")
    assert dead.levelno == logging.ERROR
    assert dead.seconds >= 5.5
    assert len(results) == 12


async def test_the_breaker_says_when_the_server_answers_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="paradigm_trio")
    steps = [httpx2.ConnectError] * 3
    script = Script(*steps, default=ok())
    async with make_client(
        script, retry=pt.RetryPolicy.no_retries(), limits=pt.Limits(concurrency=1)
    ) as client:
        await client.chat_batch([MESSAGES] * 5, circuit_breaker=3)
    assert _events(caplog).count("breaker_opened") == 1
    (closed,) = _of(caplog, "breaker_closed")
    assert closed.getMessage() == "circuit breaker closed: the server answers"


async def test_a_stream_left_early_counts_the_attempt_it_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="paradigm_trio")
    async with make_client(Script(sse(*answer("a", "b"))[0])) as client:
        async with client.chat_stream(MESSAGES, custom_id="s1") as stream:
            async for _chunk in stream:
                break
    (cancelled,) = _of(caplog, "request_cancelled")
    assert cancelled.attempts == 1
    assert "cancelled after 1 attempt(s)" in cancelled.getMessage()
