"""Where the time goes: a py-spy profile of one worker run (cProfile if py-spy fails).

``py-spy record --format raw`` samples the worker's Python stacks while it is on the CPU
(idle samples, i.e. waiting in epoll, are dropped); the summary lists the functions with
the most *own* samples (self time), then the paradigm-trio and httpx2 functions with the
most samples anywhere on the stack (inclusive time).  Time in a system call (a socket
``send``, for instance) is charged to the Python function that made it.
"""

from __future__ import annotations

import collections
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._common import run_worker

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def _frame(text: str) -> str:
    match = _FRAME.match(text.strip())
    if not match:
        return text.strip()
    return f"{match['func']} ({_short(match['file'])})"


def summarize_raw(raw: str, top: int = 15) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    split: collections.Counter[str] = collections.Counter()
    pt_own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            if any(p in name for p in ("paradigm_trio/", "httpx2/", "httpcore2/")):
                inclusive[name] += count
        http = next((i for i, f in enumerate(frames) if "httpx2/" in f or "httpcore2/" in f), None)
        ours = [f for f in frames[:http] if "paradigm_trio/" in f]
        if http is not None:
            split["inside httpx2 / httpcore2 (sending, pooling, parsing HTTP)"] += count
        elif ours:
            split["in paradigm_trio, outside httpx2 (its own code and what it calls)"] += count
            pt_own[ours[-1]] += count  # the innermost paradigm_trio frame: who paid
        else:
            split["elsewhere: trio's scheduler and I/O wait loop, the benchmark driver"] += count
    if not total:
        return "(no samples)"
    lines = [f"{total} CPU samples.  Top functions by own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("Where the samples are:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in split.most_common()]
    lines.append("paradigm_trio's own share, by its innermost function on the stack:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in pt_own.most_common(8)]
    lines.append("paradigm_trio / httpx2 / httpcore2 functions by inclusive time:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def profile(task: dict[str, Any], *, timeout: float) -> str:
    """Profile one worker run of ``task``; return the summary text."""
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, even when not on PATH
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "profile.txt"
            prefix = [spy, "record", "--format", "raw", "--rate", "250", "--nonblocking",
                      "--output", str(out), "--"]  # fmt: skip
            result = run_worker(task, timeout=timeout, prefix=prefix)
            if "failed" not in result and out.exists():
                return (
                    "py-spy (250 Hz, on-CPU samples, a separate run of the same case).\n"
                    + summarize_raw(out.read_text())
                )
    result = run_worker({**task, "cprofile": True}, timeout=timeout)
    if "failed" in result:
        return f"(profiling failed: {result['failed']})"
    return "cProfile, top 20 by own time:\n" + str(result.get("profile", ""))
