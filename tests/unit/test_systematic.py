"""A batch whose first answers are all one configuration failure stops early
(``BatchOptions.systematic_failures``, ``SystematicFailureError``); a few bad items among
good ones never stop it.  ``httpx2.MockTransport`` and the autojump clock."""

from __future__ import annotations

import ssl
from typing import Any

import httpx2
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import paradigm_trio as pt
from paradigm_trio._engine._budget import HOLD, PASS, RELEASE, STOP, BatchControl

from .helpers import make_client, status
from .test_batch import Echo, msgs, number
from .test_embeddings import Embedder

pytestmark = pytest.mark.anyio

N = pt.DEFAULT_SYSTEMATIC_FAILURES


def every(code: int) -> Echo:
    return Echo(latency=lambda text: 0.5, fail=lambda text, n: status(code))


@pytest.mark.parametrize(
    ("code", "kind", "cause", "words"),
    [
        (401, pt.AuthenticationError, "authentication", "PARADIGM_API_KEY"),
        (403, pt.PermissionDeniedError, "permission", "permission denied"),
        (404, pt.NotFoundError, "not_found", "base URL"),
    ],
)
async def test_a_batch_of_one_configuration_failure_stops_after_a_few_requests(
    code: int, kind: type[Exception], cause: str, words: str
) -> None:
    echo = every(code)
    async with make_client(echo, limits=pt.Limits(concurrency=8)) as client:
        with pytest.raises(pt.SystematicFailureError) as info:
            await client.chat_batch([msgs(i) for i in range(1000)])
        assert client.statistics().in_flight == 0
        await trio.sleep(60)  # and nothing is sent later
    err = info.value
    assert isinstance(err, pt.BatchError)
    assert (err.status, err.cause, err.failures) == (code, cause, N)
    assert isinstance(err.error, kind)
    assert err.__cause__ is err.error
    assert echo.calls <= 8 + N - 1  # the concurrency plus the answers that decided
    assert err.sent == echo.calls
    assert len(err.results) == N
    assert all(isinstance(r.error, kind) for r in err.results)
    assert [r.index for r in err.results] == sorted(r.index for r in err.results)
    assert f"first {N} answers were all {code}" in str(err)
    assert words in str(err)


async def test_stream_batch_hands_out_nothing_and_reads_no_further_than_it_sent() -> None:
    echo = every(401)
    read: list[int] = []
    seen: list[pt.BatchResult] = []

    def inputs() -> Any:
        for i in range(10_000):
            read.append(i)
            yield msgs(i)

    async def consume(client: pt.Client) -> None:
        async with client.stream_batch(inputs()) as results:
            async for r in results:
                seen.append(r)

    async with make_client(echo, limits=pt.Limits(concurrency=4)) as client:
        with pytest.raises(pt.SystematicFailureError) as info:
            await consume(client)
    assert seen == []  # the failures are the error's results, not the stream's
    assert len(info.value.results) == N
    assert len(read) <= 4 + N + 1
    assert info.value.sent <= 4 + N - 1


async def test_one_success_first_and_the_rule_is_off_for_the_rest() -> None:
    echo = Echo(fail=lambda text, n: None if number(text) == 0 else status(401))
    async with make_client(echo, limits=pt.Limits(concurrency=1)) as client:
        results = await client.chat_batch([msgs(i) for i in range(50)])
    assert len(results) == 50
    assert results[0].ok
    assert all(isinstance(r.error, pt.AuthenticationError) for r in results[1:])


async def test_failures_held_until_a_success_are_handed_out_then() -> None:
    echo = Echo(fail=lambda text, n: status(404) if number(text) < N - 1 else None)
    seen: list[int] = []
    async with make_client(echo, limits=pt.Limits(concurrency=1)) as client:
        async with client.stream_batch([msgs(i) for i in range(30)]) as results:
            async for r in results:
                seen.append(r.index)
    assert sorted(seen) == list(range(30))


async def test_a_batch_shorter_than_the_rule_gets_its_results() -> None:
    async with make_client(every(401)) as client:
        results = await client.chat_batch([msgs(i) for i in range(N - 1)])
    assert [type(r.error) for r in results] == [pt.AuthenticationError] * (N - 1)


async def test_two_different_configuration_failures_are_not_one_systematic_failure() -> None:
    echo = Echo(fail=lambda text, n: status(401 if number(text) % 2 else 404))
    async with make_client(echo, limits=pt.Limits(concurrency=1)) as client:
        results = await client.chat_batch([msgs(i) for i in range(40)])
    assert len(results) == 40
    assert not any(r.ok for r in results)


