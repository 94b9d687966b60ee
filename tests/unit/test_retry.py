"""Retry instructions from headers, and the retry loop of ``Client`` (on trio's MockClock).

Waits are measured in virtual time at the handler (``Script.times``), so they are exact.
"""

from __future__ import annotations

import email.utils
import itertools
import types
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._http._failures import parse_retry_after, parse_should_retry

from .helpers import (
    MESSAGES,
    Events,
    Script,
    after,
    fixed,
    hang,
    make_client,
    ok,
    status,
)

H = httpx2.Headers
NOW = 1_750_000_000.0  # a fixed wall-clock "now" for HTTP dates


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


# ============================================================================ header parsing


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "12.5"}, 0.0125),
        ({"retry-after-ms": "-20"}, 0.0),
        ({"Retry-After-Ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"Retry-After": " 2.5 "}, 2.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "1500", "retry-after": "10"}, 1.5),
        ({"retry-after-ms": "junk", "retry-after": "10"}, 10.0),
        ({"retry-after-ms": "inf", "retry-after": "10"}, 10.0),
        ({"retry-after": http_date(NOW + 7)}, 7.0),
        ({"retry-after": http_date(NOW - 30)}, 0.0),
        ({"retry-after": "Wed, 99 Foo 2025 99:99:99 GMT"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(H(headers), now=NOW) == expected


def test_parse_retry_after_date_uses_the_wall_clock_by_default() -> None:
    in_a_minute = datetime.now(UTC) + timedelta(seconds=60)
    wait = parse_retry_after(H({"retry-after": email.utils.format_datetime(in_a_minute, True)}))
    assert wait is not None
    assert 58 <= wait <= 60


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("true", True),
        ("false", False),
        ("TRUE", True),
        (" False ", False),
        ("yes", None),
        ("1", None),
        ("", None),
    ],
)
def test_parse_should_retry(value: str | None, expected: bool | None) -> None:
    headers = H({} if value is None else {"x-should-retry": value})
    assert parse_should_retry(headers) is expected


# ============================================================================ which statuses

# The statuses retried by default, with the error class each finally raises.
RETRYABLE_STATUSES = [
    (408, pt.APIStatusError),
    (409, pt.ConflictError),
    (429, pt.RateLimitError),
    (500, pt.InternalServerError),
    (502, pt.InternalServerError),
    (503, pt.InternalServerError),
    (504, pt.InternalServerError),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "cls"),
    RETRYABLE_STATUSES,
)
async def test_retryable_status_is_retried_then_succeeds(code: int, cls: type) -> None:
    script = Script(status(code), status(code), ok())
    async with make_client(script, retry=fixed()) as client:
        c = await client.chat(MESSAGES)
    assert c.text == "Hello there"
    assert script.calls == 3
    assert issubclass(pt._errors.status_error_class(code), cls)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "cls"),
    RETRYABLE_STATUSES,
)
async def test_retryable_status_exhausts_attempts(code: int, cls: type) -> None:
    script = Script(default=lambda r: status(code))
    async with make_client(script, retry=fixed(attempts=3)) as client:
        with pytest.raises(cls) as info:
            await client.chat(MESSAGES)
    assert type(info.value) is cls
    assert script.calls == 3
    assert info.value.status_code == code
    assert [a.status for a in info.value.attempts] == [code] * 3


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, pt.BadRequestError),
        (401, pt.AuthenticationError),
        (403, pt.PermissionDeniedError),
        (404, pt.NotFoundError),
        (422, pt.UnprocessableEntityError),
    ],
)
async def test_client_errors_are_never_retried(code: int, cls: type) -> None:
    script = Script(default=lambda r: status(code))
    async with make_client(script, retry=fixed(attempts=5)) as client:
        with pytest.raises(cls) as info:
            await client.chat(MESSAGES)
    assert script.calls == 1
    assert trio.current_time() == 0
    assert len(info.value.attempts) == 1
    assert info.value.attempts[0].delay is None
    assert info.value.attempts[0].cause == str(code)


@pytest.mark.anyio
async def test_x_should_retry_true_makes_a_400_retryable() -> None:
    script = Script(status(400, headers={"x-should-retry": "true"}), ok())
    async with make_client(script, retry=fixed()) as client:
        c = await client.chat(MESSAGES)
    assert c.text == "Hello there"
    assert script.calls == 2
    assert script.gaps() == [0.5]


