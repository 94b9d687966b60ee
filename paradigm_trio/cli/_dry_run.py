"""``paradigm-trio batch IN.jsonl --dry-run``: what a batch would cost and take, counted
by the server's tokenizer, with nothing else sent and nothing written.

Every valid line's prompt is counted with ``POST /tokenize`` (a batch of them, under
``--concurrency`` and ``--count-rpm``; ``--rpm`` and ``--tpm`` describe the real run,
whose time is estimated with them): a chat line's messages
with its model, a document-search line's query.  Embeddings lines cannot be counted so
(the tokenize endpoint serves LLMs only): their tokens are the client's estimate, and the
summary says how many were estimated.  Query and filter lines generate nothing.  Printed
on stdout: the totals, the largest requests, the lines whose prompt plus ``max_tokens``
exceed the model's context (``--context-length``, else the ``max_model_len`` the model
list gives, if it does), and the time the batch takes under ``--rpm``/``--tpm``.
"""

from __future__ import annotations

import argparse
import heapq
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import trio

import paradigm_trio as pt

from ._batchfile import InputError, read_input, scan_input
from ._embedded import server_of
from ._network import network_options

__all__ = ["DryRun", "run_dry_run"]

TOP = 10


@dataclass(slots=True)
class _Line:
    line: int
    model: str | None
    max_tokens: int


@dataclass
class DryRun:
    """What a dry run found (totals, the largest requests, the lines over the context)."""

    lines: int = 0
    invalid: int = 0
    requests: int = 0
    counted: int = 0
    estimated: int = 0
    uncounted: int = 0
    prompt_tokens: int = 0
    max_tokens: int = 0
    largest: list[tuple[int, int, str]] = field(default_factory=list)  # (tokens, line, id)
    over: list[tuple[int, str, int, int]] = field(default_factory=list)  # (line, id, n, ctx)
    errors: list[str] = field(default_factory=list)

    def add(self, custom_id: str, line: int, tokens: int) -> None:
        self.prompt_tokens += tokens
        item = (tokens, -line, custom_id)
        if len(self.largest) < TOP:
            heapq.heappush(self.largest, item)
        else:
            heapq.heappushpop(self.largest, item)


class _Counter:
    """Reads the input; yields the ``/tokenize`` requests; keeps what each line needs."""

    def __init__(self, path: Path, model: str | None, report: DryRun) -> None:
        self.path = path
        self.model = model
        self.report = report
        self.pending: dict[str, _Line] = {}

    def requests(self) -> Iterator[pt.TokenizeRequest]:
        report = self.report
        for item in read_input(self.path):
            report.lines += 1
            request = item.request
            if request is None:
                report.invalid += 1
                continue
            report.requests += 1
            if isinstance(request, pt.ChatRequest):
                model = request.model or self.model
                self.pending[item.custom_id] = _Line(item.line, model, request.max_tokens or 0)
                report.max_tokens += request.max_tokens or 0
                yield pt.TokenizeRequest(
                    messages=request.messages, model=model, custom_id=item.custom_id
                )
            elif isinstance(request, pt.DocumentSearchRequest):
                self.pending[item.custom_id] = _Line(item.line, request.model or self.model, 0)
                yield pt.TokenizeRequest(
                    prompt=request.query, model=request.model or self.model,
                    custom_id=item.custom_id,
                )  # fmt: skip
            elif isinstance(request, pt.EmbeddingRequest):
                report.estimated += 1
                report.add(item.custom_id, item.line, request.estimated_tokens())

    def counted(self, result: pt.EndpointResult, context: int | None) -> None:
        custom_id = result.custom_id or ""
        line = self.pending.pop(custom_id)
        if not result.ok:
            self.report.uncounted += 1
            if len(self.report.errors) < TOP:
                self.report.errors.append(f"line {line.line}: {result.error}")
            return
        tokens = result.value.count
        self.report.counted += 1
        self.report.add(custom_id, line.line, tokens)
        if context is not None and tokens + line.max_tokens > context:
            self.report.over.append((line.line, custom_id, tokens + line.max_tokens, context))


