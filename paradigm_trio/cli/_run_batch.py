"""``paradigm-trio batch``: run a JSONL file, resumably.

Resume: the output is append-only and each record is written whole and flushed, so after
a crash, ``kill -9`` or Ctrl-C the file holds complete records (plus at most one partial
last line, cut off on the next run).  Rerunning the same command skips every ``custom_id``
already in the output; ``--retry-failed`` also removes the failed records first so they
run again.  A manifest (``OUT.jsonl.manifest.json``) records the input's SHA-256 and the
settings; a resume with a different input is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO, Any

import trio

import paradigm_trio as pt

from ._batchfile import (
    InputError,
    InputLine,
    Manifest,
    file_digest,
    invalid_record,
    read_done,
    read_input,
    result_line,
    write_line,
    write_record,
)

MOCK_LATENCY = "lognormal:0.2,0.3"


def _fail(message: str) -> int:
    print(f"paradigm-trio batch: {message}", file=sys.stderr)
    return 2


def _scan(path: Path) -> tuple[str, int]:
    """SHA-256 and number of non-blank lines, in one streaming pass."""
    lines = 0
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                lines += 1
    return file_digest(path), lines


class _Progress:
    """A redrawn status line on a terminal, plain periodic lines otherwise."""

    def __init__(self, total: int, already: int, stream: IO[str], quiet: bool) -> None:
        self.total = total
        self.already = already
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.retrying = 0
        self.interval = 0.2 if self.tty else 10.0
        self._last = -math.inf
        self._stats: pt.BatchStatistics | None = None
        self._parts: dict[str, pt.BatchStatistics] = {}

    def updater(self, kind: str) -> Callable[[pt.BatchStatistics], None]:
        """The ``on_progress`` of one of the batches (chat, embeddings) of a run."""

        def update(stats: pt.BatchStatistics) -> None:
            self._parts[kind] = stats
            self.update(_combined(list(self._parts.values())))

        return update

    def on_event(self, event: pt.Event) -> None:
        if isinstance(event, pt.RetryScheduled):
            self.retrying += 1
        elif isinstance(event, pt.AttemptStarted) and event.attempt > 1:
            self.retrying = max(0, self.retrying - 1)

    def update(self, stats: pt.BatchStatistics, *, force: bool = False) -> None:
        self._stats = stats
        if self.quiet:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        done = self.already + stats.done
        rate = stats.done / stats.elapsed if stats.elapsed > 0 else 0.0
        remaining = max(self.total - done, 0)
        eta = f"{remaining / rate:.0f}s" if rate > 0 and remaining else "-"
        pct = f"{done / self.total:.0%}" if self.total else "100%"
        line = (
            f"{done}/{self.total} {pct} | ok {stats.succeeded} failed {stats.failed}"
            f" | in flight {stats.in_flight} retrying {self.retrying}"
            f" | {rate * 60:.0f} req/min | ETA {eta}"
        )
        if self.tty:
            width = 30
            filled = int(width * done / self.total) if self.total else width
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {line}\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


def _summary(
    stats: pt.BatchStatistics, skipped: int, invalid: int, failures_total: int
) -> dict[str, Any]:
    return {
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
        "invalid_lines": invalid,
        "skipped_already_done": skipped,
        "failed_in_output": failures_total,
        "retries": stats.retries,
        "retries_by_cause": dict(stats.retries_by_cause),
        "latency_seconds": {
            "p50": stats.latency_p50,
            "p90": stats.latency_p90,
            "p99": stats.latency_p99,
        },
        "tokens": {
            "prompt": stats.prompt_tokens,
            "completion": stats.completion_tokens,
            "total": stats.total_tokens,
            "unknown_usage": stats.unknown_usage,
        },
        "elapsed_seconds": round(stats.elapsed, 3),
        "effective_requests_per_minute": round(stats.requests_per_minute, 1),
        "effective_tokens_per_minute": round(stats.tokens_per_minute, 1),
    }


def _print_summary(summary: dict[str, Any], output: Path, interrupted: bool) -> None:
    p = sys.stderr
    lat = summary["latency_seconds"]

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}s"

    print(
        f"{'Interrupted' if interrupted else 'Done'}: {summary['succeeded']} succeeded, "
        f"{summary['failed']} failed, {summary['cancelled']} cancelled, "
        f"{summary['invalid_lines']} invalid line(s), "
        f"{summary['skipped_already_done']} already done (skipped)",
        file=p,
    )
    causes = ", ".join(f"{k}: {v}" for k, v in summary["retries_by_cause"].items()) or "none"
    print(f"Retries: {summary['retries']} ({causes})", file=p)
    print(f"Latency: p50 {fmt(lat['p50'])}, p90 {fmt(lat['p90'])}, p99 {fmt(lat['p99'])}", file=p)
    tokens = summary["tokens"]
    unknown = (
        f"; {tokens['unknown_usage']} success(es) without usage, not counted"
        if tokens["unknown_usage"]
        else ""
    )
    print(
        f"Tokens: {tokens['total']} ({tokens['prompt']} prompt, "
        f"{tokens['completion']} completion{unknown}); "
        f"{summary['effective_requests_per_minute']:.0f} req/min, "
        f"{summary['effective_tokens_per_minute']:.0f} tokens/min "
        f"over {summary['elapsed_seconds']:.1f}s",
        file=p,
    )
    print(f"Results: {output}", file=p)
    if interrupted:
        print("Rerun the same command to resume where it stopped.", file=p)
    elif summary["failed_in_output"]:
        retryable = summary["failed_in_output"] - summary["invalid_in_output"]
        if retryable:
            print(
                f"{retryable} request(s) in the output failed; rerun with --retry-failed to "
                "try them again.",
                file=p,
            )
        if summary["invalid_in_output"]:
            print(
                f"{summary['invalid_in_output']} input line(s) are invalid (see the errors "
                "above); fix them in a new input file.",
                file=p,
            )


def _count_failures(path: Path) -> tuple[int, int]:
    """Failed records in the output, and how many of them are invalid input lines."""
    failures = invalid = 0
    with path.open("rb") as f:
        for line in f:
            try:
                error = json.loads(line).get("error")
            except (ValueError, AttributeError):
                continue
            if error is not None:
                failures += 1
                invalid += isinstance(error, dict) and error.get("code") == "invalid_request"
    return failures, invalid


class _Requests:
    """The input's requests still to send; skips those done, records the invalid ones."""

    def __init__(
        self, input_path: Path, done: set[str], out: IO[bytes], progress: _Progress
    ) -> None:
        self.input_path = input_path
        self.done = done
        self.out = out
        self.progress = progress
        self.invalid = 0
        self.skipped = 0

    def requests(self) -> Iterator[pt.ChatRequest | pt.EmbeddingRequest]:
        item: InputLine
        for item in read_input(self.input_path):
            if item.custom_id in self.done:
                self.skipped += 1
                continue
            if item.request is None:
                self.invalid += 1
                self.progress.already += 1
                print(f"line {item.line}: {item.problem} (not sent)", file=sys.stderr)
                write_record(self.out, invalid_record(item))
                continue
            yield item.request


