"""``paradigm-trio batch``: run a JSONL file, resumably.

Resume: the output is append-only and each record is written whole and flushed, so after
a crash, ``kill -9`` or Ctrl-C the file holds complete records (plus at most one partial
last line, cut off on the next run).  Rerunning the same command skips every ``custom_id``
already in the output; ``--retry-failed`` also removes the failed records first so they
run again.  A manifest (``OUT.jsonl.manifest.json``) records the input's SHA-256 and the
settings; a resume with a different input is refused.

One run per output: a run holds the output's lock (``OUT.jsonl.lock``, see ``_lock``) from
before it reads the output until it has written its report, so no other run appends to
the output, or rewrites it, meanwhile.  Every path is checked before (``_paths``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO, Any, Literal

import trio

import paradigm_trio as pt

from ._batchfile import (
    InputError,
    InputLine,
    Manifest,
    invalid_record,
    read_done,
    read_input,
    result_line,
    scan_input,
    write_line,
    write_record,
)
from ._causes import EXIT_STOPPED, configuration_fix, failure_groups, stopped_line
from ._client_args import ClientRefused, check_client, cli_words
from ._embedded import server_of
from ._live import Progress, combined
from ._lock import LockUnavailable, OutputLock
from ._logging import LOGGER, configure_logging
from ._paths import PathRefused, check_paths
from ._report import ReportError, require_matplotlib, write_html
from ._shard import Shard, check_worker_args, shard_total, sharded
from ._text import dumps, write_atomic

MOCK_LATENCY = "lognormal:0.2,0.3"


def _fail(message: str) -> int:
    print(f"paradigm-trio batch: {message}", file=sys.stderr)
    return 2


def _summary(
    stats: pt.BatchStatistics, skipped: int, invalid: int, failures_total: int,
    groups: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "failures_by_cause": groups or [],
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
        "invalid_lines": invalid,
        "skipped_already_done": skipped,
        "failed_in_output": failures_total,
        "retries": stats.retries,
        "retries_by_cause": dict(stats.retries_by_cause),
        "deduplicated": stats.deduplicated,
        "cached": stats.cached,
        "hedges": stats.hedges,
        "hedges_won": stats.hedges_won,
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
    if summary["hedges"]:
        print(f"Hedges: {summary['hedges']} sent, {summary['hedges_won']} answered first", file=p)
    if summary["deduplicated"] or summary["cached"]:
        print(
            f"Not sent: {summary['cached']} answered from the cache, "
            f"{summary['deduplicated']} identical to another line",
            file=p,
        )
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
    groups = summary["failures_by_cause"]
    if groups:
        print("Failures in the output, by cause:", file=p)
        for g in groups:
            status = g["status"] if g["status"] is not None else "no response"
            print(f"  {g['count']} x {status} {g['code']}: {g['example']}", file=p)
    print(f"Results: {output}", file=p)
    fix = configuration_fix(groups)
    if interrupted:
        print("Rerun the same command to resume where it stopped.", file=p)
    elif fix is not None:
        print(
            f"Every failure is the same {groups[0]['status']}: {fix}; then rerun with "
            "--retry-failed to send them again.",
            file=p,
        )
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


class _Requests:
    """The input's requests still to send; skips those done, records the invalid ones."""

    def __init__(
        self, input_path: Path, done: set[str], out: IO[bytes], progress: Progress,
        shard: Shard | None = None,
    ) -> None:  # fmt: skip
        self.shard = shard
        self.input_path = input_path
        self.done = done
        self.out = out
        self.progress = progress
        self.invalid = 0
        self.skipped = 0

    def requests(self) -> Iterator[Any]:
        item: InputLine
        for item in sharded(read_input(self.input_path), self.shard):
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


def _annotate(recorder: Callable[..., None], record: dict[str, Any], *, result: Any,
              client: pt.Client) -> None:  # fmt: skip
    """A record's marks of how its answer came (only when true: a plain record is as
    before), then the run's own fields."""
    for mark in ("deduplicated", "cached", "hedged"):
        if getattr(result, mark, False):
            record[mark] = True
    recorder(record, result=result, client=client)


async def _open_client(
    stack: AsyncExitStack, args: argparse.Namespace, progress: Progress
) -> pt.Client:
    """Start the embedded mock if ``--mock``, then open the client; ``stack`` closes both.

    Blocks while the mock server starts.
    """
    api_key, base_url = await server_of(stack, args, latency=MOCK_LATENCY)
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
                shared=args.shared,
            ),
            on_event=progress.on_event,
            cache=pt.ResponseCache(args.cache) if args.cache else None,
            **({"model": args.model} if args.model else {}),
            **args.network,
        )
    )