async def test_item_errors_are_not_configuration_failures() -> None:
    echo = Echo(fail=lambda text, n: status(400))
    async with make_client(echo, limits=pt.Limits(concurrency=2)) as client:
        results = await client.chat_batch([msgs(i) for i in range(40)])
    assert len(results) == 40
    assert echo.calls == 40


async def test_systematic_failures_none_sends_everything() -> None:
    echo = every(401)
    async with make_client(echo, limits=pt.Limits(concurrency=4)) as client:
        results = await client.chat_batch([msgs(i) for i in range(40)], systematic_failures=None)
    assert len(results) == 40
    assert echo.calls == 40


async def test_a_smaller_threshold_stops_sooner() -> None:
    echo = every(403)
    async with make_client(echo, limits=pt.Limits(concurrency=1)) as client:
        with pytest.raises(pt.SystematicFailureError) as info:
            await client.chat_batch([msgs(i) for i in range(40)], systematic_failures=2)
    assert echo.calls == 2
    assert info.value.failures == 2


async def test_on_error_raise_still_stops_at_the_first_failure_with_batch_error() -> None:
    async with make_client(every(401)) as client:
        with pytest.raises(pt.BatchError) as info:
            await client.chat_batch([msgs(i) for i in range(40)], on_error="raise")
    assert type(info.value) is pt.BatchError


async def test_invalid_items_neither_count_nor_disarm() -> None:
    echo = every(401)
    items: list[Any] = ["oops", *[msgs(i) for i in range(1, 100)]]
    async with make_client(echo, limits=pt.Limits(concurrency=1)) as client:
        with pytest.raises(pt.SystematicFailureError) as info:
            await client.chat_batch(items)
    assert echo.calls == N
    assert 0 in [r.index for r in info.value.results]  # the invalid item, handed out first


async def test_an_embeddings_pack_counts_once() -> None:
    handler = Embedder(fail=lambda body, n: status(401))
    async with make_client(handler, limits=pt.Limits(concurrency=2)) as client:
        with pytest.raises(pt.SystematicFailureError) as info:
            await client.embed_batch([f"text {i}" for i in range(1000)], pack_inputs=4)
    assert N <= len(handler.bodies) <= N + 1
    assert len(info.value.results) == 4 * N


def _refused_by_tls(request: httpx2.Request) -> httpx2.Response:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message, cause.verify_code = "self-signed certificate", 18
    raise httpx2.ConnectError("TLS handshake failed", request=request) from cause


