"""Scenario 8: the cost of OpenTelemetry, CPU per request with ``pt.instrument`` and without.

The set-up of scenario 2 (the raw server out of process, concurrency 64, a warm-up, the
client process's CPU time over ``N`` requests), for paradigm-trio alone: without
instrumentation, then instrumented with the OpenTelemetry SDK (spans through a
``BatchSpanProcessor`` to an exporter that drops them, metrics with a reader).  Each mode
runs ``ROUNDS`` times, alternating, each in a fresh process; the lowest figure is kept.
"""

from __future__ import annotations

from typing import Any

from ._common import Section, Table, raw_server, run_worker

CONCURRENCY = 64
MODES = (("off", False), ("on: spans and metrics (SDK)", True))


def run(quick: bool) -> Section:
    n, rounds = (3_000, 2) if quick else (8_000, 3)
    section = Section(
        "otel",
        "11. The cost of OpenTelemetry",
        f"paradigm-trio alone, {n:,} requests at concurrency {CONCURRENCY} against the raw "
        f"server, as in scenario 2; without `pt.instrument`, then with it (OpenTelemetry "
        "SDK: a span per request and per attempt through a `BatchSpanProcessor` to an "
        "exporter that drops them, the metrics with an in-memory reader).  Best of "
        f"{rounds} rounds, alternating, each in a fresh process.",
    )
    best: dict[bool, dict[str, Any]] = {}
    with raw_server(0.0) as server:
        for _ in range(rounds):
            for _label, otel in MODES:
                result = run_worker(
                    {"kind": "drive", "peer": "paradigm-trio", "url": server.url, "n": n,
                     "concurrency": CONCURRENCY, "warmup": 2 * CONCURRENCY, "limit": 120,
                     "otel": otel},
                    timeout=240,
                )  # fmt: skip
                if "failed" in result:
                    raise RuntimeError(f"otel={otel}: {result['failed']}")
                if otel not in best or result["cpu"] < best[otel]["cpu"]:
                    best[otel] = result
    table = Table(
        f"paradigm-trio CPU per request, {n:,} requests at concurrency {CONCURRENCY}",
        ["OpenTelemetry", "client CPU ms/request", "vs off", "requests/s", "errors"],
    )
    base = best[False]["cpu"] / n * 1000
    for label, otel in MODES:
        r = best[otel]
        cpu = r["cpu"] / n * 1000
        table.rows.append([label, cpu, f"{cpu / base:.2f}x", n / r["wall"], r["errors"]])
    section.tables.append(table)
    return section