@pytest.mark.anyio
async def test_x_should_retry_false_stops_a_503() -> None:
    script = Script(status(503, headers={"x-should-retry": "false"}), ok())
    async with make_client(script, retry=fixed()) as client:
        with pytest.raises(pt.InternalServerError) as info:
            await client.chat(MESSAGES)
    assert script.calls == 1
    assert info.value.status_code == 503


@pytest.mark.anyio
async def test_x_should_retry_false_stops_a_429_with_retry_after() -> None:
    headers = {"x-should-retry": "false", "retry-after": "1"}
    script = Script(status(429, headers=headers), ok())
    async with make_client(script, retry=fixed()) as client:
        with pytest.raises(pt.RateLimitError):
            await client.chat(MESSAGES)
    assert script.calls == 1


@pytest.mark.anyio
async def test_custom_retry_statuses() -> None:
    script = Script(status(425), status(429), ok())
    async with make_client(script, retry=fixed(retry_statuses={425})) as client:
        with pytest.raises(pt.RateLimitError):
            await client.chat(MESSAGES)
    assert script.calls == 2


# ============================================================================ connection errors


@pytest.mark.anyio
@pytest.mark.parametrize(
    "exc", [httpx2.ConnectError, httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.WriteError]
)
async def test_connection_errors_are_retried(exc: type[httpx2.RequestError]) -> None:
    script = Script(exc, exc, ok())
    async with make_client(script, retry=fixed()) as client:
        c = await client.chat(MESSAGES)
    assert c.text == "Hello there"
    assert script.calls == 3
    assert client.statistics().retries_by_cause == {"connection": 2}


@pytest.mark.anyio
@pytest.mark.parametrize("exc", [httpx2.ConnectError, httpx2.ReadError, httpx2.RemoteProtocolError])
async def test_connection_errors_map_to_api_connection_error(
    exc: type[httpx2.RequestError],
) -> None:
    script = Script(default=exc)
    async with make_client(script, retry=fixed(attempts=2)) as client:
        with pytest.raises(pt.APIConnectionError) as info:
            await client.chat(MESSAGES)
    err = info.value
    assert type(err) is pt.APIConnectionError
    assert isinstance(err.__cause__, exc)
    assert exc.__name__ in str(err)
    assert err.status_code is None
    assert [(a.number, a.status, a.cause) for a in err.attempts] == [
        (1, None, "connection"),
        (2, None, "connection"),
    ]
    assert script.calls == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "which"),
    [
        (httpx2.ConnectTimeout, "connect"),
        (httpx2.ReadTimeout, "read"),
        (httpx2.WriteTimeout, "write"),
        (httpx2.PoolTimeout, "pool"),
    ],
)
async def test_httpx_timeouts_map_to_api_timeout_error(
    exc: type[httpx2.RequestError], which: str
) -> None:
    script = Script(default=exc)
    async with make_client(script, retry=fixed(attempts=3)) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            await client.chat(MESSAGES)
    assert info.value.which == which
    assert isinstance(info.value.__cause__, exc)
    assert script.calls == 3
    assert [a.cause for a in info.value.attempts] == ["timeout"] * 3
    assert client.statistics().retries_by_cause == {"timeout": 2}


@pytest.mark.anyio
async def test_httpx_timeout_then_success() -> None:
    script = Script(httpx2.ReadTimeout, ok())
    async with make_client(script, retry=fixed()) as client:
        assert (await client.chat(MESSAGES)).text == "Hello there"
    assert script.calls == 2


@pytest.mark.anyio
async def test_connection_errors_not_retried_when_disabled() -> None:
    script = Script(default=httpx2.ConnectError)
    policy = fixed(retry_connection_errors=False)
    async with make_client(script, retry=policy) as client:
        with pytest.raises(pt.APIConnectionError):
            await client.chat(MESSAGES)
        script.default = httpx2.ReadTimeout
        with pytest.raises(pt.APITimeoutError):
            await client.chat(MESSAGES)
    assert script.calls == 2


# ============================================================================ invalid responses


@pytest.mark.anyio
async def test_invalid_json_is_a_validation_error_holding_raw_and_is_retried() -> None:
    script = Script(default=lambda r: httpx2.Response(200, text='{"id": "x", truncated'))
    async with make_client(script, retry=fixed(attempts=3)) as client:
        with pytest.raises(pt.APIResponseValidationError) as info:
            await client.chat(MESSAGES)
    assert info.value.raw == '{"id": "x", truncated'
    assert info.value.status_code == 200
    assert script.calls == 3
    assert [a.cause for a in info.value.attempts] == ["invalid_response"] * 3


