"""Scenario 5: rate-limited goodput against a mock quota of ``Q`` requests a minute.

Two mock servers in their own processes, each with ``rpm = Q`` (a token bucket, full at
start) and latency ``uniform:0.1,0.3``; paradigm-trio drives one, the openai client the
other, at the same time, for the same duration.

* paradigm-trio: ``Client()`` with its defaults (concurrency 64, adaptive on, *no* client
  rate limit configured) running ``stream_batch`` over an endless lazy generator.
* openai: ``AsyncOpenAI`` under trio with its default retries (2, honouring
  ``retry-after-ms``), 64 worker tasks sending back to back.

The figures come from the server's request log, over a window that starts after a
warm-up (the bucket starts full: the first ``Q`` requests go through at once, which
says nothing about steady state).  *goodput* = admitted (200) requests arriving in the
window, per minute; *429 share* = rejected / all requests arriving in the window.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import (
    API_KEY,
    MODEL,
    Section,
    Table,
    Target,
    http_json,
    messages,
    mock_process,
    run_worker,
)

CONCURRENCY = 64
LATENCY = "uniform:0.1,0.3"


# ---------------------------------------------------------------------- in the worker


async def _pt(task: dict[str, Any], out: dict[str, Any]) -> None:
    import trio

    import paradigm_trio as pt

    errors: collections.Counter[str] = collections.Counter()
    timeline: list[tuple[float, int]] = []
    out.update(ok=0, failures=0, errors=errors, timeline=timeline)
    async with pt.Client(api_key=API_KEY, base_url=task["url"]) as client:

        async def sample() -> None:
            start = trio.current_time()
            while True:
                stats = client.statistics()
                timeline.append((round(trio.current_time() - start, 1), stats.concurrency))
                await trio.sleep(2.0)

        with trio.move_on_after(task["duration"]):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                requests = (messages(i) for i in range(10**8))
                async with client.stream_batch(requests, max_tokens=150) as results:
                    async for result in results:
                        if result.ok:
                            out["ok"] += 1
                        else:
                            out["failures"] += 1
                            errors[type(result.error).__name__] += 1
        stats = client.statistics()
        out["client_retries"] = dict(stats.retries_by_cause)


async def _openai(task: dict[str, Any], out: dict[str, Any]) -> None:
    import openai
    import trio

    errors: collections.Counter[str] = collections.Counter()
    out.update(ok=0, failures=0, errors=errors)
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=task["url"]) as client:

        async def worker() -> None:
            i = 0
            while True:
                i += 1
                try:
                    await client.chat.completions.create(
                        model=MODEL, messages=messages(i), max_tokens=150
                    )
                except openai.APIError as exc:
                    out["failures"] += 1
                    errors[type(exc).__name__] += 1
                else:
                    out["ok"] += 1

        with trio.move_on_after(task["duration"]):
            async with trio.open_nursery() as nursery:
                for _ in range(CONCURRENCY):
                    nursery.start_soon(worker)


def client_run(task: dict[str, Any]) -> dict[str, Any]:
    import trio

    out: dict[str, Any] = {}
    trio.run(_pt if task["peer"] == "paradigm-trio" else _openai, task, out)
    out["errors"] = dict(out["errors"])
    return out


# ---------------------------------------------------------------------- in the parent


def _window(records: list[dict[str, Any]], warmup: float, window: float) -> dict[str, Any]:
    if not records:
        return {}
    t0 = min(r["arrival"] for r in records)
    lo, hi = t0 + warmup, t0 + warmup + window
    inside = [r for r in records if lo <= r["arrival"] < hi]
    ok = sum(r["outcome"] == "ok" for r in inside)
    limited = sum(r["status"] == 429 for r in inside)
    bins: collections.Counter[tuple[int, str]] = collections.Counter()
    for r in records:
        slot = int((r["arrival"] - t0) // 5)
        kind = "ok" if r["outcome"] == "ok" else "429" if r["status"] == 429 else "other"
        bins[(slot, kind)] += 1
    return {
        "sent": len(inside),
        "ok": ok,
        "limited": limited,
        "goodput": ok / window * 60,
        "share": limited / len(inside) if inside else 0.0,
        "total_sent": len(records),
        "total_ok": sum(r["outcome"] == "ok" for r in records),
        "total_limited": sum(r["status"] == 429 for r in records),
        "bins": bins,
    }


def run(quick: bool) -> Section:
    q = 600
    warmup, window = (10.0, 15.0) if quick else (30.0, 60.0)
    duration = warmup + window + 2.0
    section = Section(
        "ratelimit",
        "5. Rate-limited goodput",
        f"Mock quota Q = {q} requests/min (`--rpm {q}`, bucket full at start), latency "
        f"`{LATENCY}`; each client runs {duration:.0f} s against its own mock process, both "
        f"at once.  Measured over the window {warmup:.0f} s .. {warmup + window:.0f} s "
        "after the first request (server-side request log)."
        + ("  Quick mode: shorter warm-up and window." if quick else ""),
    )
    table = Table(
        f"Q = {q}/min, window {window:.0f} s after {warmup:.0f} s of warm-up",
        ["client", "goodput /min", "% of Q", "429s in window", "429 share", "requests in window",
         f"whole run: sent / ok / 429 ({duration:.0f} s)", "client-side failures"],
    )  # fmt: skip
    labels = {"paradigm-trio": "**paradigm-trio** (adaptive, defaults)",
              "openai": "openai AsyncOpenAI (default retries)"}  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mock.json"
        config.write_text(json.dumps({"rpm": q, "latency": LATENCY, "seed": 0, "max_log": 10**6}))
        with (
            mock_process("--config", str(config)) as pt_server,
            mock_process("--config", str(config)) as oa_server,
        ):
            servers = {"paradigm-trio": pt_server, "openai": oa_server}
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                futures = {
                    peer: pool.submit(
                        run_worker,
                        {
                            "kind": "ratelimit",
                            "peer": peer,
                            "url": server.url,
                            "duration": duration,
                        },
                        timeout=duration + 60,
                    )
                    for peer, server in servers.items()
                }
                clients = {peer: f.result() for peer, f in futures.items()}
            time.sleep(0.5)
            for peer, server in servers.items():
                records = http_json("GET", server.root_url + "/_mock/requests", timeout=60)["data"]
                results[peer] = _window(records, warmup, window)
    for peer in ("openai", "paradigm-trio"):
        w, client = results.get(peer, {}), clients[peer]
        if "failed" in client or not w:
            table.rows.append([labels[peer], None, None, None, None, None, None,
                               client.get("failed", "no requests")])  # fmt: skip
            continue
        failures = client["failures"]
        detail = ", ".join(f"{k} {v}" for k, v in sorted(client["errors"].items()))
        table.rows.append([
            labels[peer], w["goodput"], f"{w['goodput'] / q:.0%}", w["limited"],
            f"{w['share']:.1%}", w["sent"],
            f"{w['total_sent']:,} / {w['total_ok']:,} / {w['total_limited']:,}",
            f"{failures:,}" + (f" ({detail})" if detail else ""),
        ])  # fmt: skip
    section.tables.append(table)
    pt = results.get("paradigm-trio", {})
    pt_client = clients.get("paradigm-trio", {})
    if pt_client.get("timeline"):
        table.notes.append(
            "paradigm-trio effective concurrency (limiter size) every 2 s: "
            + ", ".join(str(c) for _, c in pt_client["timeline"])
        )
    if pt:
        met_share = pt["share"] <= 0.05
        met_goodput = pt["goodput"] >= 0.9 * q
        section.targets.append(
            Target(
                "rate limit: 429s <= 5 % of requests, goodput >= 90 % of Q",
                f"<= 5 %, >= {0.9 * q:.0f}/min",
                f"{pt['share']:.1%} 429s, {pt['goodput']:.0f}/min ({pt['goodput'] / q:.0%} of Q)",
                met_share and met_goodput,
            )
        )
        if not (met_share and met_goodput):
            section.profile = _timeline(pt, pt_client)
    else:
        section.targets.append(
            Target("rate limit: 429s <= 5 %, goodput >= 90 % of Q", "-", "not measured", None)
        )
    return section


def _timeline(w: dict[str, Any], client: dict[str, Any]) -> str:
    bins = w["bins"]
    slots = sorted({slot for slot, _ in bins})
    lines = ["paradigm-trio, server-side arrivals per 5 s (ok / 429 / other):"]
    lines += [
        f"  {5 * s:4d}-{5 * s + 5:<4d} s  {bins[(s, 'ok')]:5d} / {bins[(s, '429')]:5d} / "
        f"{bins[(s, 'other')]:3d}"
        for s in slots
    ]
    lines.append(f"client retries by cause: {client.get('client_retries')}")
    return "\n".join(lines)
