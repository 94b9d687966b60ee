"""Scenario 8: embeddings throughput, with and without packing, against the openai client.

The server is the mock (``python -m mock_server``, fixed latency, no faults) in its own
process: it answers ``/embeddings`` with 1,024-number vectors as base64, which every
client here asks for.  Each client embeds ``N`` short texts (a sentence each) at
concurrency ``C``, in a fresh process; the figures are the wall time (inputs per second)
and the client process's CPU time per input.

* paradigm-trio, ``Client.stream_embed_batch`` with its default packing (64 inputs or
  8,192 estimated tokens per request), and with ``pack_inputs=1`` (one input per request);
* openai ``AsyncOpenAI.embeddings.create`` under trio, one input per request, and with
  the inputs chunked by hand into requests of 64 (what a careful user writes), each from a
  pool of ``C`` worker tasks.  The SDK decodes base64 with numpy when it is installed
  (it is here).
"""

from __future__ import annotations

import math
import time
from typing import Any

import trio

from ._common import API_KEY, Section, Table, mock_process, run_worker
from ._peers import Counts, _pool, openai_http_module

MODEL = "multilingual-e5-large"
CONCURRENCY = 32
LATENCY = 0.05
CHUNK = 64
VARIANTS = (
    ("openai-1", "openai AsyncOpenAI, one input per request"),
    ("openai-64", f"openai AsyncOpenAI, {CHUNK} inputs per request (chunked by hand)"),
    ("pt-1", "paradigm-trio `embed_batch`, `pack_inputs=1`"),
    ("pt-packed", "**paradigm-trio `embed_batch`, packed (default)**"),
)


def text(i: int) -> str:
    return f"Paragraph {i} of the handbook: how to file expenses, topic {i % 37}."


def run(quick: bool) -> Section:
    n = 3_000 if quick else 12_000
    section = Section(
        "embeddings",
        "12. Embeddings throughput, packed and not",
        f"{n:,} short texts (one sentence each) embedded at concurrency {CONCURRENCY} "
        f"against the mock in its own process ({LATENCY * 1000:.0f} ms latency per "
        "request, 1,024-number vectors as base64, no faults); each client in a fresh "
        "process.  *client CPU ms/input* is the client process's CPU time divided by the "
        "inputs; *requests* is how many HTTP requests carried them.",
    )
    table = Table(
        f"embedding {n:,} texts at concurrency {CONCURRENCY}",
        ["client", "inputs/s", "client CPU ms/input", "requests", "wall s", "errors"],
    )
    with mock_process("--latency", f"fixed:{LATENCY}") as server:
        for variant, label in VARIANTS:
            result = run_worker(
                {"kind": "embeddings", "variant": variant, "url": server.url, "n": n,
                 "concurrency": CONCURRENCY},
                timeout=600,
            )  # fmt: skip
            if "failed" in result:
                table.rows.append([label, None, None, None, None, result["failed"]])
                continue
            done = result["ok"]
            table.rows.append([
                label, done / result["wall"], result["cpu"] / max(done, 1) * 1000,
                result["requests"], result["wall"], result["errors"],
            ])  # fmt: skip
    table.notes.append(
        "Packing turns thousands of requests into a few hundred: fewer round trips and "
        "fewer places in a requests-per-minute quota, and less CPU per input on both sides."
    )
    section.tables.append(table)
    return section


async def _paradigm(task: dict[str, Any], counts: Counts) -> int:
    import paradigm_trio as pt

    pack = 1 if task["variant"] == "pt-1" else pt.DEFAULT_PACK_INPUTS
    requests = 0

    def on_event(event: pt.Event) -> None:
        nonlocal requests
        requests += isinstance(event, pt.AttemptStarted)

    async with pt.Client(
        api_key=API_KEY,
        base_url=task["url"],
        limits=pt.Limits(concurrency=task["concurrency"]),
        on_event=on_event,
    ) as client:
        texts = (text(i) for i in range(task["n"]))
        async with client.stream_embed_batch(texts, pack_inputs=pack) as results:
            async for result in results:
                if result.ok and result.vector is not None and len(result.vector) == 1024:
                    counts.ok += 1
                else:
                    counts.fail(result.error or ValueError("bad vector"))
    return requests


async def _openai(task: dict[str, Any], counts: Counts) -> int:
    import openai

    c, n = task["concurrency"], task["n"]
    size = CHUNK if task["variant"] == "openai-64" else 1
    module = openai_http_module()
    http = openai.DefaultAsyncHttpxClient(
        limits=module.Limits(max_connections=c, max_keepalive_connections=c), trust_env=False
    )
    requests = math.ceil(n / size)
    async with openai.AsyncOpenAI(
        api_key=API_KEY, base_url=task["url"], http_client=http
    ) as client:

        async def one(chunk: int) -> None:
            inputs = [text(i) for i in range(chunk * size, min(n, (chunk + 1) * size))]
            answer = await client.embeddings.create(model=MODEL, input=inputs)
            if len(answer.data) != len(inputs) or len(answer.data[0].embedding) != 1024:
                raise ValueError("bad answer")
            counts.ok += len(inputs) - 1  # (_pool counts one per chunk)

        await _pool(requests, c, one, counts)
    return requests


def client_run(task: dict[str, Any]) -> dict[str, Any]:
    """One variant in this (fresh) process: wall, CPU, inputs embedded, requests sent."""
    counts = Counts()
    run = _paradigm if task["variant"].startswith("pt-") else _openai
    wall0, cpu0 = time.perf_counter(), time.process_time()
    requests = trio.run(run, task, counts)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "ok": counts.ok,
        "errors": counts.errors,
        "first_error": counts.first_error,
        "wall": wall,
        "cpu": cpu,
        "requests": requests,
    }