@pytest.mark.anyio
async def test_invalid_json_then_success() -> None:
    script = Script(httpx2.Response(200, text="<html>oops</html>"), ok())
    async with make_client(script, retry=fixed()) as client:
        assert (await client.chat(MESSAGES)).text == "Hello there"
    assert script.calls == 2


@pytest.mark.anyio
async def test_invalid_json_not_retried_when_disabled() -> None:
    script = Script(httpx2.Response(200, text="nope"), ok())
    async with make_client(script, retry=fixed(retry_invalid_responses=False)) as client:
        with pytest.raises(pt.APIResponseValidationError) as info:
            await client.chat(MESSAGES)
    assert info.value.raw == "nope"
    assert script.calls == 1


@pytest.mark.anyio
async def test_json_that_is_not_a_completion_is_a_validation_error() -> None:
    body = '{"id": "c", "choices": []}'
    script = Script(default=lambda r: httpx2.Response(200, text=body))
    async with make_client(script, retry=fixed(attempts=2)) as client:
        with pytest.raises(pt.APIResponseValidationError) as info:
            await client.chat(MESSAGES)
    assert info.value.raw == body
    assert info.value.status_code == 200
    assert script.calls == 2


# ============================================================================ backoff


@pytest.mark.anyio
async def test_backoff_waits_follow_the_formula_exactly() -> None:
    script = Script(default=lambda r: status(503))
    policy = fixed(attempts=5, initial_delay=0.5, multiplier=3)
    async with make_client(script, retry=policy) as client:
        with pytest.raises(pt.InternalServerError):
            await client.chat(MESSAGES)
    assert script.gaps() == [0.5, 1.5, 4.5, 13.5]
    assert script.times[0] == 0


@pytest.mark.anyio
async def test_backoff_is_capped_by_max_delay() -> None:
    script = Script(default=lambda r: status(500))
    policy = fixed(attempts=5, initial_delay=1, multiplier=10, max_delay=5)
    async with make_client(script, retry=policy) as client:
        with pytest.raises(pt.InternalServerError):
            await client.chat(MESSAGES)
    assert script.gaps() == [1, 5, 5, 5]


@pytest.mark.anyio
async def test_backoff_with_jitter_stays_in_bounds() -> None:
    policy = pt.RetryPolicy(attempts=6, initial_delay=1, multiplier=2, max_delay=10, jitter=0.5)
    events = Events()
    script = Script(default=lambda r: status(502))
    async with make_client(script, retry=policy, on_event=events) as client:
        for _ in range(10):
            with pytest.raises(pt.InternalServerError):
                await client.chat(MESSAGES)
    gaps: list[float] = []
    for i in range(10):
        times = script.times[6 * i : 6 * i + 6]
        gaps.extend(b - a for a, b in itertools.pairwise(times))
    bases = [1, 2, 4, 8, 10] * 10
    assert len(gaps) == 50
    for gap, base in zip(gaps, bases, strict=True):
        assert 0.5 * base - 1e-9 <= gap <= base + 1e-9
    assert len(set(gaps)) > 5, "jitter should randomise the waits"
    delays = [e.delay for e in events.of(pt.RetryScheduled)]
    assert delays == pytest.approx(gaps)


@pytest.mark.anyio
async def test_per_call_retry_policy_wins() -> None:
    script = Script(default=lambda r: status(503))
    async with make_client(script, retry=fixed(attempts=5)) as client:
        with pytest.raises(pt.InternalServerError):
            await client.chat(MESSAGES, retry=pt.RetryPolicy.no_retries())
    assert script.calls == 1


# ============================================================================ Retry-After


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after-ms": "2500"}, 2.5),
        ({"retry-after-ms": "1"}, 0.001),
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "0"}, 0.0),
        ({"retry-after-ms": "300", "Retry-After": "9"}, 0.3),
    ],
)
async def test_server_requested_wait_is_honoured_exactly(
    headers: dict[str, str], wait: float
) -> None:
    script = Script(status(429, headers=headers), ok())
    async with make_client(script, retry=fixed()) as client:
        await client.chat(MESSAGES)
    assert script.gaps() == [pytest.approx(wait, abs=1e-9)]


