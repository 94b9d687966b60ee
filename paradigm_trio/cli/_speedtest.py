"""``paradigm-trio speed-test``: the reference page's comparison, done right.

The same welcome prompts are sent one by one, then concurrently through one client; the
report gives both wall times, the improvement factor, and the *ideal* factor for the
latencies observed (sequential time divided by the slowest single request), so you can see
how close to ideal the concurrent run came.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack

import trio

import paradigm_trio as pt

from ._client_args import ClientRefused, check_client, cli_words
from ._embedded import server_of

NAMES = [
    "Alice", "Bob", "Charlie", "David", "Emma", "Frank", "Grace", "Hannah", "Ian", "Jessica",
    "Kevin", "Linda", "Michael", "Nancy", "Olivia", "Peter", "Quincy", "Rachel", "Samuel",
    "Tiffany",
]  # fmt: skip

PROMPT = (
    "Say hello to the new user on Paradigm! Give a short one-sentence highly personalized "
    "welcome to: {name}"
)

MOCK_LATENCY = "lognormal:0.5,0.25"


def prompts(n: int) -> list[list[dict[str, str]]]:
    names = [NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else f" {i // len(NAMES) + 1}")
             for i in range(n)]  # fmt: skip
    return [[{"role": "user", "content": PROMPT.format(name=name)}] for name in names]


async def _open_client(stack: AsyncExitStack, args: argparse.Namespace) -> pt.Client:
    """Start the embedded mock if ``--mock``, then open the client; ``stack`` closes both.

    Blocks while the mock server starts.
    """
    api_key, base_url = await server_of(stack, args, latency=MOCK_LATENCY, seed=args.seed)
    if args.mock:
        print(f"Embedded mock server at {base_url} (latency {MOCK_LATENCY}: median 0.5 s)")
    return await stack.enter_async_context(
        pt.Client(
            api_key=api_key,
            base_url=base_url,
            limits=pt.Limits(concurrency=args.concurrency),
            **({"model": args.model} if args.model else {}),
            **args.network,
        )
    )


async def _time_sequential(client: pt.Client, batch: list[list[dict[str, str]]]) -> float:
    """Send the prompts one by one; blocks for each in turn. The wall time."""
    print(f"Sending {len(batch)} requests one by one...")
    t0 = trio.current_time()
    for messages in batch:
        await client.chat(messages, temperature=0.4, max_tokens=150)
    sequential = trio.current_time() - t0
    print(f"Synchronous execution took {sequential:.2f} seconds.")
    return sequential


async def _time_concurrent(client: pt.Client, batch: list[list[dict[str, str]]],
                           concurrency: int) -> tuple[pt.BatchResults, float]:  # fmt: skip
    """Send the prompts concurrently; blocks until all are done. The results and wall time."""
    print(f"Sending {len(batch)} requests concurrently (concurrency {concurrency})...")
    t0 = trio.current_time()
    results = await client.chat_batch(batch, temperature=0.4, max_tokens=150)
    concurrent = trio.current_time() - t0
    print(f"Asynchronous execution took {concurrent:.2f} seconds.")
    return results, concurrent


def _print_factors(results: list[pt.BatchResult], size: int, concurrency: int,
                   sequential: float, concurrent: float) -> None:  # fmt: skip
    """The improvement factor, and the ideal one for the latencies observed."""
    # The floor for the concurrent run: its slowest request, once per wave.
    waves = -(-size // concurrency)
    slowest = max(r.elapsed for r in results)
    ideal_time = slowest * waves
    print(f"Improvement factor: {sequential / concurrent:.2f}")
    print(
        f"Ideal factor: {sequential / ideal_time:.2f} (the slowest concurrent request took "
        f"{slowest:.2f} s; {waves} wave(s) of {concurrency})"
    )
    print(f"Overhead over ideal: {concurrent / ideal_time - 1:+.1%}")


def _print_replies(results: list[pt.BatchResult]) -> None:
    print()
    for r in results:
        if r.completion is not None:
            print(f"- {r.completion.text}")


def _report_failures(results: list[pt.BatchResult]) -> int:
    """List the failed requests on stderr; the exit code."""
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} request(s) failed:", file=sys.stderr)
        for r in failed:
            print(f"  #{r.index}: {r.error}", file=sys.stderr)
        return 1
    return 0


async def _speed_test(args: argparse.Namespace) -> int:
    """Both runs through one client; blocks until both are over."""
    async with AsyncExitStack() as stack:
        client = await _open_client(stack, args)
        batch = prompts(args.n)
        sequential = await _time_sequential(client, batch)
        results, concurrent = await _time_concurrent(client, batch, args.concurrency)
        _print_factors(results, len(batch), args.concurrency, sequential, concurrent)
        if not args.no_replies:
            _print_replies(results)
        return _report_failures(results)


def run_speed_test(args: argparse.Namespace) -> int:
    try:
        args.network = check_client(args)
    except ClientRefused as exc:
        print(f"paradigm-trio speed-test: {exc}", file=sys.stderr)
        return 2
    try:
        with pt.fewer_collections():
            return trio.run(_speed_test, args)
    except pt.ConfigurationError as exc:
        print(f"paradigm-trio speed-test: {cli_words(str(exc))}", file=sys.stderr)
        return 2
    except pt.ParadigmError as exc:
        print(f"paradigm-trio speed-test: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
