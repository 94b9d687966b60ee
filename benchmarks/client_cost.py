"""Scenario 2: client cost, the CPU time each peer spends per request.

The server is ``benchmarks._rawserver`` (asyncio, no framework, no latency) in its own
process, so its CPU is not counted and it is never the bottleneck.  Each peer runs in a
fresh process: it first opens its connections with a warm-up of ``2 x concurrency``
requests, then sends ``N`` requests at concurrency 64; the figure is the client process's
``time.process_time()`` over those ``N`` requests, divided by ``N``.  Each peer is measured
``ROUNDS`` times and the lowest figure kept (the usual way to discount noise from the
other process sharing the machine).
"""

from __future__ import annotations

import statistics
from typing import Any

from ._common import PEER_LABELS, PEERS, Section, Table, Target, raw_server, run_worker
from ._profile import profile

CONCURRENCY = 64


def run(quick: bool) -> Section:
    n = 3_000 if quick else 8_000
    cold_n = 3_000
    rounds = 1 if quick else 2
    judged = 2 if quick else 5  # rounds of the two peers the targets compare
    section = Section(
        "cost",
        "2. Client cost: CPU time per request",
        f"{n:,} requests at concurrency {CONCURRENCY} against the raw server (no latency, "
        f"out of process), after a warm-up of {2 * CONCURRENCY} requests; best of {rounds} "
        f"round(s), {judged} for the aiohttp recipe and paradigm-trio (whose ratio the "
        "targets judge), each in a fresh process; the rounds go round the peers in turn, so "
        "that each round of every peer meets the same machine.  *server ms/request* is the "
        "server process's CPU over the whole run (warm-up included) divided by the requests "
        "it answered: it stays far below the clients', so the clients are measured, not the "
        "server.  "
        f"*Cold*: {cold_n:,} requests with no warm-up, so the {CONCURRENCY} connections are "
        "opened inside the measured run.  *Paired*: the median, over the rounds, of "
        "paradigm-trio's CPU per request divided by the recipe's in the same round (on a "
        "machine whose speed drifts between runs, a ratio of runs made side by side moves "
        "less than a ratio of each one's best).",
    )
    cpu: dict[str, float] = {}
    cold: dict[str, float] = {}
    paired: dict[str, list[float]] = {}
    with raw_server(0.0) as server:
        section.tables.append(
            _table(f"CPU per request, {n:,} requests at concurrency {CONCURRENCY}", cpu,
                   _measure(server, n, 2 * CONCURRENCY, (rounds, judged), cpu, paired))
        )  # fmt: skip
        paired_cold: dict[str, list[float]] = {}
        section.tables.append(
            _table(f"Cold: CPU per request, {cold_n:,} requests at concurrency {CONCURRENCY}, "
                   "connections opened in the run", cold,
                   _measure(server, cold_n, 0, (rounds, judged), cold, paired_cold))
        )  # fmt: skip
    for label, rounds_cpu in (("warmed up", paired), ("cold", paired_cold)):
        ours_cpu, recipe_cpu = rounds_cpu.get("paradigm-trio", []), rounds_cpu.get("aiohttp", [])
        ratios = [ours / recipe for ours, recipe in zip(ours_cpu, recipe_cpu, strict=False)]
        if ratios:
            section.targets.append(
                Target(
                    f"CPU per request <= 1.0x the aiohttp recipe's, {label}, paired (issue 30)",
                    "<= 1.00x",
                    f"{statistics.median(ratios):.2f}x, the median of {len(ratios)} rounds "
                    f"(each {min(ratios):.2f}x to {max(ratios):.2f}x)",
                    statistics.median(ratios) <= 1.0,
                )
            )
    base = cpu.get("paradigm-trio")
    for label, figures in (("warmed up", cpu), ("cold", cold)):
        ours, recipe = figures.get("paradigm-trio"), figures.get("aiohttp")
        section.targets.append(
            Target(
                f"CPU per request <= 1.5x the aiohttp recipe's, {label}",
                "<= 1.50x" + (f" ({1.5 * recipe:.3f} ms)" if recipe else ""),
                f"{ours / recipe:.2f}x ({ours:.3f} ms against {recipe:.3f} ms)"
                if ours and recipe
                else "not measured",
                ours / recipe <= 1.5 if ours and recipe else None,
            )
        )
    openai_cpu = cpu.get("openai")
    if base is not None and openai_cpu is not None:
        met = base <= openai_cpu / 2
        section.targets.append(
            Target(
                "CPU per request <= half of the openai client's",
                f"<= {openai_cpu / 2:.3f} ms (openai: {openai_cpu:.3f} ms)",
                f"{base:.3f} ms ({base / openai_cpu:.0%} of openai)",
                met,
            )
        )
    if base is not None and cpu.get("aiohttp") and base > 1.5 * cpu["aiohttp"]:
        section.profile = (
            "(quick mode: no profile; the full run profiles the miss)"
            if quick
            else _profile_cost(n)
        )
    return section