async def _send(client: pt.Client, requests: Iterator[Any], progress: Progress,
                out: IO[bytes], batch_scope: trio.CancelScope,
                dedupe: Literal["auto", "all", "off"] = "auto",
                hedge: bool = False) -> pt.BatchStatistics:  # fmt: skip
    """Send the batch, appending each result to ``out`` as it completes.

    Chat lines, embeddings lines and the lines of Paradigm's other endpoints (tokenize,
    query, filter/chunks, document search) run as up to three batches at once, on the
    same client (its limits hold for all), fed from one reading of the input.  Blocks
    until every request is done, or until ``batch_scope`` is cancelled (on a signal),
    which stops the batch; either way returns the statistics so far (of the batches
    together).
    """
    chat_send, chat_receive = trio.open_memory_channel[pt.ChatRequest](0)
    embed_send, embed_receive = trio.open_memory_channel[pt.EmbeddingRequest](0)
    other_send, other_receive = trio.open_memory_channel[Any](0)
    streams: dict[str, Any] = {}
    started: set[str] = set()

    batches: dict[str, tuple[Any, Callable[[], Any]]] = {
        "chat": (chat_send, lambda: client.stream_batch(
            chat_receive, on_progress=progress.updater("chat"), dedupe=dedupe, hedge=hedge)),
        "embeddings": (embed_send, lambda: client.stream_embed_batch(
            embed_receive, on_progress=progress.updater("embeddings"), dedupe=dedupe,
            hedge=hedge)),
        "endpoints": (other_send, lambda: client.stream_requests(
            other_receive, on_progress=progress.updater("endpoints"))),
    }  # fmt: skip

    async def dispatch(nursery: trio.Nursery) -> None:
        # A kind's batch starts with its first line: a file of chat lines runs (and logs)
        # one batch, not a second, empty one.
        async with chat_send, embed_send, other_send:
            for request in requests:
                kind = (
                    "embeddings" if isinstance(request, pt.EmbeddingRequest)
                    else "chat" if isinstance(request, pt.ChatRequest)
                    else "endpoints"
                )  # fmt: skip
                send, batch = batches[kind]
                if kind not in started:
                    started.add(kind)
                    nursery.start_soon(record, kind, batch())
                await send.send(request)

    async def record(kind: str, batch: Any) -> None:
        async with batch as results:
            streams[kind] = results
            async for result in results:
                custom_id = result.custom_id or f"index-{result.index}"
                answer = _answer_of(kind, result)
                annotate = functools.partial(
                    _annotate, progress.recorder.annotate, result=result, client=client
                )
                write_line(
                    out,
                    result_line(custom_id, answer, result.error, result.attempts,
                                result.elapsed, result.request, annotate=annotate),
                )  # fmt: skip

    with batch_scope:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(dispatch, nursery)
        except BaseExceptionGroup as group:
            # What stopped the run (the output broken, say), without the nursery's wrapping.
            if len(group.exceptions) == 1:
                exc = group.exceptions[0]
                raise exc from exc.__cause__
            raise
    return combined([stream.statistics() for stream in streams.values()])


def _answer_of(kind: str, result: Any) -> Any:
    """A result's answer: a completion, embeddings, or another endpoint's ``value``."""
    if kind == "chat":
        return result.completion
    if kind == "embeddings":
        return result.embeddings
    return result.value if result.ok else None


async def _run(args: argparse.Namespace, input_path: Path, output: Path, total: int,
               done: set[str]) -> tuple[dict[str, Any], bool]:  # fmt: skip
    """Run the batch into ``output``; blocks until it is over or stopped by a signal."""
    progress = Progress(total, len(done), sys.stderr, args.quiet, live=not args.verbose)
    interrupt = _Interrupt()
    with output.open("ab") as out, progress:
        pending = _Requests(input_path, done, out, progress, args.shard)
        async with AsyncExitStack() as stack:
            client = progress.client = await _open_client(stack, args, progress)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(interrupt.watch)
                    stats = await _send(
                        client, pending.requests(), progress, out, interrupt.batch_scope,
                        dedupe=args.dedupe, hedge=args.hedge,
                    )  # fmt: skip
                    progress.update(stats, force=True)
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # What stopped the batch (the output broken, say), without the nursery's
                # wrapping: run_batch reports it in one line.
                if len(group.exceptions) == 1:
                    exc = group.exceptions[0]
                    raise exc from exc.__cause__
                raise
    groups = failure_groups(output)
    failures = sum(g["count"] for g in groups)
    summary = _summary(stats, pending.skipped, pending.invalid, failures, groups)
    summary["invalid_in_output"] = sum(g["count"] for g in groups if g["code"] == "invalid_request")
    summary["interrupted"] = interrupt.interrupted
    return summary, interrupt.interrupted


