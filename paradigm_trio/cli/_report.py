"""The HTML report of a run: ``batch --report run.html`` and ``report OUT.jsonl -o run.html``.

The data is the output file's records.  ``batch`` adds to each record what the report
needs and the OpenAI Batch format lacks (:class:`RunRecorder`): ``started_at`` and
``finished_at`` (Unix seconds), ``concurrency`` (the client's concurrency limit when it
finished, sampled at most every half second) and ``failures``, the failed attempts
(``at``: seconds after ``started_at``, ``status``, ``cause``, ``wait`` before the retry or
``null``).  Records without them (older files, invalid lines) still count in the totals.

The page is one file with no script and nothing to fetch: the plots are SVG drawn by
matplotlib (the ``report`` extra), inlined.  Memory stays bounded for a file of millions
of records: counts are kept per second of the run, latencies in a compact array, and
only the slowest and the first failed requests are kept whole.
"""

from __future__ import annotations

import argparse
import heapq
import html
import io
import math
import sys
import time
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import paradigm_trio as pt

from ._text import loads, write_atomic

__all__ = [
    "ReportError",
    "RunData",
    "RunRecorder",
    "add_report_parser",
    "run_report",
    "write_html",
]

CONCURRENCY_SAMPLE = 0.5
"""Seconds between two readings of the client's concurrency limit."""

KEEP = 25
"""Slowest and failed requests listed in the report."""


# --------------------------------------------------------------------------- during the run


class RunRecorder:
    """What ``batch`` adds to each record: times, concurrency limit, failed attempts."""

    def __init__(self) -> None:
        self._offset: float | None = None  # wall time - trio time
        self._failures: dict[str, list[dict[str, Any]]] = {}
        self._concurrency: int | None = None
        self._sampled = -math.inf

    def _wall(self, t: float) -> float:
        if self._offset is None:
            self._offset = time.time() - trio.current_time()
        return self._offset + t

    def on_event(self, event: pt.Event) -> None:
        """The client's ``on_event``: keeps each request's failed attempts until it ends."""
        if isinstance(event, pt.AttemptFailed) and event.custom_id is not None:
            a = event.attempt
            self._failures.setdefault(event.custom_id, []).append(
                {
                    "end": a.started + a.elapsed,
                    "status": a.status,
                    "cause": a.cause,
                    "wait": a.delay,
                }
            )

    def annotate(
        self,
        record: dict[str, Any],
        result: pt.BatchResult | pt.EmbeddingResult,
        client: pt.Client,
    ) -> None:
        """Add ``started_at``, ``finished_at``, ``concurrency`` and ``failures``."""
        now = trio.current_time()
        if now - self._sampled >= CONCURRENCY_SAMPLE:
            self._sampled = now
            self._concurrency = client.statistics().concurrency
        started = now - result.elapsed
        failures = self._failures.pop(result.custom_id or "", [])
        record["started_at"] = round(self._wall(started), 3)
        record["finished_at"] = round(self._wall(now), 3)
        record["concurrency"] = self._concurrency
        record["failures"] = [
            {"at": round(f.pop("end") - started, 3), **f} for f in failures
        ]  # fmt: skip


# --------------------------------------------------------------------------- reading a run


@dataclass
class _Request:
    """A request the report lists by name (one of the slowest or failed)."""

    custom_id: str
    elapsed: float
    attempts: int
    causes: str
    error: str = ""


