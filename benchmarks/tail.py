"""Scenario 15: the tail of a batch, with and without hedged requests.

A batch of ``n`` chat requests at concurrency 100 against the mock in its own process,
with heavy-tailed latency (log-normal, median 0.2 s, sigma 0.5): once without stragglers
(the reference wall time), then with 2 % of the attempts ten times slower
(``--fault straggler=0.02:10x``), sent by paradigm-trio without and with ``hedge=True``,
by the openai SDK under trio and by the seed recipe (aiohttp + ``asyncio.gather``).  Every
mode runs against a fresh mock with the same seed and the same ``Idempotency-Key``s, so
the same requests straggle; the mock's own count of the requests it received gives the
extra requests (hedges; no faults, so no retries).  Modes alternate over ``rounds``; the
median wall time of each is kept.
"""

from __future__ import annotations

import importlib.util
import statistics
from typing import Any

from ._common import Section, Table, Target, http_json, mock_process, run_worker

CONCURRENCY = 100
LATENCY = "lognormal:0.2,0.5"
STRAGGLERS = "straggler=0.02:10x"
MODES = (
    ("no stragglers (reference)", "paradigm-trio", False, {}),
    ("2 % stragglers", "paradigm-trio", True, {}),
    ("2 % stragglers, hedge=True", "paradigm-trio", True, {"hedge": True}),
    ("2 % stragglers", "openai", True, {}),
    ("2 % stragglers", "aiohttp", True, {}),
)


def run(quick: bool) -> Section:
    n, rounds = (1_000, 1) if quick else (2_000, 3)
    section = Section(
        "tail",
        "15. The tail: hedged requests against stragglers",
        f"`benchmarks/tail.py`: a batch of {n:,} chat requests at concurrency {CONCURRENCY} "
        f"against the mock in its own process, latency `{LATENCY}` (log-normal, median 0.2 s), "
        f"without stragglers, then with `--fault {STRAGGLERS}` (2 % of the attempts ten "
        "times slower, drawn per key and attempt: the same requests straggle in every mode). "
        "paradigm-trio without and with `hedge=True`, the openai SDK under trio and the seed "
        "recipe (aiohttp + asyncio.gather) at the same concurrency.  Each mode against a fresh "
        f"mock; the mock counts the requests it received.  Median of {rounds} round(s).",
    )
    walls: dict[int, list[float]] = {i: [] for i in range(len(MODES))}
    sent: dict[int, list[int]] = {i: [] for i in range(len(MODES))}
    last: dict[int, dict[str, Any]] = {}
    missing = {peer for _l, peer, _s, _b in MODES if peer != "paradigm-trio"
               and importlib.util.find_spec(peer) is None}  # fmt: skip
    for _ in range(rounds):
        for i, (_label, peer, stragglers, batch) in enumerate(MODES):
            if peer in missing:
                continue
            flags = ["--seed", "7", "--latency", LATENCY]
            if stragglers:
                flags += ["--fault", STRAGGLERS]
            with mock_process(*flags) as server:
                task = {"kind": "drive", "peer": peer, "url": server.url, "n": n,
                        "concurrency": CONCURRENCY, "keys": "tail", "batch": batch}  # fmt: skip
                result = run_worker(task, timeout=600)
                stats = http_json("GET", f"{server.root_url}/_mock/stats")
            if "failed" in result:
                result = {"ok": 0, "errors": n, "wall": float("nan"), "failed": result["failed"]}
            walls[i].append(result["wall"])
            sent[i].append(int(stats["total"]))
            last[i] = result
    table = Table(
        f"{n:,} requests, concurrency {CONCURRENCY}, latency {LATENCY}",
        ["mode", "client", "wall s (median)", "vs reference", "requests sent", "extra %",
         "ok", "errors"],
    )  # fmt: skip
    reference = statistics.median(walls[0])
    figures: dict[str, tuple[float, float]] = {}
    for i, (label, peer, _s, _b) in enumerate(MODES):
        if peer in missing:
            table.rows.append([label, peer, None, None, None, None, None, None])
            table.notes.append(f"{peer}: not installed on this machine, not measured.")
            continue
        wall = statistics.median(walls[i])
        requests = max(sent[i])
        extra = 100.0 * (requests - n) / n
        figures[f"{peer}:{label}"] = (wall / reference, extra)
        table.rows.append([label, peer, wall, f"{wall / reference:.2f}x", requests,
                           f"{extra:.1f}", last[i].get("ok"), last[i].get("errors")])  # fmt: skip
    section.tables.append(table)
    ratio, extra = figures["paradigm-trio:2 % stragglers, hedge=True"]
    goal = "<= 1.15x the batch without"
    section.targets.append(
        Target("tail: hedged, 2 % stragglers at 10x", goal, f"{ratio:.2f}x", ratio <= 1.15)
    )
    section.targets.append(
        Target("tail: extra requests of hedging", "<= 5 %", f"{extra:.1f} %", extra <= 5.0)
    )
    return section
