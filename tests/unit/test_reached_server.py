"""Whether a failed request may have reached the server (``AttemptFailure.reached``,
``Attempt.reached``), and the retry rule it feeds: a request that is not idempotent (an
upload, a delete, a thread's turn) is resent only when it cannot have reached the server
or the server said it did not process it (``_engine._retry.resendable``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._transport import InvalidHostName, ProxyRefused, TLSConnectError

from ..fakenet import FakeResolver, Scenario
from . import paradigm_fixtures as fx
from .helpers import API_KEY, MESSAGES, completion_json, fixed, make_client

pytestmark = pytest.mark.anyio

NEVER_SENT = [
    httpx2.ConnectError("refused"),
    httpx2.ConnectTimeout("connect timed out"),
    httpx2.PoolTimeout("no connection free"),
    httpx2.ProxyError("502 Bad Gateway"),
    httpx2.UnsupportedProtocol("ftp"),
    TLSConnectError("handshake failed", peer="api.example:443", proxy=False),
    InvalidHostName("bad label", host="a..b"),
    ProxyRefused("refused", proxy="http://proxy:3128", status=407, target="api.example:443"),
]
MAY_HAVE_REACHED = [
    httpx2.WriteError("broken pipe"),
    httpx2.WriteTimeout("write timed out"),
    httpx2.ReadError("connection reset"),
    httpx2.ReadTimeout("read timed out"),
    httpx2.RemoteProtocolError("server disconnected without a response"),
]


def raising(exc: Exception) -> Any:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc

    return handler


async def last_attempt(handler: Any) -> pt.Attempt:
    async with make_client(handler, retry=pt.RetryPolicy.no_retries()) as client:
        with pytest.raises(pt.APIError) as raised:
            await client.chat(MESSAGES)
    return raised.value.attempts[-1]


@pytest.mark.parametrize("exc", NEVER_SENT, ids=lambda e: type(e).__name__)
async def test_a_failure_to_open_the_connection_never_reached_the_server(
    exc: Exception,
) -> None:
    assert (await last_attempt(raising(exc))).reached is False


@pytest.mark.parametrize("exc", MAY_HAVE_REACHED, ids=lambda e: type(e).__name__)
async def test_a_failure_once_the_request_was_written_may_have_reached_it(
    exc: Exception,
) -> None:
    assert (await last_attempt(raising(exc))).reached is True


@pytest.mark.parametrize(
    "response",
    [httpx2.Response(500), httpx2.Response(429), httpx2.Response(200, text="{not json")],
    ids=["500", "429", "invalid"],
)
async def test_any_answer_reached_the_server(response: httpx2.Response) -> None:
    assert (await last_attempt(lambda request: response)).reached is True


async def test_the_attempt_timeout_may_have_reached_the_server() -> None:
    async def hang(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep_forever()
        raise AssertionError

    async with make_client(
        hang, retry=pt.RetryPolicy.no_retries(), timeouts=pt.Timeouts(attempt=1)
    ) as client:
        with pytest.raises(pt.APITimeoutError) as raised:
            await client.chat(MESSAGES)
    assert raised.value.attempts[-1].reached is True


# ------------------------------------------------------------- on the client's transport


@pytest.mark.parametrize(
    ("result", "reached"), [("error", False), ("reset", True)], ids=["refused", "reset"]
)
async def test_the_transport_s_own_failures_are_classified(result: str, reached: bool) -> None:
    scenario = Scenario([("10.0.0.1", 0.1, result)]).install()
    FakeResolver(scenario.ips, delay=0.0).install()
    async with pt.Client(
        api_key=API_KEY, base_url="http://api.example/v1", retry=pt.RetryPolicy.no_retries()
    ) as client:
        with pytest.raises(pt.APIConnectionError) as raised:
            await client.chat(MESSAGES)
    (attempt,) = raised.value.attempts
    assert (attempt.cause, attempt.reached) == ("connection", reached)


# ------------------------------------------------------------- the rule it feeds

NO_TIMEOUTS = pt.Timeouts.none()  # (uploads read the file on worker threads)


class Answers:
    """Answers in turn (an exception is raised); records each request's method."""

    def __init__(self, *answers: httpx2.Response | Exception) -> None:
        self.answers = list(answers)
        self.seen: list[str] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        self.seen.append(request.method)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def upload(tmp_path: Path, *answers: httpx2.Response | Exception) -> tuple[Answers, Any]:
    """An upload answered by ``answers``: what was sent, and its result or error."""
    path = tmp_path / "a.txt"
    path.write_text("hello")
    script = Answers(*answers)
    async with make_client(script, retry=fixed(attempts=3), timeouts=NO_TIMEOUTS) as client:
        try:
            return script, await client.files.upload(path)
        except pt.APIError as error:
            return script, error