class _Interrupt:
    """SIGINT and SIGTERM cancel ``batch_scope``: a clean stop that closes the output."""

    def __init__(self) -> None:
        self.batch_scope = trio.CancelScope()
        self.interrupted = False

    async def watch(self) -> None:
        """Wait for signals, forever: blocks until cancelled (when the batch is over)."""
        # Until the batch is over: a second Ctrl-C must not interrupt the
        # clean stop that the first one started.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self.interrupted:
                    print("Stopping; the output is being closed.", file=sys.stderr)
                self.interrupted = True
                self.batch_scope.cancel()


async def _open_client(
    stack: AsyncExitStack, args: argparse.Namespace, progress: _Progress
) -> pt.Client:
    """Start the embedded mock if ``--mock``, then open the client; ``stack`` closes both.

    Blocks while the mock server starts.
    """
    api_key = None
    base_url = args.base_url
    if args.mock:
        from ._embedded import MOCK_API_KEY, embedded_mock

        base_url = await stack.enter_async_context(embedded_mock(latency=MOCK_LATENCY))
        api_key = MOCK_API_KEY
    retry = pt.RetryPolicy(attempts=args.max_attempts) if args.max_attempts else None
    timeouts = pt.Timeouts(attempt=args.timeout) if args.timeout else None
    return await stack.enter_async_context(
        pt.Client(
            api_key=api_key,
            base_url=base_url,
            retry=retry,
            timeouts=timeouts,
            limits=pt.Limits(
                concurrency=args.concurrency,
                requests_per_minute=args.rpm,
                tokens_per_minute=args.tpm,
            ),
            on_event=progress.on_event,
            **({"model": args.model} if args.model else {}),
        )
    )