@pytest.mark.anyio
async def test_retry_after_on_a_503_is_honoured() -> None:
    script = Script(status(503, headers={"Retry-After": "4"}), ok())
    async with make_client(script, retry=fixed()) as client:
        await client.chat(MESSAGES)
    assert script.gaps() == [4.0]


@pytest.mark.anyio
async def test_retry_after_http_date_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "paradigm_trio._http._failures.time", types.SimpleNamespace(time=lambda: NOW)
    )
    script = Script(status(429, headers={"Retry-After": http_date(NOW + 12)}), ok())
    async with make_client(script, retry=fixed()) as client:
        await client.chat(MESSAGES)
    assert script.gaps() == [12.0]


@pytest.mark.anyio
async def test_retry_after_is_not_jittered_nor_capped_by_max_delay() -> None:
    script = Script(status(429, headers={"Retry-After": "45"}), ok())
    policy = pt.RetryPolicy(jitter=1, max_delay=1)
    async with make_client(script, retry=policy) as client:
        await client.chat(MESSAGES)
    assert script.gaps() == [45.0]


@pytest.mark.anyio
async def test_unparseable_retry_after_falls_back_to_backoff() -> None:
    script = Script(status(429, headers={"Retry-After": "later"}), ok())
    async with make_client(script, retry=fixed(initial_delay=0.25)) as client:
        await client.chat(MESSAGES)
    assert script.gaps() == [0.25]


@pytest.mark.anyio
async def test_wait_above_max_retry_after_fails_at_once_with_a_note() -> None:
    events = Events()
    script = Script(status(429, headers={"Retry-After": "120"}), ok())
    policy = fixed(max_retry_after=60)
    async with make_client(script, retry=policy, on_event=events) as client:
        with pytest.raises(pt.RateLimitError) as info:
            await client.chat(MESSAGES)
    assert script.calls == 1
    assert trio.current_time() == 0
    notes = getattr(info.value, "__notes__", [])
    assert any("120" in n and "max_retry_after" in n for n in notes), notes
    assert len(info.value.attempts) == 1
    assert info.value.attempts[0].delay is None
    assert not events.of(pt.RetryScheduled)
    (rate_limited,) = events.of(pt.RateLimited)
    assert rate_limited.retry_after == 120


@pytest.mark.anyio
async def test_wait_equal_to_max_retry_after_is_honoured() -> None:
    script = Script(status(429, headers={"Retry-After": "60"}), ok())
    async with make_client(script, retry=fixed(max_retry_after=60)) as client:
        await client.chat(MESSAGES)
    assert script.gaps() == [60.0]


# ============================================================================ deadline budget


@pytest.mark.anyio
async def test_backoff_that_would_overrun_total_is_not_attempted() -> None:
    script = Script(after(3, status(503)), ok())
    policy = fixed(initial_delay=8)
    async with make_client(script, retry=policy, timeouts=pt.Timeouts(total=10)) as client:
        with pytest.raises(pt.InternalServerError) as info:
            await client.chat(MESSAGES)
    assert script.calls == 1
    assert trio.current_time() == 3, "fails at once instead of sleeping into the deadline"
    assert any("deadline" in n for n in getattr(info.value, "__notes__", []))
    assert info.value.attempts[0].delay is None


@pytest.mark.anyio
async def test_retry_after_that_would_overrun_total_is_not_attempted() -> None:
    script = Script(status(429, headers={"Retry-After": "20"}), ok())
    async with make_client(script, retry=fixed(), timeouts=pt.Timeouts(total=10)) as client:
        with pytest.raises(pt.RateLimitError):
            await client.chat(MESSAGES)
    assert script.calls == 1
    assert trio.current_time() == 0


@pytest.mark.anyio
async def test_wait_that_fits_in_total_is_taken() -> None:
    script = Script(status(429, headers={"Retry-After": "9"}), ok())
    async with make_client(script, retry=fixed(), timeouts=pt.Timeouts(total=10)) as client:
        await client.chat(MESSAGES)
    assert script.gaps() == [9.0]


