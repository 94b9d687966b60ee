"""Scenario 8: instructions per request, a figure that does not move with the machine's load.

Wall-clock and CPU-time figures on a shared machine vary by a few percent from run to run.
``valgrind --tool=callgrind`` counts the instructions the client process executes instead:
the same binary, inputs and environment give the same count, whatever else the machine is
doing.  Each client drives the raw server (out of process, not under valgrind) twice, with
``N1`` and ``N2`` requests after the same warm-up; the difference of the two totals divided
by ``N2 - N1`` is the cost of one request, without start-up, imports and warm-up.

Run it alone with ``python -m benchmarks instructions``; it needs ``valgrind`` on the PATH
(Debian's package) and takes a few minutes (a program under callgrind runs about 50 times
slower).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

from ._common import PYTHON, ROOT, Section, Table, Target, child_env, raw_server

CONCURRENCY = 64
PEERS = ("aiohttp", "paradigm-trio")
LABELS = {
    "aiohttp": "seed recipe: aiohttp + asyncio.gather",
    "httpx2": "httpx2 under trio",
    "paradigm-trio": "**paradigm-trio**",
}
_COLLECTED = re.compile(r"Collected : (\d+)")

#: The hot path's history, each step measured with
#: ``benchmarks.instructions.per_request(url, "paradigm-trio", 300, 900)`` on the 2-core
#: Intel Xeon of docs/performance.md (CPython 3.11.7), on 2026-12-02; the aiohttp recipe
#: measured 649,596 in the same way.
HISTORY = (
    "How the hot path got here (paradigm-trio, instructions per request, measured as above "
    "with 300 and 900 requests; the aiohttp recipe: 649,596):",
    "- 2,013,995: the first release's transport (h11) under `httpx2.Request`/`Response`;",
    "- 1,577,966 (-22 %): responses parsed by llhttp (`httptools`), request heads written "
    "by hand; h11 cost 69 us per request and response against 2.6 us for httptools in a "
    "loop of both alone (`_wire`);",
    "- 1,081,788 (-31 %): the fast lane: a plain request on the default transport is written "
    "as bytes once (the common headers encoded when the client opens) and its answer read "
    "without `httpx2` objects (`_lane.FastLane`, `TrioTransport.fetch`); errors and "
    "compressed bodies still become `httpx2.Response`s;",
    "- 959,164 (-11 %): no cancel scope for an infinite deadline (the request's, a batch's "
    "wait for a slot), bare `CancelScope`s instead of `trio.fail_after` for the write and "
    "read timeouts (each scope costs two context managers inside trio);",
    "- 931,101 (-3 %): no breaker or budget call when there is nothing to wait for; the body "
    "shares the request's message copies.",
    "- 994,068 (+7 %, 300 and 1,500 requests, the full run of 2026-12-02): the other "
    "features of this release landed on the same path afterwards (the telemetry and logging "
    "hooks, the batch engine generalised to embeddings, the richer request checks and "
    "completion parsing).  A request costs the same early and late in a run: with the "
    "garbage collector off, 300 to 900 requests and 300 to 1,500 give 987,783 and 996,579.",
    "- 977,156 (-2 %, 2026-12-02, second session, 300 and 900 requests from here on): a "
    "free concurrency slot, batch slot or channel space is taken without a trip through "
    "trio's scheduler (the attempt's socket I/O checkpoints right after);",
    "- 798,004 (-18 %): on a plain TCP connection the request is written with one `send` "
    "of the stdlib socket when it takes it at once, and the answer read with one `recv` "
    "when it is there: trio's stream layers (`SocketStream.send_all`/`receive_some`, "
    "their conflict detectors and error translation) and the write timeout's cancel "
    "scope are skipped; a wait goes through `trio.lowlevel.wait_readable`.  Not for TLS "
    "connections, which go through `trio.SSLStream` as before.",
    "Measured then (done since, issue 30): without the attempt timeout's cancel scope "
    "(`Timeouts.attempt=None`) a request cost 26 k instructions less (807,492 against "
    "781,384).",
    "- 2026-12-07 (issue 30), on a machine other engineers kept busy (load 2-9 on its 2 "
    "cores): the concurrent count moved by +-7 % between runs of the same code (763,006, "
    "776,437, 720,750 and 821,972), and even one request at a time (100 and 400 after a "
    "warm-up) by +-4 % (628,103 and 657,059 for one commit), so each step is judged by "
    "the count of its own code alone (callgrind, a loop of it) and the run as a whole by "
    "several runs.  The steps: `parse_json` of the raw server's answer 63,012 -> 46,851 "
    "(`json.loads`: 43,347; one `bytes.translate` and one `count` instead of "
    "`detect_encoding`, two counts, a translate and three searches); building and "
    "encoding a chat request 140,980 -> 119,814 (encoded once instead of checked and "
    "encoded: -14,247; no ABC checks for a list of dicts and an unset `stop`: -6,919); a "
    "cancel scope with a deadline around an await costs 61,025 in a trio loop, which the "
    "fast lane's attempts no longer pay (`Timeouts.attempt` kept by the lane's own "
    "waits); `embed()` of one input one frame less and a plain chat request's tool rules "
    "looked up once (not measured apart).  One request at a time, whole: 632,337 and "
    "626,102 before; 595,560 once encoded once; 529,120 without the attempt's scope; "
    "526,836 to 536,236 at the end (the aiohttp recipe: 533,618, 1.00x).",
    "- 2026-12-07, later (issue 30): building and encoding a chat request as "
    "`Client.chat` does (`sealed_request` of two messages and no options, then "
    "`encoded`), counted alone (callgrind, a loop of 200 and of 1,200 after 50 warm-up "
    "requests, the difference over 1,000): 124,224 -> 101,101 (-19 %).  The C encoder "
    "that `JSONEncoder.encode` builds on each call is built once (-9,514); the body is "
    "filled from one tuple of the fields, compared with all-`None` at once, instead of 13"
    " `getattr`s, the request's tuple of messages encoded as it is, and an `extra` that "
    "is a dict checked without the ABC (-9,230); the sampling parameters checked only "
    "when one is set, `stop` only when given (-4,379).  Left: the generated `__init__`'s 24 "
    "`object.__setattr__` (about 2 us of 9 in a `timeit` loop), which only a hand-written"
    " `__init__` would avoid, changing the documented signature.",
    "- 2026-12-07, third step (issue 30), on a quiet 2-core AMD EPYC (CPython 3.11.7), "
    "counted with answers that take 2 ms (`raw_server(0.002)`, 300 and 900 requests at "
    "concurrency 64), so that every request waits for its answer as it does against a "
    "real server (with instant answers, one found already there skips the wait, and the "
    "count moves by +-8 % with how often; the recipe's 659,586 in the same way): "
    "749,434 before; 723,095 without a cancel scope for the read timeout (a heap of "
    "deadlines and one watcher task per trio run, `_transport._waits`; the scope alone "
    "cost 43,542: 706,433 with no read timeout at all); 718,511 with two coroutine frames "
    "less in a batch (`settle`, the attempt loop inside `Call.run`); 630,137 once the "
    "records of each request (its completion, choice, message and usage, its attempts, "
    "its batch result, its `ChatRequest`) are built without the frozen `__init__`'s "
    "`object.__setattr__` per field (`_records.builder`; `timeit`: `sealed_request` "
    "10.9 -> 7.5 us, `ChatCompletion.from_json` 6.5 -> 3.4 us).  Then, with instant "
    "answers as above: 607,970 against the recipe's 629,425 (0.97x).  Then 623,026 "
    "once the fast lane writes a small request and reads its head itself (one frame less), "
    "and 569,105 once a batch's workers read their next item themselves instead of a "
    "feeder task that started a task per item (no task to create, no feeder to wake); "
    "with instant answers, 538,917 against the recipe's 631,263 (0.85x).",
    "Not adopted: `orjson`.  JSON encoding and decoding are 2-3 % of the client's profile "
    "(py-spy and cProfile of scenario 2); a faster codec would save less than that, not "
    "worth a dependency.",
)


def count(task: dict[str, Any], timeout: float = 1800) -> int | str:
    """The instructions a worker process executes for ``task``, or why it failed."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        PYTHON, "-m", "benchmarks._worker", json.dumps(task),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=child_env(), cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return f"killed after {timeout:.0f} s"
    match = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        return f"exit {done.returncode}: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    result = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    if result.get("errors"):
        return f"{result['errors']} request(s) failed"
    return int(match.group(1))