@dataclass
class RunData:
    """What the report shows, gathered in one pass over the records."""

    records: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    first: float = math.inf
    last: float = -math.inf
    latencies: array[float] = field(default_factory=lambda: array("d"))
    done: dict[int, list[int]] = field(default_factory=dict)  # second -> [ok, failed]
    r429: dict[int, int] = field(default_factory=dict)  # second -> 429 answers
    limit: dict[int, int] = field(default_factory=dict)  # second -> concurrency limit
    tokens: dict[int, int] = field(default_factory=dict)  # second -> tokens
    slowest: list[tuple[float, int, _Request]] = field(default_factory=list)
    failures: list[_Request] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)  # line numbers, the first KEEP
    unreadable_count: int = 0

    @classmethod
    def read(cls, path: Path) -> RunData:
        """The records of ``path``; a line that is not one (not strict JSON, nested too
        deep, a field of the wrong type: a hand-edited file) is counted by number."""
        data = cls()
        for number, record in _records(path):
            try:
                if record is None:
                    raise ValueError(number)
                data.add(record)
            except (ValueError, TypeError, AttributeError, OverflowError):
                data.unreadable_count += 1
                if len(data.unreadable) < KEEP:
                    data.unreadable.append(number)
        return data

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one record; ``TypeError`` (counting nothing) if its fields are not of the
        types a record's are."""
        raw_failures = record.get("failures") or []
        if not isinstance(raw_failures, list) or not isinstance(
            record.get("error"), Mapping | None
        ):
            raise TypeError("not a record: 'failures' must be a list, 'error' an object")
        self.records += 1
        error = record.get("error")
        ok = error is None
        code = error.get("code") if isinstance(error, Mapping) else None
        if ok:
            self.succeeded += 1
        elif code == "cancelled":
            self.cancelled += 1
        else:
            self.failed += 1
        elapsed = _number(record.get("elapsed"))
        failures = [f for f in raw_failures if isinstance(f, Mapping)]
        for f in failures:
            if f.get("wait") is not None:
                cause = str(f.get("cause"))
                self.retries[cause] = self.retries.get(cause, 0) + 1
        tokens = self._usage(record) if ok else 0
        self._timeline(record, ok, failures, tokens)
        request = _Request(
            str(record.get("custom_id")), elapsed, int(_number(record.get("attempts"))),
            ", ".join(str(f.get("cause")) for f in failures),
            _error_text(error) if not ok else "",
        )  # fmt: skip
        if ok:
            self.latencies.append(elapsed)
            entry = (elapsed, self.records, request)
            if len(self.slowest) < KEEP:
                heapq.heappush(self.slowest, entry)
            elif elapsed > self.slowest[0][0]:
                heapq.heapreplace(self.slowest, entry)
        elif len(self.failures) < KEEP:
            self.failures.append(request)

    def _usage(self, record: Mapping[str, Any]) -> int:
        response = record.get("response")
        body = response.get("body") if isinstance(response, Mapping) else None
        usage = body.get("usage") if isinstance(body, Mapping) else None
        if not isinstance(usage, Mapping):
            return 0
        prompt, completion = (
            _number(usage.get("prompt_tokens")),
            _number(usage.get("completion_tokens")),
        )
        self.prompt_tokens += int(prompt)
        self.completion_tokens += int(completion)
        return int(prompt + completion)

    def _timeline(
        self, record: Mapping[str, Any], ok: bool, failures: list[Any], tokens: int
    ) -> None:
        finished = record.get("finished_at")
        started = record.get("started_at")
        if not isinstance(finished, int | float) or not isinstance(started, int | float):
            return
        self.first = min(self.first, started)
        self.last = max(self.last, finished)
        second = int(finished)
        self.done.setdefault(second, [0, 0])[0 if ok else 1] += 1
        if tokens:
            self.tokens[second] = self.tokens.get(second, 0) + tokens
        limit = record.get("concurrency")
        if isinstance(limit, int):
            self.limit[second] = limit
        for f in failures:
            if f.get("status") == 429:
                self.rate_limited += 1
                at = int(started + _number(f.get("at")))
                self.r429[at] = self.r429.get(at, 0) + 1


def _records(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    """(line number, record or ``None`` when the line is not one) of each line."""
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = loads(line)
            except (ValueError, UnicodeDecodeError):
                record = None  # a half-written last line, or not JSON
            yield number, record if isinstance(record, dict) else None


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _error_text(error: object) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    return f"{error.get('code')}: {error.get('message')}"


# --------------------------------------------------------------------------- the page


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class _Axis:
    """The time axis of the plots: bins of ``width`` seconds, shown in ``unit``."""

    start: int
    span: float
    width: int
    scale: float
    unit: str

    @classmethod
    def of(cls, data: RunData) -> _Axis:
        span = data.last - int(data.first)
        scale, unit = (1.0, "seconds") if span < 300 else (60.0, "minutes")
        if span >= 3 * 3600:
            scale, unit = 3600.0, "hours"
        return cls(int(data.first), span, max(1, math.ceil(span / 150)), scale, unit)

    def series(self, counts: Mapping[int, float]) -> tuple[list[float], list[float]]:
        """Per-second counts as rates per second, in bins (x in the axis' unit)."""
        bins: dict[int, float] = {}
        for second, value in counts.items():
            b = (second - self.start) // self.width
            bins[b] = bins.get(b, 0) + value
        last = int(self.span // self.width)
        xs = [(b + 0.5) * self.width / self.scale for b in range(last + 1)]
        return xs, [bins.get(b, 0) / self.width for b in range(last + 1)]

    def dress(self, axes: Any, label: str) -> None:
        axes.set_xlim(0, self.span / self.scale)
        axes.set_ylim(bottom=0)
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.set_xlabel(f"{self.unit} since the start")


def _svg(figure: Any) -> str:
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "paradigm-trio"}):
        figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


