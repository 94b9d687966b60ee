"""``pt.instrument``: spans and metrics, read back from the OpenTelemetry SDK's in-memory
exporter and metric reader, on trio's MockClock."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import trio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import paradigm_trio as pt

from .helpers import API_KEY, MESSAGES, Script, fixed, hang, make_client, ok, status
from .test_streaming import HANG, answer, chunk, cut_error, sse

pytestmark = pytest.mark.anyio


class Telemetry:
    """An SDK tracer and meter provider with in-memory exporter and reader."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, client: pt.Client, **kwargs: Any) -> pt.Client:
        pt.instrument(
            client,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **kwargs,
        )
        return client

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        found = [
            s
            for s in self.spans()
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]
        return sorted(found, key=lambda s: s.start_time or 0)

    def metrics(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
        ]

    def points(self, name: str) -> list[Any]:
        return [point for metric in self.metrics(name) for point in metric.data.data_points]

    def value(self, name: str, **attributes: Any) -> Any:
        """The value (or histogram sum) of the point of ``name`` with these attributes."""
        for point in self.points(name):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                return getattr(point, "value", None) if hasattr(point, "value") else point.sum
        return None


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


METRIC_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "lighton",
    "gen_ai.request.model": "alfred-4.2",
    "gen_ai.response.model": "alfred-4.2",
    "server.address": "test",
    "server.port": 80,
}
"""The GenAI histograms' attributes of a success (low cardinality: no custom_id, no id)."""


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _no_secret(spans: list[ReadableSpan]) -> None:
    for span in spans:
        for value in (span.attributes or {}).values():
            assert API_KEY not in str(value)
        assert API_KEY not in span.name


async def test_a_chat_is_a_client_span_with_an_attempt_child(telemetry: Telemetry) -> None:
    script = Script(ok(model="alfred-4.2-2026", id="chatcmpl-9", prompt_tokens=11))
    async with telemetry.instrument(make_client(script)) as client:
        await client.chat(MESSAGES, temperature=0.4, max_tokens=50, custom_id="c1")
    (span,) = telemetry.spans("chat alfred-4.2")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is None
    attributes = _attributes(span)
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "lighton",
        "gen_ai.request.model": "alfred-4.2",
        "gen_ai.request.temperature": 0.4,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.response.model": "alfred-4.2-2026",
        "gen_ai.response.id": "chatcmpl-9",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "server.address": "test",
        "server.port": 80,
        "paradigm_trio.attempts": 1,
        "paradigm_trio.custom_id": "c1",
        "paradigm_trio.stream": False,
    }
    assert span.status.status_code is StatusCode.UNSET
    (attempt,) = telemetry.children(span)
    assert attempt.name == "POST"
    assert attempt.kind is SpanKind.CLIENT
    assert _attributes(attempt)["http.response.status_code"] == 200
    assert "error.type" not in _attributes(attempt)
    assert "gen_ai.input.messages" not in attributes  # content is opt-in
    _no_secret(telemetry.spans())


