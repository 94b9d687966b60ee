"""Scenario 16: the garbage collector's share of the client's CPU, in a plain library program.

The CLI raises the young generation's threshold for its runs (``pt.fewer_collections``);
a program that imports the library keeps Python's defaults, and at high concurrency every
request in flight holds objects the collector walks again and again.  This scenario runs
the large size of scenario 3 (20,000 requests of 1 s at concurrency 2,000 against the raw
server, cold) as such a program: the worker changes no setting of the collector, and
``gc.callbacks`` time every collection within the measured run (``_peers.GcClock``).

*objects per request in flight* is the most objects the collector tracked at the end of a
full collection (everything alive then), less those tracked when the run started, divided
by the concurrency: what each request in flight holds that the collector has to walk.
"""

from __future__ import annotations

import math
from typing import Any

from ._common import PEER_LABELS, Section, Table, Target, raw_server, run_worker

LABELS = {
    **PEER_LABELS,
    "paradigm-trio+threshold": "paradigm-trio, `gc.set_threshold(10_000)` (the CLI's setting)",
    "paradigm-trio+freeze": "paradigm-trio, `gc.freeze()` once the client is open",
}
TARGET_SHARE = 0.10


def case(quick: bool) -> tuple[int, int, float, float]:
    """``(requests, concurrency, latency, time limit)``."""
    return (4_000, 2_000, 1.0, 20.0) if quick else (20_000, 2_000, 1.0, 60.0)


def task(url: str, peer: str, n: int, c: int, limit: float) -> dict[str, Any]:
    """The worker's task: scenario 3's, with the collector timed (and, for the
    ``+threshold`` row, its young generation's threshold raised as the CLI does)."""
    spec: dict[str, Any] = {"kind": "drive", "peer": peer.split("+")[0], "url": url, "n": n,
                            "concurrency": c, "limit": limit, "gc": True}  # fmt: skip
    if peer.endswith("+threshold"):
        spec["gc_threshold"] = [10_000, 10, 10]
    if peer.endswith("+freeze"):
        spec["gc_freeze"] = True
    return spec


def run(quick: bool) -> Section:
    n, c, latency, limit = case(quick)
    ideal = math.ceil(n / c) * latency
    rounds = 1 if quick else 2
    section = Section(
        "gc",
        "16. The garbage collector's share, in a library program",
        f"`benchmarks/gc_share.py`: {n:,} requests of {latency * 1000:.0f} ms at concurrency "
        f"{c:,} against the raw server (out of process, cold), each client in a fresh process "
        "that leaves Python's collector at its defaults (as a program importing the library "
        "does: no CLI); `gc.callbacks` time each collection within the measured run.  "
        "*objects per request in flight*: the most objects the collector tracked after a "
        "full collection, less those tracked at the start, divided by the concurrency.  "
        f"Best of {rounds} round(s) by GC share, the rounds alternating between the clients.",
    )
    table = Table(
        f"{n:,} requests of {latency * 1000:.0f} ms at concurrency {c:,} (ideal {ideal:.0f} s)",
        ["client", "ratio", "client CPU s", "GC s", "GC share of CPU",
         "collections (gen 0/1/2)", "objects per request in flight", "errors"],
    )  # fmt: skip
    peers = ("floor", "aiohttp", "paradigm-trio", "paradigm-trio+threshold", "paradigm-trio+freeze")
    best: dict[str, dict[str, Any]] = {}
    with raw_server(latency) as server:
        for _ in range(rounds):
            for peer in peers:
                result = run_worker(task(server.url, peer, n, c, limit), timeout=limit + 20)
                if "failed" in result or not result.get("cpu"):
                    best.setdefault(peer, result)
                    continue
                result["share"] = result["gc_seconds"] / result["cpu"]
                if "share" not in best.get(peer, {}) or result["share"] < best[peer]["share"]:
                    best[peer] = result
    for peer in peers:
        r = best[peer]
        if "share" not in r:
            table.rows.append([LABELS[peer], None, None, None, None, None, None,
                               r.get("failed", "no result")])  # fmt: skip
            continue
        per = (r["gc_objects_peak"] - r["gc_objects_base"]) / c
        table.rows.append([
            LABELS[peer], r["wall"] / ideal, r["cpu"], r["gc_seconds"], f"{r['share']:.1%}",
            "/".join(str(x) for x in r["gc_collections"]), round(per),
            r["errors"] + r["unfinished"],
        ])  # fmt: skip
    table.notes.append(
        "*floor*: scenario 3's bare trio sockets (no HTTP library); the seed recipe runs under "
        "asyncio.  The last two rows are not a library program's defaults: settings a "
        "program may make (the first is the CLI's; see the reference's *Garbage "
        "collection*)."
    )
    section.tables.append(table)
    ours = best["paradigm-trio"]
    if "share" in ours:
        measured = f"{ours['share']:.1%} ({ours['gc_seconds']:.2f} s of {ours['cpu']:.2f} s)"
        met: bool | None = ours["share"] <= TARGET_SHARE and not ours["errors"]
    else:
        measured, met = "not measured", None
    section.targets.append(
        Target(
            f"garbage collector at c={c:,}, library program (defaults)",
            f"<= {TARGET_SHARE:.0%} of the client's CPU",
            measured,
            met,
        )
    )
    return section