def _figure(height: float = 3.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(9, height), layout="constrained")


def _plot_throughput(data: RunData, axis: _Axis) -> str:
    figure = _figure(4.2)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    xs, ys = axis.series({s: v[0] for s, v in data.done.items()})
    top.plot(xs, ys, color="tab:blue", label="succeeded")
    bad = {s: v[1] for s, v in data.done.items() if v[1]}
    if bad:
        xs, ys = axis.series(bad)
        top.plot(xs, ys, color="tab:red", label="failed or cancelled")
    axis.dress(top, "results / s")
    top.set_xlabel("")
    top.legend(loc="upper right")
    xs, ys = axis.series(data.r429)
    bottom.bar(xs, ys, width=axis.width / axis.scale, color="tab:orange")
    axis.dress(bottom, "429s / s")
    return _svg(figure)


def _plot_concurrency(data: RunData, axis: _Axis) -> str:
    figure = _figure(2.6)
    axes = figure.subplots()
    points = sorted(data.limit.items())
    xs = [(s - axis.start) / axis.scale for s, _ in points]
    axes.step(xs, [v for _, v in points], where="post", color="tab:green")
    axis.dress(axes, "concurrency limit")
    return _svg(figure)


def _plot_latency(ordered: list[float]) -> str:
    figure = _figure(3.0)
    axes = figure.subplots()
    axes.hist(ordered, bins=min(60, max(10, len(ordered) // 20)), color="tab:blue", alpha=0.8)
    for q, style in ((50, "-"), (90, "--"), (99, ":")):
        value = _percentile(ordered, q)
        if value is not None:
            axes.axvline(value, color="black", linestyle=style, label=f"p{q} {value:.3g}s")
    axes.set_xlabel("seconds per successful request (retries and waits included)")
    axes.set_ylabel("requests")
    axes.legend(loc="upper right")
    axes.grid(alpha=0.3)
    return _svg(figure)


def _plot_retries(data: RunData) -> str:
    figure = _figure(max(1.6, 0.45 * len(data.retries) + 0.8))
    axes = figure.subplots()
    causes = sorted(data.retries, key=data.retries.__getitem__)
    axes.barh(causes, [data.retries[c] for c in causes], color="tab:orange")
    axes.set_xlabel("retries")
    axes.grid(alpha=0.3, axis="x")
    return _svg(figure)


def _plot_tokens(data: RunData, axis: _Axis) -> str:
    figure = _figure(2.6)
    axes = figure.subplots()
    xs, ys = axis.series(data.tokens)
    axes.plot(xs, [y * 60 for y in ys], color="tab:purple")
    axis.dress(axes, "tokens / min")
    return _svg(figure)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0; } figure svg { max-width: 100%; height: auto; }
.muted { color: #666; }
"""


def _table(headers: list[str], rows: list[list[object]], numeric: set[int]) -> str:
    def cell(tag: str, i: int, value: object) -> str:
        cls = ' class="n"' if i in numeric else ""
        return f"<{tag}{cls}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(data: RunData, ordered: list[float]) -> str:
    span = data.last - data.first if data.last > data.first else 0.0
    rate = f"{data.succeeded / span * 60:,.0f}" if span else "-"

    def seconds(q: float) -> str:
        value = _percentile(ordered, q)
        return "-" if value is None else f"{value:.3g} s"

    rows: list[list[object]] = [
        ["records", f"{data.records:,}"],
        ["succeeded / failed / cancelled",
         f"{data.succeeded:,} / {data.failed:,} / {data.cancelled:,}"],
        ["time span of the timed records", f"{span:,.1f} s"],
        ["successes per minute", rate],
        ["latency p50 / p90 / p99", f"{seconds(50)} / {seconds(90)} / {seconds(99)}"],
        ["retries", f"{sum(data.retries.values()):,}"],
        ["429 answers", f"{data.rate_limited:,}"],
        ["tokens (prompt + completion)",
         f"{data.prompt_tokens + data.completion_tokens:,} ({data.prompt_tokens:,} + "
         f"{data.completion_tokens:,})"],
    ]  # fmt: skip
    return _table(["", ""], rows, {1})


def _section(title: str, content: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n<figure>{content}</figure>"


def _plots(data: RunData, ordered: list[float]) -> list[str]:
    parts = []
    if data.last > data.first:
        axis = _Axis.of(data)
        parts.append(_section("Throughput and 429s over time", _plot_throughput(data, axis)))
        if data.limit:
            parts.append(_section("Concurrency limit over time", _plot_concurrency(data, axis)))
        if data.tokens:
            parts.append(_section("Tokens over time", _plot_tokens(data, axis)))
    else:
        parts.append('<p class="muted">No timed records: no plots over time.</p>')
    if ordered:
        parts.append(_section("Latency distribution", _plot_latency(ordered)))
    if data.retries:
        parts.append(_section("Retries by cause", _plot_retries(data)))
    return parts


def _lists(data: RunData) -> list[str]:
    slowest = sorted(data.slowest, key=lambda e: (-e[0], e[1]))
    failed = data.failed + data.cancelled
    return [
        f"<h2>The {len(slowest)} slowest successful requests</h2>",
        _table(
            ["custom_id", "seconds", "attempts", "failed attempts"],
            [[r.custom_id, f"{r.elapsed:.3f}", r.attempts, r.causes] for _, _, r in slowest],
            {1, 2},
        ),
        f"<h2>Failed requests: {failed:,} (the first {len(data.failures)} listed)</h2>",
        _table(
            ["custom_id", "attempts", "failed attempts", "error"],
            [[r.custom_id, r.attempts, r.causes, r.error[:300]] for r in data.failures],
            {1},
        ),
    ]


def render(data: RunData, title: str) -> str:
    """The page (HTML, self-contained).  Needs matplotlib."""
    ordered = sorted(data.latencies)
    parts = [f"<h1>{html.escape(title)}</h1>", _summary(data, ordered)]
    if data.unreadable_count:
        parts.append(f'<p class="muted">{html.escape(unreadable_note(data))}</p>')
    parts += _plots(data, ordered)
    parts += _lists(data)
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f'<body>\n{body}\n<p class="muted">Written by paradigm-trio {pt.__version__}.</p>'
        "</body></html>\n"
    )


def unreadable_note(data: RunData) -> str:
    """What the page (and ``report``) say of the lines that are not records."""
    lines = ", ".join(map(str, data.unreadable))
    more = " ..." if data.unreadable_count > len(data.unreadable) else ""
    return (
        f"{data.unreadable_count:,} line(s) of the file are not records (not strict JSON, "
        f"or a field of the wrong type) and were left out: line {lines}{more}"
    )


class ReportError(Exception):
    """The report cannot be written (a message for the user)."""


def require_matplotlib() -> None:
    """Raise :class:`ReportError` unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError(
            "an HTML report needs matplotlib: pip install 'paradigm-trio[report]'"
        ) from None


def write_html(records: Path, page: Path) -> RunData:
    """Write the report of the output file ``records`` to ``page`` (atomically); what it
    shows.

    Raises:
        ReportError: matplotlib is missing, or a file cannot be read or written.
    """
    require_matplotlib()
    try:
        data = RunData.read(records)
    except OSError as exc:
        raise ReportError(f"cannot read {records}: {exc.strerror or exc}") from None
    import matplotlib

    # Text from the records (a cause, say) is never read as mathtext: "$\\frac$" raised.
    with matplotlib.rc_context({"text.parse_math": False}):
        text = render(data, f"paradigm-trio run: {records.name}")
    try:
        write_atomic(page, text)
    except OSError as exc:
        raise ReportError(f"cannot write {page}: {exc.strerror or exc}") from None
    return data


# --------------------------------------------------------------------------- `report`


_DESCRIPTION = (
    "Write one self-contained HTML page (no network needed) of a run from its output file: "
    "throughput and 429s over time, the concurrency limit, the latency distribution, "
    "retries by cause, tokens, the slowest and the failed requests. Needs the report extra "
    "(matplotlib)."
)


def add_report_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    summary = "an HTML page of a finished run, from its output file"
    report = sub.add_parser("report", help=summary, description=_DESCRIPTION)
    report.add_argument("records", metavar="OUT.jsonl", help="the output of paradigm-trio batch")
    report.add_argument("-o", "--output", metavar="REPORT.html", required=True,
                        help="the page to write")  # fmt: skip


def run_report(args: argparse.Namespace) -> int:
    records, page = Path(args.records), Path(args.output)
    if not records.is_file():
        print(f"paradigm-trio report: cannot read {records}: no such file", file=sys.stderr)
        return 2
    try:
        data = write_html(records, page)
    except ReportError as exc:
        print(f"paradigm-trio report: {exc}", file=sys.stderr)
        return 2
    if data.unreadable_count:
        print(f"paradigm-trio report: {records}: {unreadable_note(data)}", file=sys.stderr)
    print(f"Report: {page}", file=sys.stderr)
    return 0