class _Refused(Exception):
    """A reason not to run: ``paradigm-trio batch: <reason>`` on stderr, exit code 2."""


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
        # Only the input is compared (docs/cli.md, "The manifest"): a resume may change
        # the model (say, --retry-failed with another one).  Each record's body names the
        # model that answered it.
        print(
            f"Note: {output} was last run with --model {manifest.settings.get('model')!r}; "
            f"the requests sent now use {settings['model']!r}",
            file=sys.stderr,
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
    except InputError as exc:
        raise _Refused(str(exc)) from None
    except OSError as exc:
        raise _Refused(f"cannot read or rewrite {output}: {exc.strerror or exc}") from None
    if done:
        print(f"Resuming: {len(done)} request(s) already in {output}", file=sys.stderr)
    if dropped:
        print(f"--retry-failed: {dropped} failed request(s) will run again", file=sys.stderr)
    return done


def _prepare(args: argparse.Namespace, input_path: Path, output: Path) -> tuple[int, set[str]]:
    """Check the input and the output's state before sending anything, under the output's
    lock; the number of lines and the ids done."""
    try:
        digest, total = scan_input(input_path)
    except InputError as exc:
        raise _Refused(str(exc)) from None
    except OSError as exc:
        raise _Refused(f"cannot read {input_path}: {exc.strerror or exc}") from None
    try:
        check_worker_args(args)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    if args.shard is not None:
        total = shard_total(input_path, args.shard)
    settings = {"model": args.model, "mock": bool(args.mock)}
    if args.shard is not None:
        settings["shard"] = str(args.shard)
    _load_manifest(output, input_path, digest, settings)
    if args.strict:
        _check_strict(input_path)
    Manifest(digest, str(input_path), settings).save(output)
    return total, _read_done(output, args.retry_failed)


def _finish(args: argparse.Namespace, summary: dict[str, Any], output: Path,
            interrupted: bool) -> int:  # fmt: skip
    """Print the summary, write the report; the exit code."""
    _print_summary(summary, output, interrupted)
    code = 130 if interrupted else 1 if summary["failed_in_output"] else 0
    if args.report and args.report.lower().endswith(".html"):
        return _write_page(output, args.report, interrupted, code)
    if args.report:
        try:
            write_atomic(Path(args.report), dumps(summary, indent=2) + "\n")
        except (OSError, ValueError) as exc:  # checked before the run: a full disk, say
            reason = getattr(exc, "strerror", None) or exc
            _fail(f"cannot write the report {args.report}: {reason} (the results are in {output})")
            return code or 2
    return code


def _write_page(output: Path, report: str, interrupted: bool, code: int) -> int:
    """``--report`` as HTML, of what was done; marked as stopped after an interrupt (which
    a second one skips: drawing takes seconds).  The exit code."""
    later = f"paradigm-trio report {shlex.quote(str(output))} -o {shlex.quote(report)}"
    if interrupted:
        print("Writing the report of the run so far (Ctrl-C again to skip it)...", file=sys.stderr)
    try:
        write_html(output, Path(report), stopped=interrupted)
    except (ReportError, OSError) as exc:
        _fail(f"cannot write the report {report}: {exc} (the results are in {output})")
        return code or 2
    except KeyboardInterrupt:
        print(f"Report not written (interrupted): {later} writes it", file=sys.stderr)
        return 130
    print(f"Report: {report}" + (" (of the run so far)" if interrupted else ""), file=sys.stderr)
    return code


def _stopped(exc: pt.SystematicFailureError, output: Path) -> int:
    """The run stopped on a systematic failure: one line, exit code 3."""
    print(f"paradigm-trio batch: {stopped_line(exc)}", file=sys.stderr)
    print(f"Results so far: {output}", file=sys.stderr)
    return EXIT_STOPPED


def _wait_note(message: str) -> None:
    print(message, file=sys.stderr)


def run_batch(args: argparse.Namespace) -> int:
    """``batch``: check the paths, take the output's lock, run; the exit code.

    Blocks for the whole run (and while waiting for the lock, with ``--wait-for-lock``).
    """
    handler = configure_logging(args, sys.stderr)
    try:
        return _run_batch(args)
    finally:
        if handler is not None:
            logging.getLogger(LOGGER).removeHandler(handler)


def _run_batch(args: argparse.Namespace) -> int:
    input_path = Path(args.input)
    output = Path(args.output)
    lock = OutputLock(output, getattr(args, "command_line", sys.argv[1:]))
    wait = args.wait_for_lock or args.lock_timeout is not None
    timeout = math.inf if args.lock_timeout is None else args.lock_timeout
    try:
        check_paths(input_path, output, Path(args.report) if args.report else None)
        args.network = check_client(args)  # before any file is created (the lock's)
        lock.acquire(wait=wait, timeout=timeout, on_wait=_wait_note)
    except (ClientRefused, PathRefused, LockUnavailable) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("Interrupted while waiting for the lock; nothing was sent.", file=sys.stderr)
        return 130
    with lock:
        return _run_locked(args, input_path, output)


def _run_locked(args: argparse.Namespace, input_path: Path, output: Path) -> int:
    """Everything after the lock: resume checks, the run, the summary; the exit code."""
    try:
        if args.report and args.report.lower().endswith(".html"):
            require_matplotlib()  # before anything is sent
        total, done = _prepare(args, input_path, output)
        with pt.fewer_collections():
            summary, interrupted = trio.run(_run, args, input_path, output, total, done)
    except (_Refused, ReportError) as exc:
        return _fail(str(exc))
    except pt.ConfigurationError as exc:
        return _fail(cli_words(str(exc)))
    except pt.SystematicFailureError as exc:
        return _stopped(exc, output)
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except OSError as exc:
        return _fail(f"I/O error: {exc}")
    return _finish(args, summary, output, interrupted)
