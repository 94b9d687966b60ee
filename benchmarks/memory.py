"""Scenario 4: memory of a huge batch, peak RSS growth over an empty-batch baseline.

Each measurement is its own process.  In it, the peer's code path first runs an *empty*
batch (client created, everything imported, nothing sent); the peak RSS then
(``VmHWM`` in ``/proc/self/status``) is the baseline.  Then it runs the real batch at
concurrency 100 and the figure is the new peak minus the baseline.

* paradigm-trio: ``Client.stream_batch`` over a lazy generator of message lists,
  against ``httpx2.MockTransport`` answering a fixed completion (no sockets), each
  result dropped once read: the whole million.
* The peers have no batch API; the natural code is the reference page's: build the list
  of requests, start one task per request (``asyncio.gather``, or a trio nursery with a
  ``CapacityLimiter``), keep the responses.  That grows with N by construction, so it
  is measured on a smaller N and extrapolated linearly to a million (stated in the
  table).  aiohttp has no mock transport: it talks to the raw server over loopback.
* For fairness, one more row: a hand-written lazy pool of 100 trio workers over httpx2
  (responses dropped), which is also flat: laziness is what bounds memory, and
  paradigm-trio gives it with retries, limits and results included.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._common import API_KEY, MODEL, Section, Table, Target, messages, raw_server, run_worker
from ._rawserver import BODY

CONCURRENCY = 100
FAKE_URL = "http://bench.invalid/api/v2"

#: (key, label, pattern, lazy)
PATTERNS = (
    ("aiohttp", "seed recipe: aiohttp + asyncio.gather", "list + gather, keeps responses", False),
    ("openai", "openai AsyncOpenAI under trio", "list + task per request, keeps responses", False),
    ("httpx", "httpx 0.28 under trio", "list + task per request, keeps responses", False),
    ("httpx2", "httpx2 under trio", "list + task per request, keeps responses", False),
    ("httpx2-pool", "httpx2 under trio", "hand-written lazy pool, drops responses", True),
    ("paradigm-trio", "**paradigm-trio**", "`stream_batch` over a generator", True),
)


# ---------------------------------------------------------------------- in the worker


def _mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def _lazy(n: int) -> Iterator[list[dict[str, str]]]:
    return (messages(i) for i in range(n))


async def _pt(n: int, samples: list[float]) -> int:
    import httpx2

    import paradigm_trio as pt

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=BODY, headers={"content-type": "application/json"})

    ok = 0
    every = max(n // 10, 1)
    async with pt.Client(
        api_key=API_KEY, base_url=FAKE_URL, transport=httpx2.MockTransport(handler),
        limits=pt.Limits(concurrency=CONCURRENCY),
    ) as client:  # fmt: skip
        for size in (0, n):  # the empty batch first: the baseline
            async with client.stream_batch(_lazy(size), max_tokens=150) as results:
                async for result in results:
                    ok += result.ok
                    if result.index % every == 0:
                        samples.append(_mb("VmRSS"))
            if size == 0:
                gc.collect()
                samples.append(_mb("VmHWM"))
    return ok


async def _trio_peer(peer: str, n: int, samples: list[float]) -> int:
    import trio

    if peer == "openai":
        from ._peers import openai_http_module

        module = openai_http_module()
    elif peer == "httpx":
        import httpx as module
    else:
        import httpx2 as module

    def handler(request: Any) -> Any:
        return module.Response(200, content=BODY, headers={"content-type": "application/json"})

    transport = module.MockTransport(handler)
    results: list[Any] = []
    if peer == "openai":
        import openai

        http = openai.DefaultAsyncHttpxClient(transport=transport)
        client: Any = openai.AsyncOpenAI(api_key=API_KEY, base_url=FAKE_URL, http_client=http)

        async def send(msgs: Any) -> Any:
            return await client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=150)
    else:
        client = module.AsyncClient(transport=transport, base_url=FAKE_URL)

        async def send(msgs: Any) -> Any:
            body = {"model": MODEL, "messages": msgs, "max_tokens": 150}
            response = await client.post("/chat/completions", json=body)
            return response.json()

    async with client:
        for size in (0, n):
            if peer == "httpx2-pool":
                inputs = _lazy(size)

                async def worker() -> None:
                    for msgs in inputs:  # noqa: B023 - the generator of this round
                        await send(msgs)

                async with trio.open_nursery() as nursery:
                    for _ in range(CONCURRENCY):
                        nursery.start_soon(worker)
            else:
                batch = [messages(i) for i in range(size)]  # the recipe's messages_batch
                limiter = trio.CapacityLimiter(CONCURRENCY)

                async def one(msgs: Any) -> None:
                    async with limiter:  # noqa: B023 - the limiter of this round
                        results.append(await send(msgs))

                async with trio.open_nursery() as nursery:
                    for msgs in batch:
                        nursery.start_soon(one, msgs)
                del batch
            if size == 0:
                gc.collect()
                samples.append(_mb("VmHWM"))
    return n if peer == "httpx2-pool" else len(results)


async def _aiohttp(url: str, n: int, samples: list[float]) -> int:
    import asyncio

    import aiohttp

    semaphore = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    ok = 0
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(msgs: Any) -> Any:
            body = {"model": MODEL, "messages": msgs, "max_tokens": 150}
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with (
                semaphore,
                session.post(url + "/chat/completions", json=body, headers=headers) as r,
            ):
                return await r.json()

        for size in (0, n):
            batch = [messages(i) for i in range(size)]
            responses = await asyncio.gather(*(send(m) for m in batch))
            ok = len(responses)
            if size == 0:
                gc.collect()
                samples.append(_mb("VmHWM"))
    return ok


def measure(task: dict[str, Any]) -> dict[str, Any]:
    peer, n = task["peer"], task["n"]
    samples: list[float] = []
    start = time.perf_counter()
    if peer == "paradigm-trio":
        import trio

        ok = trio.run(_pt, n, samples)
        baseline = samples.pop(0)
    elif peer == "aiohttp":
        import asyncio

        ok = asyncio.run(_aiohttp(task["url"], n, samples))
        baseline = samples.pop(0)
    else:
        import trio

        ok = trio.run(_trio_peer, peer, n, samples)
        baseline = samples.pop(0)
    peak = _mb("VmHWM")
    return {
        "ok": ok,
        "n": n,
        "baseline": baseline,
        "peak": peak,
        "growth": peak - baseline,
        "rss_samples": samples,
        "wall": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------- in the parent


def run(quick: bool) -> Section:
    n_pt = 100_000 if quick else 1_000_000
    n_peer = 5_000 if quick else 30_000
    million = 1_000_000
    section = Section(
        "memory",
        "4. Memory: a lazy batch of a million requests",
        f"Peak RSS growth over an empty-batch baseline in the same process, one process per "
        f"row, concurrency {CONCURRENCY}.  paradigm-trio runs the full {n_pt:,}-request "
        f"batch; the task-per-request peers run {n_peer:,} and are extrapolated linearly to "
        f"1,000,000 (their memory is proportional to N by construction).  Transport: "
        "`httpx2.MockTransport` / `httpx.MockTransport` returning a fixed completion; "
        "aiohttp (no mock transport) talks to the raw server over loopback."
        + ("  Quick mode: 100,000 requests, not a million." if quick else ""),
    )
    table = Table(
        "Peak RSS growth",
        ["client", "pattern", "requests", "baseline MB", "growth MB", "MB per 10k requests",
         f"growth at {million:,} (MB)", "ok", "wall s"],
        align="llrrrrrrr",
    )  # fmt: skip
    pt_growth = None
    pt_samples: list[float] = []
    with raw_server(0.0) as server:
        for key, label, pattern, lazy in PATTERNS:
            n = n_pt if key == "paradigm-trio" else n_peer
            result = run_worker(
                {"kind": "memory", "peer": key, "n": n, "url": server.url}, timeout=900
            )
            if "failed" in result:
                table.rows.append([label, pattern, n, None, None, None, None, result["failed"],
                                   None])  # fmt: skip
                continue
            growth = result["growth"]
            per_10k = growth / n * 10_000
            at_million: object = growth if n >= million else (
                f"{growth:.1f} (flat: measured)" if lazy else growth / n * million
            )  # fmt: skip
            table.rows.append([label, pattern, n, result["baseline"], growth, per_10k,
                               at_million, result["ok"], result["wall"]])  # fmt: skip
            if key == "paradigm-trio":
                pt_growth = growth
                pt_samples = result["rss_samples"]
    if pt_samples:
        table.notes.append(
            "paradigm-trio RSS (MB) at each tenth of the batch: "
            + ", ".join(f"{s:.0f}" for s in pt_samples)
        )
    section.tables.append(table)
    section.targets.append(
        Target(
            f"memory growth, lazy {n_pt:,}-request batch",
            "< 50 MB" + (" (target is for 1,000,000)" if quick else ""),
            "not measured" if pt_growth is None else f"{pt_growth:.1f} MB",
            None if pt_growth is None else pt_growth < 50,
        )
    )
    return section