async def _send(client: pt.Client, requests: Iterator[pt.ChatRequest | pt.EmbeddingRequest],
                progress: _Progress, out: IO[bytes],
                batch_scope: trio.CancelScope) -> pt.BatchStatistics:  # fmt: skip
    """Send the batch, appending each result to ``out`` as it completes.

    Chat lines and embeddings lines run as two batches at once, on the same client (its
    limits hold for both), fed from one reading of the input.  Blocks until every request
    is done, or until ``batch_scope`` is cancelled (on a signal), which stops the batch;
    either way returns the statistics so far (of both batches together).
    """
    chat_send, chat_receive = trio.open_memory_channel[pt.ChatRequest](0)
    embed_send, embed_receive = trio.open_memory_channel[pt.EmbeddingRequest](0)
    streams: dict[str, pt.BatchStream | pt.EmbeddingStream] = {}

    async def dispatch() -> None:
        async with chat_send, embed_send:
            for request in requests:
                if isinstance(request, pt.EmbeddingRequest):
                    await embed_send.send(request)
                else:
                    await chat_send.send(request)

    async def record(kind: str, batch: Any) -> None:
        async with batch as results:
            streams[kind] = results
            async for result in results:
                custom_id = result.custom_id or f"index-{result.index}"
                answer = result.completion if kind == "chat" else result.embeddings
                write_line(
                    out,
                    result_line(custom_id, answer, result.error, result.attempts,
                                result.elapsed, result.request),
                )  # fmt: skip

    with batch_scope:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(dispatch)
                nursery.start_soon(
                    record, "chat",
                    client.stream_batch(chat_receive, on_progress=progress.updater("chat")),
                )  # fmt: skip
                nursery.start_soon(
                    record, "embeddings",
                    client.stream_embed_batch(
                        embed_receive, on_progress=progress.updater("embeddings")
                    ),
                )  # fmt: skip
        except BaseExceptionGroup as group:
            # What stopped the run (the output broken, say), without the nursery's wrapping.
            if len(group.exceptions) == 1:
                exc = group.exceptions[0]
                raise exc from exc.__cause__
            raise
    return _combined([stream.statistics() for stream in streams.values()])


def _combined(parts: list[pt.BatchStatistics]) -> pt.BatchStatistics:
    """The statistics of the chat and embeddings batches as one: counts, tokens and rates
    added up; the latency percentiles are those of the batch with more successes."""
    if not parts:
        return _EMPTY
    if len(parts) == 1:
        return parts[0]
    main = max(parts, key=lambda s: s.succeeded)
    causes: dict[str, int] = {}
    for part in parts:
        for cause, count in part.retries_by_cause.items():
            causes[cause] = causes.get(cause, 0) + count
    summed = {
        name: sum(getattr(part, name) for part in parts)
        for name in ("submitted", "done", "succeeded", "failed", "cancelled", "in_flight",
                     "retries", "prompt_tokens", "completion_tokens", "total_tokens",
                     "requests_per_minute", "tokens_per_minute", "unknown_usage")
    }  # fmt: skip
    return dataclasses.replace(
        main,
        retries_by_cause=causes,
        elapsed=max(part.elapsed for part in parts),
        **summed,
    )


_EMPTY = pt.BatchStatistics(
    submitted=0, done=0, succeeded=0, failed=0, cancelled=0, in_flight=0, retries=0,
    retries_by_cause={}, prompt_tokens=0, completion_tokens=0, total_tokens=0,
    latency_p50=None, latency_p90=None, latency_p99=None, elapsed=0.0,
    requests_per_minute=0.0, tokens_per_minute=0.0,
)  # fmt: skip


async def _run(args: argparse.Namespace, input_path: Path, output: Path, total: int,
               done: set[str]) -> tuple[dict[str, Any], bool]:  # fmt: skip
    """Run the batch into ``output``; blocks until it is over or stopped by a signal."""
    progress = _Progress(total, len(done), sys.stderr, args.quiet)
    interrupt = _Interrupt()
    with output.open("ab") as out:
        pending = _Requests(input_path, done, out, progress)
        async with AsyncExitStack() as stack:
            client = await _open_client(stack, args, progress)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(interrupt.watch)
                    stats = await _send(
                        client, pending.requests(), progress, out, interrupt.batch_scope
                    )
                    progress.update(stats, force=True)
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # What stopped the batch (the output broken, say), without the nursery's
                # wrapping: run_batch reports it in one line.
                if len(group.exceptions) == 1:
                    exc = group.exceptions[0]
                    raise exc from exc.__cause__
                raise
    progress.close()
    failures, invalid_in_output = _count_failures(output)
    summary = _summary(stats, pending.skipped, pending.invalid, failures)
    summary["invalid_in_output"] = invalid_in_output
    summary["interrupted"] = interrupt.interrupted
    return summary, interrupt.interrupted