async def test_a_retried_request_has_one_child_per_attempt(telemetry: Telemetry) -> None:
    script = Script(status(503), status(429, headers={"retry-after": "2"}), ok())
    client = make_client(script, retry=fixed(attempts=4, initial_delay=1.0, min_backoff_factor=1.0))
    async with telemetry.instrument(client):
        completion = await client.chat(MESSAGES)
    assert completion.text
    (span,) = telemetry.spans("chat alfred-4.2")
    first, second, third = telemetry.children(span)
    assert [s.name for s in (first, second, third)] == ["POST"] * 3
    a1, a2, a3 = map(_attributes, (first, second, third))
    assert a1["http.response.status_code"] == 503
    assert a1["error.type"] == "503"
    assert a1["paradigm_trio.retry.cause"] == "503"
    assert a1["paradigm_trio.retry.delay"] == pytest.approx(1.0)
    assert "http.request.resend_count" not in a1
    assert first.status.status_code is StatusCode.ERROR
    assert a2["error.type"] == "429"
    assert a2["paradigm_trio.retry.delay"] == pytest.approx(2.0)
    assert a2["http.request.resend_count"] == 1
    assert a3["http.response.status_code"] == 200
    assert a3["http.request.resend_count"] == 2
    assert "paradigm_trio.retry.cause" not in a3
    assert _attributes(span)["paradigm_trio.attempts"] == 3
    # The request span covers every attempt and wait, on trio's (virtual) clock.
    assert span.start_time == first.start_time
    assert span.end_time == third.end_time
    assert second.start_time - first.end_time == pytest.approx(1e9, abs=1e3)
    stats = client.statistics()
    assert telemetry.value("paradigm_trio.retries", **{"paradigm_trio.retry.cause": "503"}) == 1
    assert telemetry.value("paradigm_trio.retries", **{"paradigm_trio.retry.cause": "429"}) == 1
    assert telemetry.value("paradigm_trio.rate_limited") == stats.rate_limited == 1
    assert telemetry.value("paradigm_trio.attempts") == stats.attempts == 3
    duration = telemetry.value("gen_ai.client.operation.duration")
    assert duration == pytest.approx(3.0, abs=1e-6)  # 1 s backoff + 2 s Retry-After


async def test_a_failure_is_an_error_span_and_an_error_metric(telemetry: Telemetry) -> None:
    script = Script(status(400))
    async with telemetry.instrument(make_client(script)) as client:
        with pytest.raises(pt.BadRequestError):
            await client.chat(MESSAGES)
    (span,) = telemetry.spans("chat alfred-4.2")
    assert span.status.status_code is StatusCode.ERROR
    assert _attributes(span)["error.type"] == "paradigm_trio.BadRequestError"
    (point,) = telemetry.points("gen_ai.client.operation.duration")
    assert point.attributes["error.type"] == "paradigm_trio.BadRequestError"
    assert telemetry.points("gen_ai.client.token.usage") == []


async def test_a_stream_is_one_span_with_its_usage(telemetry: Telemetry) -> None:
    response, _ = sse(*answer("Hello", " world", usage=(4, 2)))
    async with telemetry.instrument(make_client(Script(status(503), response))) as client:
        async with client.chat_stream(MESSAGES, retry=fixed(initial_delay=0.5)) as stream:
            text = "".join([c.delta async for c in stream])
    assert text == "Hello world"
    (span,) = telemetry.spans("chat alfred-4.2")
    attributes = _attributes(span)
    assert attributes["paradigm_trio.stream"] is True
    assert attributes["gen_ai.usage.input_tokens"] == 4
    assert attributes["gen_ai.usage.output_tokens"] == 2
    assert attributes["gen_ai.response.id"] == "chatcmpl-s1"
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    failed, streamed = telemetry.children(span)
    assert _attributes(failed)["error.type"] == "503"
    assert _attributes(streamed)["http.response.status_code"] == 200
    assert _attributes(streamed)["paradigm_trio.server_request_id"] == "req-1"
    assert telemetry.value("gen_ai.client.token.usage", **{"gen_ai.token.type": "input"}) == 4
    assert telemetry.value("gen_ai.client.token.usage", **{"gen_ai.token.type": "output"}) == 2


async def test_a_stream_left_early_is_a_cancelled_span_without_a_duration(
    telemetry: Telemetry,
) -> None:
    response, _ = sse(*answer("Hello", " world", "again"))
    async with telemetry.instrument(make_client(Script(response))) as client:
        async with client.chat_stream(MESSAGES) as stream:
            async for _chunk in stream:
                break
    (span,) = telemetry.spans("chat alfred-4.2")
    attributes = _attributes(span)
    assert attributes["paradigm_trio.outcome"] == "cancelled"
    assert "error.type" not in attributes
    assert span.status.status_code is StatusCode.UNSET
    assert telemetry.points("gen_ai.client.operation.duration") == []
    assert telemetry.value("paradigm_trio.finished", **{"paradigm_trio.outcome": "cancelled"}) == 1


