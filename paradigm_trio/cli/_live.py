"""``batch``'s progress: a live view on a terminal (``rich``), plain periodic lines otherwise.

On a terminal, with ``rich`` installed (the ``cli`` extra), the view is redrawn in place at
most five times a second: a progress bar with the count, the rate and the ETA, then what
the run is doing: successes and failures, requests in flight and waiting to retry, retries
by cause, 429 answers and the client's concurrency limit (which the adaptive controller
moves).  It draws from the task doing the work (no thread).  Otherwise (a pipe, a file,
CI, no ``rich``, or ``-v``, whose log lines would tear the view) a plain line is printed
after the first result, then every 10 seconds (2 on a terminal), and at the end.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import IO, Any

import paradigm_trio as pt

from ._report_data import RunRecorder

__all__ = ["ETA_AFTER", "Progress", "eta", "quota_line"]

REDRAW = 0.2
"""Seconds between two redraws of the live view."""

ETA_AFTER = 20
"""Results this run must have (and at least as many as are in flight: a whole first wave)
before an ETA is shown: the first answers all come at once, after one latency, and a rate
measured on them alone is no estimate."""


def eta(done: int, in_flight: int, remaining: int, rate: float) -> str:
    """The time left, or ``"-"`` while this run has too few results to tell."""
    if remaining <= 0 or rate <= 0 or done < max(ETA_AFTER, in_flight):
        return "-"
    return f"{remaining / rate:.0f}s"


class Progress:
    """What ``batch`` shows while it runs (see the module's docstring).

    Args:
        total: the lines of the input; ``already``: those done by earlier runs.
        stream: where to write (stderr).
        quiet: show nothing (the summary is printed elsewhere).
        live: allow the live view (``False`` with ``-v``).
    """

    def __init__(
        self, total: int, already: int, stream: IO[str], quiet: bool, *, live: bool = True
    ) -> None:
        self.total, self.already = total, already
        self.stream, self.quiet = stream, quiet
        self.retrying = self.rate_limited = 0  # requests waiting to retry, 429 answers
        self.recorder = RunRecorder()
        self.client: pt.Client | None = None
        tty = stream.isatty()
        self._view = _LiveView.open(stream) if tty and live and not quiet else None
        self.interval = REDRAW if self._view is not None else (2.0 if tty else 10.0)
        self._last = -math.inf
        self._shown: tuple[int, int, int] | None = None  # (done, ok, failed) last printed
        self._parts: dict[str, pt.BatchStatistics] = {}

    def updater(self, kind: str) -> Callable[[pt.BatchStatistics], None]:
        """The ``on_progress`` of one of a run's batches (chat, embeddings): shows them as
        one."""

        def update(stats: pt.BatchStatistics) -> None:
            self._parts[kind] = stats
            self.update(combined(list(self._parts.values())))

        return update

    def on_event(self, event: pt.Event) -> None:
        """The client's ``on_event``."""
        self.recorder.on_event(event)
        if isinstance(event, pt.RetryScheduled):
            self.retrying += 1
        elif isinstance(event, pt.AttemptStarted) and event.attempt > 1:
            self.retrying = max(0, self.retrying - 1)
        elif isinstance(event, pt.RateLimited):
            self.rate_limited += 1
        elif isinstance(event, pt.SharedQuotaUnavailable | pt.SharedQuotaRestored):
            self.say(quota_line(event))

    def say(self, line: str) -> None:
        """A line of its own, above the live view if there is one (even with ``-q``: it
        says why the run is not moving)."""
        if self._view is not None:
            self._view.say(line)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def update(self, stats: pt.BatchStatistics, *, force: bool = False) -> None:
        """A result arrived (``on_progress``): redraw or print, at most every interval."""
        if self.quiet:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        done = self.already + stats.done
        shown = (done, stats.succeeded, stats.failed)
        if force and shown == self._shown and self._view is None:
            return  # the last line printed says it already: print it once
        self._last, self._shown = now, shown
        rate = stats.done / stats.elapsed if stats.elapsed > 0 else 0.0
        left = eta(stats.done, stats.in_flight, max(self.total - done, 0), rate)
        limit = self.client.statistics().concurrency if self.client is not None else None
        if self._view is not None:
            self._view.draw(self, stats, done, rate, left, limit)
            return
        pct = f"{done / self.total:.0%}" if self.total else "100%"
        self.stream.write(
            f"{done}/{self.total} {pct} | ok {stats.succeeded} failed {stats.failed}"
            f" | in flight {stats.in_flight} retrying {self.retrying}"
            f" | {rate * 60:.0f} req/min | ETA {left}\n"
        )
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave the live view (its last state stays on the screen).  Idempotent."""
        if self._view is not None:
            self._view.close()
            self._view = None


class _LiveView:
    """The ``rich`` live view (``auto_refresh`` off: redrawn by :meth:`draw` only)."""

    def __init__(self, live: Any) -> None:
        self._live = live
        self._started = False

    @classmethod
    def open(cls, stream: IO[str]) -> _LiveView | None:
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:
            return None
        console = Console(file=stream, stderr=True)
        return cls(Live(console=console, auto_refresh=False, transient=False))

    def draw(self, progress: Progress, stats: pt.BatchStatistics, done: int, rate: float,
             eta: str, limit: int | None) -> None:  # fmt: skip
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        total = max(progress.total, 1)
        # Neutral until something fails (rich's default bar is a pinkish red).
        trouble = stats.failed > 0
        head = Table.grid(padding=(0, 1))
        head.add_row(
            ProgressBar(
                total=total, completed=min(done, total), width=40,
                complete_style="yellow" if trouble else "blue", finished_style="green",
            ),
            f"{done}/{progress.total}", f"{done / total:.0%}",
            f"{rate * 60:.0f} req/min", f"ETA {eta}",
        )  # fmt: skip
        by_count = sorted(stats.retries_by_cause.items(), key=lambda kv: -kv[1])
        causes = ", ".join(f"{k}: {v}" for k, v in by_count) or "none"
        body = Table.grid(padding=(0, 2))
        body.add_row(
            f"[green]ok {stats.succeeded}[/]",
            f"[red]failed {stats.failed}[/]" if trouble else f"failed {stats.failed}",
            f"in flight {stats.in_flight}", f"retrying {progress.retrying}",
            f"429s {progress.rate_limited}",
            f"concurrency limit {limit if limit is not None else '-'}",
        )  # fmt: skip
        retries = Text(f"retries {stats.retries} ({causes})")
        if not self._started:
            self._started = True
            self._live.start()
        self._live.update(Group(head, body, retries), refresh=True)

    def say(self, line: str) -> None:
        from rich.text import Text

        self._live.console.print(Text(line))

    def close(self) -> None:
        if self._started:
            self._live.stop()


def quota_line(event: pt.SharedQuotaUnavailable | pt.SharedQuotaRestored) -> str:
    """What ``batch`` says when the shared quota's Redis stops or starts answering."""
    if isinstance(event, pt.SharedQuotaRestored):
        return f"Shared quota {event.name!r}: Redis answers again (after {event.outage:.1f}s)."
    if event.fallback == "local":
        doing = f"meanwhile this run sends on a local share, 1/{event.workers} of --rpm/--tpm"
    else:
        doing = "meanwhile this run waits: nothing is sent until Redis answers"
    return (
        f"Shared quota {event.name!r}: Redis at {event.url} does not answer ({event.error}); "
        f"{doing}. Check --redis (or PARADIGM_REDIS_URL) and that Redis is up."
    )


def combined(parts: list[pt.BatchStatistics]) -> pt.BatchStatistics:
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
                     "requests_per_minute", "tokens_per_minute", "unknown_usage",
                     "deduplicated", "cached", "hedges", "hedges_won")
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
