"""Throughput of the mock server, in-process and as a subprocess (a benchmark, not a test).

An httpx2 client drives ``POST /api/v2/chat/completions`` (no latency, no faults)
at a fixed concurrency for a bounded number of requests (or time), first against
``mock_server.serve()`` in the same trio run (client and server share one
thread), then against ``python -m mock_server --port 0`` in a child process
(server on its own core).  Prints a table and the machine it ran on.

    python benchmarks/mock_throughput.py [--requests 4000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx2
import trio

import mock_server as ms

ROOT = Path(__file__).resolve().parents[1]
BODY = {
    "model": "alfred-4.2",
    "messages": [{"role": "user", "content": "Say hello to the new user on Paradigm: Alice"}],
    "max_tokens": 150,
}


@dataclass(frozen=True)
class Result:
    mode: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def drive(url: str, total: int, concurrency: int, max_seconds: float) -> Result:
    """Send up to ``total`` requests at ``concurrency`` (stop early after ``max_seconds``)."""
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    remaining = total

    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        # warm-up: open the connections
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(partial(client.post, "/chat/completions", json=BODY))
        start = trio.current_time()

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0 and trio.current_time() - start < max_seconds:
                remaining -= 1
                sent = trio.current_time()
                try:
                    response = await client.post("/chat/completions", json=BODY)
                    if response.status_code != 200:
                        errors += 1
                except httpx2.HTTPError:
                    errors += 1
                latencies.append(trio.current_time() - sent)

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        elapsed = trio.current_time() - start
    return Result("", len(latencies), errors, elapsed, latencies)


async def in_process(total: int, concurrency: int, max_seconds: float) -> Result:
    async with ms.serve() as server:
        result = await drive(server.url, total, concurrency, max_seconds)
    return Result("in-process", result.requests, result.errors, result.seconds, result.latencies)


async def as_subprocess(total: int, concurrency: int, max_seconds: float) -> Result:
    command = [sys.executable, "-m", "mock_server", "--port", "0"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    assert process.stdout is not None
    try:
        line = b""
        with trio.fail_after(30):
            while b"\n" not in line:
                chunk = await process.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError("the mock process exited before listening")
                line += chunk
        url = line.decode().split("listening on ", 1)[1].strip()
        result = await drive(url, total, concurrency, max_seconds)
    finally:
        process.terminate()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    return Result("subprocess", result.requests, result.errors, result.seconds, result.latencies)


def machine() -> list[str]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    cpu = platform.processor() or platform.machine()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("trio", "hypercorn", "quart", "quart-trio", "httpx2")
    )
    return [
        f"machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}",
        f"python:  {platform.python_implementation()} {platform.python_version()}",
        f"packages: {packages}",
    ]


async def main(args: argparse.Namespace) -> None:
    results = []
    if args.mode in ("both", "in-process"):
        results.append(await in_process(args.requests, args.concurrency, args.max_seconds))
    if args.mode in ("both", "subprocess"):
        results.append(await as_subprocess(args.requests, args.concurrency, args.max_seconds))
    print("\n".join(machine()))
    print(f"load: concurrency {args.concurrency}, up to {args.requests} requests per mode")
    print()
    print(f"| {'mode':<10} | requests | errors | seconds |  req/s | p50 ms | p99 ms |")
    print("|------------|---------:|-------:|--------:|-------:|-------:|-------:|")
    for r in results:
        print(
            f"| {r.mode:<10} | {r.requests:>8} | {r.errors:>6} | {r.seconds:>7.2f} | "
            f"{r.rate:>6.0f} | {statistics.median(r.latencies) * 1000:>6.1f} | "
            f"{r.percentile(0.99):>6.1f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--mode", choices=("both", "in-process", "subprocess"), default="both")
    trio.run(main, parser.parse_args())