async def test_a_stream_read_to_its_end_has_no_interrupted_attempt(telemetry: Telemetry) -> None:
    response, _ = sse(*answer("Hello", " world"))
    async with telemetry.instrument(make_client(Script(status(503), response))) as client:
        async with client.chat_stream(MESSAGES, retry=fixed(initial_delay=0.5)) as stream:
            await _read_all(stream)
    (span,) = telemetry.spans("chat alfred-4.2")
    assert _attributes(span)["paradigm_trio.attempts"] == 2
    assert "paradigm_trio.outcome" not in _attributes(span)
    failed, streamed = telemetry.children(span)
    assert failed.status.status_code is StatusCode.ERROR
    assert streamed.status.status_code is StatusCode.UNSET
    assert "paradigm_trio.outcome" not in _attributes(streamed)
    assert "error.type" not in _attributes(streamed)
    assert streamed.end_time == span.end_time


async def _read_all(stream: Any) -> None:
    async for _chunk in stream:
        pass


async def test_a_stream_left_after_its_first_chunk_has_its_attempt_span(
    telemetry: Telemetry,
) -> None:
    paced = [p for event in answer("a", "b", "c") for p in (1.0, event)]  # a chunk a second
    response, _ = sse(*paced)
    client = make_client(Script(status(503), response))
    async with telemetry.instrument(client):
        async with client.chat_stream(MESSAGES, retry=fixed(initial_delay=0.5)) as stream:
            async for c in stream:
                if c.delta == "a":
                    break
            left = trio.current_time()
        assert left == pytest.approx(2.5)  # 0.5 s backoff, then two chunks a second apart
        assert client.statistics().attempts == 2
    (span,) = telemetry.spans("chat alfred-4.2")
    attributes = _attributes(span)
    assert attributes["paradigm_trio.outcome"] == "cancelled"
    assert attributes["paradigm_trio.attempts"] == 2  # the one left open counts
    assert span.status.status_code is StatusCode.UNSET
    failed, streamed = telemetry.children(span)
    assert _attributes(failed)["error.type"] == "503"
    closed = _attributes(streamed)
    assert streamed.name == "POST"
    assert streamed.kind is SpanKind.CLIENT
    assert streamed.status.status_code is StatusCode.UNSET  # closed by the caller: no error
    assert "error.type" not in closed
    assert closed["paradigm_trio.outcome"] == "cancelled"
    assert closed["paradigm_trio.attempt"] == 2
    assert closed["http.request.resend_count"] == 1
    assert closed["http.response.status_code"] == 200
    assert closed["paradigm_trio.server_request_id"] == "req-1"
    assert streamed.start_time - failed.end_time == pytest.approx(0.5e9, abs=1e3)
    assert streamed.end_time - streamed.start_time == pytest.approx(2e9, abs=1e3)
    assert streamed.end_time == span.end_time
    assert telemetry.points("gen_ai.client.operation.duration") == []


async def test_a_stream_cancelled_from_outside_has_its_attempt_span(
    telemetry: Telemetry,
) -> None:
    response, _ = sse(chunk("a"), 1.0, chunk("b"), HANG)
    client = make_client(Script(response), timeouts=pt.Timeouts(read=100))
    async with telemetry.instrument(client):
        with trio.move_on_after(5) as scope:
            async with client.chat_stream(MESSAGES) as stream:
                await _read_all(stream)
        assert scope.cancelled_caught
    (span,) = telemetry.spans("chat alfred-4.2")
    assert _attributes(span)["paradigm_trio.outcome"] == "cancelled"
    (attempt,) = telemetry.children(span)
    assert _attributes(attempt)["paradigm_trio.outcome"] == "cancelled"
    assert attempt.status.status_code is StatusCode.UNSET
    assert attempt.end_time - attempt.start_time == pytest.approx(5e9, abs=1e3)