def _refused_by_proxy(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ProxyError("407 Proxy Authentication Required", request=request)


@pytest.mark.parametrize(
    ("refuse", "cause", "status"),
    [(_refused_by_tls, "tls", None), (_refused_by_proxy, "proxy", 407)],
)
async def test_a_refused_certificate_or_proxy_stops_the_batch_too(
    refuse: Any, cause: str, status: int | None
) -> None:
    calls: list[int] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        return refuse(request)  # type: ignore[no-any-return]

    async with make_client(handler, limits=pt.Limits(concurrency=4)) as client:
        with pytest.raises(pt.SystematicFailureError) as info:
            await client.chat_batch([msgs(i) for i in range(500)])
    assert (info.value.cause, info.value.status) == (cause, status)
    assert len(calls) <= 4 + N - 1


def test_systematic_failures_is_validated() -> None:
    with pytest.raises(ValueError, match="systematic_failures"):
        pt.BatchOptions(systematic_failures=0)
    assert pt.BatchOptions(systematic_failures=None).systematic_failures is None


# ============================================================================ the verdicts


def _error(code: int) -> pt.APIStatusError:
    cls = {401: pt.AuthenticationError, 403: pt.PermissionDeniedError, 404: pt.NotFoundError}
    return cls.get(code, pt.APIStatusError)(f"status {code}", status_code=code)


def test_judge_holds_then_stops_and_any_other_answer_releases() -> None:
    control = BatchControl(retry_budget=None, threshold=None, systematic=3)
    assert control.judge([_error(401)]) == HOLD
    assert control.judge([pt.RequestCancelled("late", reason="deadline")]) == PASS
    assert control.judge([pt.InvalidRequestError("bad")]) == PASS
    assert control.judge([_error(401)]) == HOLD
    assert control.judge([_error(401)]) == STOP
    other = BatchControl(retry_budget=None, threshold=None, systematic=3)
    assert other.judge([_error(401)]) == HOLD
    assert other.judge([None]) == RELEASE
    assert other.judge([_error(401)] * 5) == PASS  # off for good
    fresh = BatchControl(retry_budget=None, threshold=None, systematic=3)
    assert fresh.judge([_error(500)]) == PASS
    assert fresh.judge([_error(401)]) == PASS


def test_diagnose_names_the_configuration_failures_only() -> None:
    tls = pt.CertificateVerificationError("bad", host="h:443", reason="self-signed certificate")
    proxy = pt.ProxyError("no", proxy="http://proxy:3128", proxy_status=407)
    found = pt.diagnose(tls)
    assert found is not None
    assert (found.cause, found.status) == ("tls", None)
    assert "self-signed certificate" in found.meaning
    assert "CA" in found.fix
    found = pt.diagnose(proxy)
    assert found is not None
    assert (found.cause, found.status) == ("proxy", 407)
    assert "http://proxy:3128" in found.meaning
    for code in (400, 409, 422, 429, 500, 503):
        assert pt.diagnose(_error(code)) is None
    assert pt.diagnose(pt.APIConnectionError("reset")) is None
    assert pt.diagnose(None) is None


def test_diagnose_takes_a_status_and_says_the_fix_in_the_clis_words_too() -> None:
    for code in (401, 403, 404):
        of_status, of_error = pt.diagnose(code), pt.diagnose(_error(code))
        assert of_status is not None
        assert of_status == of_error
        assert of_status.status == code
    by_code = {code: pt.diagnose(code) for code in (401, 403, 404)}
    assert "PARADIGM_API_KEY" in by_code[401].cli_fix  # type: ignore[union-attr]
    assert "--model" in by_code[403].cli_fix  # type: ignore[union-attr]
    assert "--base-url" in by_code[404].cli_fix  # type: ignore[union-attr]
    assert "--base-url" not in by_code[404].fix  # type: ignore[union-attr]
    proxy = pt.diagnose(pt.ProxyError("no", proxy="http://proxy:3128", proxy_status=403))
    assert proxy is not None
    assert proxy.cli_fix == proxy.fix  # (a proxy's 403 is not the server's)
    for other in (200, 400, 429, 500, True):
        assert pt.diagnose(other) is None


# ============================================================================ the property

_OUTCOME = st.sampled_from([200, 200, 200, 400, 401, 404, 422, 500])


@settings(max_examples=60, deadline=None)
@given(outcomes=st.lists(_OUTCOME, min_size=1, max_size=40), width=st.integers(1, 6))
def test_a_batch_with_another_answer_among_its_first_is_never_stopped(
    outcomes: list[int], width: int
) -> None:
    """Whatever the mix, the batch stops only if its first ``N`` answers (in the order the
    server gave them: here the input order, an item taking a little longer than the one
    before) are all one configuration failure; otherwise every item gets its result."""

    def answer(text: str, n: int) -> httpx2.Response | None:
        code = outcomes[number(text)]
        return None if code == 200 else status(code)

    echo = Echo(latency=lambda text: 1.0 + number(text) / 1000, fail=answer)
    first = outcomes[:N]
    stops = len(first) == N and len(set(first)) == 1 and first[0] in (401, 404)

    async def run() -> None:
        async with make_client(echo, limits=pt.Limits(concurrency=width)) as client:
            if stops:
                with pytest.raises(pt.SystematicFailureError):
                    await client.chat_batch([msgs(i) for i in range(len(outcomes))])
                assert echo.calls <= width + N - 1
            else:
                results = await client.chat_batch([msgs(i) for i in range(len(outcomes))])
                assert [r.ok for r in results] == [code == 200 for code in outcomes]

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_answers_arriving_together_stop_the_batch_once_and_keep_every_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Eight answers wake together: workers past the first STOP (no checkpoint since the
    # cancel) judge theirs too.  One error, one record, every failure in it once.
    gate = trio.Event()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await gate.wait()
        return status(401)

    async def open_gate() -> None:
        await trio.sleep(1)
        gate.set()

    caplog.set_level("ERROR", logger="paradigm_trio")
    async with make_client(handler, limits=pt.Limits(concurrency=8)) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_gate)
            with pytest.raises(pt.SystematicFailureError) as info:
                await client.chat_batch(
                    [msgs(i) for i in range(20)], systematic_failures=3, warm_up=False
                )
    err = info.value
    indices = [r.index for r in err.results]
    assert indices == sorted(set(indices))  # once each, in input order
    assert err.sent == 8
    assert len(indices) == 8  # every answer held is in the error
    assert all(isinstance(r.error, pt.AuthenticationError) for r in err.results)
    assert err.failures == 3
    assert "first 3 answers" in str(err)
    stops = [r for r in caplog.records if getattr(r, "event", None) == "batch_stopped"]
    assert len(stops) == 1