class _Refused(Exception):
    """A reason not to run: ``paradigm-trio batch: <reason>`` on stderr, exit code 2."""


def _check_paths(input_path: Path, output: Path) -> None:
    if not input_path.is_file():
        raise _Refused(f"cannot read {input_path}: no such file")
    if output.resolve() == input_path.resolve():
        raise _Refused("the output must not be the input file")
    if not output.parent.is_dir():
        raise _Refused(f"cannot write {output}: folder {output.parent} does not exist")


def _load_manifest(
    output: Path, input_path: Path, digest: str, settings: dict[str, Any]
) -> Manifest | None:
    """The output's manifest, if any, checked against this input and these settings."""
    try:
        manifest = Manifest.load(output)
    except InputError as exc:
        raise _Refused(str(exc)) from None
    if manifest is not None and manifest.input_sha256 != digest:
        raise _Refused(
            f"{output} holds results of a different input ({manifest.input_name}, "
            f"sha256 {manifest.input_sha256[:12]}...) than {input_path} "
            f"(sha256 {digest[:12]}...); choose another -o, or delete {output} and "
            f"{Manifest.path_for(output)} to start over"
        )
    if manifest is not None and manifest.settings.get("model") != settings["model"]:
        raise _Refused(
            f"{output} was started with --model {manifest.settings.get('model')!r}, not "
            f"{settings['model']!r}; resume with the same --model, or choose another -o"
        )
    if manifest is None and output.exists() and output.stat().st_size > 0:
        raise _Refused(
            f"{output} exists but has no manifest ({Manifest.path_for(output).name}): it was "
            "not written by this command; refusing to append to it"
        )
    return manifest


def _check_strict(input_path: Path) -> None:
    """``--strict``: print the first invalid lines and refuse if there is any."""
    problems = [item for item in read_input(input_path) if item.problem is not None]
    if problems:
        for item in problems[:50]:
            print(f"line {item.line}: {item.problem}", file=sys.stderr)
        raise _Refused(f"--strict: {len(problems)} invalid line(s); nothing was sent")


def _read_done(output: Path, retry_failed: bool) -> set[str]:
    """The ``custom_id`` values already in the output (less the failed, to retry them)."""
    try:
        done, dropped = read_done(output, keep_failed=not retry_failed)
    except OSError as exc:
        raise _Refused(f"cannot read {output}: {exc.strerror or exc}") from None
    if done:
        print(f"Resuming: {len(done)} request(s) already in {output}", file=sys.stderr)
    if dropped:
        print(f"--retry-failed: {dropped} failed request(s) will run again", file=sys.stderr)
    return done


def _prepare(args: argparse.Namespace, input_path: Path, output: Path) -> tuple[int, set[str]]:
    """Check everything before sending anything; the number of lines and the ids done."""
    _check_paths(input_path, output)
    try:
        digest, total = _scan(input_path)
    except OSError as exc:
        raise _Refused(f"cannot read {input_path}: {exc.strerror or exc}") from None
    settings = {"model": args.model, "mock": bool(args.mock)}
    manifest = _load_manifest(output, input_path, digest, settings)
    if args.strict:
        _check_strict(input_path)
    if manifest is None:
        Manifest(digest, str(input_path), settings).save(output)
    return total, _read_done(output, args.retry_failed)


def _finish(args: argparse.Namespace, summary: dict[str, Any], output: Path,
            interrupted: bool) -> int:  # fmt: skip
    """Print the summary, write the report; the exit code."""
    _print_summary(summary, output, interrupted)
    if args.report:
        Path(args.report).write_text(json.dumps(summary, indent=2) + "\n")
    if interrupted:
        return 130
    return 1 if summary["failed_in_output"] else 0


def run_batch(args: argparse.Namespace) -> int:
    input_path = Path(args.input)
    output = Path(args.output)
    try:
        total, done = _prepare(args, input_path, output)
    except _Refused as exc:
        return _fail(str(exc))
    try:
        summary, interrupted = trio.run(_run, args, input_path, output, total, done)
    except pt.ConfigurationError as exc:
        return _fail(f"{exc} (or use --mock)")
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except OSError as exc:
        return _fail(f"I/O error: {exc}")
    return _finish(args, summary, output, interrupted)