@pytest.mark.anyio
async def test_send_deadline_limits_retries() -> None:
    script = Script(default=lambda r: status(503))
    async with make_client(script, retry=fixed(attempts=10)) as client:
        request = client.make_request(MESSAGES)
        with pytest.raises(pt.InternalServerError) as info:
            await client.send(request, deadline=2.0)
    # attempts at 0, 0.5, 1.5; the next wait (2 s) would pass the deadline.
    assert script.times == [0, 0.5, 1.5]
    assert trio.current_time() == 1.5
    assert len(info.value.attempts) == 3


# ============================================================================ history


@pytest.mark.anyio
async def test_exhausted_attempts_raise_the_last_error_with_full_history() -> None:
    script = Script(
        status(503),
        httpx2.ConnectError,
        status(429, headers={"retry-after-ms": "100"}),
        status(500, headers={"x-request-id": "req-last"}),
    )
    async with make_client(script, retry=fixed(attempts=4)) as client:
        with pytest.raises(pt.InternalServerError) as info:
            await client.chat(MESSAGES)
    err = info.value
    assert err.status_code == 500
    assert err.request_id == "req-last"
    history = [(a.number, a.status, a.cause, a.delay) for a in err.attempts]
    assert history == [
        (1, 503, "503", 0.5),
        (2, None, "connection", 1.0),
        (3, 429, "429", 0.1),
        (4, 500, "500", None),
    ]
    assert [a.started for a in err.attempts] == pytest.approx([0, 0.5, 1.5, 1.6])
    assert all(a.error for a in err.attempts)
    assert "ConnectError" in (err.attempts[1].error or "")
    assert err.attempts[3].request_id == "req-last"
    assert "after 4 attempts" in str(err)
    assert any("gave up after 4" in n for n in getattr(err, "__notes__", []))


@pytest.mark.anyio
async def test_success_after_retries_has_no_error() -> None:
    events = Events()
    script = Script(status(502), ok())
    async with make_client(script, retry=fixed(), on_event=events) as client:
        await client.chat(MESSAGES)
    (finished,) = events.of(pt.RequestFinished)
    assert finished.ok
    assert finished.attempts == 2
    assert finished.error is None


# ============================================================================ per-attempt timeout


@pytest.mark.anyio
async def test_attempt_timeout_is_retried() -> None:
    script = Script(hang, after(1, ok()))
    timeouts = pt.Timeouts(attempt=5)
    async with make_client(script, retry=fixed(), timeouts=timeouts) as client:
        c = await client.chat(MESSAGES)
    assert c.text == "Hello there"
    assert script.times == [0, 5.5]
    assert trio.current_time() == 6.5
    assert client.statistics().retries_by_cause == {"timeout": 1}


@pytest.mark.anyio
async def test_attempt_timeout_exhausted() -> None:
    script = Script(default=hang)
    timeouts = pt.Timeouts(attempt=2)
    async with make_client(script, retry=fixed(attempts=3), timeouts=timeouts) as client:
        with pytest.raises(pt.APITimeoutError) as info:
            await client.chat(MESSAGES)
    assert info.value.which == "attempt"
    assert script.times == [0, 2.5, 5.5]
    assert trio.current_time() == 7.5
    assert [(a.cause, a.elapsed, a.delay) for a in info.value.attempts] == [
        ("timeout", 2, 0.5),
        ("timeout", 2, 1.0),
        ("timeout", 2, None),
    ]


# ============================================================================ client-wide pause


@pytest.mark.anyio
async def test_honoured_retry_after_also_paces_other_requests() -> None:
    script = Script(
        status(429, headers={"Retry-After": "3", "x-ratelimit-remaining-requests": "0"}),
        default=lambda r: ok(),
    )
    async with make_client(script, retry=fixed()) as client, trio.open_nursery() as nursery:
        nursery.start_soon(client.chat, MESSAGES)
        await trio.sleep(1)
        nursery.start_soon(client.chat, MESSAGES)
    assert script.times == [0, 3, 3]


@pytest.mark.anyio
async def test_rejected_retry_after_does_not_stall_later_requests() -> None:
    # RetryPolicy.max_retry_after: "longest server-requested wait honoured".  A 3600 s
    # Retry-After is refused for the request that got it; it must not then be honoured
    # for every later request of the client.
    script = Script(status(429, headers={"Retry-After": "3600"}), default=lambda r: ok())
    async with make_client(script, retry=fixed(max_retry_after=60)) as client:
        with pytest.raises(pt.RateLimitError):
            await client.chat(MESSAGES)
        await client.chat(MESSAGES)
    assert script.times[1] <= 60