JUDGED = ("aiohttp", "paradigm-trio")


def _measure(
    server: Any,
    n: int,
    warmup: int,
    rounds: tuple[int, int],
    cpu: dict[str, float],
    per_round: dict[str, list[float]],
) -> dict[str, list[Any]]:
    """Each peer's best round: the table's rows; its CPU ms/request goes into ``cpu``, and
    that of every round of the peers in ``JUDGED`` into ``per_round`` (in round order).

    ``rounds``: how many for each peer, and for the two in ``JUDGED``; round ``r`` of every
    peer is run before round ``r + 1`` of any, so that a busy spell of the machine does
    not fall on one peer's rounds only."""
    best: dict[str, dict[str, Any]] = {}
    server_ms: dict[str, float | None] = {}
    for r in range(max(rounds)):
        for peer in PEERS:
            wanted = rounds[1] if peer in JUDGED else rounds[0]
            if r >= wanted or "failed" in best.get(peer, {}):
                continue
            before = server.cpu_seconds()
            result = run_worker(
                {"kind": "drive", "peer": peer, "url": server.url, "n": n,
                 "concurrency": CONCURRENCY, "warmup": warmup, "limit": 120},
                timeout=240,
            )  # fmt: skip
            after = server.cpu_seconds()
            if peer in JUDGED and "failed" not in result:
                done = result["ok"] + result["errors"]
                per_round.setdefault(peer, []).append(result["cpu"] / max(done, 1) * 1000)
            if "failed" in result or peer not in best or result["cpu"] < best[peer]["cpu"]:
                best[peer] = result
                server_ms[peer] = (
                    None if before is None or after is None
                    else (after - before) / (n + warmup) * 1000
                )  # fmt: skip
    rows: dict[str, list[Any]] = {}
    for peer in PEERS:
        result = best[peer]
        if "failed" in result:
            rows[peer] = [PEER_LABELS[peer], None, None, None, None, None, result["failed"]]
            continue
        done = result["ok"] + result["errors"]
        cpu[peer] = result["cpu"] / max(done, 1) * 1000
        rows[peer] = [
            PEER_LABELS[peer], cpu[peer], None, done / result["wall"], result["wall"],
            server_ms[peer], result["errors"] + result["unfinished"],
        ]  # fmt: skip
    return rows


def _table(title: str, cpu: dict[str, float], rows: dict[str, list[Any]]) -> Table:
    table = Table(
        title,
        ["client", "client CPU ms/request", "vs paradigm-trio", "requests/s", "wall s",
         "server ms/request", "errors"],
    )  # fmt: skip
    base = cpu.get("paradigm-trio")
    for peer in PEERS:
        if base and peer in cpu:
            rows[peer][2] = f"{cpu[peer] / base:.2f}x"
        table.rows.append(rows[peer])
    return table


def _profile_cost(n: int) -> str:
    with raw_server(0.0) as server:
        return profile(
            {"kind": "drive", "peer": "paradigm-trio", "url": server.url, "n": n,
             "concurrency": CONCURRENCY, "warmup": 2 * CONCURRENCY, "limit": 120},
            timeout=300,
        )  # fmt: skip