def per_request(url: str, peer: str, n1: int, n2: int) -> float | str:
    totals = []
    for n in (n1, n2):
        task = {"kind": "drive", "peer": peer, "url": url, "n": n,
                "concurrency": CONCURRENCY, "warmup": 2 * CONCURRENCY, "limit": 1200}  # fmt: skip
        total = count(task)
        if isinstance(total, str):
            return total
        totals.append(total)
    return (totals[1] - totals[0]) / (n2 - n1)


def run(quick: bool) -> Section:
    n1, n2 = (200, 600) if quick else (300, 1500)
    section = Section(
        "instructions",
        "8. Instructions per request (callgrind)",
        "`benchmarks/instructions.py`: each client drives the raw server (no latency, out of "
        f"process) at concurrency {CONCURRENCY} under `valgrind --tool=callgrind`, once with "
        f"{n1:,} and once with {n2:,} requests after the same warm-up of "
        f"{2 * CONCURRENCY} requests; *instructions/request* is the difference of the two "
        f"totals divided by {n2 - n1:,}.  The count moves far less than CPU time with the "
        "machine's load: it is the figure each optimisation of the hot path is judged by.  "
        "(Since an answer already there is read without a wait, the count varies by 1-2 % "
        "from run to run; compare a few runs of each.)",
    )
    if shutil.which("valgrind") is None:
        section.tables.append(Table("not measured: valgrind is not installed", ["-"]))
        return section
    table = Table(
        f"instructions per request, concurrency {CONCURRENCY}",
        ["client", "instructions/request", "vs aiohttp recipe"],
        align="lrr",
    )
    with raw_server(0.0) as server:
        figures = {peer: per_request(server.url, peer, n1, n2) for peer in PEERS}
    base = figures["aiohttp"]
    for peer in PEERS:
        value = figures[peer]
        if isinstance(value, str):
            table.rows.append([LABELS[peer], value, None])
            continue
        ratio = f"{value / base:.2f}x" if isinstance(base, float) and base > 0 else None
        table.rows.append([LABELS[peer], round(value), ratio])
    table.notes += HISTORY
    section.tables.append(table)
    ours = figures["paradigm-trio"]
    measured = (
        f"{ours / base:.2f}x ({ours:,.0f} against {base:,.0f})"
        if isinstance(ours, float) and isinstance(base, float)
        else "not measured"
    )
    met = ours / base <= 1.1 if isinstance(ours, float) and isinstance(base, float) else None
    section.targets.append(
        Target("instructions per request <= 1.1x the aiohttp recipe's", "<= 1.10x", measured, met)
    )
    return section
