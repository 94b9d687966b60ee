"""``pt.instrument``: a client's traces and metrics sent to OpenTelemetry (``_otel``)."""

from __future__ import annotations

from typing import Any

import httpx2

from ._client import Client

__all__ = ["instrument"]


def instrument(
    client: Client,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    record_content: bool = False,
    provider_name: str = "lighton",
) -> None:
    """Send a client's traces and metrics to OpenTelemetry (needs ``paradigm-trio[otel]``).

    From then on, every chat request of ``client`` is a span ``chat {model}`` (every
    embeddings request ``embeddings {model}``) with a child span per attempt, every batch a
    span ``chat_batch`` (``embeddings_batch``) holding its requests' spans and its
    statistics, and the client's counters are metrics (see :doc:`/howto-observe` and the
    reference).  Names follow the OpenTelemetry GenAI semantic conventions (1.37 to 1.41:
    ``gen_ai.provider.name``).  Without this call nothing of OpenTelemetry is imported.

    Streams: a stream left early (``break``, an exception, leaving the ``async with``) or
    cancelled from outside keeps the span of the attempt under way, ended then, with
    ``paradigm_trio.outcome="cancelled"`` and no error status, as its request's span.
    ``gen_ai.client.operation.time_to_first_chunk`` (a histogram, in seconds; semantic
    conventions 1.41) records, once per streamed request whose answer began, the time from
    the request's start (retries included) to the first chunk of the attempt kept; the
    request's span carries it as ``gen_ai.response.time_to_first_chunk``.

    Args:
        client: the client to instrument (once).
        tracer_provider, meter_provider: OpenTelemetry providers; ``None`` for the global
            ones (``opentelemetry.trace.set_tracer_provider`` ...).
        record_content: also record the messages sent and the answers
            (``gen_ai.input.messages``, ``gen_ai.output.messages``): off by default, as
            they are your users' data.  Headers, so the API key, are never recorded.
        provider_name: the value of ``gen_ai.provider.name``.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed.
        RuntimeError: the client is instrumented already.
    """
    from ._otel import Telemetry  # (imports opentelemetry: only here)

    ledger = client._engine.ledger
    if any(isinstance(o, Telemetry) for o in ledger.observers):
        raise RuntimeError("this client is instrumented already")
    url = httpx2.URL(client.base_url)
    ledger.observe(
        Telemetry(
            ledger=ledger,
            limiter=client._limiter,
            rates=client._engine.rates,
            model=client.model,
            server_address=url.host,
            server_port=url.port or (443 if url.scheme == "https" else 80),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            record_content=record_content,
            provider_name=provider_name,
        )
    )
