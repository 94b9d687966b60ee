"""The soak: 100,000 requests through the mock with 10 % mixed faults (``nox -s soak``).

Not part of the default run (``tests/soak`` is in ``norecursedirs``): run it with
``nox -s soak`` or ``pytest tests/soak -s``.  ``PARADIGM_SOAK_REQUESTS`` sets the number
of requests (default 100,000; e.g. 10,000 for a quick local check) and
``PARADIGM_SOAK_TIMEOUT`` the time bound in seconds (default 1,200).

The mock runs as a separate process (``python -m mock_server``) so that the client has a
core to itself.  Asserted:

* nothing lost: exactly one result per request, every index once;
* nothing duplicated: for every request, the server logged exactly as many attempts as
  the client reports (``BatchResult.attempts``), and no attempt of any other key;
* everything that could succeed did (a request fails only after ``attempts`` faults in a
  row, which at 10 % per attempt is about one in 100,000 with 5 attempts);
* memory flat: the client's RSS, sampled every half second, grows by less than 100 MB
  after the first 10 % of the requests (the harness keeps 2 bytes per request);
* time bounded: the whole run within ``PARADIGM_SOAK_TIMEOUT``.

The figures are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import array
import collections
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

import paradigm_trio as pt

REQUESTS = int(os.environ.get("PARADIGM_SOAK_REQUESTS", "100000"))
TIMEOUT = float(os.environ.get("PARADIGM_SOAK_TIMEOUT", "1200"))
CONCURRENCY = 64
MAX_RSS_GROWTH = 100 * 1024 * 1024

# 10 % of attempts draw a fault, of every kind a non-streamed request can meet.
FAULTS = {
    "rate_limit": 0.02,
    "server_error": 0.04,
    "reset": 0.01,
    "close": 0.01,
    "malformed": 0.01,
    "truncated": 0.005,
    "hang": 0.005,
}
POLICY = pt.RetryPolicy(attempts=5, initial_delay=0.01, max_delay=0.2, max_retry_after=1.0)
TIMEOUTS = pt.Timeouts(attempt=1.0, connect=5.0, read=5.0)


def key_of(custom_id: str) -> str:
    return "pt-" + hashlib.sha256(custom_id.encode()).hexdigest()[:32]


def rss() -> int:
    """Resident set size of this process, in bytes (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class MockProcess:
    def __init__(self, config: Path) -> None:
        argv = [sys.executable, "-m", "mock_server", "--port", "0", "--config", str(config)]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)(/api/v2)", line)
        assert match, line
        self.root, self.url = match.group(1), match.group(1) + match.group(2)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.root + path, timeout=600) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def requests(n: int) -> Iterator[pt.ChatRequest]:
    for i in range(n):
        yield pt.ChatRequest(
            messages=({"role": "user", "content": f"Soak request {i}"},),
            custom_id=f"soak-{i}",
            max_tokens=16,
        )


def test_soak(tmp_path: Path) -> None:
    config = tmp_path / "mock.json"
    config.write_text(
        json.dumps(
            {
                "seed": 2026,
                "latency": "uniform:0.0,0.02",
                "retry_after": 0.05,
                "faults": FAULTS,
                "max_log": 2 * REQUESTS + 1000,
            }
        )
    )
    mock = MockProcess(config)
    try:
        figures = trio.run(soak, mock.url)
        server_log = mock.get("/_mock/requests")["data"]
        server_stats = mock.get("/_mock/stats")
    finally:
        mock.stop()

    attempts: array.array[int] = figures.pop("attempts")
    seen = collections.Counter(record["key"] for record in server_log)
    lost = figures["results"] != REQUESTS or figures["missing"]
    mismatched = [i for i in range(REQUESTS) if seen.pop(key_of(f"soak-{i}"), 0) != attempts[i]]
    figures["server_requests"] = server_stats["total"]
    figures["server_by_outcome"] = dict(sorted(server_stats["by_outcome"].items()))
    figures["server_max_in_flight"] = server_stats["max_in_flight"]
    figures["client_attempts"] = sum(attempts)
    print_figures(figures)

    assert not lost, "results were lost"
    assert not mismatched, (
        f"{len(mismatched)} request(s) where the server's attempts differ from the client's, "
        f"e.g. soak-{mismatched[0]}"
    )
    assert not seen, f"the server saw {len(seen)} key(s) the batch never sent"
    assert server_stats["total"] == sum(attempts)
    assert figures["failed"] <= max(3, REQUESTS // 20_000), figures["failed_examples"]
    assert figures["rss_growth"] < MAX_RSS_GROWTH


async def soak(url: str) -> dict[str, Any]:
    attempts = array.array("H", bytes(2 * REQUESTS))
    got = bytearray(REQUESTS)
    samples: list[tuple[float, int]] = []
    failed_examples: list[str] = []
    warm = max(1, REQUESTS // 10)
    counts = {"ok": 0, "failed": 0, "results": 0}
    rss_start = rss()

    async def sample_rss() -> None:
        while True:
            samples.append((trio.current_time(), rss()))
            await trio.sleep(0.5)

    with trio.fail_after(TIMEOUT):
        start = trio.current_time()
        warm_at: float | None = None
        async with pt.Client(
            api_key="sk-soak-test",
            base_url=url,
            retry=POLICY,
            timeouts=TIMEOUTS,
            limits=pt.Limits(concurrency=CONCURRENCY),
        ) as client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample_rss)
                async with client.stream_batch(requests(REQUESTS)) as results:
                    async for result in results:
                        counts["results"] += 1
                        got[result.index] += 1
                        attempts[result.index] = result.attempts
                        if result.ok:
                            counts["ok"] += 1
                        else:
                            counts["failed"] += 1
                            if len(failed_examples) < 5:
                                failed_examples.append(f"{result.custom_id}: {result.error!r}")
                        if counts["results"] == warm:
                            warm_at = trio.current_time()
                    statistics = results.statistics()
                nursery.cancel_scope.cancel()
            client_stats = client.statistics()
        elapsed = trio.current_time() - start
    assert warm_at is not None
    after_warm = [value for when, value in samples if when >= warm_at] or [rss()]
    rss_warm = after_warm[0]
    return {
        "requests": REQUESTS,
        "results": counts["results"],
        "missing": sum(1 for c in got if c != 1),
        "succeeded": counts["ok"],
        "failed": counts["failed"],
        "failed_examples": failed_examples,
        "elapsed_s": round(elapsed, 1),
        "requests_per_s": round(REQUESTS / elapsed, 1),
        "retries": statistics.retries,
        "retries_by_cause": dict(sorted(statistics.retries_by_cause.items())),
        "latency_p50_ms": round((statistics.latency_p50 or 0) * 1000, 1),
        "latency_p99_ms": round((statistics.latency_p99 or 0) * 1000, 1),
        "client_in_flight_after": client_stats.in_flight,
        "rss_start_mb": round(rss_start / 2**20, 1),
        "rss_after_warm_up_mb": round(rss_warm / 2**20, 1),
        "rss_max_after_warm_up_mb": round(max(after_warm) / 2**20, 1),
        "rss_end_mb": round(samples[-1][1] / 2**20, 1) if samples else None,
        "rss_growth": max(after_warm) - rss_warm,
        "rss_samples": len(samples),
        "attempts": attempts,
    }


def print_figures(figures: dict[str, Any]) -> None:
    print(f"\nsoak: {figures['requests']:,} requests, 10 % faults {FAULTS}")
    print(f"  python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), finished {time.ctime()}")
    for name, value in figures.items():
        if name == "rss_growth":
            value = f"{value / 2**20:.1f} MB"
        print(f"  {name}: {value}")