async def _context_length(client: pt.Client, given: int | None) -> int | None:
    """``--context-length``, else the ``max_model_len`` the model list gives the client's
    model (``None``: unknown; no line is judged)."""
    if given is not None:
        return given
    try:
        models = await client.models()
    except pt.APIError:
        return None
    for info in models:
        if info.id == client.model and isinstance(info.raw.get("max_model_len"), int):
            return int(info.raw["max_model_len"])
    return None


async def count(args: argparse.Namespace, path: Path) -> tuple[DryRun, int | None]:
    """Count the file's prompts through the server's tokenizer (blocks for the run)."""
    report = DryRun()
    counter = _Counter(path, args.model, report)
    async with AsyncExitStack() as stack:
        api_key, base_url = await server_of(stack, args, latency="fixed:0")
        client = await stack.enter_async_context(
            pt.Client(
                api_key=api_key,
                base_url=base_url,
                retry=pt.RetryPolicy(attempts=args.max_attempts) if args.max_attempts else None,
                timeouts=pt.Timeouts(attempt=args.timeout) if args.timeout else None,
                limits=pt.Limits(concurrency=args.concurrency, requests_per_minute=args.count_rpm),
                **({"model": args.model} if args.model else {}),
                **network_options(args),
            )
        )
        context = await _context_length(client, args.context_length)
        async with client.stream_requests(counter.requests()) as results:
            async for result in results:
                counter.counted(result, context)
    return report, context


def _minutes(report: DryRun, rpm: float | None, tpm: float | None) -> str:
    if rpm is None and tpm is None:
        return "not bounded by --rpm or --tpm (the concurrency and the server's speed decide)"
    tokens = report.prompt_tokens + report.max_tokens
    by_requests = report.requests / rpm if rpm else 0.0
    by_tokens = tokens / tpm if tpm else 0.0
    bound = "requests per minute" if by_requests >= by_tokens else "tokens per minute"
    return f"at least {max(by_requests, by_tokens):,.1f} min (bound by the {bound})"


def print_report(report: DryRun, context: int | None, args: argparse.Namespace,
                 out: TextIO) -> None:  # fmt: skip
    """The dry run's summary, for a person."""
    print(f"Dry run of {args.input}: only /tokenize was sent; nothing was written.", file=out)
    print(
        f"Lines: {report.lines} ({report.requests} request(s), {report.invalid} invalid)",
        file=out,
    )
    print(
        f"Prompt tokens: {report.prompt_tokens:,} ({report.counted} line(s) counted by the "
        f"server's tokenizer, {report.estimated} embeddings line(s) estimated, "
        f"{report.uncounted} could not be counted)",
        file=out,
    )
    print(f"max_tokens: {report.max_tokens:,} at most (completion tokens)", file=out)
    print(f"Total at most: {report.prompt_tokens + report.max_tokens:,} tokens", file=out)
    print("Largest requests (prompt tokens, line, custom_id):", file=out)
    for tokens, line, custom_id in sorted(report.largest, reverse=True):
        print(f"  {tokens:>10,}  line {-line:<8} {custom_id}", file=out)
    if context is None:
        print("Context length unknown (give --context-length N): no line judged.", file=out)
    else:
        print(f"Over the context of {context:,} tokens (prompt + max_tokens): "
              f"{len(report.over)} line(s)", file=out)  # fmt: skip
        for line, custom_id, tokens, _ in report.over[:50]:
            print(f"  line {line}: {custom_id} ({tokens:,} tokens)", file=out)
    print(f"Time: {_minutes(report, args.rpm, args.tpm)}", file=out)
    for error in report.errors:
        print(f"Not counted: {error}", file=sys.stderr)


def run_dry_run(args: argparse.Namespace) -> int:
    """``batch --dry-run``: exit 0 when every line was counted, 1 when some could not
    be (or are invalid), 2 when refused."""
    path = Path(args.input)
    try:
        scan_input(path)
    except InputError as exc:
        print(f"paradigm-trio batch: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"paradigm-trio batch: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        report, context = trio.run(count, args, path)
    except pt.ConfigurationError as exc:
        print(f"paradigm-trio batch: {exc} (or use --mock)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted; nothing was written.", file=sys.stderr)
        return 130
    print_report(report, context, args, sys.stdout)
    return 1 if report.uncounted or report.invalid else 0