async def test_a_stream_cancelled_before_its_first_chunk_has_its_attempt_span(
    telemetry: Telemetry,
) -> None:
    response, _ = sse(HANG)
    client = make_client(Script(response), timeouts=pt.Timeouts(first_token=100))
    async with telemetry.instrument(client):
        with trio.move_on_after(3):
            async with client.chat_stream(MESSAGES):
                raise AssertionError("never entered")
    (span,) = telemetry.spans("chat alfred-4.2")
    (attempt,) = telemetry.children(span)
    attributes = _attributes(attempt)
    assert attributes["paradigm_trio.outcome"] == "cancelled"
    assert attributes["http.response.status_code"] == 200  # the head had arrived
    assert attempt.status.status_code is StatusCode.UNSET
    assert _attributes(span)["paradigm_trio.attempts"] == 1
    assert telemetry.points("gen_ai.client.operation.time_to_first_chunk") == []


async def test_a_chat_cancelled_from_outside_has_its_attempt_span(
    telemetry: Telemetry,
) -> None:
    client = make_client(Script(hang), timeouts=pt.Timeouts(attempt=100, read=100))
    async with telemetry.instrument(client):
        with trio.move_on_after(2):
            await client.chat(MESSAGES)
    (span,) = telemetry.spans("chat alfred-4.2")
    (attempt,) = telemetry.children(span)
    attributes = _attributes(attempt)
    assert attributes["paradigm_trio.outcome"] == "cancelled"
    assert "http.response.status_code" not in attributes  # no answer yet
    assert attempt.status.status_code is StatusCode.UNSET
    assert attempt.end_time == span.end_time


async def test_a_hook_raising_mid_attempt_is_an_error_on_the_attempt_span(
    telemetry: Telemetry,
) -> None:
    def hook(event: pt.Event) -> None:
        if isinstance(event, pt.AttemptStarted):
            raise KeyError("hook")

    async with telemetry.instrument(make_client(Script(ok()), on_event=hook)) as client:
        with pytest.raises(KeyError):
            await client.chat(MESSAGES)
    (span,) = telemetry.spans("chat alfred-4.2")
    (attempt,) = telemetry.children(span)
    assert _attributes(attempt)["error.type"] == "builtins.KeyError"
    assert "paradigm_trio.outcome" not in _attributes(attempt)
    assert attempt.status.status_code is StatusCode.ERROR
    assert span.status.status_code is StatusCode.ERROR


# --------------------------------------------------------------------------- first chunk