def uploaded() -> httpx2.Response:
    return httpx2.Response(201, json=fx.FILE_UPLOADED)


@pytest.mark.parametrize(
    "first",
    [
        httpx2.ConnectError("refused"),
        httpx2.ConnectTimeout("connect timed out"),
        httpx2.Response(503),
        httpx2.Response(429, headers={"retry-after": "1"}),
        httpx2.Response(408),
        httpx2.Response(500, headers={"x-should-retry": "true"}),
    ],
    ids=["connect", "connect-timeout", "503", "429", "408", "500-should-retry"],
)
async def test_an_upload_is_resent_when_it_cannot_have_been_processed(
    tmp_path: Path, first: httpx2.Response | Exception
) -> None:
    script, info = await upload(tmp_path, first, uploaded())
    assert info.id == fx.FILE_UPLOADED["id"]
    assert script.seen == ["POST", "POST"]


@pytest.mark.parametrize(
    "first",
    [
        httpx2.ReadError("reset"),
        httpx2.ReadTimeout("read timed out"),
        httpx2.WriteError("broken pipe"),
        httpx2.RemoteProtocolError("disconnected"),
        httpx2.Response(500),
        httpx2.Response(502),
        httpx2.Response(504),
        httpx2.Response(200, text="{not json"),
    ],
    ids=["read", "read-timeout", "write", "protocol", "500", "502", "504", "invalid"],
)
async def test_an_upload_that_may_have_reached_the_server_is_not_resent(
    tmp_path: Path, first: httpx2.Response | Exception
) -> None:
    script, error = await upload(tmp_path, first, uploaded())
    assert isinstance(error, pt.APIError)
    assert script.seen == ["POST"]
    assert len(error.attempts) == 1
    assert any("not idempotent" in note for note in error.__notes__)


async def test_a_non_retryable_status_gets_no_idempotency_note(tmp_path: Path) -> None:
    # (the policy would not have resent it either: nothing to say)
    _, error = await upload(tmp_path, httpx2.Response(400, json={"error": {"message": "bad"}}))
    assert isinstance(error, pt.BadRequestError)
    assert not getattr(error, "__notes__", [])


async def test_a_delete_is_resent_only_if_it_never_reached_the_server() -> None:
    deleted = httpx2.Response(200, json=fx.FILE_DELETED)
    script = Answers(httpx2.ConnectError("refused"), deleted)
    async with make_client(script, retry=fixed(attempts=3)) as client:
        assert await client.files.delete(1) is True
        assert script.seen == ["DELETE", "DELETE"]
        script.answers = [httpx2.ReadTimeout("read timed out"), deleted]
        script.seen.clear()
        with pytest.raises(pt.APITimeoutError):
            await client.files.delete(1)
        assert script.seen == ["DELETE"]


async def test_reading_the_documents_is_resent_like_any_request() -> None:
    page = httpx2.Response(200, json={"data": [], "next": None})
    script = Answers(httpx2.ReadError("reset"), page)
    async with make_client(script, retry=fixed(attempts=3)) as client:
        await client.files.list()
    assert script.seen == ["GET", "GET"]


async def test_a_thread_turn_is_not_resent_after_a_502_a_tokenize_is() -> None:
    turn = Answers(httpx2.Response(502), httpx2.Response(200, json=fx.TURN))
    tokens = Answers(httpx2.Response(502), httpx2.Response(200, json=fx.TOKENIZE_CURRENT))
    async with make_client(turn, retry=fixed(attempts=3)) as client:
        with pytest.raises(pt.InternalServerError):
            await client.thread_turn("hello")
    async with make_client(tokens, retry=fixed(attempts=3)) as client:
        await client.tokenize("hello")
    assert (len(turn.seen), len(tokens.seen)) == (1, 2)


async def test_chat_is_resent_after_a_failure_that_may_have_reached_the_server() -> None:
    script = Answers(httpx2.ReadError("reset"), httpx2.Response(200, json=completion_json()))
    async with make_client(script, retry=fixed(attempts=3)) as client:
        await client.chat(MESSAGES)
    assert script.seen == ["POST", "POST"]
