"""The HTML report of a run: ``batch --report run.html`` and ``report OUT.jsonl -o run.html``.

The data is the output file's records, read by :class:`~._report_data.RunData`.  The
page is one file with no script and nothing to fetch: the plots are SVG drawn by
matplotlib (the ``report`` extra), inlined.  What has nothing to show is left out (no
429 panel without 429s, no list of failures without failures); each endpoint (chat,
embeddings) gets its own counts and latencies; failures are grouped by cause; and the
gaps between an interrupted run and its resume are marked, and left out of the rates.
"""

from __future__ import annotations

import argparse
import html
import io
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain, pairwise
from pathlib import Path
from typing import Any

import paradigm_trio as pt

from ._extras import install_hint
from ._report_data import CHAT, EMBEDDINGS, EndpointData, Request, RunData, RunRecorder
from ._text import write_atomic

__all__ = [
    "ReportError",
    "RunData",
    "RunRecorder",
    "add_report_parser",
    "run_report",
    "write_html",
]

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

    def mark(self, axes: Any, gaps: list[tuple[float, float]], label: str) -> None:
        """Shade the gaps between runs (Unix seconds)."""
        for n, (start, end) in enumerate(gaps):
            left, right = (start - self.start) / self.scale, (end - self.start) / self.scale
            legend = label if n == 0 and label else None
            axes.axvspan(left, right, color="0.88", zorder=0, label=legend)

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


def _name(endpoint: str) -> str:
    return {CHAT: "chat", EMBEDDINGS: "embeddings"}.get(endpoint, endpoint)


def _plot_throughput(data: RunData, axis: _Axis, gaps: list[tuple[float, float]]) -> str:
    figure = _figure(4.2 if data.r429 else 3.0)
    if data.r429:
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    else:
        top, bottom = figure.subplots(), None
    if len(data.endpoints) > 1:
        for endpoint, counts in sorted(data.endpoints.items()):
            xs, ys = axis.series(counts.done)
            top.plot(xs, ys, label=f"{_name(endpoint)} succeeded")
    else:
        xs, ys = axis.series({s: v[0] for s, v in data.done.items()})
        top.plot(xs, ys, color="tab:blue", label="succeeded")
    bad = {s: v[1] for s, v in data.done.items() if v[1]}
    if bad:
        xs, ys = axis.series(bad)
        top.plot(xs, ys, color="tab:red", label="failed or cancelled")
    axis.dress(top, "results / s")
    axis.mark(top, gaps, label="not running (interrupted, then resumed)")
    top.legend(loc="upper right")
    if bottom is not None:
        top.set_xlabel("")
        xs, ys = axis.series(data.r429)
        bottom.bar(xs, ys, width=axis.width / axis.scale, color="tab:orange")
        axis.dress(bottom, "429s / s")
        axis.mark(bottom, gaps, label="")
    return _svg(figure)


def _plot_concurrency(data: RunData, axis: _Axis, gaps: list[tuple[float, float]]) -> str:
    figure = _figure(2.6)
    axes = figure.subplots()
    points = sorted(data.limit.items())
    xs = [(s - axis.start) / axis.scale for s, _ in points]
    axes.step(xs, [v for _, v in points], where="post", color="tab:green")
    axis.dress(axes, "concurrency limit")
    axis.mark(axes, gaps, label="")
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


def _plot_tokens(data: RunData, axis: _Axis, gaps: list[tuple[float, float]]) -> str:
    figure = _figure(2.6)
    axes = figure.subplots()
    xs, ys = axis.series(data.tokens)
    axes.plot(xs, [y * 60 for y in ys], color="tab:purple")
    axis.dress(axes, "tokens / min")
    axis.mark(axes, gaps, label="")
    return _svg(figure)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0; } figure svg { max-width: 100%; height: auto; }
