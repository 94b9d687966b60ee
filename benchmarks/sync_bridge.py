"""Scenario 13: the cost of ``SyncClient``'s thread bridge, against ``Client`` in the same run.

The raw server (no latency) in its own process, as in scenario 2.  Each mode runs in a
fresh process, after a warm-up: ``Client`` under ``trio.run`` and ``SyncClient`` from
plain blocking code, first one request at a time (``chat`` in a loop: each call crosses
to the client's thread and back, so the difference in wall time per request is the
bridge's latency), then a batch at concurrency 64 (``chat_batch``: the results cross one
by one, so the difference in CPU per request is the bridge's cost).  Modes alternate over
``rounds``; the lowest figure of each is kept.
"""

from __future__ import annotations

import time
from typing import Any

from ._common import Section, Table, raw_server, run_worker

CONCURRENCY = 64
MODES = (
    ("one at a time", "Client", "client-seq"),
    ("one at a time", "SyncClient", "sync-seq"),
    (f"chat_batch, concurrency {CONCURRENCY}", "Client", "client-batch"),
    (f"chat_batch, concurrency {CONCURRENCY}", "SyncClient", "sync-batch"),
)
KEY = "sk-bench-not-a-real-key"


def run(quick: bool) -> Section:
    seq, batch, rounds = (500, 3_000, 2) if quick else (2_000, 8_000, 3)
    section = Section(
        "sync",
        "13. SyncClient: the thread bridge's cost",
        f"`pt.Client` under `trio.run` against `pt.SyncClient` from blocking code, against "
        f"the raw server (no latency, out of process): {seq:,} `chat` calls one at a time "
        f"(wall time per call: the bridge's latency), then `chat_batch` of {batch:,} at "
        f"concurrency {CONCURRENCY} (client CPU per request: the bridge's cost); after a "
        f"warm-up, each mode in a fresh process, best of {rounds} rounds, alternating.",
    )
    best: dict[str, dict[str, Any]] = {}
    with raw_server(0.0) as server:
        for _ in range(rounds):
            for _label, _client, mode in MODES:
                n = seq if mode.endswith("seq") else batch
                result = run_worker(
                    {"kind": "sync", "mode": mode, "url": server.url, "n": n}, timeout=300
                )
                if "failed" in result:
                    raise RuntimeError(f"{mode}: {result['failed']}")
                result["n"] = n
                if mode not in best or result["cpu"] < best[mode]["cpu"]:
                    best[mode] = result
    table = Table(
        "Client and SyncClient, per request",
        ["requests", "client", "wall µs/request", "client CPU µs/request", "bridge: wall",
         "bridge: CPU", "errors"],
    )  # fmt: skip
    for label, client, mode in MODES:
        r = best[mode]
        base = best[mode.replace("sync", "client")]
        wall, cpu = r["wall"] / r["n"] * 1e6, r["cpu"] / r["n"] * 1e6
        extra_wall = wall - base["wall"] / base["n"] * 1e6
        extra_cpu = cpu - base["cpu"] / base["n"] * 1e6
        same = client == "Client"
        table.rows.append([label, client, wall, cpu, None if same else f"{extra_wall:+.0f} µs",
                           None if same else f"{extra_cpu:+.0f} µs", r["errors"]])  # fmt: skip
    section.tables.append(table)
    return section


def client_run(task: dict[str, Any]) -> dict[str, Any]:
    """One mode, in this (fresh) process: ``{"wall", "cpu", "errors"}`` over ``n``."""
    import trio

    import paradigm_trio as pt

    mode, url, n = task["mode"], task["url"], task["n"]
    messages = [{"role": "user", "content": "Hi"}]
    options: dict[str, Any] = {
        "api_key": KEY, "base_url": url, "limits": pt.Limits(concurrency=CONCURRENCY),
    }  # fmt: skip
    if mode.startswith("sync"):
        with pt.SyncClient(**options) as sync:
            sync.chat_batch([messages] * 2 * CONCURRENCY)  # warm-up: the connections
            start, cpu = time.perf_counter(), time.process_time()
            if mode == "sync-seq":
                for _ in range(n):
                    sync.chat(messages)
                errors = 0
            else:
                errors = sum(not r.ok for r in sync.chat_batch([messages] * n))
            return _figures(start, cpu, errors)

    async def main() -> dict[str, Any]:
        async with pt.Client(**options) as client:
            await client.chat_batch([messages] * 2 * CONCURRENCY)
            start, cpu = time.perf_counter(), time.process_time()
            if mode == "client-seq":
                for _ in range(n):
                    await client.chat(messages)
                errors = 0
            else:
                errors = sum(not r.ok for r in await client.chat_batch([messages] * n))
            return _figures(start, cpu, errors)

    return trio.run(main)


def _figures(start: float, cpu: float, errors: int) -> dict[str, Any]:
    return {
        "wall": time.perf_counter() - start, "cpu": time.process_time() - cpu, "errors": errors,
    }  # fmt: skip
