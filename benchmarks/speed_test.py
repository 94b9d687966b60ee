"""Scenario 1: the reference page's speed test, for every peer.

The page sends its 20 welcome messages one by one, then all at once with
``asyncio.gather``, and reports the ratio ("improvement factor": 10.33 s / 1.86 s = 5.55
against the real API).  Here every peer does both against the mock server (out of
process) with lognormal latency.  Each request carries the ``Idempotency-Key``
paradigm-trio derives from its ``custom_id`` and the mock is reset before every run, so
every run of every peer meets *the same* 20 latencies.  The best a client can do is then
known exactly from the server's log: sequential = the sum of the 20 latencies,
concurrent = the largest; the ideal factor is their ratio.
"""

from __future__ import annotations

from typing import Any

from ._common import (
    PEER_LABELS,
    PEERS,
    Section,
    Table,
    http_json,
    mock_process,
    run_worker,
)

N = 20


def _server_latencies(root_url: str) -> list[float]:
    records = http_json("GET", root_url + "/_mock/requests")["data"]
    return [r["finish"] - r["arrival"] for r in records if r["finish"] is not None]


def run(quick: bool) -> Section:
    median, sigma = (0.1, 0.4) if quick else (0.5, 0.4)
    spec = f"lognormal:{median},{sigma}"
    section = Section(
        "speed",
        "1. The reference page's speed test",
        f"{N} requests (the page's 20 names), mock server in its own process with latency "
        f"`{spec}` (median {median} s), seed 0.  Each peer runs them sequentially (one "
        "`await` after another), then concurrently (all 20 at once), on a freshly reset "
        "mock, so every run sees the same 20 latencies.  *Ideal* is computed from the "
        "server's request log: sequential = sum of the latencies, concurrent = the largest.",
    )
    table = Table(
        f"20 requests, latency {spec}",
        ["client", "sequential s", "concurrent s", "improvement factor", "ideal factor",
         "concurrent / ideal", "errors"],
    )  # fmt: skip
    ideal_seq = ideal_conc = None
    with mock_process("--latency", spec, "--seed", "0") as server:
        for peer in PEERS:
            runs: dict[str, dict[str, Any]] = {}
            for mode in ("sequential", "concurrent"):
                http_json("POST", server.root_url + "/_mock/reset")
                runs[mode] = run_worker(
                    {"kind": "drive", "peer": peer, "url": server.url, "n": N,
                     "concurrency": N, "mode": mode, "keys": "speed", "limit": 120},
                    timeout=180,
                )  # fmt: skip
                latencies = _server_latencies(server.root_url)
                if ideal_seq is None and len(latencies) == N:
                    ideal_seq, ideal_conc = sum(latencies), max(latencies)
            seq, conc = runs["sequential"], runs["concurrent"]
            if "failed" in seq or "failed" in conc:
                why = seq.get("failed") or conc.get("failed")
                table.rows.append([PEER_LABELS[peer], None, None, None, None, None, why])
                continue
            factor = seq["wall"] / conc["wall"]
            errors = seq["errors"] + conc["errors"] + seq["unfinished"] + conc["unfinished"]
            table.rows.append([
                PEER_LABELS[peer], seq["wall"], conc["wall"], factor,
                ideal_seq / ideal_conc if ideal_seq and ideal_conc else None,
                conc["wall"] / ideal_conc if ideal_conc else None, errors,
            ])  # fmt: skip
    table.rows.append(
        ["reference page (real API, its own run)", 10.33, 1.86, 5.55, None, None, None]
    )
    if ideal_seq and ideal_conc:
        table.notes.append(
            f"Server-side ideal: sequential {ideal_seq:.2f} s, concurrent {ideal_conc:.2f} s "
            f"(ideal factor {ideal_seq / ideal_conc:.2f})."
        )
    table.notes.append(
        "The improvement factor depends only on the latency draw: it says nothing about the "
        "client.  *concurrent / ideal* (1.00 is perfect) is the figure that does."
    )
    section.tables.append(table)
    return section
