"""``python -m benchmarks [scenario ...] [--quick]``: run, print, write docs/performance.md."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from ._common import ROOT, Section, Table, Target, busy_seconds, cpu_model, machine_lines

SCENARIOS = (
    "speed", "cost", "scaling", "memory", "ratelimit", "mock", "goodput", "instructions",
    "proxy", "shared", "otel", "embeddings", "sync", "restart", "tail", "gc",
)  # fmt: skip
DEFAULT_OUTPUT = ROOT / "docs" / "performance.md"


def _runner(name: str) -> Callable[[bool], Section]:
    if name == "speed":
        from .speed_test import run
    elif name == "cost":
        from .client_cost import run
    elif name == "scaling":
        from .scaling import run
    elif name == "memory":
        from .memory import run
    elif name == "ratelimit":
        from .rate_limit import run
    elif name == "goodput":
        from .goodput import run
    elif name == "instructions":
        from .instructions import run
    elif name == "proxy":
        from .proxy_cost import run
    elif name == "shared":
        from .shared_quota import run
    elif name == "otel":
        from .otel_cost import run
    elif name == "embeddings":
        from .embeddings import run
    elif name == "sync":
        from .sync_bridge import run
    elif name == "restart":
        from .restart_cost import run
    elif name == "tail":
        from .tail import run
    elif name == "gc":
        from .gc_share import run
    else:
        run = _mock_throughput
    return run


def _mock_throughput(quick: bool) -> Section:
    """The mock server's own throughput (``benchmarks/mock_throughput.py``)."""
    import trio

    from . import mock_throughput as mt

    total, concurrency, max_seconds = (1_000 if quick else 4_000), 64, 30.0
    section = Section(
        "mock",
        "6. The mock server's own throughput",
        f"`benchmarks/mock_throughput.py`: an httpx2 client sends up to {total:,} requests "
        f"at concurrency {concurrency} to the QuartTrio mock (no latency, no faults), in "
        "the same trio run and then as `python -m mock_server` in a child process.  This is "
        "why scenarios 2 and 3 use the raw server instead: the mock would be the bottleneck.",
    )
    results = [
        trio.run(mt.in_process, total, concurrency, max_seconds),
        trio.run(mt.as_subprocess, total, concurrency, max_seconds),
    ]
    table = Table(
        f"mock server, concurrency {concurrency}",
        ["mode", "requests", "errors", "seconds", "requests/s", "p50 ms", "p99 ms"],
    )
    for r in results:
        table.rows.append([r.mode, r.requests, r.errors, r.seconds, r.rate,
                           r.percentile(0.5), r.percentile(0.99)])  # fmt: skip
    section.tables.append(table)
    return section