async def test_time_to_first_chunk_is_a_histogram_from_the_request_start(
    telemetry: Telemetry,
) -> None:
    response, _ = sse(2.0, *answer("Hello"))  # the first chunk 2 s after the head
    client = make_client(Script(status(503), response))
    async with telemetry.instrument(client):
        async with client.chat_stream(MESSAGES, retry=fixed(initial_delay=0.5)) as stream:
            await _read_all(stream)
    (point,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.count == 1
    assert point.sum == pytest.approx(2.5)  # the 503, 0.5 s backoff, 2 s to the first chunk
    assert tuple(point.explicit_bounds) == (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    )  # fmt: skip
    assert dict(point.attributes) == METRIC_ATTRIBUTES
    (metric,) = telemetry.metrics("gen_ai.client.operation.time_to_first_chunk")
    assert metric.unit == "s"
    (span,) = telemetry.spans("chat alfred-4.2")
    attributes = _attributes(span)
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.time_to_first_chunk"] == pytest.approx(2.5)


async def test_no_time_to_first_chunk_without_a_stream_or_a_chunk(telemetry: Telemetry) -> None:
    script = Script(ok(), sse(cut_error())[0], status(400))
    async with telemetry.instrument(make_client(script, retry=fixed(attempts=1))) as client:
        await client.chat(MESSAGES)
        for _ in range(2):  # broken before any chunk; refused
            with pytest.raises(pt.APIError):
                async with client.chat_stream(MESSAGES):
                    raise AssertionError("never entered")
    assert telemetry.points("gen_ai.client.operation.time_to_first_chunk") == []
    assert len(telemetry.points("gen_ai.client.operation.duration")) == 3  # 1 ok, 2 errors
    for span in telemetry.spans("chat alfred-4.2"):
        assert "gen_ai.response.time_to_first_chunk" not in _attributes(span)
    plain, *streams = sorted(telemetry.spans("chat alfred-4.2"), key=lambda s: s.start_time or 0)
    assert "gen_ai.request.stream" not in _attributes(plain)
    assert [_attributes(s)["gen_ai.request.stream"] for s in streams] == [True, True]


async def test_time_to_first_chunk_of_a_stream_left_early_or_broken(telemetry: Telemetry) -> None:
    left, _ = sse(1.0, chunk("a"), HANG)
    broken, _ = sse(3.0, chunk("a"), cut_error())
    client = make_client(Script(left, broken), retry=fixed(attempts=1))
    async with telemetry.instrument(client):
        async with client.chat_stream(MESSAGES) as stream:
            async for _chunk in stream:
                break
        with pytest.raises(pt.IncompleteStreamError):
            async with client.chat_stream(MESSAGES) as stream:
                await _read_all(stream)
    (point,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.count == 2  # the first chunk arrived both times: no error.type here
    assert point.sum == pytest.approx(1.0 + 3.0)
    assert "error.type" not in point.attributes


async def test_time_to_first_chunk_of_a_streamed_batch_item_is_its_successful_attempt(
    telemetry: Telemetry,
) -> None:
    broken, _ = sse(chunk("", role="assistant"), 1.0, cut_error())  # chunk at 0, cut at 1
    whole, _ = sse(2.0, *answer("ok"))  # sent at 1.5, first chunk at 3.5
    client = make_client(Script(broken, whole), retry=fixed(initial_delay=0.5))
    async with telemetry.instrument(client):
        [result] = await client.chat_batch([MESSAGES], stream=True)
    assert result.ok
    assert result.attempts == 2
    (point,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.count == 1
    assert point.sum == pytest.approx(3.5)
    (span,) = telemetry.spans("chat alfred-4.2")
    assert _attributes(span)["gen_ai.response.time_to_first_chunk"] == pytest.approx(3.5)


def _batch_script() -> Script:
    def answer(request: httpx2.Request) -> httpx2.Response:
        content = json.loads(request.content)["messages"][0]["content"]
        if content == "bad":
            return status(400)
        return ok(prompt_tokens=3, completion_tokens=len(content))

    # The first request the server sees is a 429, then everything is answered.
    return Script(status(429, headers={"retry-after": "1"}), default=answer)


async def test_a_batch_span_holds_its_items_and_statistics(telemetry: Telemetry) -> None:
    requests = [
        pt.ChatRequest(messages=[{"role": "user", "content": text}], custom_id=f"r{i}")
        for i, text in enumerate(["one", "two", "bad", "four"])
    ]
    client = make_client(_batch_script(), limits=pt.Limits(concurrency=1))
    async with telemetry.instrument(client):
        results = await client.chat_batch(requests)
    assert [r.ok for r in results] == [True, True, False, True]
    (batch,) = telemetry.spans("chat_batch")
    assert batch.kind is SpanKind.INTERNAL
    items = telemetry.children(batch)
    assert sorted(_attributes(s)["paradigm_trio.custom_id"] for s in items) == [
        "r0", "r1", "r2", "r3",
    ]  # fmt: skip
    attributes = _attributes(batch)
    stats = results.statistics
    assert attributes["paradigm_trio.batch.submitted"] == 4
    assert attributes["paradigm_trio.batch.succeeded"] == stats.succeeded == 3
    assert attributes["paradigm_trio.batch.failed"] == stats.failed == 1
    assert attributes["paradigm_trio.batch.retries"] == 1
    assert attributes["paradigm_trio.batch.retries_by_cause.429"] == 1
    assert attributes["paradigm_trio.batch.prompt_tokens"] == stats.prompt_tokens == 9
    assert batch.status.status_code is StatusCode.UNSET
    (bad,) = [s for s in items if _attributes(s)["paradigm_trio.custom_id"] == "r2"]
    assert bad.status.status_code is StatusCode.ERROR
    (retried,) = [s for s in items if _attributes(s)["paradigm_trio.attempts"] == 2]
    assert [_attributes(a).get("error.type") for a in telemetry.children(retried)] == [
        "429", None,
    ]  # fmt: skip
    # Every span of the batch is in one trace.
    assert {s.context.trace_id for s in telemetry.spans()} == {batch.context.trace_id}


async def test_metrics_equal_the_client_statistics(telemetry: Telemetry) -> None:
    requests = [[{"role": "user", "content": text}] for text in ["one", "two", "bad", "four"]]
    client = make_client(_batch_script(), limits=pt.Limits(concurrency=2))
    async with telemetry.instrument(client):
        await client.chat_batch(requests)
        stats = client.statistics()
    v = telemetry.value
    assert v("paradigm_trio.started") == stats.started == 4
    assert v("paradigm_trio.finished", **{"paradigm_trio.outcome": "succeeded"}) == 3
    assert v("paradigm_trio.finished", **{"paradigm_trio.outcome": "failed"}) == stats.failed
    assert v("paradigm_trio.finished", **{"paradigm_trio.outcome": "cancelled"}) == 0
    assert v("paradigm_trio.attempts") == stats.attempts == 5
    assert v("paradigm_trio.retries", **{"paradigm_trio.retry.cause": "429"}) == 1
    assert v("paradigm_trio.rate_limited") == stats.rate_limited == 1
    assert v("paradigm_trio.tokens", **{"gen_ai.token.type": "input"}) == stats.prompt_tokens
    assert v("paradigm_trio.tokens", **{"gen_ai.token.type": "output"}) == 3 + 3 + 4
    assert v("paradigm_trio.in_flight") == stats.in_flight == 0
    assert v("paradigm_trio.concurrency") == stats.concurrency
    (histogram,) = [
        p for p in telemetry.points("gen_ai.client.operation.duration") if "error.type" not in
        p.attributes
    ]  # fmt: skip
    assert histogram.count == stats.succeeded
    assert v("gen_ai.client.token.usage", **{"gen_ai.token.type": "input"}) == stats.prompt_tokens
    point = telemetry.points("gen_ai.client.operation.duration")[0]
    assert dict(point.attributes) == METRIC_ATTRIBUTES


async def test_rate_limit_waits_are_a_metric(telemetry: Telemetry) -> None:
    client = make_client(Script(default=ok()), limits=pt.Limits(requests_per_minute=60))
    async with telemetry.instrument(client):
        for _ in range(3):
            await client.chat(MESSAGES)
    # The bucket starts full (60): nothing waits.  Emptied, each request waits 1 s.
    assert telemetry.value("paradigm_trio.rate_limit.waits") == 0
    client2 = make_client(Script(default=ok()), limits=pt.Limits(requests_per_minute=1))
    async with telemetry.instrument(client2):
        await client2.chat(MESSAGES)
        await client2.chat(MESSAGES)
    assert telemetry.value("paradigm_trio.rate_limit.waits") == 1
    assert telemetry.value("paradigm_trio.rate_limit.wait") == pytest.approx(60.0, abs=0.01)


async def test_content_is_recorded_only_when_asked(telemetry: Telemetry) -> None:
    client = make_client(Script(ok(text="Bonjour")))
    async with telemetry.instrument(client, record_content=True):
        await client.chat([{"role": "user", "content": "Salut"}])
    (span,) = telemetry.spans()[-1:]
    attributes = _attributes(span)
    assert json.loads(attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Salut"}]}
    ]
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Bonjour"}],
            "finish_reason": "stop",
        }
    ]


async def test_a_client_is_instrumented_once(telemetry: Telemetry) -> None:
    client = telemetry.instrument(make_client(Script()))
    with pytest.raises(RuntimeError, match="instrumented already"):
        telemetry.instrument(client)
    await client.aclose()


def test_nothing_of_opentelemetry_is_imported_without_instrument() -> None:
    code = textwrap.dedent(
        """
        import sys, httpx2, trio
        import paradigm_trio as pt

        def answer(request):
            return httpx2.Response(200, json={
                "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        async def main():
            async with pt.Client(api_key="sk-no-otel-test", base_url="http://test",
                                 transport=httpx2.MockTransport(answer)) as client:
                await client.chat([{"role": "user", "content": "Hi"}])
                await client.chat_batch([[{"role": "user", "content": "Hi"}]])

        trio.run(main)
        loaded = sorted(m for m in sys.modules
                        if m.startswith("opentelemetry") or m == "paradigm_trio._client._otel")
        print(loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


async def test_clients_on_one_meter_provider_are_summed(telemetry: Telemetry) -> None:
    first = telemetry.instrument(make_client(Script(default=ok())))
    second = telemetry.instrument(make_client(Script(default=ok())))
    async with first, second:
        await first.chat(MESSAGES)
        await second.chat(MESSAGES)
        await second.chat(MESSAGES)
        assert telemetry.value("paradigm_trio.started") == 3
    del first, second
    gc.collect()  # a client no longer used is no longer observed
    assert telemetry.value("paradigm_trio.started") is None


async def test_a_chat_batch_and_an_embeddings_batch_each_have_one_root_span(
    telemetry: Telemetry,
) -> None:
    """Batches are generic over endpoints: each kind's batch span is the one root of its
    requests' spans (an embeddings batch had none, its request spans no parent)."""
    from .test_embeddings import Embedder

    embedder = Embedder()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/embeddings"):
            return await embedder(request)
        return ok()

    client = make_client(handler, limits=pt.Limits(concurrency=2))
    async with telemetry.instrument(client):
        chats = await client.chat_batch([MESSAGES] * 3)
        texts = await client.embed_batch(["a", "bb", "ccc", "dddd", "eeeee"], pack_inputs=2)
    assert all(r.ok for r in chats)
    assert all(r.ok for r in texts)
    batches = (("chat_batch", "chat", 3), ("embeddings_batch", "embeddings", 3))
    for name, operation, requests in batches:  # 5 texts in packs of 2: 3 requests
        (batch,) = telemetry.spans(name)
        assert batch.parent is None
        assert _attributes(batch)["gen_ai.operation.name"] == operation
        items = telemetry.children(batch)
        assert len(items) == requests
        assert all(_attributes(s)["gen_ai.operation.name"] == operation for s in items)
        assert all(s.name.startswith(f"{operation} ") for s in items)
        in_trace = [s for s in telemetry.spans() if s.context.trace_id == batch.context.trace_id]
        assert len(in_trace) == 1 + 2 * requests  # the batch, its requests, their attempts
        assert [s for s in in_trace if s.parent is None] == [batch]
    assert len([s for s in telemetry.spans() if s.parent is None]) == 2
    embedded = _attributes(telemetry.children(telemetry.spans("embeddings_batch")[0])[0])
    assert embedded["gen_ai.usage.input_tokens"] > 0
    assert "gen_ai.usage.output_tokens" not in embedded


async def test_a_hedge_is_a_span_of_its_own_and_the_batch_span_counts_hedges(
    telemetry: Telemetry,
) -> None:
    from .test_hedge import HEDGE, Tail, straggler

    client = make_client(Tail(straggler("item 12")), limits=pt.Limits(concurrency=4))
    requests = [
        pt.ChatRequest(messages=[{"role": "user", "content": f"item {i}"}], custom_id=f"r{i}")
        for i in range(20)
    ]
    async with telemetry.instrument(client):
        results = await client.chat_batch([*requests, requests[0]], hedge=HEDGE, temperature=0)
    assert results[12].hedged
    (batch,) = telemetry.spans("chat_batch")
    items = telemetry.children(batch)
    hedges = [s for s in items if _attributes(s).get("paradigm_trio.hedge")]
    assert [_attributes(s)["paradigm_trio.custom_id"] for s in hedges] == ["r12"]
    twelve = [s for s in items if _attributes(s)["paradigm_trio.custom_id"] == "r12"]
    assert len(twelve) == 2  # the original (cancelled) and its hedge
    attributes = _attributes(batch)
    assert attributes["paradigm_trio.batch.hedges"] == 1
    assert attributes["paradigm_trio.batch.hedges_won"] == 1
    assert attributes["paradigm_trio.batch.deduplicated"] == 1  # r0's body, twice
    assert attributes["paradigm_trio.batch.cached"] == 0