.muted { color: #666; }
.stopped { border-left: 0.3em solid #c60; padding: 0.3em 0.8em; background: #fff4e6; }
"""

STOPPED_NOTE = (
    "This run was stopped (Ctrl-C or SIGTERM) before it ended: the page shows what it had "
    "done. The same command resumes it, and the resumed run's report covers both runs."
)


def _table(headers: list[str], rows: list[list[object]], numeric: set[int]) -> str:
    def cell(tag: str, i: int, value: object) -> str:
        cls = ' class="n"' if i in numeric else ""
        return f"<{tag}{cls}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _seconds(ordered: list[float], q: float) -> str:
    value = _percentile(ordered, q)
    return "-" if value is None else f"{value:.3g} s"


def _latencies(ordered: list[float]) -> str:
    return " / ".join(_seconds(ordered, q) for q in (50, 90, 99))


def _per_minute(count: int, active: float) -> str:
    return f"{count / active * 60:,.0f}" if active > 0 else "-"


def _summary(data: RunData, ordered: list[float], stretches: list[tuple[float, float]]) -> str:
    active = sum(end - start for start, end in stretches)
    span = data.last - data.first if data.last > data.first else 0.0
    time_row = f"{active:,.1f} s"
    if len(stretches) > 1:
        time_row += (f" in {len(stretches)} runs, over {span:,.1f} s "
                     f"({span - active:,.1f} s not running)")  # fmt: skip
    rows: list[list[object]] = [
        ["records", f"{data.records:,}"],
        ["succeeded / failed / cancelled",
         f"{data.succeeded:,} / {data.failed:,} / {data.cancelled:,}"],
        ["time with requests in flight", time_row],
        ["successes per minute (of that time)", _per_minute(data.succeeded, active)],
        ["latency p50 / p90 / p99", _latencies(ordered)],
        ["retries", f"{sum(data.retries.values()):,}"],
        ["429 answers", f"{data.rate_limited:,}"],
        ["tokens (prompt + completion)",
         f"{data.prompt_tokens + data.completion_tokens:,} ({data.prompt_tokens:,} + "
         f"{data.completion_tokens:,})"],
    ]  # fmt: skip
    if len(data.endpoints) == 1:
        rows.insert(1, ["endpoint", next(iter(data.endpoints))])
    rows += [[label, f"{data.marks[mark]:,}"] for mark, label in _MARKED if mark in data.marks]
    return _table(["", ""], rows, {1})


_MARKED = (
    ("hedged", "answered by a hedge (hedge=)"),
    ("cached", "answered from the cache, not sent (cache=)"),
    ("deduplicated", "the answer of an identical line, not sent (dedupe=)"),
)
"""The summary's rows of the records' marks (each only when some record has it)."""


def _by_endpoint(endpoints: Mapping[str, EndpointData], active: float) -> str:
    rows: list[list[object]] = [
        [endpoint, f"{e.records:,}", f"{e.succeeded:,}", f"{e.failed:,}", f"{e.cancelled:,}",
         _per_minute(e.succeeded, active), _latencies(sorted(e.latencies)), f"{e.tokens:,}"]
        for endpoint, e in sorted(endpoints.items())
    ]  # fmt: skip
    headers = ["endpoint", "records", "succeeded", "failed", "cancelled", "successes / min",
               "latency p50 / p90 / p99", "tokens"]  # fmt: skip
    return "<h2>By endpoint</h2>\n" + _table(headers, rows, {1, 2, 3, 4, 5, 6, 7})


def _section(title: str, content: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n<figure>{content}</figure>"


def _plots(data: RunData, stretches: list[tuple[float, float]]) -> list[str]:
    parts = []
    if data.last > data.first:
        axis = _Axis.of(data)
        gaps = [(a[1], b[0]) for a, b in pairwise(stretches)]
        title = "Throughput and 429s over time" if data.r429 else "Throughput over time"
        parts.append(_section(title, _plot_throughput(data, axis, gaps)))
        if data.limit:
            parts.append(
                _section("Concurrency limit over time", _plot_concurrency(data, axis, gaps))
            )
        if data.tokens:
            parts.append(_section("Tokens over time", _plot_tokens(data, axis, gaps)))
    else:
        parts.append('<p class="muted">No timed records: no plots over time.</p>')
    several = len(data.endpoints) > 1
    for endpoint, counts in sorted(data.endpoints.items()):
        if counts.latencies:
            title = (
                f"Latency distribution: {_name(endpoint)}" if several else "Latency distribution"
            )
            parts.append(_section(title, _plot_latency(sorted(counts.latencies))))
    if data.retries:
        parts.append(_section("Retries by cause", _plot_retries(data)))
    return parts


def _lists(data: RunData) -> list[str]:
    parts = []
    slowest = sorted(data.slowest, key=lambda e: (-e[0], e[1]))
    # A column "answer" (how it came: hedged, cached, deduplicated) when some record has a mark.
    extra = ["answer"] if data.marks else []

    def mark(request: Request) -> list[str]:
        return [request.marks] if data.marks else []

    if slowest:
        parts += [
            f"<h2>The {len(slowest)} slowest successful requests</h2>",
            _table(
                ["custom_id", "seconds", "attempts", "failed attempts", *extra],
                [
                    [r.custom_id, f"{r.elapsed:.3f}", r.attempts, r.causes, *mark(r)]
                    for _, _, r in slowest
                ],
                {1, 2},
            ),
        ]
    failed = data.failed + data.cancelled
    if failed:
        groups = sorted(data.causes.values(), key=lambda g: (-g.count, g.code))
        parts += [
            f"<h2>Failed requests: {failed:,}, by cause</h2>",
            _table(
                ["error code", "HTTP status", "requests", "example message"],
                [
                    [g.code, "-" if g.status is None else g.status, f"{g.count:,}", g.example[:300]]
                    for g in groups
                ],
                {1, 2},
            ),
            f"<h2>Some failed requests ({len(data.failures)} of {failed:,})</h2>",
            _table(
                ["custom_id", "attempts", "failed attempts", "error", *extra],
                [
                    [r.custom_id, r.attempts, r.causes, r.error[:300], *mark(r)]
                    for r in data.failures
                ],
                {1},
            ),
        ]
    return parts


def render(data: RunData, title: str, *, stopped: bool = False) -> str:
    """The page (HTML, self-contained), marked as the report of a run that was
    ``stopped`` before it ended.  Needs matplotlib."""
    ordered = sorted(chain.from_iterable(e.latencies for e in data.endpoints.values()))
    stretches = data.active()
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if stopped:
        parts.append(f'<p class="stopped">{html.escape(STOPPED_NOTE)}</p>')
    parts.append(_summary(data, ordered, stretches))
    if data.unreadable_count:
        parts.append(f'<p class="muted">{html.escape(unreadable_note(data))}</p>')
    if len(data.endpoints) > 1:
        parts.append(_by_endpoint(data.endpoints, sum(b - a for a, b in stretches)))
    parts += _plots(data, stretches)
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
            f"an HTML report needs matplotlib: {install_hint('report', 'matplotlib')}"
        ) from None


def write_html(records: Path, page: Path, *, stopped: bool = False) -> RunData:
    """Write the report of the output file ``records`` to ``page`` (atomically); what it
    shows.  ``stopped``: the run was stopped before it ended (the page says so).

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
        title = f"paradigm-trio run: {records.name}" + (" (stopped)" if stopped else "")
        text = render(data, title, stopped=stopped)
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