def _short_machine() -> str:
    return (
        f"{os.cpu_count()} cores {cpu_model()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def _command(argv: Sequence[str]) -> str:
    return shlex.join(["python", "-m", "benchmarks", *argv])


def _targets_table(targets: list[Target]) -> Table:
    table = Table(
        "paradigm-trio against its targets (issue 8)",
        ["target", "goal", "measured", "met"],
        align="llll",
    )
    for t in targets:
        met = "not measured" if t.met is None else ("**yes**" if t.met else "**no**")
        table.rows.append([t.name, t.goal, t.measured, met])
    return table


def render(sections: list[Section], command: str, quick: bool, started: str, seconds: float) -> str:
    out = [
        "# Performance",
        "",
        "<!-- Written by `python -m benchmarks` (benchmarks/_cli.py): do not edit by hand. -->",
        "",
        "How paradigm-trio compares with what a user would otherwise pick, measured on the "
        "same machine, in the same run, against the same local servers (127.0.0.1 only).  "
        "The peers: the reference page's recipe (aiohttp + `asyncio.gather`), the official "
        "`openai` client (`AsyncOpenAI`, under trio), plain httpx 0.28 and plain httpx2 "
        "(under trio), LiteLLM (`litellm.acompletion`, under asyncio, in scenario 7 only), "
        "and paradigm-trio.",
        "",
        "## Reproduce",
        "",
        "```console",
        "$ nox -s bench                  # the full run (about 20 minutes), rewrites this page",
        "$ nox -s bench -- --quick       # smaller sizes (about 5 minutes)",
        "$ python -m benchmarks scaling  # one scenario: " + " ".join(SCENARIOS),
        "```",
        "",
        "Every measurement runs in a fresh child process; every server is a child process "
        "too, so client and server each get a core and the client's CPU time is its own.  "
        "The drivers are in `benchmarks/_peers.py` (each peer written the way its "
        "documentation suggests, with its connection pool sized to the concurrency), the "
        "servers in `benchmarks/_rawserver.py` (a bare asyncio HTTP/1.1 server, fixed "
        "response, optional fixed latency) and `mock_server`.",
        "",
        "## This run",
        "",
        f"- Command: `{command}`" + ("  (**quick mode**: reduced sizes)" if quick else ""),
        f"- Started {started}, took {seconds / 60:.1f} minutes",
        *machine_lines(),
        "",
    ]
    targets = [t for s in sections for t in s.targets]
    if targets:
        out += ["## Targets", "", _targets_table(targets).markdown(), ""]
    noisy = [s for s in sections if s.foreign_cpu is not None and s.foreign_cpu > 0.05]
    if noisy:
        out += [
            "> **The machine was shared during this run**: other processes used "
            + ", ".join(f"{s.foreign_cpu:.0%} ({s.key})" for s in noisy)
            + " of its CPU.  On 2 cores that slows the client and the server of every "
            "measurement; rerun on a quiet machine before trusting small differences.",
            "",
        ]
    for s in sections:
        out += [f"## {s.title}", "", s.intro, ""]
        if s.foreign_cpu is not None:
            out += [
                f"_{s.seconds:.0f} s; other processes used {s.foreign_cpu:.0%} of the "
                "machine's CPU meanwhile._",
                "",
            ]
        for table in s.tables:
            out += [f"**{table.title}**", "", table.markdown(), ""]
            out += [f"- {note}" for note in table.notes]
            out += [f"- Machine: {_short_machine()}; command: `{command}`.", ""]
        if s.profile:
            out += [
                "Profile of paradigm-trio's hot path (a target was missed):",
                "",
                "```text",
                s.profile.rstrip(),
                "```",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of paradigm-trio against its peers (see docs/performance.md).",
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario",
        help=f"scenarios to run, any of: {', '.join(SCENARIOS)} (default: all)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 5 minutes)")
    parser.add_argument(
        "--output", type=Path, default=None,
        help="write the results page there (default: docs/performance.md when every "
        "scenario runs, nothing otherwise)",
    )  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="only print the tables")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    chosen = [s for s in SCENARIOS if s in args.scenarios] or list(SCENARIOS)
    command = _command(argv)
    print(f"$ {command}")
    print("\n".join(machine_lines()), flush=True)

    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    begin = time.perf_counter()
    sections: list[Section] = []
    for name in chosen:
        print(f"\n== {name} ...", flush=True)
        t0 = time.perf_counter()
        busy0, own0 = busy_seconds()
        try:
            section = _runner(name)(args.quick)
        except Exception:
            section = Section(name, f"{name}: failed", "The scenario raised:")
            section.profile = traceback.format_exc()
            section.targets.append(Target(f"{name} scenario", "runs", "crashed", None))
        section.seconds = time.perf_counter() - t0
        busy1, own1 = busy_seconds()
        capacity = (os.cpu_count() or 1) * section.seconds
        section.foreign_cpu = max(0.0, (busy1 - busy0) - (own1 - own0)) / capacity
        sections.append(section)
        print(
            f"== {section.title} ({section.seconds:.0f} s; other processes used "
            f"{section.foreign_cpu:.0%} of the machine's CPU meanwhile)"
        )
        for table in section.tables:
            print(f"\n{table.title}\n{table.markdown()}")
            for note in table.notes:
                print(f"  - {note}")
        if section.profile:
            print(section.profile)
        sys.stdout.flush()
    elapsed = time.perf_counter() - begin

    targets = [t for s in sections for t in s.targets]
    if targets:
        print("\n" + _targets_table(targets).markdown())
    print(f"\n{len(sections)} scenario(s) in {elapsed:.0f} s; machine: {_short_machine()}")
    print(f"command: {command}")

    output = args.output
    if output is None and set(chosen) == set(SCENARIOS):
        output = DEFAULT_OUTPUT
    if output is not None and not args.no_write:
        output.write_text(render(sections, command, args.quick, started, elapsed))
        print(f"wrote {output}")
    return 0
